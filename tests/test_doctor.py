"""`routeyard doctor` on a healthy deployment (Redis, a migrated database, the farm over HTTP, a reachable
provider with its key, a master key) and on a broken one, where every problem is named with its fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ry_helpers import REDIS_URL, TEST_CONFIG, farm_in_thread, free_port, quiet_farm
from typer.testing import CliRunner

from producer.cli import app
from producer.doctor import run_checks
from shared.crypto import SecretBox
from shared.settings import Settings, get_settings
from shared.store import Store, migrate
from shared.store.engine import make_engine


def _real_provider(base_url: str, key_env: str) -> str:
    return TEST_CONFIG + f'\n[providers.acme]\nbase_url = "{base_url}"\nkey_env = "{key_env}"\n'


@pytest.fixture
def healthy(tmp_path: Path, real_redis: Any) -> Any:  # real_redis: skips (or fails in CI) when Redis is down
    db_url = f"sqlite:///{tmp_path / 'ok.db'}"
    Store.open(db_url).close_sync()
    with farm_in_thread(quiet_farm()) as farm_url:
        config = tmp_path / "routeyard.toml"
        config.write_text(_real_provider(farm_url + "/alpha/v1", "ACME_KEY"))
        yield db_url, farm_url, config


def test_doctor_passes_a_healthy_setup(healthy: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db_url, farm_url, config = healthy
    env = {"ACME_KEY": "sk-acme-0123456789abcdef", "ROUTEYARD_MASTER_KEY": SecretBox.new_key()}
    for name, value in {
        **env,
        "DATABASE_URL": db_url,
        "REDIS_URL": REDIS_URL,
        "ROUTEYARD_SIM_URL": farm_url,
        "ROUTEYARD_HOME": str(tmp_path / "home"),
        "ROUTEYARD_CONFIG": str(config),
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["doctor", "--production", "--json"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.stdout
    assert "sk-acme" not in result.stdout  # key values are never shown
    import json

    checks = {c["name"]: c for c in json.loads(result.stdout)}
    assert {c["status"] for c in checks.values()} == {"ok"}, checks
    assert {"config", "redis", "database", "farm", "provider acme", "key acme", "master key"} <= set(checks)


async def test_doctor_names_every_problem(tmp_path: Path) -> None:
    closed = free_port()
    db_url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(db_url)
    migrate.upgrade(engine, migrate.BASELINE)  # a database an older routeyard left behind
    engine.dispose()
    config = tmp_path / "routeyard.toml"
    config.write_text(_real_provider(f"http://127.0.0.1:{closed}/v1", "ACME_KEY"))
    settings = Settings(
        DATABASE_URL=db_url,
        REDIS_URL=f"redis://127.0.0.1:{closed}/0",
        ROUTEYARD_SIM_URL=f"http://127.0.0.1:{closed}",
        ROUTEYARD_HOME=tmp_path / "home",
    )
    checks = {c.name: c for c in await run_checks(settings, config, env={}, production=True, timeout_s=0.5)}
    failed = {name for name, c in checks.items() if c.status == "fail"}
    assert failed == {"redis", "database", "farm", "provider acme", "key acme", "master key"}
    assert checks["config"].status == "ok"
    assert "routeyard db upgrade" in (checks["database"].fix or "")
    assert "ACME_KEY" in (checks["key acme"].fix or "")
    assert "ROUTEYARD_MASTER_KEY" in (checks["master key"].fix or "")
    # the same machine as a developer's laptop: a missing master key is a warning, not a failure
    dev = {c.name: c for c in await run_checks(settings, config, env={}, production=False, timeout_s=0.5)}
    assert dev["master key"].status == "warn"

    bad = tmp_path / "bad.toml"
    bad.write_text("[routing]\ndefault_class = 'nope'\n")
    [config_check, *_] = await run_checks(settings, bad, env={}, timeout_s=0.5)
    assert config_check.status == "fail" and "invalid config" in config_check.detail

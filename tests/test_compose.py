"""compose.yaml is for users (there is no Docker engine here): it must parse, name commands the CLI really
has with options it really takes, persist Redis with AOF, and wire the workers to Redis, PostgreSQL and
the farm. Where `docker-compose`/`docker compose` is installed, its own validator checks the file too."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import typer.main
import yaml
from ry_helpers import REPO

from producer.cli import app

COMPOSE = REPO / "compose.yaml"


def _compose() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load(COMPOSE.read_text())


def _cli_accepts(argv: list[str]) -> None:
    group = typer.main.get_command(app)
    command = group.commands[argv[0]]  # type: ignore[attr-defined]
    known = {opt for p in command.params for opt in getattr(p, "opts", [])}
    for token in argv[1:]:
        if token.startswith("--"):
            assert token in known, f"`routeyard {argv[0]}` has no option {token}"


def test_services_and_their_wiring() -> None:
    c = _compose()
    services = c["services"]
    assert {"redis", "postgres", "worker", "farm"} <= set(services)
    redis_cmd = services["redis"]["command"]
    assert "--appendonly" in redis_cmd and redis_cmd[redis_cmd.index("--appendonly") + 1] == "yes"
    worker = services["worker"]
    assert worker["command"][0] == "worker"
    env = worker["environment"]
    assert env["REDIS_URL"].startswith("redis://redis:")
    assert env["DATABASE_URL"].startswith("postgresql://") and "@postgres:" in env["DATABASE_URL"]
    assert env["ROUTEYARD_SIM_URL"] == "http://farm:9100"
    assert worker["deploy"]["replicas"] >= 2
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["farm"]["command"][:1] == ["simulate"]
    for name in ("worker", "farm", "api"):
        _cli_accepts(services[name]["command"])
    assert (REPO / services["farm"]["build"]).resolve() == REPO and (REPO / "Dockerfile").exists()


def test_the_api_service_is_wired_like_the_worker() -> None:
    services = _compose()["services"]
    api, worker = services["api"], services["worker"]
    assert api["command"][:3] == ["api", "--host", "0.0.0.0"]  # noqa: S104 - in a container, on purpose
    port = api["command"][api["command"].index("--port") + 1]
    assert any(str(p).endswith(f":{port}") for p in api["ports"])
    for key in ("DATABASE_URL", "REDIS_URL", "ROUTEYARD_MASTER_KEY"):
        assert api["environment"][key] == worker["environment"][key]  # one store, one queue, one master key
    assert "ROUTEYARD_ADMIN_TOKEN" in api["environment"]
    assert api["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "/healthz" in " ".join(api["healthcheck"]["test"])


def test_the_dockerfile_installs_the_package_and_runs_the_cli() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert "pip install ." in text and 'ENTRYPOINT ["routeyard"]' in text
    for pkg in ("shared", "worker", "producer"):
        assert f"COPY {pkg} ./{pkg}" in text


@pytest.mark.skipif(not (shutil.which("docker-compose")), reason="docker-compose is not installed")
def test_docker_compose_validates_the_file() -> None:
    import os

    # the API and the workers need the deployment's secrets: compose refuses to start without them
    bare = {k: v for k, v in os.environ.items() if k not in ("ROUTEYARD_MASTER_KEY", "ROUTEYARD_ADMIN_TOKEN")}
    proc = subprocess.run(
        ["docker-compose", "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True, env=bare
    )
    assert proc.returncode != 0 and "ROUTEYARD_MASTER_KEY" in proc.stderr
    secrets = {"ROUTEYARD_MASTER_KEY": "k" * 44, "ROUTEYARD_ADMIN_TOKEN": "t" * 20}
    proc = subprocess.run(
        ["docker-compose", "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True, env={**bare, **secrets}
    )
    assert proc.returncode == 0, proc.stderr

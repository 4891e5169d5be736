"""Secrets hygiene, end to end: a batch with faults (500s, a refused key) runs with a router key, a pooled
key and BYOK keys; then every log record, result line, error, CLI output, Redis value and row of every table
is searched for every configured secret. Expected hits: none (besides the one place a token must appear:
the output of `keys create`).

The worker's runner does not choose BYOK keys yet (that wiring is the runtime side of issue #5): here its
credential lookup is pointed at `CredentialSource.for_job` for the batch's router key, which is the call the
runner will make."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from arq.connections import ArqRedis
from ry_helpers import TEST_CONFIG, make_config, quiet_farm
from sqlalchemy import select
from sqlmodel import SQLModel
from typer.testing import CliRunner

from producer.client import BatchOptions
from producer.embedded import Embedded
from shared.crypto import SecretBox
from shared.keys import KeyAuthenticator, KeyRefused, KeyStore
from shared.models import JobSpec
from shared.provider_keys import ProviderKeyStore, fingerprint
from shared.settings import Settings, get_settings
from shared.store import Store
from worker.credentials import ByokKeyring

SCAN_CONFIG = TEST_CONFIG.replace(
    'base_url = "sim://alpha"', 'base_url = "sim://alpha"\nkey_env = "RYTEST_POOLED_ALPHA"'
)


def _hits(text: str, secret_values: dict[str, str]) -> list[str]:
    return [name for name, value in secret_values.items() if value in text]


async def _redis_dump(redis: ArqRedis) -> str:
    out = []
    async for k in redis.scan_iter(count=1000):
        out.append(repr(k))
        kind = (await redis.type(k)).decode()
        if kind == "string":
            out.append(repr(await redis.get(k)))
        elif kind == "zset":
            out.append(repr(await redis.zrange(k, 0, -1, withscores=True)))
        elif kind == "hash":
            out.append(repr(await redis.hgetall(k)))
        elif kind == "list":
            out.append(repr(await redis.lrange(k, 0, -1)))
        elif kind == "set":
            out.append(repr(await redis.smembers(k)))
    return "\n".join(out)


def _table_dump(store: Store) -> str:
    def q(conn: Any) -> str:
        parts = []
        for t in SQLModel.metadata.sorted_tables:
            rows = conn.execute(select(t)).all()
            parts.append(f"{t.name}: {[tuple(r) for r in rows]!r}")
        return "\n".join(parts)

    return store.read_sync(q)


async def test_no_secret_appears_in_logs_results_errors_cli_redis_or_tables(
    settings: Settings,
    store: Store,
    db_url: str,
    fake_redis: ArqRedis,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    pooled = "sk-pooled-alpha-" + secrets.token_hex(16)
    byok_beta = "sk-byok-team-beta-" + secrets.token_hex(16)
    byok_gamma = "sk-ant-byok-key-gamma-" + secrets.token_hex(16)
    master = SecretBox.new_key()
    monkeypatch.setenv("RYTEST_POOLED_ALPHA", pooled)
    monkeypatch.setenv("ROUTEYARD_MASTER_KEY", master)
    box = SecretBox([master])
    caplog.set_level(logging.DEBUG)

    ks = KeyStore(store)
    key, token = await ks.create("scan", team="ml", project="p", limit=Decimal("100"), limit_reset="daily")
    off, off_token = await ks.create("off", team="ml")
    await ks.set_disabled(off.id, True)
    pks = ProviderKeyStore(store, box)
    await pks.add("beta", "team", "ml", byok_beta, label="team beta")
    await pks.add("gamma", "key", key.id, byok_gamma, label="own gamma")
    values = {
        "router token": token,
        "router token secret part": token[-43:],
        "disabled key's token": off_token,
        "pooled key": pooled,
        "BYOK team key": byok_beta,
        "BYOK router-key key": byok_gamma,
        "master key": master,
    }
    assert _hits(f"x{byok_beta}y", values) == ["BYOK team key"]  # the scanner does find what it looks for

    farm = quiet_farm(
        alpha={"p_500": 0.3, "api_keys": [pooled]},
        beta={"p_500": 0.3, "api_keys": [byok_beta]},
        gamma={"api_keys": ["sk-ant-someone-else-0000000000"]},  # our gamma keys are refused: 401
    )
    specs = [{"prompt": f"question {i}"} for i in range(24)] + [{"prompt": "big", "class": "bigonly"}] * 2
    async with Embedded(settings, make_config(SCAN_CONFIG), farm=farm, redis=fake_redis, store=store) as emb:
        assert emb.worker.runtime is not None
        creds = emb.worker.runtime.credentials
        creds.keyring = ByokKeyring(box)
        await creds.refresh_byok(store)
        creds.pooled = lambda provider: creds.for_job(provider, key.id)  # type: ignore[method-assign]
        principal = await KeyAuthenticator(store).authenticate(token)
        assert principal is not None and await KeyAuthenticator(store).authenticate(off_token) is None
        report = await emb.producer.submit_specs(
            [JobSpec.model_validate(s) for s in specs], BatchOptions(principal=principal)
        )
        assert report.batch_id and report.accepted == len(specs)
        batch = await asyncio.wait_for(emb.producer.wait(report.batch_id, poll_s=0.02), 30)
        lines = [line async for line in emb.producer.results(report.batch_id)]
        with pytest.raises(KeyRefused) as refused:
            await emb.producer.submit_specs([JobSpec(prompt="x")], BatchOptions(api_key_id=off.id))
        redis_text = await _redis_dump(fake_redis)

    # the batch really ran through faults and through the BYOK keys
    assert batch["n_succeeded"] >= 20 and batch["n_failed"] >= 2
    used = {r.api_key_hash for r in farm.record.requests if r.provider == "beta"}
    assert fingerprint(byok_beta) in used
    assert any(r.status_code == 500 for r in farm.record.requests)
    assert any(r.provider == "gamma" and r.status_code == 401 for r in farm.record.requests)
    assert any(line["error"] and "401" in (line["error"]["message"] or "") for line in lines)

    # CLI output, as an operator would see it
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("ROUTEYARD_HOME", str(tmp_path / "home"))
    config_file = tmp_path / "routeyard.toml"
    config_file.write_text(SCAN_CONFIG)
    monkeypatch.setenv("ROUTEYARD_CONFIG", str(config_file))
    get_settings.cache_clear()
    runner = CliRunner()
    cli_out = []
    try:
        for args in (
            ["keys", "list"],
            ["keys", "list", "--json"],
            ["keys", "show", key.id],
            ["keys", "show", key.id, "--json"],
            ["keys", "usage", "--by", "team"],
            ["keys", "usage", "--by", "key", "--json"],
            ["provider-keys", "list", "--json"],
            ["provider-keys", "list"],
            ["audit", "--json"],
            ["status", report.batch_id, "--json"],
            ["results", report.batch_id],
            ["secrets", "rotate-master-key"],
        ):
            result = await asyncio.to_thread(runner.invoke, app_(), args)  # the CLI runs its own event loop
            assert result.exit_code == 0, (args, result.output, result.exception)
            cli_out.append(result.output)
        created = await asyncio.to_thread(runner.invoke, app_(), ["keys", "create", "another"])
        assert created.exit_code == 0
    finally:
        get_settings.cache_clear()
    shown_token = created.stdout.strip()
    assert shown_token.startswith("ry_test_")  # …printed once, where it must be

    shown = json.loads(cli_out[3])
    assert Decimal(shown["current_period"]["spent"]) > 0 and shown["current_period"]["jobs"] == len(specs)

    haystacks = {
        "logs": caplog.text + "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records),
        "results": json.dumps(lines),
        "refusal": f"{refused.value} {refused.value!r} {json.dumps(refused.value.to_json())}",
        "cli": "\n".join(cli_out),
        "redis": redis_text,
        "tables": _table_dump(store),
    }
    values["token of `keys create`"] = shown_token
    found = {where: _hits(text, values) for where, text in haystacks.items()}
    assert found == {where: [] for where in haystacks}
    assert "byok:pvk_" in haystacks["tables"]  # the ledger names BYOK keys by reference


def app_() -> Any:
    from producer.cli import app

    return app

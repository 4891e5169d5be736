"""Router keys end to end, through real workers and the simulated farm:

- a key labelled `sensitive` only ever reaches zero-data-retention endpoints (the farm's record proves it),
  its denials land in the audit table, and its BYOK key is used (and the fee charged) where it has one;
- 8 worker processes racing 1,000 jobs against a key limit far below their cost never overspend it; every
  unserved job is held as `budget_exhausted`, and no reservation is left behind;
- a worker SIGKILLed while holding reservations: its holds are reclaimed and the remaining jobs complete.
"""

from __future__ import annotations

import asyncio
import hashlib
import signal
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from arq.connections import ArqRedis
from ry_helpers import (
    REDIS_URL,
    free_port,
    make_config,
    quiet_farm,
    routeyard_cmd,
    start_process,
    stop_process,
    wait_for_http,
)
from sqlalchemy import func, select

from producer.client import BatchOptions, Producer
from producer.embedded import Embedded
from shared.audit import audit_rows
from shared.catalog import Catalog
from shared.crypto import SecretBox
from shared.keys import KeyStore
from shared.models import JobSpec
from shared.provider_keys import ProviderKeyStore
from shared.queue import JobQueue
from shared.redis_keys import Keys
from shared.settings import Settings
from shared.spend import key_budget
from shared.store import Store
from shared.tables import Attempt, Job
from worker.credentials import ByokKeyring

GOV_CONFIG = """
[routing]
default_class = "basic"
[policy]
zdr_labels = ["sensitive"]
[billing]
byok_fee_rate = "0.05"
[providers.alpha]
base_url = "sim://alpha"
[providers.beta]
base_url = "sim://beta"
zdr = true
[providers.gamma]
base_url = "sim://gamma"
data_collection = "allow"
[models.small]
context_length = 8000
endpoints = [
  { provider = "alpha", price = { input = "1.00", output = "2.00" } },
  { provider = "beta", price = { input = "1.00", output = "2.00" } },
  { provider = "gamma", price = { input = "0.50", output = "1.00" } },
]
[classes.basic]
models = ["small"]
max_tokens = 200
"""


def _h(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


async def test_sensitive_key_reaches_only_zdr_endpoints_with_its_byok_key(
    settings: Settings, store: Store, fake_redis: ArqRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    master = SecretBox.new_key()
    monkeypatch.setenv("ROUTEYARD_MASTER_KEY", master)
    byok_secret = "sk-byok-beta-" + "7" * 32
    ks = KeyStore(store)
    sensitive, _ = await ks.create("medical", team="health", labels=["sensitive"])
    plain, _ = await ks.create("marketing", team="growth")
    await ProviderKeyStore(store, SecretBox([master])).add("beta", "key", sensitive.id, byok_secret)
    config = make_config(GOV_CONFIG)
    farm = quiet_farm(config)
    async with Embedded(settings, config, farm=farm, redis=fake_redis, store=store) as emb:
        rt = emb.worker.runtime
        assert rt is not None
        rt.credentials.keyring = ByokKeyring(SecretBox([master]))
        await rt.credentials.refresh_byok(store)
        a = await emb.producer.submit_specs(
            [JobSpec(prompt=f"patient note {i}") for i in range(30)], BatchOptions(api_key_id=sensitive.id)
        )
        b = await emb.producer.submit_specs(
            [JobSpec(prompt=f"ad copy {i}") for i in range(30)], BatchOptions(api_key_id=plain.id)
        )
        assert a.batch_id and b.batch_id and not a.errors and not b.errors
        for bid in (a.batch_id, b.batch_id):
            done = await asyncio.wait_for(emb.producer.wait(bid, poll_s=0.05), 60)
            failed = [(line["error"]) async for line in emb.producer.results(bid) if line["error"]]
            assert done["n_succeeded"] == 30, failed[:3]
        await rt.denials.flush(store)

    jobs = Job.__table__  # type: ignore[attr-defined]
    sensitive_jobs = set(
        await store.read(
            lambda c: list(c.execute(select(jobs.c.id).where(jobs.c.api_key_id == sensitive.id)).scalars())
        )
    )
    seen = [r for r in farm.record.requests if r.job_id in sensitive_jobs]
    # the farm's own record: every call for the sensitive key went to beta (ZDR), with the key's BYOK secret
    assert seen and {r.provider for r in seen} == {"beta"}
    assert {r.api_key_hash for r in seen} <= {_h(byok_secret)[: len(seen[0].api_key_hash)]}
    attempts = Attempt.__table__  # type: ignore[attr-defined]
    ledger = await store.read(lambda c: [dict(r) for r in c.execute(select(attempts)).mappings()])
    mine = [x for x in ledger if x["api_key_id"] == sensitive.id]
    assert {x["billed_to"] for x in mine} == {"byok"}
    for x in mine:
        assert x["fee"] == (x["cost"] * Decimal("0.05")).quantize(Decimal("1e-9"))
    others = [x for x in ledger if x["api_key_id"] == plain.id]
    assert {x["billed_to"] for x in others} == {"credits"} and {x["provider"] for x in others} >= {"gamma"}
    # each denial is in the audit table: the non-ZDR endpoints, for the sensitive key only
    audit = await store.read(audit_rows(key_id=sensitive.id))
    denied = {row["endpoint"] for row in audit}
    assert denied == {"alpha/small", "gamma/small"}
    assert all(row["occurrences"] == 30 for row in audit)
    assert not await store.read(audit_rows(key_id=plain.id))


async def _wait_settled(store: Store, key_id: str, n: int, timeout: float) -> Counter[str]:
    jobs = Job.__table__  # type: ignore[attr-defined]
    deadline = time.monotonic() + timeout
    while True:
        rows = await store.read(
            lambda c: c.execute(
                select(jobs.c.state, func.count()).where(jobs.c.api_key_id == key_id).group_by(jobs.c.state)
            ).all()
        )
        counts = Counter({s: k for s, k in rows})
        if (counts["queued"] + counts["running"] == 0 and sum(counts.values()) == n) or time.monotonic() > deadline:
            return counts
        await asyncio.sleep(0.3)


def _env(tmp_path: Path, pg_url: str, key_prefix: str, farm_url: str, config: str) -> dict[str, str]:
    (tmp_path / "routeyard.toml").write_text(config)
    return {
        "DATABASE_URL": pg_url,
        "REDIS_URL": REDIS_URL,
        "ROUTEYARD_REDIS_PREFIX": key_prefix,
        "ROUTEYARD_SIM_URL": farm_url,
        "ROUTEYARD_CONFIG": str(tmp_path / "routeyard.toml"),
        "ROUTEYARD_HOME": str(tmp_path / "home"),
    }


@pytest.mark.slow
async def test_eight_workers_never_overspend_a_key_limit(
    tmp_path: Path, pg_url: str, real_redis: ArqRedis, key_prefix: str
) -> None:
    port = free_port()
    env = _env(tmp_path, pg_url, key_prefix, f"http://127.0.0.1:{port}", GOV_CONFIG)
    farm = start_process(
        routeyard_cmd("simulate", "--port", str(port), "--latency-ms", "20"), env, tmp_path / "farm.log"
    )
    store = Store.open(pg_url)
    workers = []
    try:
        wait_for_http(f"http://127.0.0.1:{port}/_farm/stats")
        key, _ = await KeyStore(store).create("tight", limit=Decimal("0.05"), limit_reset="monthly")
        config = make_config(GOV_CONFIG)
        producer = Producer(store, JobQueue(real_redis, Keys(key_prefix)), Catalog.from_config(config))
        report = await producer.submit_specs(
            [JobSpec(prompt=f"Summarise report {i} in detail.") for i in range(1000)], BatchOptions(api_key_id=key.id)
        )
        assert report.accepted == 1000
        workers = [
            start_process(
                routeyard_cmd("worker", "--concurrency", "16", "--log-level", "warning"), env, tmp_path / f"w{i}.log"
            )
            for i in range(8)
        ]
        counts = await _wait_settled(store, key.id, 1000, 180)
        assert set(counts) == {"succeeded", "budget_exhausted"}, counts
        budget = await store.read(key_budget(key.id))
        assert budget is not None
        # the recorded spend, to the cent and beyond, is within the limit
        assert budget.spend.spent <= Decimal("0.05") and budget.spend.in_flight == 0, budget
        assert budget.spend.spent > Decimal("0.04")  # and the limit was used, not left idle
        served = httpx.get(f"http://127.0.0.1:{port}/_farm/stats").json()
        assert sum(p["served"] for p in served.values()) == counts["succeeded"]
        res = [k async for k in real_redis.scan_iter(match=f"{key_prefix}bud:*:res")]
        assert await real_redis.exists(f"{key_prefix}bud:key:{key.id}")  # the key's budget was enforced in Redis
        assert sum([await real_redis.zcard(k) for k in res]) == 0  # and no reservation is outstanding
    finally:
        for w in workers:
            stop_process(w)
        stop_process(farm)
        await store.close()


@pytest.mark.slow
async def test_a_killed_workers_reservations_are_reclaimed_and_the_rest_complete(
    tmp_path: Path, pg_url: str, real_redis: ArqRedis, key_prefix: str
) -> None:
    config_text = (
        GOV_CONFIG.replace('base_url = "sim://alpha"', 'base_url = "sim://alpha"\ntimeout_s = 4')
        .replace('base_url = "sim://beta"', 'base_url = "sim://beta"\ntimeout_s = 4')
        .replace('base_url = "sim://gamma"', 'base_url = "sim://gamma"\ntimeout_s = 4')
        + "\n[worker]\nlease_s = 3.0\nsweep_every_s = 2\nsweep_grace_s = 2.0\nreservation_margin_s = 1.0\n"
    )
    port = free_port()
    env = _env(tmp_path, pg_url, key_prefix, f"http://127.0.0.1:{port}", config_text)
    farm = start_process(
        routeyard_cmd("simulate", "--port", str(port), "--latency-ms", "1500"), env, tmp_path / "farm.log"
    )
    store = Store.open(pg_url)
    procs = []
    try:
        wait_for_http(f"http://127.0.0.1:{port}/_farm/stats")
        key, _ = await KeyStore(store).create("roomy", limit=Decimal("5.00"))
        producer = Producer(
            store, JobQueue(real_redis, Keys(key_prefix)), Catalog.from_config(make_config(config_text))
        )
        report = await producer.submit_specs(
            [JobSpec(prompt=f"q{i}") for i in range(60)], BatchOptions(api_key_id=key.id)
        )
        assert report.batch_id
        victim = start_process(
            routeyard_cmd("worker", "--concurrency", "40", "--log-level", "warning"), env, tmp_path / "victim.log"
        )
        await asyncio.sleep(3.0)  # it is now holding reservations for calls in flight
        held = [k async for k in real_redis.scan_iter(match=f"{key_prefix}bud:*:res")]
        assert held and sum([await real_redis.zcard(k) for k in held]) > 0
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        procs.append(
            start_process(
                routeyard_cmd("worker", "--concurrency", "40", "--log-level", "warning"), env, tmp_path / "survivor.log"
            )
        )
        done = await asyncio.wait_for(producer.wait(report.batch_id, poll_s=0.3), 120)
        assert done["n_succeeded"] == 60
        await asyncio.sleep(4.0)  # a sweep reclaims what the dead worker held
        assert all([await real_redis.zcard(k) == 0 for k in held])
        budget = await store.read(key_budget(key.id))
        assert budget is not None and budget.spend.spent <= Decimal("5.00")
        attempts = Attempt.__table__  # type: ignore[attr-defined]
        statuses = Counter(await store.read(lambda c: list(c.execute(select(attempts.c.status)).scalars())))
        assert statuses["abandoned"] > 0 and statuses["started"] == 0
    finally:
        for p in procs:
            stop_process(p)
        stop_process(farm)
        await store.close()

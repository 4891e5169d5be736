"""Faults over the simulated farm: 20% 5xx, 5% 429 and 2% hangs still end with >= 99.9% of jobs answered;
hung calls are cut at the configured timeout; a provider that goes down loses its traffic within seconds and
gets it back when it returns."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from arq.connections import ArqRedis
from ry_helpers import TEST_CONFIG, make_config, quiet_farm
from sqlalchemy import select

from producer.client import BatchOptions
from producer.embedded import Embedded
from shared.models import JobSpec
from shared.settings import Settings
from shared.store import Store
from shared.tables import Attempt

FAULTY = (
    TEST_CONFIG.replace(
        '[providers.alpha]\nbase_url = "sim://alpha"', '[providers.alpha]\nbase_url = "sim://alpha"\ntimeout_s = 1.0'
    )
    .replace('[providers.beta]\nbase_url = "sim://beta"', '[providers.beta]\nbase_url = "sim://beta"\ntimeout_s = 1.0')
    .replace('base_url = "sim://gamma"', 'base_url = "sim://gamma"\ntimeout_s = 1.0')
    .replace("retries_per_endpoint = 1", "retries_per_endpoint = 2")
    .replace("max_attempts = 6", "max_attempts = 8")
)


async def _attempts(store: Store) -> list[dict]:  # type: ignore[type-arg]
    attempts = Attempt.__table__  # type: ignore[attr-defined]
    return await store.read(lambda c: [dict(r) for r in c.execute(select(attempts)).mappings()])


async def test_fault_mix_still_answers_nearly_every_job(
    settings: Settings, sqlite_store: Store, real_redis: ArqRedis
) -> None:
    faults = {
        "p_500": 0.1,
        "p_503": 0.1,
        "p_429": 0.05,
        "retry_after_s": 0.2,
        "p_hang": 0.02,
        "hang_s": 30,
        "latency_ms": 5,
    }
    farm = quiet_farm(alpha=faults, beta=faults, gamma=faults)
    n = 2000
    async with Embedded(
        settings, make_config(FAULTY), farm=farm, redis=real_redis, store=sqlite_store, max_in_flight=256
    ) as emb:
        report = await emb.producer.submit_specs([JobSpec(prompt=f"q{i}") for i in range(n)], BatchOptions())
        assert report.batch_id
        batch = await asyncio.wait_for(emb.producer.wait(report.batch_id, poll_s=0.1), 240)
        failed = [line["error"] async for line in emb.producer.results(report.batch_id, states=["failed"])]
    assert batch["n_succeeded"] >= n * 0.999, failed
    attempts = await _attempts(sqlite_store)
    outcomes = Counter(a["error_class"] for a in attempts)
    assert outcomes["upstream"] > 0 and outcomes["rate_limited"] > 0 and outcomes["timeout"] > 0
    # every hung call was cut at the 1 s timeout (plus the scheduling slack of a busy event loop)
    hung = [a for a in attempts if a["error_class"] == "timeout"]
    assert all(a["latency_ms"] < 3000 for a in hung), max(a["latency_ms"] for a in hung)
    assert all(a["status"] != "started" for a in attempts)
    # accounting: every call the farm served is a succeeded attempt, and none twice
    served = {r.attempt_id for r in farm.record.requests if r.outcome == "served"}
    assert served == {a["id"] for a in attempts if a["status"] == "succeeded"}


async def test_traffic_leaves_a_provider_that_goes_down_and_returns(
    settings: Settings, sqlite_store: Store, real_redis: ArqRedis
) -> None:
    farm = quiet_farm(alpha={"latency_ms": 20}, beta={"latency_ms": 20}, gamma={"latency_ms": 20})
    config = make_config(TEST_CONFIG + "\n[circuits]\ncooldown_s = 0.5\nmax_cooldown_s = 1.0\n")
    async with Embedded(settings, config, farm=farm, redis=real_redis, store=sqlite_store, max_in_flight=32) as emb:

        async def feed(stop: asyncio.Event) -> None:
            i = 0
            while not stop.is_set():
                await emb.producer.submit_specs([JobSpec(prompt=f"steady {i}-{k}") for k in range(20)])
                i += 1
                await asyncio.sleep(0.05)

        stop = asyncio.Event()
        feeder = asyncio.create_task(feed(stop))
        await asyncio.sleep(1.5)
        farm.set_behaviour("alpha", down=True)
        down_at = time.time()  # the farm records requests on the same clock
        await asyncio.sleep(3.0)
        farm.set_behaviour("alpha", down=False)
        up_at = time.time()
        await asyncio.sleep(3.0)
        stop.set()
        await feeder

    reqs = farm.record.requests
    before = [r for r in reqs if r.t_received < down_at]
    assert sum(1 for r in before if r.provider == "alpha" and r.outcome == "served") > 10
    # from a second after it went down, alpha gets only half-open probes (one per cooldown, at most 1 s)
    during = [r for r in reqs if down_at + 1.0 <= r.t_received <= up_at]
    assert sum(1 for r in during if r.provider == "alpha") <= 6
    assert sum(1 for r in during if r.provider == "beta" and r.outcome == "served") > 50
    # back up: the next probe succeeds and closes the circuit; traffic returns within about a second
    after = [r for r in reqs if r.t_received > up_at + 1.5]
    assert sum(1 for r in after if r.provider == "alpha" and r.outcome == "served") > 10


async def test_failures_groups_dead_letters(settings: Settings, sqlite_store: Store, fake_redis: ArqRedis) -> None:
    from shared.store import queries

    farm = quiet_farm(alpha={"p_500": 1.0}, beta={"p_500": 1.0}, gamma={"p_503": 1.0})
    config = make_config(
        TEST_CONFIG.replace("retries_per_endpoint = 1", "retries_per_endpoint = 1\noutage_wait_s = 0.5")
    )
    async with Embedded(settings, config, farm=farm, redis=fake_redis, store=sqlite_store) as emb:
        report = await emb.producer.submit_specs([JobSpec(prompt=f"q{i}") for i in range(6)])
        assert report.batch_id
        await asyncio.wait_for(emb.producer.wait(report.batch_id, poll_s=0.05), 60)
    groups = await sqlite_store.read(queries.failures(batch_id=report.batch_id))
    assert sum(g.count for g in groups) == 6
    # the story: calls failed upstream (5xx), and once every circuit was open the rest could not be routed
    assert {g.error_class for g in groups} <= {"upstream", "no_route", "attempts_exhausted"}
    top = groups[0]
    assert top.samples and top.job_ids
    called = [g for g in groups if g.provider is not None]
    assert called and all(set(g.http_status) <= {500, 503, 529} for g in called)  # gamma speaks Anthropic: 529
    job = await sqlite_store.read(queries.job(called[0].job_ids[0]))
    assert len(job["attempt_rows"]) >= 2  # the full attempt history is kept for re-queue and forensics

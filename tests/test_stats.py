"""Live endpoint statistics: each worker's moving averages, seeded and refreshed from the ledger so a new
worker plans `sort: latency | throughput` with what the fleet already measured."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from arq.connections import ArqRedis
from ry_helpers import make_config, quiet_farm

from producer.embedded import Embedded
from shared.models import JobSpec
from shared.settings import Settings
from shared.store import Store
from shared.timeutil import utcnow
from worker.router import plan
from worker.stats import EndpointStatsBook, FleetStats, FleetStatsRefresher, recent_endpoint_stats


def test_a_refresh_seeds_unseen_endpoints_and_pulls_averages_toward_the_fleet() -> None:
    book = EndpointStatsBook()
    book.observe("alpha/small", 100, 50)  # 500 tokens/s
    book.refresh({"alpha/small": FleetStats(10, 300.0, 100.0), "beta/small": FleetStats(4, 40.0, None)})
    snap = book.snapshot()
    assert snap["alpha/small"].latency_ms == pytest.approx(200.0)
    assert snap["alpha/small"].throughput_tps == pytest.approx(300.0)
    assert snap["beta/small"].latency_ms == 40.0 and snap["beta/small"].throughput_tps is None


async def _batch(settings: Settings, store: Store, redis: ArqRedis, n: int) -> Embedded:
    farm = quiet_farm(alpha={"latency_ms": 2}, beta={"latency_ms": 30})
    async with Embedded(settings, make_config(), farm=farm, redis=redis, store=store) as emb:
        report = await emb.producer.submit_specs([JobSpec(prompt=f"q{i}", class_="basic") for i in range(n)])
        assert report.batch_id
        await asyncio.wait_for(emb.producer.wait(report.batch_id, poll_s=0.02), 30)
    return emb


async def test_the_ledger_query_averages_recent_successful_calls(
    settings: Settings, store: Store, fake_redis: ArqRedis
) -> None:
    await _batch(settings, store, fake_redis, 20)
    fleet = await store.read(recent_endpoint_stats(utcnow() - timedelta(minutes=10)))
    assert set(fleet) == {"alpha/small", "beta/small"}
    assert sum(s.calls for s in fleet.values()) == 20
    assert fleet["alpha/small"].latency_ms < fleet["beta/small"].latency_ms
    assert all(s.throughput_tps is None or s.throughput_tps > 0 for s in fleet.values())
    assert await store.read(recent_endpoint_stats(utcnow() + timedelta(minutes=1))) == {}


async def test_a_new_worker_plans_with_what_the_fleet_measured(
    settings: Settings, sqlite_store: Store, fake_redis: ArqRedis
) -> None:
    await _batch(settings, sqlite_store, fake_redis, 20)
    farm = quiet_farm()
    async with Embedded(settings, make_config(), farm=farm, redis=fake_redis, store=sqlite_store) as emb:
        rt = emb.worker.runtime
        assert rt is not None
        for _ in range(500):  # the first refresh runs as the worker starts, before it has made a call
            if rt.stats.snapshot():
                break
            await asyncio.sleep(0.01)
        live = rt.live_state()
        assert set(live.stats) == {"alpha/small", "beta/small"} and farm.record.requests == []
        spec = JobSpec(prompt="x", class_="basic", provider={"sort": "latency"})
        first = plan(spec, rt.catalog, rt.config.policy, live).candidates[0]
        assert first.endpoint.slug == "alpha/small"


async def test_the_refresher_survives_a_failing_store(sqlite_store: Store) -> None:
    book = EndpointStatsBook()
    refresher = FleetStatsRefresher(sqlite_store, book, window_s=60, every_s=0.01)
    calls = 0

    async def broken(query: object) -> object:
        nonlocal calls
        calls += 1
        raise RuntimeError("database gone")

    sqlite_store.read = broken  # type: ignore[method-assign]
    refresher.ensure_started()
    while calls < 3:
        await asyncio.sleep(0.01)
    await refresher.stop()
    assert book.snapshot() == {}

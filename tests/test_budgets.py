"""Budgets that hold under concurrency: a batch's `max_total_cost` is never overspent, unserved jobs are held
as `budget_exhausted` (not failed, not lost), no reservation is left behind, and raising the budget resumes
them."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from arq.connections import ArqRedis
from ry_helpers import make_config, quiet_farm
from sqlalchemy import func, select, update

from producer.client import BatchOptions
from producer.embedded import Embedded
from shared.models import JobSpec
from shared.settings import Settings
from shared.store import Store, queries
from shared.tables import Attempt, Batch, Job
from worker.sweeper import resume_held


async def _settled(store: Store, batch_id: str, n: int) -> dict[str, int]:
    jobs = Job.__table__  # type: ignore[attr-defined]
    for _ in range(500):
        counts = dict(
            await store.read(
                lambda c: c.execute(
                    select(jobs.c.state, func.count()).where(jobs.c.batch_id == batch_id).group_by(jobs.c.state)
                ).all()
            )
        )
        if counts.get("queued", 0) == 0 and counts.get("running", 0) == 0 and sum(counts.values()) == n:
            return counts
        await asyncio.sleep(0.02)
    raise AssertionError(counts)


async def test_batch_budget_is_never_overspent_and_the_rest_is_held(
    settings: Settings, sqlite_store: Store, real_redis: ArqRedis
) -> None:
    farm = quiet_farm()
    limit = Decimal("0.002")
    specs = [JobSpec(prompt=f"Summarise item {i} in detail.", max_tokens=200) for i in range(120)]
    async with Embedded(
        settings, make_config(), farm=farm, redis=real_redis, store=sqlite_store, max_in_flight=64
    ) as emb:
        report = await emb.producer.submit_specs(specs, BatchOptions(max_total_cost=limit))
        assert report.batch_id
        counts = await _settled(sqlite_store, report.batch_id, 120)
        batch = await emb.producer.batch(report.batch_id)
        assert batch is not None
        # the ledger's total for the batch is within its budget, to the nano-dollar
        attempts = Attempt.__table__  # type: ignore[attr-defined]
        ledger = await sqlite_store.read(
            lambda c: c.execute(
                select(func.sum(attempts.c.cost)).where(attempts.c.batch_id == report.batch_id)
            ).scalar()
        )
        assert ledger is not None and ledger <= limit and batch["cost_total"] == ledger
        assert counts["succeeded"] > 0 and counts["budget_exhausted"] > 0
        assert set(counts) == {"succeeded", "budget_exhausted"}
        served = sum(1 for r in farm.record.requests if r.outcome == "served")
        assert served == counts["succeeded"]
        assert batch["state"] == "open"  # held jobs keep the batch open: nothing is lost
        assert await emb.worker.runtime.admission.reservations_outstanding(f"batch:{report.batch_id}") == 0  # type: ignore[union-attr]

        # the owner raises the budget: the sweeper resumes the held jobs and they complete
        batches = Batch.__table__  # type: ignore[attr-defined]
        sqlite_store.write_sync(
            lambda c, d: c.execute(
                update(batches).where(batches.c.id == report.batch_id).values(max_total_cost=Decimal(10))
            )
        )
        rt = emb.worker.runtime
        assert rt is not None
        resumed = await resume_held(sqlite_store, emb.queue, rt.scope_state)
        assert resumed == counts["budget_exhausted"]
        final = await emb.producer.wait(report.batch_id, poll_s=0.02)
        assert final["n_succeeded"] == 120 and final["state"] == "completed"
        # running resume again changes nothing
        assert await resume_held(sqlite_store, emb.queue, rt.scope_state) == 0


async def test_held_jobs_can_be_cancelled(settings: Settings, sqlite_store: Store, fake_redis: ArqRedis) -> None:
    from shared.store import ops

    async with Embedded(settings, make_config(), farm=quiet_farm(), redis=fake_redis, store=sqlite_store) as emb:
        report = await emb.producer.submit_specs(
            [JobSpec(prompt=f"q{i}", max_tokens=200) for i in range(10)], BatchOptions(max_total_cost=Decimal("0.0005"))
        )
        assert report.batch_id
        counts = await _settled(sqlite_store, report.batch_id, 10)
        assert counts.get("budget_exhausted", 0) > 0
        assert await sqlite_store.write(ops.cancel_jobs(batch_id=report.batch_id)) == counts["budget_exhausted"]
        b = await sqlite_store.read(queries.batch(report.batch_id))
        assert b["state"] == "completed"


async def test_changing_what_a_key_limit_counts_starts_its_counter_afresh(
    settings: Settings, sqlite_store: Store, fake_redis: ArqRedis
) -> None:
    # the spend counter in Redis is tagged with what it counts: turning BYOK inclusion on or off, or a new
    # reset period, must not keep counting on a total built under the old rule (it is rebuilt from the ledger,
    # and jobs held under the old rule are resumed)
    from shared.keys import KeyStore

    keys = KeyStore(sqlite_store)
    key, _ = await keys.create("k", limit=Decimal("1"), limit_reset="monthly")
    async with Embedded(settings, make_config(), farm=quiet_farm(), redis=fake_redis, store=sqlite_store) as emb:
        rt = emb.worker.runtime
        assert rt is not None
        limit, before = await rt.scope_state(f"key:{key.id}") or (None, "")
        await keys.update(key.id, {"include_byok_in_limit": True})
        _, with_byok = await rt.scope_state(f"key:{key.id}") or (None, "")
        await keys.update(key.id, {"limit_reset": "daily", "include_byok_in_limit": False})
        _, daily = await rt.scope_state(f"key:{key.id}") or (None, "")
    assert limit == Decimal("1")
    assert with_byok == before + "+byok" and not daily.endswith("+byok"), (before, with_byok, daily)

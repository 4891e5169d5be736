"""Chaos, with real processes: 3 `routeyard worker` processes against real Redis and PostgreSQL and the farm
over loopback HTTP. One worker is SIGKILLed every couple of seconds and restarted; in another run Redis loses
every routeyard key mid-batch. Either way every job ends with exactly one result, none is lost, and the
ledger accounts for every call the farm served, none twice:

    for each job: succeeded attempts <= calls the farm served for it <= succeeded + abandoned attempts

(an attempt is recorded before its call; one cut off by a kill stays in the ledger as `abandoned`).
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from arq.connections import ArqRedis
from ry_helpers import (
    REDIS_URL,
    TEST_CONFIG,
    free_port,
    make_config,
    routeyard_cmd,
    start_process,
    stop_process,
    wait_for_http,
)
from sqlalchemy import select

from producer.client import BatchOptions, Producer
from shared.catalog import Catalog
from shared.models import JobSpec
from shared.queue import JobQueue
from shared.redis_keys import Keys
from shared.store import Store
from shared.tables import Attempt, Job

pytestmark = pytest.mark.slow

CHAOS_CONFIG = (
    TEST_CONFIG
    + """
[worker]
lease_s = 3.0
sweep_every_s = 2
sweep_grace_s = 2.0
"""
)


class Fleet:
    def __init__(self, tmp: Path, env: dict[str, str], n: int, concurrency: int) -> None:
        self.tmp, self.env, self.concurrency = tmp, env, concurrency
        self.procs = [self._spawn(i) for i in range(n)]
        self.spawned = n

    def _spawn(self, i: int):  # type: ignore[no-untyped-def]
        args = routeyard_cmd("worker", "--concurrency", str(self.concurrency), "--log-level", "warning")
        return start_process(args, self.env, self.tmp / f"worker-{i}.log")

    def kill_one(self, rng: random.Random) -> None:
        i = rng.randrange(len(self.procs))
        self.procs[i].send_signal(signal.SIGKILL)
        self.procs[i].wait()
        self.procs[i] = self._spawn(self.spawned)
        self.spawned += 1

    def stop(self) -> None:
        for p in self.procs:
            stop_process(p)


async def _run_chaos(tmp_path: Path, pg_url: str, redis: ArqRedis, key_prefix: str, chaos: str, n_jobs: int) -> None:
    cfg_path = tmp_path / "routeyard.toml"
    cfg_path.write_text(CHAOS_CONFIG)
    farm_port = free_port()
    farm_url = f"http://127.0.0.1:{farm_port}"
    env = {
        "DATABASE_URL": pg_url,
        "REDIS_URL": REDIS_URL,
        "ROUTEYARD_REDIS_PREFIX": key_prefix,
        "ROUTEYARD_SIM_URL": farm_url,
        "ROUTEYARD_CONFIG": str(cfg_path),
        "ROUTEYARD_HOME": str(tmp_path / "home"),
    }
    farm = start_process(
        routeyard_cmd("simulate", "--port", str(farm_port), "--latency-ms", "300"), env, tmp_path / "farm.log"
    )
    store = Store.open(pg_url)
    fleet: Fleet | None = None
    try:
        wait_for_http(farm_url + "/_farm/stats")
        producer = Producer(store, JobQueue(redis, Keys(key_prefix)), Catalog.from_config(make_config(CHAOS_CONFIG)))
        report = await producer.submit_specs([JobSpec(prompt=f"chaos {i}") for i in range(n_jobs)], BatchOptions())
        assert report.batch_id and report.accepted == n_jobs
        fleet = Fleet(tmp_path, env, 3, concurrency=32)
        rng = random.Random(7)
        deadline = time.monotonic() + 240
        kills = 0
        flushed = False
        while time.monotonic() < deadline:
            b = await producer.batch(report.batch_id)
            assert b is not None
            if b["state"] == "completed":
                break
            done = b["n_succeeded"] + b["n_failed"]
            if chaos == "kill" and done < n_jobs * 0.9:
                fleet.kill_one(rng)
                kills += 1
                await asyncio.sleep(1.5)
            elif chaos == "flush" and not flushed and done > n_jobs * 0.2:
                keys = [k async for k in redis.scan_iter(match=f"{key_prefix}*", count=1000)]
                for i in range(0, len(keys), 500):
                    await redis.delete(*keys[i : i + 500])
                flushed = True
            else:
                await asyncio.sleep(0.3)
        b = await producer.batch(report.batch_id)
        assert b is not None and b["state"] == "completed", (b, (tmp_path / "worker-0.log").read_text()[-2000:])
        # every job is terminal. A job may fail only because the chaos itself used up its calls: each call cut
        # off by a kill stays in the ledger (the provider may have billed it) and counts towards the job's
        # ceiling, and a job whose workers keep dying is given up as poison. On a quiet machine all succeed.
        failed = [line["error"] async for line in producer.results(report.batch_id, states=["failed"])]
        assert {f["code"] for f in failed} <= {"attempts_exhausted", "worker_crashed"}, failed
        assert b["n_succeeded"] + b["n_failed"] == n_jobs and b["n_failed"] <= n_jobs * 0.005, failed
        if chaos == "kill":
            assert kills >= 2, kills
        else:
            assert flushed

        jobs = Job.__table__  # type: ignore[attr-defined]
        attempts = Attempt.__table__  # type: ignore[attr-defined]
        job_rows = await store.read(lambda c: list(c.execute(select(jobs.c.id, jobs.c.state, jobs.c.result)).all()))
        assert len(job_rows) == n_jobs
        assert all((r.state == "succeeded" and r.result) or r.state == "failed" for r in job_rows)
        att_rows = await store.read(lambda c: list(c.execute(select(attempts.c.job_id, attempts.c.status)).all()))
        ok = Counter(r.job_id for r in att_rows if r.status == "succeeded")
        abandoned = Counter(r.job_id for r in att_rows if r.status == "abandoned")
        assert not [r for r in att_rows if r.status == "started"]
        async with httpx.AsyncClient(base_url=farm_url) as client:
            served_log = (await client.get("/_farm/requests")).json()
        served = Counter(r["job_id"] for r in served_log if r["outcome"] == "served")
        for job_id, _, _ in job_rows:
            assert ok[job_id] <= served[job_id] <= ok[job_id] + abandoned[job_id], (
                job_id,
                ok[job_id],
                served[job_id],
                abandoned[job_id],
            )
        if chaos == "kill":
            assert sum(abandoned.values()) > 0  # the kills did cut calls off, and the ledger kept them
    finally:
        if fleet is not None:
            fleet.stop()
        stop_process(farm)
        await store.close()


async def test_workers_killed_mid_call_lose_nothing_and_charge_nothing_twice(
    tmp_path: Path, pg_url: str, real_redis: ArqRedis, key_prefix: str
) -> None:
    await _run_chaos(tmp_path, pg_url, real_redis, key_prefix, "kill", 2000)


async def test_redis_losing_everything_mid_batch_is_recovered_by_the_sweeper(
    tmp_path: Path, pg_url: str, real_redis: ArqRedis, key_prefix: str
) -> None:
    await _run_chaos(tmp_path, pg_url, real_redis, key_prefix, "flush", 2000)

"""Scale-out: 1, 2 and 4 worker processes against one Redis and one PostgreSQL, 0 ms simulated provider over
loopback — jobs/s and Redis commands per job, relative to one worker in the same run. The machine has 2
cores shared by the workers, the farm, Redis and PostgreSQL, so the curve flattens at the cores, not at
Redis: commands per job staying flat is what says more workers on more machines would keep scaling."""

from __future__ import annotations

import asyncio
import os

from bench.common import commands_total, postgres_cpu_s, postgres_wal_bytes, redis_cpu_s
from bench.deploy import close_producer, deployment, span_rate, wait_batch
from bench.overhead import specs
from bench.suite import Row


def run(jobs: int = 6000, counts: tuple[int, ...] = (1, 2, 4), store: str = "postgres") -> list[Row]:
    results: dict[int, tuple[float, float, float, float, float]] = {}
    for n in counts:
        with deployment(store) as d:
            before = commands_total(d.redis_url)
            redis_cpu, pg_cpu, wal = redis_cpu_s(d.redis_url), postgres_cpu_s(), postgres_wal_bytes()

            async def submit() -> str:
                p = d.producer()
                report = await p.submit_specs(specs(jobs))
                await close_producer(p)
                return report.batch_id  # type: ignore[no-any-return]

            batch_id = asyncio.run(submit())
            d.start_farm(latency_ms=0)
            d.start_workers(n, 256)

            async def measure(batch_id: str = batch_id) -> float:
                p = d.producer()
                b = await wait_batch(p, batch_id, 900)
                assert b["n_succeeded"] == jobs, b
                rate = await span_rate(p, batch_id, jobs)
                await close_producer(p)
                return rate

            rate = asyncio.run(measure())
            results[n] = (
                rate,
                (commands_total(d.redis_url) - before) / jobs,
                (redis_cpu_s(d.redis_url) - redis_cpu) / jobs * 1e6,
                (postgres_cpu_s() - pg_cpu) / jobs * 1e6,
                (postgres_wal_bytes() - wal) / jobs,
            )
    base = results[counts[0]][0]
    rows = [
        Row(
            f"scale-out: {n} worker process(es), {store}, {os.cpu_count()} cores",
            f"{rate:,.0f} jobs/s, {cmds:.1f} cmds/job",
            f"1 worker {base:,.0f} jobs/s",
            rate / base,
            "(reported)",
            None,
            note=f"Redis CPU {redis_us:.0f} us/job, PostgreSQL CPU {pg_us:.0f} us/job, WAL {wal_b:,.0f} bytes/job",
        )
        for n, (rate, cmds, redis_us, pg_us, wal_b) in results.items()
    ]
    return rows

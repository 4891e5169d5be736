"""Redis cost per job: every command the server ran (INFO commandstats, including commands inside Lua
scripts) over a whole run — submission, dispatch, admission, settlement, acks, lease renewals, the workers'
idle polling — divided by the jobs; and Redis memory per queued job (the queue holds ids only: prompts and
specs live in the SQL store, so nothing is excluded)."""

from __future__ import annotations

import asyncio
from collections import Counter

from bench.common import commands_total, redis_info
from bench.deploy import close_producer, deployment, wait_batch
from bench.overhead import specs
from bench.suite import Row


def run(jobs: int = 5000, queued: int = 20_000) -> list[Row]:
    rows = []
    with deployment("sqlite") as d:
        before = commands_total(d.redis_url)
        stats_before = redis_info(d.redis_url, "commandstats")

        async def submit(n: int) -> str:
            p = d.producer()
            report = await p.submit_specs(specs(n))
            await close_producer(p)
            return report.batch_id  # type: ignore[no-any-return]

        batch_id = asyncio.run(submit(jobs))
        d.start_farm(latency_ms=0)
        d.start_workers(1, 256)

        async def finish() -> None:
            p = d.producer()
            b = await wait_batch(p, batch_id, 600)
            assert b["n_succeeded"] == jobs, b
            await close_producer(p)

        asyncio.run(finish())
        per_job = (commands_total(d.redis_url) - before) / jobs
        after = redis_info(d.redis_url, "commandstats")
        top = Counter(
            {
                k.removeprefix("cmdstat_"): int(v["calls"]) - int(stats_before.get(k, {"calls": 0})["calls"])
                for k, v in after.items()
            }
        )
        breakdown = ", ".join(f"{k} {v / jobs:.2f}" for k, v in top.most_common(8))
        rows.append(
            Row(
                f"Redis commands per job ({jobs:,} jobs, 1 worker, incl. Lua-internal calls)",
                f"{per_job:.2f} commands/job",
                "target",
                per_job / 12,
                "<= 12",
                per_job <= 12,
                note=f"per job: {breakdown}",
            )
        )
    with deployment("sqlite") as d:
        used_before = int(redis_info(d.redis_url, "memory")["used_memory"])

        async def fill() -> None:
            p = d.producer()
            for _ in range(queued // 5000):
                await p.submit_specs(specs(5000))
            await close_producer(p)

        asyncio.run(fill())
        per = (int(redis_info(d.redis_url, "memory")["used_memory"]) - used_before) / queued
        rows.append(
            Row(
                f"Redis memory per queued job ({queued:,} queued)",
                f"{per:,.0f} bytes/job",
                "target 2 KB",
                per / 2048,
                "<= 2 KB",
                per <= 2048,
            )
        )
    return rows

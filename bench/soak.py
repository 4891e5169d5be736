"""Worker memory over a long run: one worker process works through N jobs (0 ms simulated provider in the
worker); its RSS is sampled as the batch progresses. Flat after warm-up = RSS at the end within 10% of RSS
at 10% progress."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from bench.deploy import close_producer, deployment
from bench.overhead import specs
from bench.suite import Row


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def run(jobs: int = 100_000, quick: bool = False) -> list[Row]:
    if quick:
        jobs = 20_000
    with deployment("sqlite") as d:

        async def submit() -> str:
            p = d.producer()
            bid = None
            for _ in range(jobs // 10_000):
                report = await p.submit_specs(specs(10_000))
                bid = bid or report.batch_id
            await close_producer(p)
            return bid  # type: ignore[return-value]

        asyncio.run(submit())
        d.start_farm(inprocess=True, farm_config="farm_zero_latency.toml")
        d.start_workers(1, 256)
        pid = d.workers[0].pid
        samples: list[tuple[float, int]] = []

        async def watch() -> None:
            from sqlalchemy import func, select

            from shared.tables import Job

            p = d.producer()
            jobs_t = Job.__table__  # type: ignore[attr-defined]
            deadline = time.monotonic() + 1800
            while time.monotonic() < deadline:
                done = await p.store.read(
                    lambda c: c.execute(select(func.count()).where(jobs_t.c.state == "succeeded")).scalar()
                )
                samples.append((done / jobs, _rss_kib(pid)))
                if done >= jobs:
                    break
                await asyncio.sleep(1.0)
            await close_producer(p)

        asyncio.run(watch())

    def at(progress: float) -> int:
        return next(rss for frac, rss in samples if frac >= progress)

    warm, mid, end = at(0.10), at(0.5), samples[-1][1]
    growth = end / warm
    return [
        Row(
            f"worker RSS over a {jobs:,}-job run",
            f"{warm / 1024:.0f} -> {mid / 1024:.0f} -> {end / 1024:.0f} MiB (10% -> 50% -> 100%)",
            f"RSS at 10% progress {warm / 1024:.0f} MiB",
            growth,
            "flat (<= 1.10)",
            growth <= 1.10,
        )
    ]

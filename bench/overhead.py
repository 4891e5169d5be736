"""Overhead: routeyard end to end (store, queue, router, admission, provider call, ledger) against a 0 ms
simulated provider, as a ratio to bare arq no-op jobs on the same Redis in the same run.

routeyard's figure runs from the first job's start to the last job's end as recorded in the store; arq's
from the first no-op's start to the last's end. Process start-up is not counted on either side."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import Any

from bench.common import REPO, prefix, private_redis
from bench.deploy import close_producer, deployment, span_rate, wait_batch
from bench.suite import Row


def arq_baseline(n: int) -> float:
    with private_redis() as url:
        out = subprocess.run(
            [sys.executable, str(REPO / "bench" / "arq_baseline.py"), url, f"{prefix()}arq", str(n)],
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO,
        )
    return float(json.loads(out.stdout.strip().splitlines()[-1])["jobs_per_s"])


def specs(n: int) -> list[Any]:
    from shared.models import JobSpec

    return [
        JobSpec.model_validate(
            {"prompt": f"Classify ticket {i}: the invoice total is wrong.", "class": "simple", "max_tokens": 64}
        )
        for i in range(n)
    ]


def routeyard_rate(n: int, store: str, farm: str, concurrency: int = 256) -> float:
    with deployment(store) as d:

        async def submit() -> str:
            p = d.producer()
            report = await p.submit_specs(specs(n))
            await close_producer(p)
            return report.batch_id  # type: ignore[no-any-return]

        batch_id = asyncio.run(submit())
        d.start_farm(
            inprocess=farm == "inprocess", farm_config="farm_zero_latency.toml" if farm == "inprocess" else None
        )
        d.start_workers(1, concurrency)

        async def measure() -> float:
            p = d.producer()
            b = await wait_batch(p, batch_id, 600)
            assert b["n_succeeded"] == n, b
            rate = await span_rate(p, batch_id, n)
            await close_producer(p)
            return rate

        return asyncio.run(measure())


def run(
    jobs: int = 5000,
    stores: tuple[str, ...] = ("sqlite", "postgres"),
    farms: tuple[str, ...] = ("loopback", "inprocess"),
) -> list[Row]:
    baseline = arq_baseline(jobs)
    rows = []
    for store in stores:
        for farm in farms:
            rate = routeyard_rate(jobs, store, farm)
            ratio = rate / baseline
            rows.append(
                Row(
                    f"overhead: e2e jobs/s, {store}, farm {farm}",
                    f"{rate:,.0f} jobs/s",
                    f"bare arq no-op {baseline:,.0f} jobs/s",
                    ratio,
                    ">= 0.5",
                    ratio >= 0.5,
                )
            )
    return rows

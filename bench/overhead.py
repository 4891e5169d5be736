"""Overhead: routeyard end to end (store, queue, router, provider call, ledger) against a 0 ms simulated
provider, as a ratio to bare arq no-op jobs on the same Redis, measured in the same run.

    .venv/bin/python bench/overhead.py [--jobs 5000] [--store sqlite|postgres] [--farm loopback|inprocess]

routeyard's figure runs from the first job's start to the last job's end as recorded in the store; arq's
from the first no-op's start to the last's end. Process start-up is not counted on either side.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    REDIS_URL,
    REPO,
    clear_prefix,
    free_port,
    prefix,
    process,
    routeyard,
    table,
    wait_http,
)


def arq_baseline(n: int) -> float:
    queue = f"{prefix()}arq"
    out = subprocess.run(
        [sys.executable, str(REPO / "bench" / "arq_baseline.py"), REDIS_URL, queue, str(n)],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    return float(json.loads(out.stdout.strip().splitlines()[-1])["jobs_per_s"])


async def _submit(db_url: str, pfx: str, n: int) -> str:
    from arq.connections import ArqRedis

    from producer.client import BatchOptions, Producer
    from shared.catalog import Catalog
    from shared.config import load_config
    from shared.models import JobSpec
    from shared.queue import JobQueue
    from shared.redis_keys import Keys
    from shared.store import Store

    store = Store.open(db_url)
    redis = ArqRedis.from_url(REDIS_URL)
    producer = Producer(store, JobQueue(redis, Keys(pfx)), Catalog.from_config(load_config()))
    specs = [
        JobSpec.model_validate(
            {"prompt": f"Classify ticket {i}: the invoice total is wrong.", "class": "simple", "max_tokens": 64}
        )
        for i in range(n)
    ]
    report = await producer.submit_specs(specs, BatchOptions(source="bench"))
    await redis.aclose()
    await store.close()
    assert report.batch_id
    return report.batch_id


async def _wait_and_measure(db_url: str, batch_id: str, n: int, timeout: float) -> tuple[float, dict[str, int]]:
    from sqlalchemy import func, select

    from shared.store import Store, queries
    from shared.tables import Job

    store = Store.open(db_url)
    jobs = Job.__table__  # type: ignore[attr-defined]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        b = await store.read(queries.batch(batch_id))
        if b["state"] == "completed":
            break
        if loop.time() > deadline:
            raise TimeoutError(f"batch not done: {b}")
        await asyncio.sleep(0.2)
    first, last = await store.read(
        lambda c: c.execute(
            select(func.min(jobs.c.started_at), func.max(jobs.c.finished_at)).where(jobs.c.batch_id == batch_id)
        ).one()
    )
    await store.close()
    return n / (last - first).total_seconds(), {"succeeded": b["n_succeeded"], "failed": b["n_failed"]}


def routeyard_run(n: int, store_kind: str, farm_kind: str, concurrency: int) -> tuple[float, dict[str, int]]:
    pfx = prefix()
    with tempfile.TemporaryDirectory() as tmp:
        if store_kind == "sqlite":
            db_url = f"sqlite:///{tmp}/bench.db"
        else:
            import psycopg

            name = f"rybench_{pfx.split(':')[1]}"
            with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as c:
                c.execute(f'CREATE DATABASE "{name}"')
            db_url = f"postgresql://postgres@127.0.0.1:5432/{name}"
        env = {"DATABASE_URL": db_url, "REDIS_URL": REDIS_URL, "ROUTEYARD_REDIS_PREFIX": pfx, "ROUTEYARD_HOME": tmp}
        try:
            batch_id = asyncio.run(_submit(db_url, pfx, n))
            if farm_kind == "loopback":
                port = free_port()
                env["ROUTEYARD_SIM_URL"] = f"http://127.0.0.1:{port}"
                farm_args = routeyard("simulate", "--port", str(port), "--latency-ms", "0")
            else:
                farm_args = [sys.executable, "-c", "import time; time.sleep(3600)"]
                env["ROUTEYARD_FARM_CONFIG"] = str(REPO / "bench" / "farm_zero_latency.toml")
            with process(farm_args, env, "farm"):
                if farm_kind == "loopback":
                    wait_http(env["ROUTEYARD_SIM_URL"] + "/_farm/stats")
                with process(
                    routeyard("worker", "--concurrency", str(concurrency), "--log-level", "warning"), env, "worker"
                ):
                    return asyncio.run(_wait_and_measure(db_url, batch_id, n, timeout=600))
        finally:
            asyncio.run(clear_prefix(REDIS_URL, pfx))
            if store_kind == "postgres":
                import psycopg

                with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as c:
                    c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=5000)
    ap.add_argument("--store", choices=["sqlite", "postgres"], nargs="+", default=["sqlite"])
    ap.add_argument("--farm", choices=["loopback", "inprocess"], nargs="+", default=["loopback", "inprocess"])
    ap.add_argument("--concurrency", type=int, default=256)
    args = ap.parse_args()

    baseline = arq_baseline(args.jobs)
    rows = [("bare arq no-op jobs (baseline)", f"{baseline:,.0f}", "1.00", "")]
    for store_kind in args.store:
        for farm_kind in args.farm:
            rate, counts = routeyard_run(args.jobs, store_kind, farm_kind, args.concurrency)
            ratio = rate / baseline
            rows.append(
                (
                    f"routeyard e2e, {store_kind}, farm {farm_kind}",
                    f"{rate:,.0f}",
                    f"{ratio:.2f}",
                    "met" if ratio >= 0.5 else "NOT met",
                )
            )
            assert counts["succeeded"] == args.jobs, counts
    print(f"overhead benchmark, {args.jobs} jobs each, {dt.date.today()} (target: ratio >= 0.5)")
    print(table(rows, ("run", "jobs/s", "ratio", "target")))


if __name__ == "__main__":
    main()

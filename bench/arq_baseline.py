"""Bare arq: N no-op jobs enqueued, then one burst worker process runs them. Prints jobs/s measured from
the first job's start to the last job's end (the worker's own clock), like the routeyard runs."""

from __future__ import annotations

import asyncio
import json
import sys
import time

from arq import Worker
from arq.connections import ArqRedis, RedisSettings

STAMPS: list[float] = []


async def noop(ctx: dict[str, object]) -> None:
    STAMPS.append(time.perf_counter())


async def enqueue(redis_url: str, queue: str, n: int) -> None:
    redis = ArqRedis.from_url(redis_url)
    for i in range(0, n, 500):
        await asyncio.gather(*(redis.enqueue_job("noop", _queue_name=queue) for _ in range(i, min(n, i + 500))))
    await redis.aclose()


def main() -> None:
    redis_url, queue, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    asyncio.run(enqueue(redis_url, queue, n))
    worker = Worker(
        functions=[noop],
        queue_name=queue,
        redis_settings=RedisSettings.from_dsn(redis_url),
        burst=True,
        max_jobs=int(sys.argv[4]) if len(sys.argv) > 4 else 10,
        keep_result=0,
        poll_delay=0.05,
        handle_signals=False,
        log_results=False,
    )
    started = time.perf_counter()
    worker.run()
    wall = time.perf_counter() - started
    span = STAMPS[-1] - STAMPS[0] if len(STAMPS) > 1 else wall
    print(json.dumps({"jobs": len(STAMPS), "seconds": span, "jobs_per_s": len(STAMPS) / span}))


if __name__ == "__main__":
    main()

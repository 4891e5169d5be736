"""Bulk ingest: a 10,000-line JSONL file validated, stored and queued (`Producer.submit_file`), against arq's
serial `enqueue_job` loop on the same kind of Redis in the same run."""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path

from bench.common import REPO, private_redis
from bench.deploy import close_producer, deployment
from bench.suite import Row


def _file(path: Path, n: int) -> None:
    base = [json.loads(x) for x in (REPO / "examples" / "prompts.jsonl").read_text().splitlines()]
    with path.open("w") as f:
        for i in range(n):
            item = dict(base[i % len(base)])
            item["custom_id"] = f"{item['custom_id']}-{i}"
            f.write(json.dumps(item) + "\n")


async def _arq_serial(url: str, n: int) -> float:
    from arq.connections import ArqRedis

    redis = ArqRedis.from_url(url)
    started = time.perf_counter()
    for _ in range(n):
        await redis.enqueue_job("noop", _queue_name="bench:arq")
    elapsed = time.perf_counter() - started
    await redis.aclose()
    return n / elapsed


def run(lines: int = 10_000) -> list[Row]:
    with private_redis() as url:
        baseline = asyncio.run(_arq_serial(url, lines))
    with tempfile.TemporaryDirectory() as tmp, deployment("sqlite") as d:
        path = Path(tmp) / "batch.jsonl"
        _file(path, lines)

        async def ingest() -> float:
            p = d.producer()
            started = time.perf_counter()
            report = await p.submit_file(path)
            elapsed = time.perf_counter() - started
            assert report.accepted == lines and not report.errors, report.errors[:3]
            await close_producer(p)
            return lines / elapsed

        rate = asyncio.run(ingest())
    return [
        Row(
            f"bulk ingest: {lines:,}-line JSONL validated, stored (SQLite) and queued",
            f"{rate:,.0f} jobs/s",
            f"arq serial enqueue_job {baseline:,.0f} jobs/s",
            rate / baseline,
            ">= 10,000 jobs/s",
            rate >= 10_000,
        )
    ]

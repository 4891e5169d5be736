"""Latency-bound efficiency: N jobs, 500 in flight in one worker process, every provider call takes exactly
1 s (ideal: 500 jobs/s). Also, in the same run, plain client loops with httpx's default transport and with
the aiohttp transport at the same concurrency against the same farm — the measured facts that decided the
transport."""

from __future__ import annotations

import asyncio
import time

from bench.deploy import close_producer, deployment, span_rate, wait_batch
from bench.overhead import specs
from bench.suite import Row

IN_FLIGHT = 500


async def _client_loop(url: str, n: int, transport: str) -> float:
    import httpx
    from httpx_aiohttp import AiohttpTransport

    if transport == "aiohttp":
        limits = httpx.Limits(max_connections=IN_FLIGHT * 2, max_keepalive_connections=IN_FLIGHT * 2)
        client = httpx.AsyncClient(transport=AiohttpTransport(limits=limits), limits=limits, timeout=30)
    else:
        limits = httpx.Limits(max_connections=IN_FLIGHT, max_keepalive_connections=IN_FLIGHT)
        client = httpx.AsyncClient(limits=limits, timeout=30)
    body = {"model": "gpt-4.1-nano", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}
    sem = asyncio.Semaphore(IN_FLIGHT)

    async def one() -> None:
        async with sem:
            r = await client.post(f"{url}/openai/v1/chat/completions", json=body, headers={"authorization": "Bearer k"})
            r.raise_for_status()

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    elapsed = time.perf_counter() - started
    await client.aclose()
    return n / elapsed


def run(jobs: int = 10_000) -> list[Row]:
    ideal = float(IN_FLIGHT)
    with deployment("sqlite") as d:
        d.start_farm(farm_config="farm_latency_1s.toml", latency_ms=1000)
        assert d.farm_url is not None
        plain = asyncio.run(_client_loop(d.farm_url, 2500, "httpx"))
        aio = asyncio.run(_client_loop(d.farm_url, 2500, "aiohttp"))

        async def submit() -> str:
            p = d.producer()
            report = await p.submit_specs(specs(jobs))
            await close_producer(p)
            return report.batch_id  # type: ignore[no-any-return]

        batch_id = asyncio.run(submit())
        d.start_workers(1, IN_FLIGHT)

        async def measure() -> float:
            p = d.producer()
            b = await wait_batch(p, batch_id, 600)
            assert b["n_succeeded"] == jobs, b
            rate = await span_rate(p, batch_id, jobs)
            await close_producer(p)
            return rate

        rate = asyncio.run(measure())
    return [
        Row(
            f"latency-bound: {jobs} jobs, {IN_FLIGHT} in flight, 1 s provider",
            f"{rate:,.0f} jobs/s",
            f"ideal {ideal:,.0f} jobs/s",
            rate / ideal,
            ">= 0.90",
            rate / ideal >= 0.9,
        ),
        Row(
            "  plain httpx client loop, same farm",
            f"{plain:,.0f} req/s",
            f"ideal {ideal:,.0f}",
            plain / ideal,
            "(reference)",
            None,
        ),
        Row(
            "  httpx + aiohttp transport loop, same farm",
            f"{aio:,.0f} req/s",
            f"ideal {ideal:,.0f}",
            aio / ideal,
            "(reference)",
            None,
        ),
    ]

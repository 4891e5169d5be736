"""Upload memory: a 50,000-line JSONL batch through the HTTP gateway, against baselines from the same run.

    .venv/bin/python bench/upload_memory.py [--lines 50000] [--bad-every 1000]

Each scenario runs in a fresh process, twice: once under tracemalloc (peak Python heap during the upload
alone — setup and imports are excluded) and once without it (peak RSS growth over the process's RSS just
before the upload, and wall time). Scenarios:

- `file-bytes`   baseline: the file read into memory (`Path.read_bytes`) — what the upload weighs;
- `read-whole`   baseline: what a naive endpoint does — the whole body in memory, every line parsed into a
                 `JobSpec` list before anything is stored;
- `native`       the gateway: `POST /v1/routeyard/batches/upload`, the body streamed as raw JSONL;
- `openai`       the gateway: `POST /v1/files` (multipart) then `POST /v1/batches` from that file.

The gateway runs in process over httpx's ASGI transport (the request body is streamed to it in 64 KiB chunks)
with a SQLite store in a temporary directory and the real Redis at REDIS_URL (a fresh key prefix, removed
afterwards); no worker runs, so the 50,000 jobs stay queued. Every `--bad-every`-th line is invalid JSON, so
the rejected-lines path is exercised too.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import REDIS_URL, clear_prefix, prefix, table

WORDS = [
    "invoice",
    "customer",
    "shipment",
    "refund",
    "warranty",
    "address",
    "delivery",
    "order",
    "account",
    "payment",
    "schedule",
    "ticket",
    "summary",
    "contract",
    "clause",
    "tenant",
    "review",
    "rating",
    "product",
    "feature",
    "request",
    "outage",
    "incident",
    "deadline",
]


def make_file(path: Path, n: int, bad_every: int) -> None:
    rng = random.Random(7)
    with path.open("w", encoding="utf-8") as f:
        for i in range(1, n + 1):
            if bad_every and i % bad_every == 0:
                f.write(f'{{"custom_id": "broken-{i}", "prompt": \n')
                continue
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 70)))
            line = {
                "custom_id": f"req-{i}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {
                    "model": "gpt-4o-mini",
                    "messages": [{"role": "user", "content": f"Classify this ticket: {text}"}],
                    "max_tokens": 64,
                },
            }
            f.write(json.dumps(line) + "\n")


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def max_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# ---------------------------------------------------------------------------------------------- scenarios
async def _gateway(tmp: Path, pfx: str) -> tuple[Any, Any, Any]:
    import httpx
    from arq.connections import ArqRedis
    from bench_auth import ADMIN, Auth  # type: ignore[import-not-found]

    from producer.gateway import create_app
    from shared.config import load_config
    from shared.crypto import load_box
    from shared.settings import Settings
    from shared.store import Store

    settings = Settings(ROUTEYARD_HOME=tmp / "home", ROUTEYARD_REDIS_PREFIX=pfx, REDIS_URL=REDIS_URL)
    store = Store.open(f"sqlite:///{tmp / 'routeyard.db'}")
    redis = ArqRedis.from_url(REDIS_URL)
    app = create_app(settings, load_config(), store=store, redis=redis, authenticator=Auth(), box=load_box(tmp))
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://gw",
        headers={"Authorization": f"Bearer {ADMIN}"},
        timeout=600,
    )
    await client.get("/healthz")
    return client, store, redis


async def scenario(name: str, path: Path, tmp: Path) -> tuple[Callable[[], Awaitable[dict[str, Any]]], Any]:
    """The measured step and a cleanup; everything before the step (imports, app, connections) is setup."""
    if name == "file-bytes":

        async def step() -> dict[str, Any]:
            data = path.read_bytes()  # noqa: ASYNC240 - the baseline is exactly this blocking read
            return {"bytes": len(data)}

        return step, None
    if name == "read-whole":
        from producer.ingest import Line, read_lines

        async def step() -> dict[str, Any]:
            data = path.read_bytes()  # noqa: ASYNC240 - the naive endpoint this baseline stands for
            specs = [x for x in read_lines(data.splitlines(keepends=True)) if isinstance(x, Line)]
            return {"parsed": len(specs)}

        return step, None
    pfx = prefix()
    client, store, redis = await _gateway(tmp, pfx)

    async def cleanup() -> None:
        await client.aclose()
        await redis.aclose()
        await store.close()
        await clear_prefix(REDIS_URL, pfx)

    if name == "native":

        async def step() -> dict[str, Any]:
            with path.open("rb") as f:
                r = await client.post(
                    "/v1/routeyard/batches/upload",
                    content=_chunks(f),
                    params={"class": "simple"},
                    headers={"content-type": "application/jsonl"},
                )
            r.raise_for_status()
            return {"accepted": r.json()["accepted"], "rejected": r.json()["rejected"]}

        return step, cleanup
    if name == "openai":

        async def step() -> dict[str, Any]:
            with path.open("rb") as f:
                up = await client.post("/v1/files", files={"file": ("batch.jsonl", f)}, data={"purpose": "batch"})
            up.raise_for_status()
            r = await client.post(
                "/v1/batches",
                json={"input_file_id": up.json()["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"},
            )
            r.raise_for_status()
            counts = r.json()["request_counts"]
            return {"accepted": counts["total"] - counts["failed"], "rejected": counts["failed"]}

        return step, cleanup
    raise SystemExit(f"unknown scenario {name}")


async def _chunks(f: Any, size: int = 64 * 1024) -> Any:
    while chunk := f.read(size):
        yield chunk


async def run_one(name: str, path: Path, traced: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="routeyard-bench-") as tmp:
        step, cleanup = await scenario(name, path, Path(tmp))
        gc.collect()
        rss0 = rss_bytes()
        if traced:
            tracemalloc.start()
        t0 = time.perf_counter()
        out = await step()
        wall = time.perf_counter() - t0
        if traced:
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            out["heap_peak"] = peak
        else:
            out["rss_growth"] = max(0, max_rss_bytes() - rss0)
            out["wall_s"] = wall
        if cleanup is not None:
            await cleanup()
    return out


# ---------------------------------------------------------------------------------------------- driver
def child(name: str, path: Path, traced: bool) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", name, "--file", str(path), *(["--traced"] if traced else [])],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def mib(n: float) -> str:
    return f"{n / 1024 / 1024:.1f} MiB"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=50_000)
    ap.add_argument("--bad-every", type=int, default=1000)
    ap.add_argument("--child")
    ap.add_argument("--file")
    ap.add_argument("--traced", action="store_true")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(run_one(args.child, Path(args.file), args.traced))))
        return
    with tempfile.TemporaryDirectory(prefix="routeyard-bench-input-") as d:
        path = Path(d) / "batch.jsonl"
        make_file(path, args.lines, args.bad_every)
        size = path.stat().st_size
        print(f"input: {args.lines:,} lines, {mib(size)}", file=sys.stderr)
        results: dict[str, dict[str, Any]] = {}
        for name in ("file-bytes", "read-whole", "native", "openai"):
            traced = child(name, path, True)
            plain = child(name, path, False)
            results[name] = {**plain, "heap_peak": traced["heap_peak"]}
            print(f"  {name}: {results[name]}", file=sys.stderr)
    base_file = results["file-bytes"]["heap_peak"]
    base_whole = results["read-whole"]["heap_peak"]
    rows = []
    for name, r in results.items():
        rows.append(
            (
                name,
                mib(r["heap_peak"]),
                f"{r['heap_peak'] / base_file:.2f}",
                f"{r['heap_peak'] / base_whole:.3f}",
                mib(r["rss_growth"]),
                f"{r['wall_s']:.1f}s",
                str(r.get("accepted", "")),
                str(r.get("rejected", "")),
            )
        )
    print(f"\n{args.lines:,}-line upload ({mib(size)}), {dt.date.today().isoformat()}")
    print(
        table(
            rows,
            ("scenario", "heap peak", "÷ file", "÷ read-whole", "RSS growth", "wall", "accepted", "rejected"),
        )
    )


if __name__ == "__main__":
    main()

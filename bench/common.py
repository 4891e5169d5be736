"""What the benchmarks share: subprocesses for the farm and workers, a fresh Redis namespace, timing from
each system's own records (so process start-up is not counted), and the ratio table."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
OUT = REPO / "bench" / "out"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prefix() -> str:
    return f"rybench:{uuid.uuid4().hex[:8]}:"


def routeyard(*args: str) -> list[str]:
    return [sys.executable, "-m", "producer.cli", *args]


@contextlib.contextmanager
def process(args: list[str], env: dict[str, str], name: str) -> Iterator[subprocess.Popen[bytes]]:
    OUT.mkdir(parents=True, exist_ok=True)
    log = (OUT / f"{name}.log").open("wb")
    proc = subprocess.Popen(args, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def wait_http(url: str, timeout: float = 20.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(url, timeout=1)
            return
        time.sleep(0.05)
    raise TimeoutError(url)


async def clear_prefix(redis_url: str, pfx: str) -> None:
    from redis.asyncio import Redis

    r = Redis.from_url(redis_url)
    keys = [k async for k in r.scan_iter(match=f"{pfx}*", count=5000)]
    for i in range(0, len(keys), 1000):
        await r.delete(*keys[i : i + 1000])
    await r.aclose()


@contextlib.contextmanager
def private_redis() -> Iterator[str]:
    """A redis-server of our own on a free port (no persistence), so that INFO figures (commands, memory)
    count this benchmark alone and other users of the machine's Redis cannot disturb its timings."""
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        for _ in range(100):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            time.sleep(0.05)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


def redis_info(url: str, section: str) -> dict[str, Any]:
    import redis

    r = redis.Redis.from_url(url)
    try:
        return dict(r.info(section))
    finally:
        r.close()


def commands_total(url: str) -> int:
    """Every command the server has run (INFO commandstats), including those run inside Lua scripts."""
    return sum(int(v["calls"]) for k, v in redis_info(url, "commandstats").items() if k.startswith("cmdstat_"))


def redis_cpu_s(url: str) -> float:
    info = redis_info(url, "cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def postgres_cpu_s() -> float:
    """CPU seconds used so far by every PostgreSQL server process on this machine (from /proc)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if (d / "comm").read_text().strip() != "postgres":
                continue
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            continue
    return total


def postgres_wal_bytes() -> int:
    """The cluster's write-ahead log position, in bytes (differences give WAL written)."""
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as c:
        row = c.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint").fetchone()
    return int(row[0]) if row else 0


def table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)

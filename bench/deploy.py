"""A throwaway routeyard deployment for benchmarks: a fresh database (SQLite file or PostgreSQL database), a
fresh Redis key prefix, the farm (`routeyard simulate` over loopback, or in process), and worker processes —
all torn down afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.common import REPO, free_port, private_redis, process, routeyard, wait_http

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


class Deployment:
    def __init__(self, tmp: Path, store: str, config_text: str | None, redis_url: str) -> None:
        self.tmp = tmp
        self.redis_url = redis_url
        self.pfx = f"rybench:{uuid.uuid4().hex[:8]}:"
        self.store_kind = store
        if store == "sqlite":
            self.db_url = f"sqlite:///{tmp}/bench.db"
        else:
            self.pg_name = f"rybench_{uuid.uuid4().hex[:8]}"
            import psycopg

            with psycopg.connect(PG_ADMIN, autocommit=True) as c:
                c.execute(f'CREATE DATABASE "{self.pg_name}"')
            self.db_url = f"postgresql://postgres@127.0.0.1:5432/{self.pg_name}"
        self.env = {
            "DATABASE_URL": self.db_url,
            "REDIS_URL": redis_url,
            "ROUTEYARD_REDIS_PREFIX": self.pfx,
            "ROUTEYARD_HOME": str(tmp),
        }
        if config_text is not None:
            (tmp / "routeyard.toml").write_text(config_text)
            self.env["ROUTEYARD_CONFIG"] = str(tmp / "routeyard.toml")
        self._stack = contextlib.ExitStack()
        self.farm_url: str | None = None
        self.workers: list[subprocess.Popen[bytes]] = []

    def start_farm(self, *, farm_config: str | None = None, latency_ms: float = 0, inprocess: bool = False) -> None:
        if inprocess:
            if farm_config:
                self.env["ROUTEYARD_FARM_CONFIG"] = str(REPO / "bench" / farm_config)
            return
        port = free_port()
        self.farm_url = f"http://127.0.0.1:{port}"
        self.env["ROUTEYARD_SIM_URL"] = self.farm_url
        args = routeyard("simulate", "--port", str(port), "--latency-ms", str(latency_ms))
        if farm_config:
            args += ["--farm-config", str(REPO / "bench" / farm_config)]
        self._stack.enter_context(process(args, self.env, "farm"))
        wait_http(self.farm_url + "/_farm/stats")

    def start_workers(self, n: int, concurrency: int) -> None:
        for i in range(n):
            args = routeyard("worker", "--concurrency", str(concurrency), "--log-level", "warning")
            self.workers.append(self._stack.enter_context(process(args, self.env, f"worker-{i}")))

    def producer(self) -> Any:
        """A Producer on this deployment's store and queue (create inside the event loop that uses it)."""
        from arq.connections import ArqRedis

        from producer.client import Producer
        from shared.catalog import Catalog
        from shared.config import load_config, parse_config
        from shared.queue import JobQueue
        from shared.redis_keys import Keys
        from shared.store import Store

        text = (self.tmp / "routeyard.toml").read_text() if "ROUTEYARD_CONFIG" in self.env else None
        config = parse_config(text) if text else load_config()
        store = Store.open(self.db_url)
        redis = ArqRedis.from_url(self.redis_url)
        return Producer(store, JobQueue(redis, Keys(self.pfx)), Catalog.from_config(config))

    def close(self) -> None:
        self._stack.close()
        if self.store_kind == "postgres":
            import psycopg

            with psycopg.connect(PG_ADMIN, autocommit=True) as c:
                c.execute(f'DROP DATABASE IF EXISTS "{self.pg_name}" WITH (FORCE)')


@contextlib.contextmanager
def deployment(store: str = "sqlite", config_text: str | None = None) -> Iterator[Deployment]:
    with tempfile.TemporaryDirectory() as tmp, private_redis() as redis_url:
        d = Deployment(Path(tmp), store, config_text, redis_url)
        try:
            yield d
        finally:
            d.close()


async def close_producer(producer: Any) -> None:
    await producer.queue.redis.aclose()
    await producer.store.close()


async def wait_batch(producer: Any, batch_id: str, timeout: float) -> dict[str, Any]:
    return await asyncio.wait_for(producer.wait(batch_id, poll_s=0.2), timeout)  # type: ignore[no-any-return]


async def span_rate(producer: Any, batch_id: str, n: int) -> float:
    """Jobs per second from the batch's first start to its last finish, as the store recorded them."""
    from sqlalchemy import func, select

    from shared.tables import Job

    jobs = Job.__table__  # type: ignore[attr-defined]
    first, last = await producer.store.read(
        lambda c: c.execute(
            select(func.min(jobs.c.started_at), func.max(jobs.c.finished_at)).where(jobs.c.batch_id == batch_id)
        ).one()
    )
    return n / (last - first).total_seconds()


def python() -> str:
    return sys.executable

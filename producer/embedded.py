"""Embedded mode: the whole system in one process with no servers — Redis is fakeredis, the store SQLite,
the providers the simulated farm, the worker an arq worker on the same event loop. What `routeyard run`
uses, so a fresh clone runs a real batch end to end; the code paths are the production ones.

arq's worker logs `INFO` from Redis at start-up, which fakeredis does not implement: `_tolerate_missing_info`
lets that one log line degrade instead of failing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from types import TracebackType
from typing import Any

import arq.worker
import fakeredis
from arq import connections as arq_connections
from arq.connections import ArqRedis
from redis.exceptions import ResponseError

from producer.client import Producer
from shared.catalog import Catalog
from shared.config import RouteyardConfig
from shared.queue import JobQueue
from shared.redis_keys import Keys
from shared.settings import Settings
from shared.store import Store
from worker.app import RouteyardWorker

log = logging.getLogger("routeyard")
_original_log_redis_info = arq_connections.log_redis_info


async def _tolerant_log_redis_info(redis: Any, log_func: Any) -> None:
    try:
        await _original_log_redis_info(redis, log_func)
    except ResponseError:
        log_func("redis: embedded (fakeredis)")


def _tolerate_missing_info() -> None:
    setattr(arq.worker, "log_redis_info", _tolerant_log_redis_info)  # noqa: B010 - arq.worker imported it by name


def embedded_redis() -> ArqRedis:
    """An arq-compatible Redis client backed by an in-process fakeredis server (Lua via lupa)."""
    fake = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    return ArqRedis(connection_pool=fake.connection_pool)


class Embedded:
    """`async with Embedded(settings, config) as e:` then `e.producer.submit_file(...)`."""

    def __init__(
        self,
        settings: Settings,
        config: RouteyardConfig,
        *,
        farm: Any = None,
        max_in_flight: int = 256,
        redis: ArqRedis | None = None,
        store: Store | None = None,
        metrics_port: int | None = None,
    ) -> None:
        self.settings = settings
        self.config = config
        self.catalog = Catalog.from_config(config)
        self.redis = redis or embedded_redis()
        self._owns_store = store is None
        self.store = store or Store.open(settings.resolved_database_url())
        self.queue = JobQueue(self.redis, Keys(settings.redis_prefix))
        self.producer = Producer(self.store, self.queue, self.catalog)
        _tolerate_missing_info()
        self.worker = RouteyardWorker(
            settings=settings,
            config=config,
            redis_pool=self.redis,
            store=self.store,
            farm=farm,
            max_in_flight=max_in_flight,
            handle_signals=False,
            metrics_port=metrics_port,
        )
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Embedded:
        self._task = asyncio.create_task(self.worker.async_run(), name="embedded-worker")
        while self.worker.runtime is None:  # started once on_startup has built the runtime
            if self._task.done():
                await self._task
            await asyncio.sleep(0.01)
        return self

    @property
    def farm(self) -> Any:
        assert self.worker.runtime is not None
        return self.worker.runtime.farm

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.worker.stop(grace_s=5.0)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._owns_store:
            await self.store.close()

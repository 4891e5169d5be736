"""Coalesced Redis script calls: every call made during one turn of the event loop goes out in one
pipeline. At hundreds of calls in flight, each admission and settlement is its own coroutine; sending them
together saves a connection checkout, a write and a read per call (the scripts still run one by one in
Redis, so commands per job do not change — only the client's cost does)."""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript


class ScriptCoalescer:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._pending: list[tuple[AsyncScript, list[Any], asyncio.Future[Any]]] = []
        self._scheduled = False
        self._flushing: set[asyncio.Task[None]] = set()

    def call(self, script: AsyncScript, args: list[Any]) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._pending.append((script, args, fut))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush_soon)
        return fut

    def _flush_soon(self) -> None:
        task = asyncio.ensure_future(self._flush())
        self._flushing.add(task)  # keep a reference until it is done
        task.add_done_callback(self._flushing.discard)

    async def _flush(self) -> None:
        self._scheduled = False
        batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for script, args, _ in batch:
                    await script(keys=[], args=args, client=pipe)
                results = await pipe.execute(raise_on_error=False)
        except Exception as e:  # the whole round trip failed: every caller hears of it
            for _, _, fut in batch:
                if not fut.done():
                    fut.set_exception(e)
            return
        for (_, _, fut), res in zip(batch, results, strict=True):
            if fut.done():
                continue
            if isinstance(res, Exception):
                fut.set_exception(res)
            else:
                fut.set_result(res)

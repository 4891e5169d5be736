"""The SQL store: the record of every batch, job and provider call.

`Store` is the async face of a synchronous SQLAlchemy engine. Writes from the worker's hot path go through
the group-commit writer (one thread, shared transactions); reads run on a small thread pool. Either way the
event loop never waits on the database.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from sqlalchemy import Connection, Engine

from shared.store.engine import create_schema, make_engine
from shared.store.writer import Deltas, GroupCommitWriter, Operation, apply_deltas

T = TypeVar("T")

__all__ = ["Store"]


class Store:
    def __init__(self, engine: Engine, *, readers: int = 4) -> None:
        self.engine = engine
        self.writer = GroupCommitWriter(engine)
        self._readers = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="store-reader")

    @classmethod
    def open(cls, url: str | None = None, *, create: bool = True) -> Store:
        from shared.settings import get_settings

        engine = make_engine(url or get_settings().resolved_database_url())
        if create:
            create_schema(engine)
        return cls(engine)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    async def write(self, op: Operation[T], *, urgent: bool = False) -> T:
        """Run a write operation in the next group transaction (`urgent`: ahead of the backlog)."""
        return await self.writer.run(op, urgent=urgent)

    async def read(self, query: Callable[[Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self.read_sync, query)

    def read_sync(self, query: Callable[[Connection], T]) -> T:
        with self.engine.connect() as conn:
            return query(conn)

    def write_sync(self, op: Operation[T]) -> T:
        """Run one write operation in its own transaction on the calling thread (tools, producers)."""
        deltas = Deltas()
        with self.engine.begin() as conn:
            value = op(conn, deltas)
            apply_deltas(conn, deltas)
        return value

    async def write_direct(self, op: Operation[T]) -> T:
        """`write_sync` off the event loop, outside the group writer (large producer inserts)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self.write_sync, op)

    async def close(self) -> None:
        await self.writer.close()
        self._readers.shutdown(wait=True)
        self.engine.dispose()

    def close_sync(self) -> None:
        self._readers.shutdown(wait=True)
        self.engine.dispose()

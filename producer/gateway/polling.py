"""Polling that scales: a batch's state is its row (counters kept by the workers), so a poll is one
primary-key read; `ETag`/`If-None-Match` turns an unchanged poll into a body-less 304; and a long poll
(`?wait=30`) parks the request until the batch changes — all parked requests for one batch share one
reader per gateway process, so a thousand waiting clients cost one query every `interval` seconds.

The time left is estimated from the recent completion rate: each process keeps a few (time, done) samples
per batch from the reads it makes anyway, and extrapolates from the last couple of minutes (or, before it
has two samples, from the batch's average since creation).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from producer.views import done_count, is_terminal
from shared.store import Store, queries
from shared.timeutil import utcnow

MAX_WAIT_S = 60.0
log = logging.getLogger("routeyard.gateway")


def etag_for(row: dict[str, Any]) -> str:
    parts = (
        row["id"],
        row["state"],
        row["n_total"],
        row["n_rejected"],
        row["n_succeeded"],
        row["n_failed"],
        row["n_cancelled"],
        row["cost_total"],
        row["unpriced_calls"],
        row["updated_at"].isoformat() if row["updated_at"] else "",
    )
    return '"' + hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:20] + '"'


def etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    candidates = [c.strip().removeprefix("W/") for c in header.split(",")]
    return "*" in candidates or etag in candidates


@dataclass
class _Watch:
    row: dict[str, Any] | None
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    waiters: int = 0
    task: asyncio.Task[None] | None = None


class BatchWatcher:
    def __init__(self, store: Store, *, interval_s: float = 0.5) -> None:
        self.store = store
        self.interval_s = interval_s
        self._watches: dict[str, _Watch] = {}

    async def wait_change(self, batch_id: str, etag: str, timeout_s: float) -> dict[str, Any] | None:
        """The batch row as soon as its ETag differs from `etag`, or the latest row when `timeout_s` runs out."""
        loop = asyncio.get_running_loop()
        w = self._watches.get(batch_id)
        if w is None:
            w = self._watches[batch_id] = _Watch(row=None)
            w.task = loop.create_task(self._poll(batch_id, w), name=f"watch-{batch_id}")
        w.waiters += 1
        deadline = loop.time() + timeout_s
        try:
            while True:
                if w.row is not None and (etag_for(w.row) != etag or is_terminal(w.row)):
                    return w.row
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return w.row
                event = w.changed
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), remaining)
        finally:
            w.waiters -= 1
            if w.waiters == 0 and self._watches.get(batch_id) is w:
                del self._watches[batch_id]
                if w.task is not None:
                    w.task.cancel()

    async def _poll(self, batch_id: str, w: _Watch) -> None:
        last: str | None = None
        while True:
            try:
                row = await self.store.read(queries.batch_row(batch_id))
            except Exception:  # the store hiccuped: waiters keep waiting (bounded by their timeout)
                log.warning("long poll of %s: reading the batch failed; retrying", batch_id, exc_info=True)
                await asyncio.sleep(self.interval_s)
                continue
            tag = etag_for(row) if row is not None else None
            if tag != last or w.row is None:
                w.row, last = row, tag
                event, w.changed = w.changed, asyncio.Event()
                event.set()
            await asyncio.sleep(self.interval_s)

    async def aclose(self) -> None:
        for w in list(self._watches.values()):
            if w.task is not None:
                w.task.cancel()
        self._watches.clear()


class RateTracker:
    """Recent completion rate per batch, from samples of its `done` counter."""

    def __init__(self, *, window_s: float = 120.0, max_batches: int = 10_000) -> None:
        self.window_s = window_s
        self.max_batches = max_batches
        self._samples: OrderedDict[str, deque[tuple[float, int]]] = OrderedDict()

    def eta(self, row: dict[str, Any]) -> float | None:
        """Seconds until every job is done at the recent rate; None while unknown (nothing done yet)."""
        if is_terminal(row):
            return 0.0
        done, total = done_count(row), int(row["n_total"])
        now = time.monotonic()
        samples = self._samples.get(row["id"])
        if samples is None:
            samples = self._samples[row["id"]] = deque(maxlen=64)
            if len(self._samples) > self.max_batches:
                self._samples.popitem(last=False)
        else:
            self._samples.move_to_end(row["id"])
        if not samples or samples[-1][1] != done or now - samples[-1][0] > 5:
            samples.append((now, done))
        while len(samples) > 2 and now - samples[0][0] > self.window_s:
            samples.popleft()
        remaining = max(0, total - done)
        first_t, first_done = samples[0]
        if len(samples) >= 2 and now - first_t >= 1.0 and done > first_done:
            return remaining / ((done - first_done) / (now - first_t))
        elapsed = float((utcnow() - row["created_at"]).total_seconds())
        if done > 0 and elapsed > 0:
            return remaining / (done / elapsed)
        return None

"""Live per-endpoint statistics for `sort: latency | throughput` and `preferred_*` thresholds.

Each worker process keeps exponentially weighted moving averages of the calls it makes (`observe`). So that
a new worker is not blind, and so that every worker sees what the whole fleet measured, a refresher reads
the ledger's recent successful calls (mean latency and output tokens per second per endpoint over the
last `routing.stats_window_s`) every `routing.stats_refresh_s` and folds them in, off the event loop
through `Store.read`. The router stays pure: all of this reaches it as `LiveState.stats`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, func, select

from shared.store import Store
from shared.tables import Attempt, AttemptStatus
from shared.timeutil import utcnow
from worker.router import EndpointStats

log = logging.getLogger("routeyard.worker")

ALPHA = 0.2
"""Weight of the newest observation: recent behaviour matters, one outlier does not swing the order."""
FLEET_WEIGHT = 0.5
"""Weight of a fleet-wide refresh against this process's own average: it summarises many calls."""

attempts = Attempt.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class FleetStats:
    """What the ledger says about one endpoint's recent successful calls."""

    calls: int
    latency_ms: float
    throughput_tps: float | None
    """Output tokens over seconds spent, summed over the calls (None when no call took measurable time)."""


def recent_endpoint_stats(since: datetime) -> Callable[[Connection], dict[str, FleetStats]]:
    """Per endpoint, over successful calls started since `since`: mean latency and output tokens/s."""

    def q(conn: Connection) -> dict[str, FleetStats]:
        rows = conn.execute(
            select(
                attempts.c.endpoint,
                func.count(),
                func.sum(attempts.c.latency_ms),
                func.sum(attempts.c.output_tokens),
            )
            .where(
                attempts.c.started_at >= since,
                attempts.c.status == AttemptStatus.SUCCEEDED.value,
                attempts.c.latency_ms.is_not(None),
            )
            .group_by(attempts.c.endpoint)
        ).all()
        out: dict[str, FleetStats] = {}
        for endpoint, calls, latency_sum, output_sum in rows:
            latency_sum, output_sum = int(latency_sum or 0), int(output_sum or 0)
            tps = output_sum / (latency_sum / 1000) if latency_sum > 0 else None
            out[endpoint] = FleetStats(int(calls), latency_sum / calls, tps)
        return out

    return q


@dataclass(slots=True)
class _Ewma:
    latency_ms: float | None = None
    throughput_tps: float | None = None
    failures: int = 0


def _blend(old: float | None, new: float | None, weight: float) -> float | None:
    if new is None:
        return old
    return new if old is None else (1 - weight) * old + weight * new


class EndpointStatsBook:
    def __init__(self) -> None:
        self._by_slug: dict[str, _Ewma] = {}

    def observe(self, slug: str, latency_ms: int, output_tokens: int) -> None:
        e = self._by_slug.setdefault(slug, _Ewma())
        e.latency_ms = _blend(e.latency_ms, float(latency_ms), ALPHA)
        if latency_ms > 0:
            e.throughput_tps = _blend(e.throughput_tps, output_tokens / (latency_ms / 1000), ALPHA)

    def observe_failure(self, slug: str) -> None:
        self._by_slug.setdefault(slug, _Ewma()).failures += 1

    def refresh(self, fleet: Mapping[str, FleetStats]) -> None:
        """Fold in the fleet's recent measurements: they seed endpoints this process has not called yet and
        pull its own averages toward what every worker saw."""
        for slug, st in fleet.items():
            e = self._by_slug.setdefault(slug, _Ewma())
            e.latency_ms = _blend(e.latency_ms, st.latency_ms, FLEET_WEIGHT)
            e.throughput_tps = _blend(e.throughput_tps, st.throughput_tps, FLEET_WEIGHT)

    def snapshot(self) -> dict[str, EndpointStats]:
        return {s: EndpointStats(e.latency_ms, e.throughput_tps) for s, e in self._by_slug.items()}


class FleetStatsRefresher:
    """Refreshes a book from the store: once at start, then every `every_s` seconds, until cancelled."""

    def __init__(
        self,
        store: Store,
        book: EndpointStatsBook,
        *,
        window_s: float,
        every_s: float,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.book = book
        self.window = timedelta(seconds=window_s)
        self.every_s = every_s
        self.clock = clock
        self._task: asyncio.Task[None] | None = None

    async def refresh_once(self) -> dict[str, FleetStats]:
        fleet = await self.store.read(recent_endpoint_stats(self.clock() - self.window))
        self.book.refresh(fleet)
        return fleet

    async def run(self) -> None:
        while True:
            try:
                await self.refresh_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("refreshing endpoint statistics from the store failed; keeping local ones", exc_info=True)
            await asyncio.sleep(self.every_s)

    def ensure_started(self) -> None:
        """Start the loop on the running event loop (a no-op outside one, or when already running)."""
        if self._task is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._task = loop.create_task(self.run(), name="routeyard-endpoint-stats")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

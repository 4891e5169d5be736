"""The dispatch queue: how job ids travel from producers to workers, in priority and fair-share order.

arq has no priorities, and one arq job per routeyard job would cost ~20 Redis commands and a 1-day job key
per job. Instead routeyard keeps its own small structure (see `shared.redis_keys`): producers add ids to
per-batch lanes; a worker leases many at once with one Lua call that walks priorities strictly and lanes by
fair share; a leased id sits in a schedule with its lease expiry and is renewed while the call runs. A worker
that dies simply stops renewing: its leases expire and the jobs are due again for any other worker. Deferral
(a rate-limit bucket is empty) moves the lease to the time the bucket refills. All calls are variadic, so
Redis commands per job stay a small fraction of one for dispatch itself.

Redis is transport, not the record: the store holds every accepted job, and the sweeper puts back any job
the queue has lost.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from shared.redis_keys import PRIORITY_LEVELS, Keys

DEFAULT_TENANT = "_"
"""Lane owner for jobs submitted without an API key."""
SINGLES_LANE = "_single"
"""Lane for jobs submitted one at a time (not in a batch)."""
ENQUEUE_CHUNK = 1000


def _lua(name: str) -> str:
    return resources.files("shared").joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")


def _safe(part: str) -> str:
    """Key parts come from ids we mint, but a ':' would break the layout: refuse rather than guess."""
    if ":" in part or not part:
        raise ValueError(f"invalid queue key part {part!r}")
    return part


class JobQueue:
    def __init__(self, redis: Redis, keys: Keys | None = None, *, quantum: int = 8) -> None:
        self.redis = redis
        self.keys = keys or Keys()
        self.quantum = quantum
        self._enqueue: AsyncScript = redis.register_script(_lua("enqueue"))
        self._claim: AsyncScript = redis.register_script(_lua("claim"))
        self._reschedule: AsyncScript = redis.register_script(_lua("reschedule"))

    async def enqueue(
        self, ids: Sequence[str], *, priority: int, tenant: str | None = None, lane: str | None = None
    ) -> int:
        """Add ids to a lane; returns how many were new (an id already waiting there is not added twice)."""
        tenant_ = _safe(tenant or DEFAULT_TENANT)
        lane_ = _safe(lane or SINGLES_LANE)
        added = 0
        async with self.redis.pipeline(transaction=False) as pipe:
            for i in range(0, len(ids), ENQUEUE_CHUNK):
                chunk = ids[i : i + ENQUEUE_CHUNK]
                await self._enqueue(keys=[], args=[self.keys.prefix, priority, tenant_, lane_, *chunk], client=pipe)
            for n in await pipe.execute():
                added += int(n)
        return added

    async def claim(self, n: int) -> list[tuple[int, str]]:
        """Lease up to `n` jobs; returns (priority, job id) pairs, highest priority first."""
        if n <= 0:
            return []
        raw: list[Any] = await self._claim(
            keys=[], args=[self.keys.prefix, self.lease_ms, min(n, 1000), PRIORITY_LEVELS, self.quantum]
        )
        out = []
        for i in range(0, len(raw), 2):
            job_id = raw[i + 1]
            out.append((int(raw[i]), job_id.decode() if isinstance(job_id, bytes) else job_id))
        return out

    lease_ms: int = 15_000
    """How long a lease lasts unless renewed. A dead worker's jobs are due again after at most this long."""

    async def ack(self, items: Iterable[tuple[int, str]]) -> None:
        """Remove finished jobs from the schedule (one ZREM per priority)."""
        by_p = _group(items)
        if not by_p:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for p, ids in by_p.items():
                pipe.zrem(self.keys.sched(p), *ids)
            await pipe.execute()

    async def reschedule(self, items: Iterable[tuple[int, str]], delay_ms: int, *, recreate: bool = False) -> None:
        """Move leased jobs to now + delay (deferral, or 0 to hand them back). Only jobs still in the schedule
        move, unless `recreate` (renewal of jobs this worker is running: a lease Redis lost comes back)."""
        by_p = _group(items)
        if not by_p:
            return
        mode = "any" if recreate else "xx"
        async with self.redis.pipeline(transaction=False) as pipe:
            for p, ids in by_p.items():
                await self._reschedule(keys=[self.keys.sched(p)], args=[int(delay_ms), mode, *ids], client=pipe)
            await pipe.execute()

    async def renew(self, items: Iterable[tuple[int, str]]) -> None:
        await self.reschedule(items, self.lease_ms, recreate=True)

    async def schedule_at(self, p: int, job_id: str, at_ms: int) -> None:
        """Put a job straight into the schedule (recovery of a job that waits until `at_ms`)."""
        await self.redis.zadd(self.keys.sched(p), {job_id: at_ms}, nx=True)

    async def depth(self) -> dict[int, dict[str, int]]:
        """Per priority: jobs waiting in lanes and jobs in the schedule (running or deferred)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for p in range(PRIORITY_LEVELS):
                pipe.get(self.keys.depth(p))
                pipe.zcard(self.keys.sched(p))
            raw = await pipe.execute()
        return {
            p: {"waiting": max(0, int(raw[2 * p] or 0)), "scheduled": int(raw[2 * p + 1])}
            for p in range(PRIORITY_LEVELS)
        }

    async def present(self, jobs: Sequence[tuple[str, int, str | None, str | None]]) -> dict[str, bool]:
        """Which of these jobs (id, priority, tenant, lane) Redis still holds, in a lane or the schedule.
        Two ZMSCOREs per (priority, lane) group: the sweeper checks thousands of jobs a round trip."""
        groups: dict[tuple[int, str, str], list[str]] = defaultdict(list)
        for job_id, p, tenant, lane in jobs:
            groups[(p, tenant or DEFAULT_TENANT, lane or SINGLES_LANE)].append(job_id)
        out: dict[str, bool] = {}
        async with self.redis.pipeline(transaction=False) as pipe:
            order = list(groups.items())
            for (p, tenant, lane), ids in order:
                pipe.zmscore(self.keys.sched(p), ids)
                pipe.zmscore(self.keys.lane(p, tenant, lane), ids)
            raw = await pipe.execute()
        for i, (_, ids) in enumerate(order):
            in_sched, in_lane = raw[2 * i], raw[2 * i + 1]
            for j, job_id in enumerate(ids):
                out[job_id] = in_sched[j] is not None or in_lane[j] is not None
        return out


def _group(items: Iterable[tuple[int, str]]) -> dict[int, list[str]]:
    by_p: dict[int, list[str]] = defaultdict(list)
    for p, job_id in items:
        by_p[p].append(job_id)
    return by_p

"""The dispatch loop: keep up to `max_in_flight` provider calls running in this process.

    claim (one Lua call for many jobs) → mark them running in the store (one statement) → a task each
    → the runner records the outcome → ack (batched ZREMs) or defer (the lease moves to later)

While jobs run, their leases are renewed every third of the lease. The loop claims as soon as slots free
up, coalescing completions into one claim; when the queue is empty it backs off from 5 ms to 250 ms, so an
idle worker costs Redis a few commands a second.

Stopping: `drain(grace)` stops claiming, lets running jobs finish for up to `grace` seconds, then cancels
the rest and hands them back to the queue at once without burning one of their tries (their interrupted
calls stay in the ledger: the next run marks them abandoned at their worst-case cost).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import timedelta

from shared.logjson import job_context
from shared.store import ops
from shared.store.records import ClaimedJob
from shared.timeutil import utcnow
from worker.context import Runtime
from worker.runner import Deferred, Done, Held, JobRunner

log = logging.getLogger("routeyard.worker")

IDLE_MIN_S = 0.005
IDLE_MAX_S = 0.25


@dataclass
class DispatchStats:
    claimed: int = 0
    finished: int = 0
    deferred: int = 0
    dropped: int = 0
    """Claimed in Redis but already terminal (or unknown) in the store: removed from the queue."""
    held: int = 0
    errors: int = 0


class Dispatcher:
    def __init__(self, rt: Runtime, *, max_in_flight: int = 256) -> None:
        self.rt = rt
        self.queue = rt.queue
        self.runner = JobRunner(rt)
        # `max_in_flight` provider calls at a time; as many again are held, claimed and recorded, ready to call,
        # so that a wave of answers is followed at once by the next wave of calls instead of by the claiming,
        # planning and recording of their jobs
        rt.call_slots = asyncio.Semaphore(max_in_flight)
        self.max_in_flight = 2 * max_in_flight
        self.in_flight: dict[str, tuple[int, asyncio.Task[None]]] = {}
        self.stats = DispatchStats()
        self._slot_freed = asyncio.Event()
        self._stopping = False
        self._handing_back: set[str] = set()
        self._ack_buffer: list[tuple[int, str]] = []
        self._ack_scheduled = False
        self._background: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._renew_task: asyncio.Task[None] | None = None
        self._health_task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._claim_loop(), name="routeyard-dispatch")
        self._renew_task = asyncio.create_task(self._renew_loop(), name="routeyard-renew")
        self._health_task = asyncio.create_task(self._health_loop(), name="routeyard-health")

    async def _health_loop(self) -> None:
        """Keep the set of open circuits fresh for the planner (one Redis read a second per worker)."""
        period = self.rt.config.worker.health_refresh_s
        ticks = 0
        while True:
            try:
                await self.rt.admission.flush_successes()
                self.rt.unhealthy = await self.rt.admission.open_circuits()
                if ticks % 5 == 0 and len(self.rt.denials):
                    await self.rt.denials.flush(self.rt.store)
                if ticks % 30 == 0:
                    await self.rt.credentials.refresh_byok(self.rt.store)  # new, removed, disabled BYOK keys
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("housekeeping (circuits, audit, BYOK keys) failed")
            ticks += 1
            await asyncio.sleep(period)

    async def _claim_loop(self) -> None:
        idle = IDLE_MIN_S
        while not self._stopping:
            free = self.max_in_flight - len(self.in_flight)
            if free <= 0:
                self._slot_freed.clear()
                await self._slot_freed.wait()
                await asyncio.sleep(0)  # let a few more completions land: one claim for all of them
                continue
            try:
                items = await self.queue.claim(free)
                if items:
                    await self._start(items)
            except asyncio.CancelledError:
                raise
            except Exception:
                self.stats.errors += 1
                log.exception("claiming jobs failed; retrying")
                items = []
                await asyncio.sleep(1.0)
            if items:
                idle = IDLE_MIN_S
                continue
            self._slot_freed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._slot_freed.wait(), idle)
            idle = min(IDLE_MAX_S, idle * 2)

    async def _start(self, items: list[tuple[int, str]]) -> None:
        self.stats.claimed += len(items)
        claimed = await self.rt.store.write(ops.claim_jobs([i for _, i in items], self.rt.worker_id), urgent=True)
        by_id = {c.id: c for c in claimed}
        dropped = [(p, i) for p, i in items if i not in by_id]
        if dropped:
            self.stats.dropped += len(dropped)
            await self.queue.ack(dropped)
        for p, job_id in items:
            job = by_id.get(job_id)
            if job is None or job_id in self.in_flight:
                continue
            task = asyncio.create_task(self._run_one(p, job), name=f"job {job_id}")
            self.in_flight[job_id] = (p, task)

    async def _run_one(self, p: int, job: ClaimedJob) -> None:
        job_context.set((job.id, job.batch_id))  # this task's log lines carry the job's ids (shared.logjson)
        try:
            outcome = await self.runner.run(job)
        except asyncio.CancelledError:
            await asyncio.shield(self._hand_back(p, job))
            raise
        except Exception:
            self.stats.errors += 1
            log.exception(
                "job %s: unexpected error; it will be retried after its lease expires",
                job.id,
                extra={"job_id": job.id, "batch_id": job.batch_id},
            )
            self.in_flight.pop(job.id, None)
            self._slot_freed.set()
            return
        if isinstance(outcome, Held):
            self.stats.held += 1
            await self.rt.store.write(
                ops.hold_jobs(
                    [job.id],
                    outcome.reason,
                    self.rt.worker_id,
                    scope=outcome.scope,
                    limit=outcome.limit,
                    period=outcome.period,
                )
            )
            self._ack(p, job.id)
        elif isinstance(outcome, Deferred):
            self.stats.deferred += 1
            not_before = utcnow() + timedelta(seconds=outcome.delay_s)
            await self.rt.store.write(ops.release_job(job.id, self.rt.worker_id, not_before, refund_run=True))
            await self.queue.reschedule([(p, job.id)], int(outcome.delay_s * 1000))
        else:
            assert isinstance(outcome, Done)
            self.stats.finished += 1
            self._ack(p, job.id)
        self.in_flight.pop(job.id, None)
        self._slot_freed.set()

    async def _hand_back(self, p: int, job: ClaimedJob) -> None:
        """A cancelled job (shutdown) returns to the queue now, and its run does not count as a try."""
        try:
            await self.rt.store.write(ops.release_job(job.id, self.rt.worker_id, None, refund_run=True))
            await self.queue.reschedule([(p, job.id)], 0)
        except Exception:
            log.exception(
                "job %s: could not hand back; its lease will expire instead",
                job.id,
                extra={"job_id": job.id, "batch_id": job.batch_id},
            )
        finally:
            self.in_flight.pop(job.id, None)

    def _ack(self, p: int, job_id: str) -> None:
        """Batch acks: every job finishing in the same loop iteration shares one ZREM."""
        self._ack_buffer.append((p, job_id))
        if not self._ack_scheduled:
            self._ack_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_acks_soon)

    def _flush_acks_soon(self) -> None:
        task = asyncio.ensure_future(self._flush_acks())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _flush_acks(self) -> None:
        self._ack_scheduled = False
        items, self._ack_buffer = self._ack_buffer, []
        if not items:
            return
        try:
            await self.queue.ack(items)
        except Exception:
            # the store already holds the outcome; an unacked job is re-claimed later and dropped
            log.exception("ack of %d jobs failed", len(items))

    async def _renew_loop(self) -> None:
        period = self.queue.lease_ms / 3000
        while True:
            await asyncio.sleep(period)
            items = [(p, job_id) for job_id, (p, _) in self.in_flight.items()]
            if not items:
                continue
            try:
                await self.queue.renew(items)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("lease renewal failed")

    async def drain(self, grace_s: float) -> None:
        """Stop claiming; give running jobs `grace_s` to finish; hand back the rest."""
        self._stopping = True
        self._slot_freed.set()
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        deadline = time.monotonic() + grace_s
        while self.in_flight and time.monotonic() < deadline:
            self._slot_freed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._slot_freed.wait(), max(0.0, deadline - time.monotonic()))
        tasks = [t for _, t in self.in_flight.values()]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        await self._flush_acks()
        await self.rt.admission.flush_successes()
        if len(self.rt.denials):
            await self.rt.denials.flush(self.rt.store)
        for task in (self._renew_task, self._health_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

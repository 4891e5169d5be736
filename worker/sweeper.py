"""The sweeper: the store is the record, Redis only transport. Periodically it walks the jobs the store says
are still active and puts back into the queue any that Redis no longer holds — after a Redis restart
without persistence, a FLUSHALL, or a producer that died between committing a batch and enqueueing it.
It also seals batches whose producer died mid-upload (`seal_stale_submissions`), so they can complete.

Jobs touched within `grace_s` are left alone (a producer may be about to enqueue them). Re-enqueueing is
idempotent: an id already waiting is not added twice, and the claim script drops a duplicate of a job that
is already leased.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, select, update

from shared.queue import JobQueue
from shared.store import Store, ops
from shared.store.writer import Deltas, complete_if_done
from shared.tables import ACTIVE_STATES, Batch, BatchState, BudgetHold, Job
from shared.timeutil import to_ms, utcnow

log = logging.getLogger("routeyard.sweeper")
jobs = Job.__table__  # type: ignore[attr-defined]


@dataclass
class SweepReport:
    checked: int = 0
    requeued: int = 0


def _active_page(after_id: str | None, older_than: Any, limit: int) -> Any:
    def q(conn: Connection) -> list[Any]:
        stmt = select(jobs.c.id, jobs.c.priority, jobs.c.api_key_id, jobs.c.batch_id, jobs.c.not_before).where(
            jobs.c.state.in_(ACTIVE_STATES), jobs.c.updated_at < older_than
        )
        if after_id is not None:
            stmt = stmt.where(jobs.c.id > after_id)
        return list(conn.execute(stmt.order_by(jobs.c.id).limit(limit)).all())

    return q


async def sweep_once(store: Store, queue: JobQueue, *, grace_s: float = 60.0, page: int = 1000) -> SweepReport:
    report = SweepReport()
    older_than = utcnow() - timedelta(seconds=grace_s)
    after: str | None = None
    now_ms = to_ms(utcnow())
    while True:
        rows = await store.read(_active_page(after, older_than, page))
        if not rows:
            break
        after = rows[-1].id
        report.checked += len(rows)
        present = await queue.present([(r.id, r.priority, r.api_key_id, r.batch_id) for r in rows])
        missing = [r for r in rows if not present.get(r.id, False)]
        lanes: dict[tuple[int, str | None, str | None], list[str]] = defaultdict(list)
        for r in missing:
            if r.not_before is not None and to_ms(r.not_before) > now_ms:
                await queue.schedule_at(r.priority, r.id, to_ms(r.not_before))
            else:
                lanes[(r.priority, r.api_key_id, r.batch_id)].append(r.id)
        for (p, tenant, lane), ids in lanes.items():
            await queue.enqueue(ids, priority=p, tenant=tenant, lane=lane)
        report.requeued += len(missing)
        if len(rows) < page:
            break
    if report.requeued:
        log.warning("sweeper re-enqueued %d of %d active jobs that Redis had lost", report.requeued, report.checked)
    return report


holds = BudgetHold.__table__  # type: ignore[attr-defined]

ScopeState = Callable[[str], Awaitable[tuple[Decimal | None, str] | None]]
"""Current (limit, period) of a budget scope, or None when the scope no longer exists."""


async def resume_held(store: Store, queue: JobQueue, scope_state: ScopeState) -> int:
    """Resume jobs held by a budget scope whose limit or period changed since (raised, reset, removed)."""
    rows = await store.read(lambda conn: list(conn.execute(select(holds)).mappings()))
    resumed = 0
    for hold in rows:
        current = await scope_state(hold["scope"])
        if current is None:
            continue
        limit, period = current
        raised = limit is None or (hold["limit"] is not None and limit > hold["limit"])
        if not raised and period == hold["period"]:
            continue
        kind, _, ident = hold["scope"].partition(":")
        where = jobs.c.batch_id == ident if kind == "batch" else jobs.c.api_key_id == ident
        back = await store.write_direct(ops.resume_held(hold["scope"], where))
        lanes: dict[tuple[int, str | None, str | None], list[str]] = defaultdict(list)
        for job_id, p, tenant, lane in back:
            lanes[(p, tenant, lane)].append(job_id)
        for (p, tenant, lane), ids in lanes.items():
            await queue.enqueue(ids, priority=p, tenant=tenant, lane=lane)
        resumed += len(back)
        log.info("resumed %d jobs held by %s (limit or period changed)", len(back), hold["scope"])
    return resumed


batches = Batch.__table__  # type: ignore[attr-defined]


def _seal_stale(older_than: Any) -> Any:
    def op(conn: Connection, deltas: Deltas) -> tuple[list[tuple[str, int]], list[str]]:
        sealed = [
            (row.id, row.n_total)
            for row in conn.execute(
                update(batches)
                .where(batches.c.state == BatchState.SUBMITTING.value, batches.c.updated_at < older_than)
                .values(state=BatchState.OPEN.value, updated_at=utcnow())
                .returning(batches.c.id, batches.c.n_total)
            )
        ]
        return sealed, complete_if_done(conn, [bid for bid, _ in sealed])

    return op


async def seal_stale_submissions(store: Store, *, stale_s: float) -> tuple[int, list[str]]:
    """Seal batches still `submitting` whose producer has stored no line for `stale_s`: it died mid-upload.
    Their stored jobs run (`sweep_once` enqueues them); sealing lets the batch complete, so pollers and
    webhooks are not left waiting for lines that will never come. Returns how many were sealed and the ids
    of those already complete (their terminal events are due)."""
    sealed, completed = await store.write_direct(_seal_stale(utcnow() - timedelta(seconds=stale_s)))
    for bid, stored in sealed:
        log.warning(
            "batch %s: its producer stored no line for over %.0f s; sealed with the %d lines it stored",
            bid,
            stale_s,
            stored,
        )
    return len(sealed), completed

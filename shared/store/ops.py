"""Write operations on jobs and attempts. Each is `op(conn, deltas) -> value`, run by the group-commit writer
(or directly in a transaction by producers and tools).

The rules that make re-runs safe (arq-style execution is at-least-once):
- a job's terminal write is conditional on the job not being terminal yet, so it happens once and a late
  duplicate never overwrites a recorded success;
- batch counters move only when that conditional write wins;
- an attempt row is keyed by its own id, inserted before its call and completed once; a re-claim marks the
  previous run's unfinished attempts `abandoned` at their worst-case cost (the provider may have billed them).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from sqlalchemy import Connection, and_, bindparam, case, func, insert, literal, select, update

from shared.errors import ErrorClass
from shared.money import Money
from shared.store.records import AttemptEnd, AttemptStart, ClaimedJob, JobFailure, JobSuccess
from shared.store.writer import Deltas, Operation
from shared.tables import ACTIVE_STATES, Attempt, AttemptStatus, Job, JobState
from shared.timeutil import utcnow

jobs = Job.__table__  # type: ignore[attr-defined]
attempts = Attempt.__table__  # type: ignore[attr-defined]
TERMINAL = [s.value for s in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)]


def claim_jobs(ids: Sequence[str], worker_id: str, now: datetime | None = None) -> Operation[list[ClaimedJob]]:
    """Mark jobs running for `worker_id` and return their specs. Terminal (done, cancelled) or unknown ids
    are simply not returned: the caller drops them from the queue."""
    now = now or utcnow()
    id_list = list(ids)

    def op(conn: Connection, deltas: Deltas) -> list[ClaimedJob]:
        _abandon_unfinished(conn, deltas, id_list, now)
        rows = conn.execute(
            update(jobs)
            .where(jobs.c.id.in_(id_list), jobs.c.state.in_(ACTIVE_STATES))
            .values(
                state=JobState.RUNNING.value,
                worker_id=worker_id,
                runs=jobs.c.runs + 1,
                started_at=func.coalesce(jobs.c.started_at, now),
                updated_at=now,
                not_before=None,
            )
            .returning(
                jobs.c.id,
                jobs.c.batch_id,
                jobs.c.spec,
                jobs.c.runs,
                jobs.c.attempts,
                jobs.c.priority,
                jobs.c.class_name,
                jobs.c.api_key_id,
                jobs.c.created_at,
                jobs.c.deadline_at,
            )
        ).all()
        return [ClaimedJob(*row) for row in rows]

    return op


def _abandon_unfinished(conn: Connection, deltas: Deltas, job_ids: list[str], now: datetime) -> None:
    """Attempts still `started` belong to a run that died mid-call: keep them at their worst-case cost."""
    rows = conn.execute(
        update(attempts)
        .where(attempts.c.job_id.in_(job_ids), attempts.c.status == AttemptStatus.STARTED.value)
        .values(
            status=AttemptStatus.ABANDONED.value,
            cost=attempts.c.reserved_cost,
            cost_estimated=True,
            finished_at=now,
            error_class=ErrorClass.WORKER_CRASHED.value,
            error_message="the worker making this call stopped before recording its answer",
        )
        .returning(attempts.c.job_id, attempts.c.batch_id, attempts.c.reserved_cost)
    ).all()
    for job_id, batch_id, reserved in rows:
        _add_job_cost(conn, job_id, reserved, now)
        if reserved is None:
            deltas.add(batch_id, unpriced_calls=1)
        else:
            deltas.add(batch_id, cost=reserved)


def _add_job_cost(conn: Connection, job_id: str, cost: Decimal | None, now: datetime) -> None:
    if cost is None:
        conn.execute(update(jobs).where(jobs.c.id == job_id).values(unpriced_calls=jobs.c.unpriced_calls + 1))
    else:
        conn.execute(
            update(jobs)
            .where(jobs.c.id == job_id)
            .values(cost=func.coalesce(jobs.c.cost, literal(Decimal(0), Money())) + literal(cost, Money()))
        )


_insert_attempt = insert(attempts)
_count_attempt = update(jobs).where(jobs.c.id == bindparam("jid")).values(attempts=jobs.c.attempts + 1)


def start_attempt(a: AttemptStart) -> Operation[None]:
    """Record a call before it is made: if the worker dies mid-call, the ledger still knows of it."""

    def op(conn: Connection, deltas: Deltas) -> None:
        conn.execute(
            _insert_attempt,
            {
                "id": a.id,
                "job_id": a.job_id,
                "batch_id": a.batch_id,
                "seq": a.seq,
                "run": a.run,
                "worker_id": a.worker_id,
                "endpoint": a.endpoint,
                "provider": a.provider,
                "model": a.model,
                "key_ref": a.key_ref,
                "status": AttemptStatus.STARTED.value,
                "started_at": a.started_at,
                "reserved_cost": a.reserved_cost,
                "cost_estimated": False,
            },
        )
        conn.execute(_count_attempt, {"jid": a.job_id})

    return op


def finish_attempt(end: AttemptEnd, outcome: JobSuccess | JobFailure | None = None) -> Operation[bool]:
    """Complete an attempt and, with `outcome`, the job. Returns True when the job's terminal write won."""

    def op(conn: Connection, deltas: Deltas) -> bool:
        served = end.succeeded
        cost = end.cost if served else Decimal(0)
        values = {
            "status": (AttemptStatus.SUCCEEDED if served else AttemptStatus.FAILED).value,
            "http_status": end.http_status,
            "error_class": end.error_class,
            "error_message": end.error_message,
            "request_id": end.request_id,
            "finished_at": end.finished_at,
            "latency_ms": end.latency_ms,
            "input_tokens": end.input_tokens,
            "output_tokens": end.output_tokens,
            "cached_tokens": end.cached_tokens,
            "cost": cost,
            "cost_estimated": False,
        }
        n = conn.execute(
            update(attempts)
            .where(attempts.c.id == end.id, attempts.c.status == AttemptStatus.STARTED.value)
            .values(**values)
        ).rowcount
        previous: Decimal | None = Decimal(0)
        if n == 0:
            # A re-claim declared this call abandoned while it was in fact still running: the real
            # answer replaces the worst-case estimate.
            row = conn.execute(select(attempts.c.status, attempts.c.cost).where(attempts.c.id == end.id)).first()
            if row is None or row.status != AttemptStatus.ABANDONED.value:
                return False  # already completed: a duplicate report changes nothing
            previous = row.cost
            conn.execute(update(attempts).where(attempts.c.id == end.id).values(**values))
            if previous is None:
                deltas.add(end.batch_id, unpriced_calls=-1)
                conn.execute(
                    update(jobs).where(jobs.c.id == end.job_id).values(unpriced_calls=jobs.c.unpriced_calls - 1)
                )
        _record_cost(conn, deltas, end, cost, previous)
        if outcome is None:
            return False
        return _finish_job(conn, deltas, outcome, end.finished_at)

    return op


def _record_cost(
    conn: Connection, deltas: Deltas, end: AttemptEnd, cost: Decimal | None, previous: Decimal | None
) -> None:
    if cost is None:
        _add_job_cost(conn, end.job_id, None, end.finished_at)
        deltas.add(end.batch_id, unpriced_calls=1)
        return
    change = cost - (previous or Decimal(0))
    if change:
        _add_job_cost(conn, end.job_id, change, end.finished_at)
        deltas.add(end.batch_id, cost=change)


def finish_job(outcome: JobSuccess | JobFailure) -> Operation[bool]:
    """Terminal write without a call (no route, deadline passed, …). True when it won."""

    def op(conn: Connection, deltas: Deltas) -> bool:
        return _finish_job(conn, deltas, outcome, utcnow())

    return op


def _finish_job(conn: Connection, deltas: Deltas, outcome: JobSuccess | JobFailure, now: datetime) -> bool:
    not_terminal = and_(jobs.c.id == outcome.job_id, jobs.c.state.not_in(TERMINAL))
    if isinstance(outcome, JobSuccess):
        won = conn.execute(
            update(jobs)
            .where(not_terminal)
            .values(
                state=JobState.SUCCEEDED.value,
                result=outcome.result_json,
                endpoint=outcome.endpoint,
                model=outcome.model,
                provider=outcome.provider,
                input_tokens=outcome.input_tokens,
                output_tokens=outcome.output_tokens,
                error_class=None,
                error_message=None,
                finished_at=now,
                updated_at=now,
            )
        ).rowcount
        if won:
            deltas.add(
                outcome.batch_id,
                succeeded=1,
                input_tokens=outcome.input_tokens,
                output_tokens=outcome.output_tokens,
            )
        return bool(won)
    won = conn.execute(
        update(jobs)
        .where(not_terminal)
        .values(
            state=JobState.FAILED.value,
            error_class=outcome.error_class,
            error_message=outcome.error_message,
            finished_at=now,
            updated_at=now,
        )
    ).rowcount
    if won:
        deltas.add(outcome.batch_id, failed=1)
    return bool(won)


def release_job(job_id: str, worker_id: str, not_before: datetime | None, *, refund_run: bool) -> Operation[bool]:
    """Hand a running job back to the queue (deferral, graceful shutdown). `refund_run` undoes the claim's
    run count, so a shutdown does not burn one of the job's tries."""

    def op(conn: Connection, deltas: Deltas) -> bool:
        now = utcnow()
        n = conn.execute(
            update(jobs)
            .where(jobs.c.id == job_id, jobs.c.state == JobState.RUNNING.value, jobs.c.worker_id == worker_id)
            .values(
                state=JobState.QUEUED.value,
                worker_id=None,
                not_before=not_before,
                updated_at=now,
                runs=case((jobs.c.runs > 0, jobs.c.runs - (1 if refund_run else 0)), else_=0),
            )
        ).rowcount
        return bool(n)

    return op


def cancel_jobs(job_ids: Sequence[str] | None = None, batch_id: str | None = None) -> Operation[int]:
    """Cancel queued or running jobs. A running call finishes, but its terminal write then loses, so the
    job stays cancelled (its cost is still recorded: the provider served it)."""
    if (job_ids is None) == (batch_id is None):
        raise ValueError("give job ids or a batch id")

    def op(conn: Connection, deltas: Deltas) -> int:
        now = utcnow()
        where = jobs.c.batch_id == batch_id if batch_id is not None else jobs.c.id.in_(list(job_ids or []))
        rows = conn.execute(
            update(jobs)
            .where(where, jobs.c.state.in_(ACTIVE_STATES))
            .values(
                state=JobState.CANCELLED.value,
                error_class="cancelled",
                error_message="cancelled by request",
                finished_at=now,
                updated_at=now,
            )
            .returning(jobs.c.batch_id)
        ).all()
        for (b,) in rows:
            deltas.add(b, cancelled=1)
        return len(rows)

    return op

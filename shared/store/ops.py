"""Write operations on jobs and attempts. Each is `op(conn, deltas) -> value`, run by the group-commit writer
(or directly in a transaction by producers and tools).

The rules that make re-runs safe (execution is at-least-once):
- a job's terminal write is conditional on the job not being terminal yet, so it happens once and a late
  duplicate never overwrites a recorded success;
- batch counters move only when that conditional write wins;
- an attempt row is keyed by its own id, inserted before its call and completed once; a re-claim marks the
  previous run's unfinished attempts `abandoned` at their worst-case cost (the provider may have billed them).

Statements are built once at import with bound parameters: on the hot path (three statements per job:
insert the attempt, complete it, complete the job) only execution remains.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, and_, bindparam, case, delete, func, insert, literal, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from shared.errors import ErrorClass
from shared.money import Money
from shared.store.records import AttemptEnd, AttemptStart, ClaimedJob, JobFailure, JobSuccess
from shared.store.writer import BulkInsert, Deltas, Operation
from shared.tables import ACTIVE_STATES, Attempt, AttemptStatus, BudgetHold, Job, JobState
from shared.timeutil import utcnow

jobs = Job.__table__  # type: ignore[attr-defined]
holds = BudgetHold.__table__  # type: ignore[attr-defined]
attempts = Attempt.__table__  # type: ignore[attr-defined]
TERMINAL = [s.value for s in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)]
_ZERO = literal(Decimal(0), Money())


def _money(name: str) -> Any:
    return bindparam(name, type_=Money())


# ---------------------------------------------------------------------------------------------- claim
_CLAIM = (
    update(jobs)
    .where(jobs.c.id.in_(bindparam("ids", expanding=True)), jobs.c.state.in_(ACTIVE_STATES))
    .values(
        state=JobState.RUNNING.value,
        worker_id=bindparam("worker"),
        runs=jobs.c.runs + 1,
        started_at=func.coalesce(jobs.c.started_at, bindparam("now", type_=jobs.c.started_at.type)),
        updated_at=bindparam("now", type_=jobs.c.updated_at.type),
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
        jobs.c.cost,
        jobs.c.started_at,
    )
)
_ABANDON = (
    update(attempts)
    .where(attempts.c.job_id.in_(bindparam("ids", expanding=True)), attempts.c.status == AttemptStatus.STARTED.value)
    .values(
        status=AttemptStatus.ABANDONED.value,
        cost=attempts.c.reserved_cost,
        cost_estimated=True,
        finished_at=bindparam("now", type_=attempts.c.finished_at.type),
        error_class=ErrorClass.WORKER_CRASHED.value,
        error_message="the worker making this call stopped before recording its answer",
    )
    .returning(attempts.c.job_id, attempts.c.batch_id, attempts.c.reserved_cost)
)


def claim_jobs(ids: Sequence[str], worker_id: str, now: datetime | None = None) -> Operation[list[ClaimedJob]]:
    """Mark jobs running for `worker_id` and return their specs. Terminal (done, cancelled) or unknown ids
    are simply not returned: the caller drops them from the queue."""
    params = {"ids": list(ids), "worker": worker_id, "now": now or utcnow()}

    def op(conn: Connection, deltas: Deltas) -> list[ClaimedJob]:
        for job_id, batch_id, reserved in conn.execute(_ABANDON, params).all():
            # a run that died mid-call: its call may have been served and billed, so it counts
            _add_cost(conn, job_id, reserved, calls=1)
            if reserved is None:
                deltas.add(batch_id, unpriced_calls=1)
            else:
                deltas.add(batch_id, cost=reserved)
        return [ClaimedJob(*row) for row in conn.execute(_CLAIM, params).all()]

    return op


_ADD_COST = (
    update(jobs)
    .where(jobs.c.id == bindparam("jid"))
    .values(
        cost=func.coalesce(jobs.c.cost, _ZERO) + _money("delta"),
        unpriced_calls=jobs.c.unpriced_calls + bindparam("unpriced"),
        attempts=jobs.c.attempts + bindparam("calls"),
    )
)
_ADD_UNPRICED = (
    update(jobs)
    .where(jobs.c.id == bindparam("jid"))
    .values(unpriced_calls=jobs.c.unpriced_calls + bindparam("unpriced"), attempts=jobs.c.attempts + bindparam("calls"))
)


def _add_cost(conn: Connection, job_id: str, cost: Decimal | None, *, calls: int = 0, unpriced: int = 0) -> None:
    """Add to a job's running cost (a NULL cost becomes a known amount) and call count."""
    if cost is None:
        conn.execute(_ADD_UNPRICED, {"jid": job_id, "unpriced": unpriced or 1, "calls": calls})
    else:
        conn.execute(_ADD_COST, {"jid": job_id, "delta": cost, "unpriced": unpriced, "calls": calls})


# ---------------------------------------------------------------------------------------------- attempts
_INSERT_ATTEMPT = insert(attempts)


def start_attempt(a: AttemptStart) -> Operation[None]:
    """Record a call before it is made: if the worker dies mid-call, the ledger still knows of it. The
    attempts started in one group transaction go in one multi-row INSERT."""
    row = {
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
        "api_key_id": a.api_key_id,
        "billed_to": a.billed_to,
        "team": a.team,
        "project": a.project,
        "environment": a.environment,
    }

    return BulkInsert(_INSERT_ATTEMPT, row)


_END_COLUMNS = (
    "status",
    "http_status",
    "error_class",
    "error_message",
    "request_id",
    "finished_at",
    "latency_ms",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "cost",
    "cost_estimated",
    "fee",
)
_END_VALUES = {c: bindparam(f"v_{c}", type_=attempts.c[c].type) for c in _END_COLUMNS}
_FINISH_STARTED = (
    update(attempts)
    .where(attempts.c.id == bindparam("aid"), attempts.c.status == AttemptStatus.STARTED.value)
    .values(_END_VALUES)
)
_FINISH_ABANDONED = (
    update(attempts)
    .where(attempts.c.id == bindparam("aid"), attempts.c.status == AttemptStatus.ABANDONED.value)
    .values(_END_VALUES)
    .returning(attempts.c.reserved_cost)
)


def finish_attempt(end: AttemptEnd, outcome: JobSuccess | JobFailure | None = None) -> FinishAttempt:
    """Complete an attempt and, with `outcome`, the job. Returns True when the job's terminal write won."""
    return FinishAttempt(end, outcome)


class FinishAttempt:
    """The operation `finish_attempt` returns. Alone, it handles every case (an attempt declared abandoned that
    answered after all, a duplicate report, a job already terminal). The group-commit writer runs the answers
    of one transaction together with `run_bulk`: two `executemany` statements instead of two round trips a
    job, falling back to one by one when anything raced."""

    __slots__ = ("cost", "end", "outcome", "params")

    def __init__(self, end: AttemptEnd, outcome: JobSuccess | JobFailure | None) -> None:
        self.end = end
        self.outcome = outcome
        served = end.succeeded
        self.cost = end.cost if served else Decimal(0)  # providers do not bill errors
        self.params = {
            "aid": end.id,
            "v_status": (AttemptStatus.SUCCEEDED if served else AttemptStatus.FAILED).value,
            "v_http_status": end.http_status,
            "v_error_class": end.error_class,
            "v_error_message": end.error_message,
            "v_request_id": end.request_id,
            "v_finished_at": end.finished_at,
            "v_latency_ms": end.latency_ms,
            "v_input_tokens": end.input_tokens,
            "v_output_tokens": end.output_tokens,
            "v_cached_tokens": end.cached_tokens,
            "v_cost": self.cost,
            "v_cost_estimated": False,
            "v_fee": end.fee if served else Decimal(0),
        }

    def __call__(self, conn: Connection, deltas: Deltas) -> bool:
        end, cost, outcome = self.end, self.cost, self.outcome
        calls = 1
        previous: Decimal | None = Decimal(0)
        if conn.execute(_FINISH_STARTED, self.params).rowcount == 0:
            # Not `started`: either a re-claim declared it abandoned while it was in fact still running (its
            # real answer replaces the worst-case estimate, and it was already counted) or it is complete
            # already (a duplicate report changes nothing).
            row = conn.execute(_FINISH_ABANDONED, self.params).first()
            if row is None:
                return False
            previous, calls = row.reserved_cost, 0
        unpriced = 1 if cost is None else 0
        if previous is None:
            unpriced -= 1  # the abandoned estimate was an unpriced call; this answer replaces it
        change = None if cost is None else cost - (previous or Decimal(0))
        if change:
            deltas.add(end.batch_id, cost=change)
        if unpriced:
            deltas.add(end.batch_id, unpriced_calls=unpriced)
        if outcome is not None and _finish_job(conn, deltas, outcome, end.finished_at, change, unpriced, calls):
            return True
        _add_cost(conn, end.job_id, change if change is not None else None, calls=calls, unpriced=unpriced)
        return False

    @staticmethod
    def run_bulk(conn: Connection, deltas: Deltas, ops: list[FinishAttempt]) -> list[bool] | None:
        """All of `ops` at once, when nothing raced: every attempt still `started` and every job with an
        outcome still open (checked by row counts inside a savepoint). None, with nothing written, otherwise:
        the caller then runs them one by one."""
        succ = [o for o in ops if isinstance(o.outcome, JobSuccess)]
        fail = [o for o in ops if isinstance(o.outcome, JobFailure)]
        rest = [o for o in ops if o.outcome is None]
        savepoint = conn.begin_nested()
        try:
            if conn.execute(_FINISH_STARTED, [o.params for o in ops]).rowcount != len(ops):
                savepoint.rollback()
                return None
            for group, stmt in ((succ, _SUCCEED), (fail, _FAIL)):
                if group and conn.execute(stmt, [o._terminal_params() for o in group]).rowcount != len(group):
                    savepoint.rollback()
                    return None
            priced = [o for o in rest if o.cost is not None]
            unpriced = [o for o in rest if o.cost is None]
            if priced:
                conn.execute(
                    _ADD_COST, [{"jid": o.end.job_id, "delta": o.cost, "unpriced": 0, "calls": 1} for o in priced]
                )
            if unpriced:
                conn.execute(_ADD_UNPRICED, [{"jid": o.end.job_id, "unpriced": 1, "calls": 1} for o in unpriced])
            savepoint.commit()
        except BaseException:
            if savepoint.is_active:
                savepoint.rollback()
            raise
        for o in ops:
            if o.cost is None:
                deltas.add(o.end.batch_id, unpriced_calls=1)
            elif o.cost:
                deltas.add(o.end.batch_id, cost=o.cost)
            if isinstance(o.outcome, JobSuccess):
                deltas.add(
                    o.outcome.batch_id,
                    succeeded=1,
                    input_tokens=o.outcome.input_tokens,
                    output_tokens=o.outcome.output_tokens,
                )
            elif isinstance(o.outcome, JobFailure):
                deltas.add(o.outcome.batch_id, failed=1)
        return [o.outcome is not None for o in ops]

    def _terminal_params(self) -> dict[str, Any]:
        """The job's terminal write on the fast path: the attempt was `started`, so its whole cost is new."""
        assert self.outcome is not None
        return _terminal_params(self.outcome, self.end.finished_at, self.cost, 1 if self.cost is None else 0, 1)


def finish_job(outcome: JobSuccess | JobFailure) -> Operation[bool]:
    """Terminal write without a call (no route, deadline passed, …). True when it won."""

    def op(conn: Connection, deltas: Deltas) -> bool:
        return _finish_job(conn, deltas, outcome, utcnow(), Decimal(0), 0, 0)

    return op


# `!=` rather than NOT IN: an IN list is an "expanding" parameter, which executemany (run_bulk) cannot take
_NOT_TERMINAL = and_(jobs.c.id == bindparam("jid"), *(jobs.c.state != state for state in TERMINAL))
_COST_VALUES = {
    "cost": case(
        (bindparam("has_cost", type_=jobs.c.runs.type) == 1, func.coalesce(jobs.c.cost, _ZERO) + _money("delta")),
        else_=jobs.c.cost,
    ),
    "unpriced_calls": jobs.c.unpriced_calls + bindparam("unpriced"),
    "attempts": jobs.c.attempts + bindparam("calls"),
    "finished_at": bindparam("now", type_=jobs.c.finished_at.type),
    "updated_at": bindparam("now", type_=jobs.c.updated_at.type),
}
_SUCCEED = (
    update(jobs)
    .where(_NOT_TERMINAL)
    .values(
        state=JobState.SUCCEEDED.value,
        result=bindparam("result"),
        endpoint=bindparam("endpoint"),
        model=bindparam("model"),
        provider=bindparam("provider"),
        input_tokens=bindparam("in_tok"),
        output_tokens=bindparam("out_tok"),
        error_class=None,
        error_message=None,
        **_COST_VALUES,
    )
)
_FAIL = (
    update(jobs)
    .where(_NOT_TERMINAL)
    .values(
        state=JobState.FAILED.value,
        error_class=bindparam("err_class"),
        error_message=bindparam("err_message"),
        **_COST_VALUES,
    )
)


def _terminal_params(
    outcome: JobSuccess | JobFailure, now: datetime, cost: Decimal | None, unpriced: int, calls: int
) -> dict[str, Any]:
    common = {
        "jid": outcome.job_id,
        "now": now,
        "has_cost": 0 if cost is None else 1,
        "delta": cost or Decimal(0),
        "unpriced": unpriced,
        "calls": calls,
    }
    if isinstance(outcome, JobSuccess):
        return {
            **common,
            "result": outcome.result_json,
            "endpoint": outcome.endpoint,
            "model": outcome.model,
            "provider": outcome.provider,
            "in_tok": outcome.input_tokens,
            "out_tok": outcome.output_tokens,
        }
    return {**common, "err_class": outcome.error_class, "err_message": outcome.error_message}


def _finish_job(
    conn: Connection,
    deltas: Deltas,
    outcome: JobSuccess | JobFailure,
    now: datetime,
    cost: Decimal | None,
    unpriced: int,
    calls: int,
) -> bool:
    """The conditional terminal write, carrying the last call's cost. False (and nothing written) when the
    job is already terminal."""
    params = _terminal_params(outcome, now, cost, unpriced, calls)
    if isinstance(outcome, JobSuccess):
        if not conn.execute(_SUCCEED, params).rowcount:
            return False
        deltas.add(
            outcome.batch_id, succeeded=1, input_tokens=outcome.input_tokens, output_tokens=outcome.output_tokens
        )
        return True
    if not conn.execute(_FAIL, params).rowcount:
        return False
    deltas.add(outcome.batch_id, failed=1)
    return True


# ---------------------------------------------------------------------------------------------- queue moves
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
            .where(where, jobs.c.state.in_([*ACTIVE_STATES, JobState.BUDGET_EXHAUSTED.value]))
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


def hold_jobs(
    job_ids: Sequence[str], reason: str, worker_id: str | None = None, *, scope: str, limit: Decimal | None, period: str
) -> Operation[int]:
    """Hold jobs as `budget_exhausted` (a limit cannot cover them now). Only queued or running jobs; a running
    one only when `worker_id` holds it. They are not failed and not lost: the sweeper resumes them when the
    scope's limit or period changes (see `BudgetHold`)."""

    def op(conn: Connection, deltas: Deltas) -> int:
        now = utcnow()
        stmt = update(jobs).where(jobs.c.id.in_(list(job_ids)), jobs.c.state.in_(ACTIVE_STATES))
        if worker_id is not None:
            stmt = stmt.where((jobs.c.worker_id == worker_id) | (jobs.c.state == JobState.QUEUED.value))
        held = int(
            conn.execute(
                stmt.values(
                    state=JobState.BUDGET_EXHAUSTED.value,
                    worker_id=None,
                    error_class=ErrorClass.BUDGET.value,
                    error_message=reason,
                    updated_at=now,
                    runs=case((jobs.c.runs > 0, jobs.c.runs - 1), else_=0),
                )
            ).rowcount
        )
        if held:
            dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
            conn.execute(
                dialect_insert(holds)
                .values(scope=scope, limit=limit, period=period, held_at=now)
                .on_conflict_do_nothing(index_elements=["scope"])
            )
        return held

    return op


def resume_held(scope: str, where: Any) -> Operation[list[tuple[str, int, str | None, str | None]]]:
    """Put a scope's held jobs back in the queue state and drop the hold; returns (id, priority, tenant, lane)
    for the caller to enqueue."""

    def op(conn: Connection, deltas: Deltas) -> list[tuple[str, int, str | None, str | None]]:
        rows = conn.execute(
            update(jobs)
            .where(where, jobs.c.state == JobState.BUDGET_EXHAUSTED.value)
            .values(state=JobState.QUEUED.value, error_class=None, error_message=None, updated_at=utcnow())
            .returning(jobs.c.id, jobs.c.priority, jobs.c.api_key_id, jobs.c.batch_id)
        ).all()
        conn.execute(delete(holds).where(holds.c.scope == scope))
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    return op

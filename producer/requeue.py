"""Operator actions on jobs already accepted: re-queue dead letters, cancel.

**Re-queue** (`routeyard requeue`, `POST /admin/requeue`) puts failed, cancelled or held (`budget_exhausted`)
jobs back in the queue, chosen by a `JobFilter` (batch, state, error class, provider and model of the job's
last call, router key, time range, ids). What a re-queued job gets:

- a **new round**: `attempts` and `runs` start again from 0, so `routing.max_attempts` and the poison-run
  limit apply afresh; its deadline is now + `routing.job_deadline_s`; `started_at` is cleared, so an outage is
  waited out for `routing.outage_wait_s` from the new round's first claim; `requeues` counts the rounds.
- **history kept**: every attempt row stays in the ledger. A new round numbers its calls from 1 again, so a
  job's calls are ordered by (`started_at`, `seq`), and "the last call" is the latest by that order.
- **money not reset**: `cost` keeps what every earlier call cost, and the job's `max_cost` still bounds the
  total; a batch's `max_total_cost` and a key's limit count the earlier rounds too.
- **batch counters corrected in the same transaction**: a failed job moving back to queued takes one from
  `n_failed` (a cancelled one from `n_cancelled`); a completed or cancelled batch reopens.
- **routing may change**: `--class`, `--models`, `--provider-ignore` rewrite the stored spec, checked
  against the catalog (and the job's router key) first: if any chosen job's new spec could never be routed,
  nothing is changed.

Idempotent: a job moves back to `queued` in one conditional `UPDATE … WHERE state IN (…) RETURNING`, and only
the rows that moved are enqueued; a job already queued or running is not chosen again, and the queue does
not add an id twice. If this process dies between the two steps, the sweeper enqueues what the store says
is queued.

**Cancel** stops queued, running and held jobs (a running call finishes and is recorded; the job stays
cancelled) and, for a whole batch, marks the batch cancelled.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, bindparam, func, update

from producer.retention import PURGED_KEY
from producer.validate import SpecChecker
from shared.catalog import Catalog
from shared.errors import InputError
from shared.governance import policy_for_key
from shared.keys import get_key
from shared.models import JobSpec, ProviderPreferences
from shared.queue import JobQueue
from shared.store import Store, ops
from shared.store.selection import REQUEUABLE, JobFilter, last_call_columns, select_jobs
from shared.store.writer import Deltas
from shared.tables import Attempt, Batch, BatchState, Job, JobState
from shared.timeutil import utcnow

jobs = Job.__table__  # type: ignore[attr-defined]
attempts = Attempt.__table__  # type: ignore[attr-defined]
batches = Batch.__table__  # type: ignore[attr-defined]

_COUNTER = {JobState.FAILED.value: "failed", JobState.CANCELLED.value: "cancelled"}
PAGE = 1000


# ---------------------------------------------------------------------------------------------- rewrite
@dataclass(frozen=True)
class Rewrite:
    """Routing changes applied to each re-queued job's spec."""

    class_name: str | None = None
    models: tuple[str, ...] | None = None
    provider_ignore: tuple[str, ...] | None = None

    def __bool__(self) -> bool:
        return self.class_name is not None or self.models is not None or self.provider_ignore is not None

    def apply(self, spec: JobSpec) -> JobSpec:
        update_: dict[str, Any] = {}
        if self.class_name is not None:
            update_["class_"] = self.class_name
        if self.models is not None:
            update_["models"], update_["model"] = list(self.models), None
        if self.provider_ignore is not None:
            prefs = spec.provider or ProviderPreferences()
            ignore = sorted({*(prefs.ignore or []), *self.provider_ignore})
            update_["provider"] = prefs.model_copy(update={"ignore": ignore})
        return JobSpec.model_validate(spec.model_copy(update=update_).model_dump(by_alias=True))


class _Checkers:
    """Spec checkers per router key (a key narrows the policy), built on first use."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._by_key: dict[str | None, SpecChecker] = {}

    def get(self, conn: Connection, key_id: str | None) -> SpecChecker:
        checker = self._by_key.get(key_id)
        if checker is None:
            checker = SpecChecker(self.catalog)
            if key_id is not None:
                checker.policy = policy_for_key(self.catalog.config.policy, get_key(key_id)(conn))
            self._by_key[key_id] = checker
        return checker


# ---------------------------------------------------------------------------------------------- requeue
@dataclass
class RequeueReport:
    dry_run: bool
    matched: int = 0
    """Jobs the filter chose (purged ones excluded)."""
    requeued: int = 0
    """Jobs moved back to queued by this call (0 on a dry run)."""
    enqueued: int = 0
    by_state: Counter[str] = field(default_factory=Counter)
    by_batch: Counter[str] = field(default_factory=Counter)
    sample: list[dict[str, Any]] = field(default_factory=list)
    purged: int = 0
    """Matched jobs whose prompt was purged: they cannot run again and were left alone."""
    errors: list[str] = field(default_factory=list)
    """Jobs whose rewritten spec could not be routed (nothing was changed)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "matched": self.matched,
            "requeued": self.requeued,
            "enqueued": self.enqueued,
            "by_state": dict(self.by_state),
            "by_batch": dict(self.by_batch),
            "sample": self.sample,
            "purged": self.purged,
            "errors": self.errors,
        }


def _page(flt: JobFilter, after: str | None, limit: int) -> Any:
    cols = [
        jobs.c.id,
        jobs.c.batch_id,
        jobs.c.state,
        jobs.c.priority,
        jobs.c.api_key_id,
        jobs.c.spec,
        jobs.c.error_class,
        jobs.c.error_message,
        *last_call_columns(),
    ]

    def q(conn: Connection) -> list[Any]:
        stmt = select_jobs(flt, *cols)
        if after is not None:
            stmt = stmt.where(jobs.c.id > after)
        return list(conn.execute(stmt.order_by(jobs.c.id).limit(limit)).mappings())

    return q


def _rewritten(rows: list[Any], rewrite: Rewrite, checkers: _Checkers) -> Any:
    """Query → (new spec JSON per job id, errors of jobs whose new spec could never be routed)."""

    def q(conn: Connection) -> tuple[dict[str, str], list[str]]:
        out: dict[str, str] = {}
        errors: list[str] = []
        for r in rows:
            try:
                spec = rewrite.apply(JobSpec.model_validate_json(r["spec"]))
                out[r["id"]] = checkers.get(conn, r["api_key_id"]).check(spec).to_json()
            except InputError as e:
                errors.append(f"{r['id']}: {e.message}")
            except ValueError as e:
                errors.append(f"{r['id']}: {e}")
        return out, errors

    return q


def _move_back(ids: Sequence[str], states: Sequence[str], deadline: datetime, specs: dict[str, str]) -> Any:
    """The conditional state change, counters and batch reopening, in one transaction."""

    def op(conn: Connection, deltas: Deltas) -> list[Any]:
        now = utcnow()
        moved: list[Any] = []
        for state in states:  # one statement per old state: RETURNING shows new values, the counter needs the old
            rows = conn.execute(
                update(jobs)
                .where(jobs.c.id.in_(list(ids)), jobs.c.state == state)
                .values(
                    state=JobState.QUEUED.value,
                    attempts=0,
                    runs=0,
                    requeues=jobs.c.requeues + 1,
                    started_at=None,
                    finished_at=None,
                    not_before=None,
                    worker_id=None,
                    deadline_at=deadline,
                    error_class=None,
                    error_message=None,
                    updated_at=now,
                )
                .returning(jobs.c.id, jobs.c.batch_id, jobs.c.priority, jobs.c.api_key_id)
            ).all()
            counter = _COUNTER.get(state)
            for r in rows:
                if counter is not None:
                    deltas.add(r.batch_id, **{counter: -1})
            moved += rows
        if specs:
            changed = [
                {"jid": r.id, "spec": specs[r.id], "klass": json.loads(specs[r.id]).get("class")}
                for r in moved
                if r.id in specs
            ]
            if changed:
                stmt = (
                    update(jobs)
                    .where(jobs.c.id == bindparam("jid"))
                    .values(
                        spec=bindparam("spec"),
                        class_name=func.coalesce(bindparam("klass", type_=jobs.c.class_name.type), jobs.c.class_name),
                    )
                )
                conn.execute(stmt, changed)
        reopen = sorted({r.batch_id for r in moved if r.batch_id is not None})
        if reopen:
            conn.execute(
                update(batches)
                .where(
                    batches.c.id.in_(reopen),
                    batches.c.state.in_([BatchState.COMPLETED.value, BatchState.CANCELLED.value]),
                )
                .values(state=BatchState.OPEN.value, finished_at=None, updated_at=now)
            )
        return moved

    return op


async def requeue(
    store: Store,
    queue: JobQueue | None,
    flt: JobFilter,
    *,
    catalog: Catalog,
    rewrite: Rewrite | None = None,
    dry_run: bool = False,
    sample: int = 5,
    page: int = PAGE,
) -> RequeueReport:
    """Re-queue the jobs `flt` matches (see the module docstring). `dry_run`: count and sample, change nothing."""
    report = RequeueReport(dry_run=dry_run)
    rewrite = rewrite if rewrite else None
    checkers = _Checkers(catalog)
    chosen: list[tuple[str, str]] = []  # (id, state), in id order
    specs: dict[str, str] = {}
    after: str | None = None
    while True:
        rows = await store.read(_page(flt, after, page))
        if not rows:
            break
        after = rows[-1]["id"]
        live = []
        for r in rows:
            if PURGED_KEY in json.loads(r["spec"]):
                report.purged += 1
                continue
            live.append(r)
            report.matched += 1
            report.by_state[r["state"]] += 1
            report.by_batch[r["batch_id"] or "-"] += 1
            if len(report.sample) < sample:
                report.sample.append(
                    {
                        "job_id": r["id"],
                        "batch_id": r["batch_id"],
                        "state": r["state"],
                        "error_class": r["error_class"],
                        "provider": r["last_provider"],
                        "model": r["last_model"],
                        "error_message": (r["error_message"] or "")[:200],
                    }
                )
            chosen.append((r["id"], r["state"]))
        if rewrite is not None and live:
            new, errors = await store.read(_rewritten(live, rewrite, checkers))
            specs.update(new)
            report.errors += errors
        if len(rows) < page:
            break
    if dry_run or report.errors or not chosen:
        return report
    if queue is None:
        raise ValueError("a queue is needed to re-queue jobs")
    deadline = utcnow() + timedelta(seconds=catalog.config.routing.job_deadline_s)
    for i in range(0, len(chosen), page):
        chunk = chosen[i : i + page]
        ids = [job_id for job_id, _ in chunk]
        states = sorted({state for _, state in chunk})
        chunk_specs = {j: specs[j] for j in ids if j in specs}
        moved = await store.write_direct(_move_back(ids, states, deadline, chunk_specs))
        report.requeued += len(moved)
        lanes: dict[tuple[int, str | None, str | None], list[str]] = defaultdict(list)
        for r in moved:
            lanes[(r.priority, r.api_key_id, r.batch_id)].append(r.id)
        for (p, tenant, lane), lane_ids in lanes.items():
            report.enqueued += await queue.enqueue(lane_ids, priority=p, tenant=tenant, lane=lane)
    return report


# ---------------------------------------------------------------------------------------------- cancel
async def cancel(store: Store, *, job_ids: Sequence[str] | None = None, batch_id: str | None = None) -> int:
    """Cancel queued, running and held jobs (by id, or a whole batch, which is then marked cancelled).
    Returns how many jobs were cancelled."""
    cancel_op = ops.cancel_jobs(job_ids=list(job_ids) if job_ids is not None else None, batch_id=batch_id)

    def op(conn: Connection, deltas: Deltas) -> int:
        n = cancel_op(conn, deltas)
        if batch_id is not None and n:
            conn.execute(
                update(batches)
                .where(
                    and_(
                        batches.c.id == batch_id,
                        batches.c.state.in_([BatchState.OPEN.value, BatchState.SUBMITTING.value]),
                    )
                )
                .values(state=BatchState.CANCELLED.value, finished_at=utcnow(), updated_at=utcnow())
            )
        return n

    return await store.write_direct(op)


__all__ = ["REQUEUABLE", "JobFilter", "RequeueReport", "Rewrite", "cancel", "requeue", "select_jobs"]

"""Read queries: what pollers, the CLI and reports ask of the store. Each is `fn(conn) -> value`."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, func, select

from shared.store.selection import JobFilter, last_call_columns, select_jobs
from shared.tables import Attempt, Batch, Job, JobState

jobs = Job.__table__  # type: ignore[attr-defined]
attempts = Attempt.__table__  # type: ignore[attr-defined]
batches = Batch.__table__  # type: ignore[attr-defined]

Query = Callable[[Connection], Any]


def batch(batch_id: str) -> Callable[[Connection], dict[str, Any] | None]:
    def q(conn: Connection) -> dict[str, Any] | None:
        row = conn.execute(select(batches).where(batches.c.id == batch_id)).mappings().first()
        if row is None:
            return None
        out = dict(row)
        # queued/running split from the (batch_id, state) index: bounded by the active jobs, not the batch
        active = conn.execute(
            select(jobs.c.state, func.count())
            .where(jobs.c.batch_id == batch_id, jobs.c.state.in_([JobState.QUEUED.value, JobState.RUNNING.value]))
            .group_by(jobs.c.state)
        ).all()
        counts: dict[str, int] = {state: n for state, n in active}
        out["n_queued"] = counts.get(JobState.QUEUED.value, 0)
        out["n_running"] = counts.get(JobState.RUNNING.value, 0)
        return out

    return q


def batch_row(batch_id: str) -> Callable[[Connection], dict[str, Any] | None]:
    """The batch row alone: its counters say how far it is, at the cost of one primary-key read (pollers)."""

    def q(conn: Connection) -> dict[str, Any] | None:
        row = conn.execute(select(batches).where(batches.c.id == batch_id)).mappings().first()
        return None if row is None else dict(row)

    return q


def batch_list(
    *, api_key_id: str | None, all_keys: bool, before_id: str | None = None, limit: int = 20
) -> Callable[[Connection], list[dict[str, Any]]]:
    """Batches newest first (ids are time-ordered), one key's or every key's, keyset-paginated: the page
    after `before_id` costs the same however deep it is."""

    def q(conn: Connection) -> list[dict[str, Any]]:
        stmt = select(batches)
        if not all_keys:
            stmt = stmt.where(batches.c.api_key_id == api_key_id)
        if before_id is not None:
            stmt = stmt.where(batches.c.id < before_id)
        return [dict(r) for r in conn.execute(stmt.order_by(batches.c.id.desc()).limit(limit)).mappings()]

    return q


def job(job_id: str) -> Callable[[Connection], dict[str, Any] | None]:
    def q(conn: Connection) -> dict[str, Any] | None:
        row = conn.execute(select(jobs).where(jobs.c.id == job_id)).mappings().first()
        if row is None:
            return None
        out = dict(row)
        out["attempt_rows"] = [
            dict(a)
            for a in conn.execute(
                # calls in order: a re-queued job numbers its calls from 1 again in each round
                select(attempts).where(attempts.c.job_id == job_id).order_by(attempts.c.started_at, attempts.c.seq)
            ).mappings()
        ]
        return out

    return q


def jobs_by_id(job_ids: list[str]) -> Callable[[Connection], list[dict[str, Any]]]:
    def q(conn: Connection) -> list[dict[str, Any]]:
        rows = conn.execute(select(jobs).where(jobs.c.id.in_(job_ids)).order_by(jobs.c.id)).mappings()
        return [dict(r) for r in rows]

    return q


def job_page(
    batch_id: str, *, after_id: str | None = None, limit: int = 1000, states: list[str] | None = None
) -> Callable[[Connection], list[dict[str, Any]]]:
    """One page of a batch's jobs in id order (keyset pagination: constant cost per page)."""

    def q(conn: Connection) -> list[dict[str, Any]]:
        stmt = select(jobs).where(jobs.c.batch_id == batch_id)
        if after_id is not None:
            stmt = stmt.where(jobs.c.id > after_id)
        if states:
            stmt = stmt.where(jobs.c.state.in_(states))
        return [dict(r) for r in conn.execute(stmt.order_by(jobs.c.id).limit(limit)).mappings()]

    return q


def attempts_for_jobs(job_ids: list[str]) -> Callable[[Connection], dict[str, list[dict[str, Any]]]]:
    def q(conn: Connection) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {j: [] for j in job_ids}
        if not job_ids:
            return out
        rows = conn.execute(
            select(attempts)
            .where(attempts.c.job_id.in_(job_ids))
            .order_by(attempts.c.job_id, attempts.c.started_at, attempts.c.seq)
        ).mappings()
        for r in rows:
            out[r["job_id"]].append(dict(r))
        return out

    return q


def batch_breakdown(batch_id: str) -> Callable[[Connection], list[dict[str, Any]]]:
    """Per (class, model, provider) of the answering endpoint: jobs by outcome, tokens and cost.

    Cost comes from the ledger (every call, including failed and fallback ones) grouped by the job's
    class and the endpoint that was called, so the rows sum to the batch's total."""

    def q(conn: Connection) -> list[dict[str, Any]]:
        rows = conn.execute(
            select(
                jobs.c.class_name,
                attempts.c.model,
                attempts.c.provider,
                func.count().label("calls"),
                func.sum((attempts.c.status == "succeeded").cast(jobs.c.runs.type)).label("served"),
                func.coalesce(func.sum(attempts.c.input_tokens), 0).label("input_tokens"),
                func.coalesce(func.sum(attempts.c.output_tokens), 0).label("output_tokens"),
                func.sum(attempts.c.cost).label("cost"),
                func.sum(((attempts.c.cost.is_(None)) & (attempts.c.status != "started")).cast(jobs.c.runs.type)).label(
                    "unpriced"
                ),
            )
            .select_from(attempts.join(jobs, jobs.c.id == attempts.c.job_id))
            .where(attempts.c.batch_id == batch_id)
            .group_by(jobs.c.class_name, attempts.c.model, attempts.c.provider)
            .order_by(jobs.c.class_name, attempts.c.model, attempts.c.provider)
        ).mappings()
        return [dict(r) for r in rows]

    return q


def spec_of(row: dict[str, Any]) -> dict[str, Any]:
    return json.loads(row["spec"])  # type: ignore[no-any-return]


@dataclass
class FailureGroup:
    error_class: str | None
    provider: str | None
    model: str | None
    count: int = 0
    http_status: Counter[int] = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)
    job_ids: list[str] = field(default_factory=list)


def failures(
    *, batch_id: str | None = None, since: Any = None, samples: int = 3, where: JobFilter | None = None
) -> Callable[[Connection], list[FailureGroup]]:
    """Dead letters: failed jobs grouped by error class and the endpoint of their last call, largest group
    first, with a few sample messages — so "429 from provider X" is visible at a glance. `where` takes the
    same filter as `routeyard requeue` (default: failed jobs, optionally of one batch and since a time)."""
    flt = where or JobFilter(batch_id=batch_id, since=since)

    def q(conn: Connection) -> list[FailureGroup]:
        cols = (jobs.c.id, jobs.c.error_class, jobs.c.error_message, *last_call_columns())
        groups: dict[tuple[Any, ...], FailureGroup] = {}
        for r in conn.execute(select_jobs(flt, *cols)).mappings():
            provider, model = r["last_provider"], r["last_model"]
            g = groups.setdefault((r["error_class"], provider, model), FailureGroup(r["error_class"], provider, model))
            g.count += 1
            if r["http_status"] is not None:
                g.http_status[r["http_status"]] += 1
            if len(g.samples) < samples and r["error_message"] and r["error_message"] not in g.samples:
                g.samples.append(r["error_message"])
            if len(g.job_ids) < samples:
                g.job_ids.append(r["id"])
        return sorted(groups.values(), key=lambda g: -g.count)

    return q

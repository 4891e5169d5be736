"""Read queries: what pollers, the CLI and reports ask of the store. Each is `fn(conn) -> value`."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, func, select

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
                select(attempts).where(attempts.c.job_id == job_id).order_by(attempts.c.seq)
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
            select(attempts).where(attempts.c.job_id.in_(job_ids)).order_by(attempts.c.job_id, attempts.c.seq)
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

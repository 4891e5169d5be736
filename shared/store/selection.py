"""Choosing jobs for operator actions and dead-letter views: one filter (`JobFilter`) shared by
`routeyard requeue`, `routeyard failures` and the admin API, so what `failures` shows is exactly what the
matching `requeue` would take.

A job's **last call** is its latest attempt by (`started_at`, `seq`): `seq` numbers calls within a round and
a re-queued job starts a new round (see `producer.requeue`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, or_, select

from shared.errors import InputError
from shared.tables import Attempt, Job, JobState
from shared.timeutil import parse_when, utcnow

jobs = Job.__table__  # type: ignore[attr-defined]
attempts = Attempt.__table__  # type: ignore[attr-defined]

REQUEUABLE = (JobState.FAILED.value, JobState.CANCELLED.value, JobState.BUDGET_EXHAUSTED.value)
_last = attempts.alias("last")
"""A job's last call, outer-joined by `select_jobs`."""


@dataclass(frozen=True)
class JobFilter:
    """Which jobs an operator action applies to. Every given field must match."""

    states: tuple[str, ...] = (JobState.FAILED.value,)
    batch_id: str | None = None
    error_classes: tuple[str, ...] = ()
    provider: str | None = None
    """Provider of the job's last call."""
    model: str | None = None
    """Model of the job's last call."""
    api_key_id: str | None = None
    since: datetime | None = None
    """Finished (or, held jobs, last touched) at or after this."""
    until: datetime | None = None
    job_ids: tuple[str, ...] = ()

    @classmethod
    def parse(
        cls,
        *,
        states: list[str] | tuple[str, ...] = (),
        batch_id: str | None = None,
        error_classes: list[str] | tuple[str, ...] = (),
        provider: str | None = None,
        model: str | None = None,
        api_key_id: str | None = None,
        since: str | None = None,
        until: str | None = None,
        job_ids: list[str] | tuple[str, ...] | None = None,
        now: datetime | None = None,
    ) -> JobFilter:
        """A filter from what an operator typed (CLI options, query parameters): times as dates, ISO times or
        durations like `7d`; no state means failed jobs. InputError when something does not parse."""
        now = now or utcnow()
        return cls(
            states=tuple(states) or (JobState.FAILED.value,),
            batch_id=batch_id,
            error_classes=tuple(error_classes),
            provider=provider,
            model=model,
            api_key_id=api_key_id,
            since=parse_when(since, now=now) if since else None,
            until=parse_when(until, now=now) if until else None,
            job_ids=tuple(job_ids or ()),
        )

    def __post_init__(self) -> None:
        bad = sorted(set(self.states) - set(REQUEUABLE))
        if bad or not self.states:
            raise InputError(f"state must be among {', '.join(REQUEUABLE)}; got {', '.join(bad) or 'none'}")

    def as_args(self) -> list[str]:
        """The same filter as `routeyard requeue` options (hints in reports)."""
        out: list[str] = []
        for s in self.states:
            out += ["--state", s]
        if self.batch_id:
            out += ["--batch", self.batch_id]
        for e in self.error_classes:
            out += ["--error-class", e]
        for name, value in (("--provider", self.provider), ("--model", self.model), ("--key", self.api_key_id)):
            if value:
                out += [name, value]
        if self.since:
            out += ["--since", self.since.isoformat()]
        if self.until:
            out += ["--until", self.until.isoformat()]
        return out


def last_attempt_id() -> Any:
    """Correlated subquery: the id of a job's latest call (by start time, then position in its round)."""
    a = attempts.alias("la")
    return (
        select(a.c.id)
        .where(a.c.job_id == jobs.c.id)
        .order_by(a.c.started_at.desc(), a.c.seq.desc())
        .limit(1)
        .correlate(jobs)
        .scalar_subquery()
    )


def select_jobs(flt: JobFilter, *columns: Any) -> Select[Any]:
    """SELECT columns (jobs and `last.*` — the job's last call, outer-joined) for the jobs the filter matches."""
    last = _last
    stmt = (
        select(*columns)
        .select_from(jobs.outerjoin(last, last.c.id == last_attempt_id()))
        .where(jobs.c.state.in_(flt.states))
    )
    if flt.batch_id is not None:
        stmt = stmt.where(jobs.c.batch_id == flt.batch_id)
    if flt.error_classes:
        stmt = stmt.where(jobs.c.error_class.in_(flt.error_classes))
    if flt.provider is not None:
        stmt = stmt.where(last.c.provider == flt.provider)
    if flt.model is not None:
        stmt = stmt.where(or_(last.c.model == flt.model, last.c.endpoint == flt.model))
    if flt.api_key_id is not None:
        stmt = stmt.where(jobs.c.api_key_id == flt.api_key_id)
    when = func.coalesce(jobs.c.finished_at, jobs.c.updated_at)
    if flt.since is not None:
        stmt = stmt.where(when >= flt.since)
    if flt.until is not None:
        stmt = stmt.where(when < flt.until)
    if flt.job_ids:
        stmt = stmt.where(jobs.c.id.in_(flt.job_ids))
    return stmt


def last_call_columns() -> list[Any]:
    """The last call's provider and model, for `select_jobs`."""
    return [_last.c.provider.label("last_provider"), _last.c.model.label("last_model"), _last.c.http_status]

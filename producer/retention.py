"""Retention: `routeyard purge --older-than 30d` drops what a finished job no longer needs.

What is dropped and what is kept (jobs finished — succeeded, failed or cancelled — before the cutoff):

- **default (bodies)**: the prompt and the answer go. The spec keeps only its routing fields (class, models,
  provider preferences, max_tokens, priority, custom_id) plus a `_purged` marker with the time; `result` is
  cleared. Kept: the job row (state, class, model, provider, tokens, cost, error class and message), every
  ledger row (`attempts`: endpoint, provider key ref, tokens, cost, fee, latency — what reports and
  invoices are made of) and the batch's aggregates. Reports over the period stay exact to the cent. A
  purged job cannot be re-queued (there is nothing to send).
- **`--delete-jobs`**: the job rows and their ledger rows go too. Batches keep their counters and total
  cost, but reports (`routeyard report`) no longer see those calls: export them first if invoices need
  them.

Jobs still queued, running or held are never touched. `--dry-run` counts without changing anything.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, delete, func, or_, select, update

from shared.store import Store
from shared.store.writer import Deltas
from shared.tables import Attempt, Job, JobState
from shared.timeutil import utcnow

jobs = Job.__table__  # type: ignore[attr-defined]
attempts = Attempt.__table__  # type: ignore[attr-defined]

TERMINAL = (JobState.SUCCEEDED.value, JobState.FAILED.value, JobState.CANCELLED.value)
KEEP_FIELDS = ("custom_id", "class", "model", "models", "provider", "max_tokens", "priority", "max_cost")
PURGED_KEY = "_purged"
PAGE = 1000


@dataclass
class PurgeReport:
    cutoff: datetime
    delete_jobs: bool
    dry_run: bool
    jobs: int = 0
    """Jobs purged (or, on a dry run, that would be)."""
    attempts: int = 0
    """Ledger rows deleted (`--delete-jobs` only)."""
    bytes: int = 0
    """Characters of prompts and answers dropped (bodies), or of whole job rows' specs and results."""

    def to_json(self) -> dict[str, Any]:
        return {
            "cutoff": self.cutoff.isoformat(),
            "delete_jobs": self.delete_jobs,
            "dry_run": self.dry_run,
            "jobs": self.jobs,
            "attempts": self.attempts,
            "bytes": self.bytes,
        }


def stub(spec_json: str, when: datetime) -> str:
    """The spec with its content dropped: routing fields and the purge marker only."""
    spec = json.loads(spec_json)
    kept = {k: spec[k] for k in KEEP_FIELDS if k in spec}
    kept[PURGED_KEY] = when.isoformat()
    return json.dumps(kept, separators=(",", ":"))


def _page(cutoff: datetime, after: str | None, delete_jobs: bool, limit: int) -> Any:
    def q(conn: Connection) -> list[Any]:
        stmt = select(jobs.c.id, jobs.c.spec, func.coalesce(func.length(jobs.c.result), 0).label("result_len")).where(
            jobs.c.state.in_(TERMINAL), jobs.c.finished_at < cutoff
        )
        if not delete_jobs:  # already purged bodies are done: idempotent
            stmt = stmt.where(~jobs.c.spec.contains(f'"{PURGED_KEY}"'))
        if after is not None:
            stmt = stmt.where(jobs.c.id > after)
        return list(conn.execute(stmt.order_by(jobs.c.id).limit(limit)).mappings())

    return q


_STRIP = (
    update(jobs)
    .where(jobs.c.id == bindparam("jid"), or_(*(jobs.c.state == s for s in TERMINAL)))  # still finished
    .values(spec=bindparam("stub"), result=None)
)


def _strip(rows: list[Any], when: datetime) -> Any:
    params = [{"jid": r["id"], "stub": stub(r["spec"], when)} for r in rows]

    def op(conn: Connection, deltas: Deltas) -> None:
        conn.execute(_STRIP, params)

    return op


def _delete(ids: list[str]) -> Any:
    def op(conn: Connection, deltas: Deltas) -> int:
        n = conn.execute(delete(attempts).where(attempts.c.job_id.in_(ids))).rowcount
        conn.execute(delete(jobs).where(jobs.c.id.in_(ids), jobs.c.state.in_(TERMINAL)))
        return int(n)

    return op


def _count_attempts(ids: list[str]) -> Any:
    def q(conn: Connection) -> int:
        return int(conn.execute(select(func.count()).where(attempts.c.job_id.in_(ids))).scalar_one())

    return q


async def purge(
    store: Store, cutoff: datetime, *, delete_jobs: bool = False, dry_run: bool = False, page: int = PAGE
) -> PurgeReport:
    """Purge terminal jobs finished before `cutoff` (see the module docstring)."""
    report = PurgeReport(cutoff=cutoff, delete_jobs=delete_jobs, dry_run=dry_run)
    now = utcnow()
    after: str | None = None
    while True:
        rows = await store.read(_page(cutoff, after, delete_jobs, page))
        if not rows:
            break
        report.jobs += len(rows)
        report.bytes += sum(len(r["spec"]) + int(r["result_len"]) for r in rows)
        ids = [r["id"] for r in rows]
        if delete_jobs:
            if dry_run:
                report.attempts += await store.read(_count_attempts(ids))
            else:
                report.attempts += await store.write_direct(_delete(ids))
        elif not dry_run:
            await store.write_direct(_strip(rows, now))
        after = ids[-1]
        if len(rows) < page:
            break
    return report


__all__ = ["PURGED_KEY", "PurgeReport", "purge", "stub"]

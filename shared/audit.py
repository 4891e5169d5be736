"""The audit of governance denials: what policy kept from a key's jobs, and what submissions were refused.

Rows are counters, keyed by (UTC day, router key, source, endpoint, code): a sensitive 100k-job batch that
excludes the same five endpoints from every job writes five rows for the day, whose `occurrences` add up to
500k. The worker does not write per job either:

    buffer = DenialBuffer()
    buffer.add(job.api_key_id, plan.excluded, batch_id=job.batch_id, job_id=job.id)   # per job, in memory
    await buffer.flush(store)                       # every few seconds: one upsert per distinct row

`record_refusal(store, key_id, code, reason)` notes a refused submission the same way (source
`submission`). `routeyard audit` reads them back (`audit_rows`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Protocol

from sqlalchemy import Connection, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from shared.store import Store
from shared.store.queries import Query
from shared.store.writer import Deltas, Operation
from shared.tables_keys import PolicyDenial, RouterKey
from shared.timeutil import utcnow

denials = PolicyDenial.__table__  # type: ignore[attr-defined]
api_keys = RouterKey.__table__  # type: ignore[attr-defined]

GOVERNANCE_CODES: frozenset[str] = frozenset({"policy", "data_policy"})
"""Router exclusion kinds that are governance (the organisation's or the key's policy), as opposed to the
job's own preferences, prices, context windows or passing health: the ones worth auditing."""
_KEY_COLUMNS = ("day", "api_key_id", "source", "endpoint", "code")


class ExclusionLike(Protocol):
    """`worker.router.Exclusion`, without importing the worker."""

    @property
    def why(self) -> Any: ...

    @property
    def reason(self) -> str: ...


@dataclass(frozen=True, slots=True)
class DenialKey:
    day: date
    api_key_id: str
    source: str
    endpoint: str
    code: str


@dataclass(slots=True)
class DenialCount:
    key: DenialKey
    reason: str
    occurrences: int
    first_seen: datetime
    last_seen: datetime
    last_batch_id: str | None = None
    last_job_id: str | None = None

    def row(self) -> dict[str, Any]:
        return {
            "day": self.key.day,
            "api_key_id": self.key.api_key_id,
            "source": self.key.source,
            "endpoint": self.key.endpoint,
            "code": self.key.code,
            "reason": self.reason[:2000],
            "occurrences": self.occurrences,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "last_batch_id": self.last_batch_id,
            "last_job_id": self.last_job_id,
        }


class DenialBuffer:
    """Denials counted in memory between flushes. Not thread-safe; one per event loop."""

    def __init__(self, codes: Collection[str] = GOVERNANCE_CODES, now: Any = utcnow) -> None:
        self.codes = frozenset(codes)
        self._now = now
        self._pending: dict[DenialKey, DenialCount] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def add(
        self,
        api_key_id: str | None,
        excluded: Mapping[str, ExclusionLike],
        *,
        batch_id: str | None = None,
        job_id: str | None = None,
    ) -> int:
        """Count a plan's governance exclusions (`plan.excluded`). Returns how many were counted."""
        n = 0
        for endpoint, exclusion in excluded.items():
            code = str(getattr(exclusion.why, "value", exclusion.why))
            if code in self.codes:
                self.add_one(api_key_id, endpoint, code, exclusion.reason, batch_id=batch_id, job_id=job_id)
                n += 1
        return n

    def add_one(
        self,
        api_key_id: str | None,
        endpoint: str,
        code: str,
        reason: str,
        *,
        source: str = "routing",
        n: int = 1,
        batch_id: str | None = None,
        job_id: str | None = None,
    ) -> None:
        now = self._now()
        key = DenialKey(now.date(), (api_key_id or "")[:40], source, endpoint[:160], code[:40])
        entry = self._pending.get(key)
        if entry is None:
            self._pending[key] = DenialCount(key, reason, n, now, now, batch_id, job_id)
            return
        entry.occurrences += n
        entry.last_seen = now
        entry.reason = reason
        entry.last_batch_id = batch_id or entry.last_batch_id
        entry.last_job_id = job_id or entry.last_job_id

    def drain(self) -> list[DenialCount]:
        out = list(self._pending.values())
        self._pending = {}
        return out

    async def flush(self, store: Store) -> int:
        """Write what was counted (through the group-commit writer); returns the rows upserted."""
        counts = self.drain()
        if not counts:
            return 0
        return await store.write(note_denials(counts))


def note_denials(counts: Sequence[DenialCount]) -> Operation[int]:
    """Upsert denial counters: one statement per distinct row, in key order (so two workers' transactions
    lock rows in the same order and cannot deadlock on PostgreSQL)."""
    rows = [c.row() for c in sorted(counts, key=lambda c: _sort_key(c.key))]

    def op(conn: Connection, deltas: Deltas) -> int:
        if not rows:
            return 0
        dialect = conn.dialect.name
        if dialect in ("postgresql", "sqlite"):
            ins = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(denials)
            stmt = ins.on_conflict_do_update(
                index_elements=list(_KEY_COLUMNS),
                set_={
                    "occurrences": denials.c.occurrences + ins.excluded.occurrences,
                    "last_seen": ins.excluded.last_seen,
                    "reason": ins.excluded.reason,
                    "last_batch_id": func.coalesce(ins.excluded.last_batch_id, denials.c.last_batch_id),
                    "last_job_id": func.coalesce(ins.excluded.last_job_id, denials.c.last_job_id),
                },
            )
            for row in rows:
                conn.execute(stmt, row)
            return len(rows)
        for row in rows:  # other databases: update, else insert
            where = [denials.c[c] == row[c] for c in _KEY_COLUMNS]
            bumped = conn.execute(
                update(denials)
                .where(*where)
                .values(
                    occurrences=denials.c.occurrences + row["occurrences"],
                    last_seen=row["last_seen"],
                    reason=row["reason"],
                )
            ).rowcount
            if not bumped:
                conn.execute(denials.insert(), row)
        return len(rows)

    return op


def _sort_key(k: DenialKey) -> tuple[str, ...]:
    return (k.day.isoformat(), k.api_key_id, k.source, k.endpoint, k.code)


async def record_refusal(
    store: Store,
    api_key_id: str | None,
    code: str,
    reason: str,
    *,
    n: int = 1,
    batch_id: str | None = None,
    now: datetime | None = None,
) -> None:
    """Note a refused submission (or `n` refused lines of one submission with the same code)."""
    buf = DenialBuffer(codes=(), now=lambda: now or utcnow())
    buf.add_one(api_key_id, "", code, reason, source="submission", n=n, batch_id=batch_id)
    await store.write_direct(note_denials(buf.drain()))


def audit_rows(
    *,
    since: date | None = None,
    until: date | None = None,
    key_id: str | None = None,
    team: str | None = None,
    code: str | None = None,
    source: str | None = None,
    endpoint: str | None = None,
    limit: int = 200,
) -> Query:
    """Query → list of denial rows (dicts, with the key's name and team), newest day first, then most
    frequent. `until` is inclusive."""

    def q(conn: Connection) -> list[dict[str, Any]]:
        stmt = select(denials, api_keys.c.name.label("key_name"), api_keys.c.team.label("team")).select_from(
            denials.outerjoin(api_keys, api_keys.c.id == denials.c.api_key_id)
        )
        filters: Iterable[Any] = [
            f
            for f in (
                None if since is None else denials.c.day >= since,
                None if until is None else denials.c.day <= until,
                None if key_id is None else denials.c.api_key_id == key_id,
                None if team is None else api_keys.c.team == team,
                None if code is None else denials.c.code == code,
                None if source is None else denials.c.source == source,
                None if endpoint is None else denials.c.endpoint == endpoint,
            )
            if f is not None
        ]
        stmt = stmt.where(*filters).order_by(denials.c.day.desc(), denials.c.occurrences.desc(), denials.c.id)
        return [dict(r) for r in conn.execute(stmt.limit(limit)).mappings()]

    return q

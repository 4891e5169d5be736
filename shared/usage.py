"""Usage attribution: spend, tokens, calls and jobs per router key, team, project or environment over a
period, from the ledger (`attempts`) and the jobs table, grouped by the key's attributes as they were when
each job was submitted and each call made (moving a key to another team later does not move its history).

    usage_by(by, since, until=None, team=None) -> query → list[UsageRow]

`charged` is what routeyard charged in credits (pooled-key calls plus BYOK fees); `byok_cost` is what the
teams' own provider keys were billed upstream. Calls of unknown price are counted in `unpriced_calls` and
left out of the sums, never counted as $0.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, get_args

from sqlalchemy import Connection, func, select

from shared.spend import ledger_aggregates
from shared.store.queries import Query
from shared.tables import Attempt, Job
from shared.tables_keys import RouterKey

attempts = Attempt.__table__  # type: ignore[attr-defined]
jobs = Job.__table__  # type: ignore[attr-defined]
api_keys = RouterKey.__table__  # type: ignore[attr-defined]

Dimension = Literal["key", "team", "project", "environment"]
DIMENSIONS: tuple[str, ...] = get_args(Dimension)


@dataclass(frozen=True, slots=True)
class UsageRow:
    group: str | None
    """The key id, team, project or environment; None for calls with no key (or no team, project)."""
    calls: int
    jobs: int
    input_tokens: int
    output_tokens: int
    credits_cost: Decimal
    fees: Decimal
    byok_cost: Decimal
    unpriced_calls: int
    in_flight: Decimal

    @property
    def charged(self) -> Decimal:
        return self.credits_cost + self.fees


def _group_column(by: str, source: Any) -> Any:
    if by not in DIMENSIONS:
        raise ValueError(f"usage can be grouped by {', '.join(DIMENSIONS)}, not {by!r}")
    return source.c.api_key_id if by == "key" else source.c[by]


def usage_by(by: Dimension | str, since: datetime, until: datetime | None = None, *, team: str | None = None) -> Query:
    """Query → list[UsageRow], largest charge first."""

    def q(conn: Connection) -> list[UsageRow]:
        group = _group_column(by, attempts).label("grp")
        stmt = (
            select(group, *ledger_aggregates(api_keys.c.include_byok_in_limit))
            .select_from(attempts.outerjoin(api_keys, api_keys.c.id == attempts.c.api_key_id))
            .where(attempts.c.started_at >= since)
            .group_by(group)
        )
        jgroup = _group_column(by, jobs).label("grp")
        jstmt = (
            select(jgroup, func.count().label("n")).select_from(jobs).where(jobs.c.created_at >= since).group_by(jgroup)
        )
        if until is not None:
            stmt = stmt.where(attempts.c.started_at < until)
            jstmt = jstmt.where(jobs.c.created_at < until)
        if team is not None:
            stmt = stmt.where(attempts.c.team == team)
            jstmt = jstmt.where(jobs.c.team == team)
        job_counts: dict[str | None, int] = {g: int(n) for g, n in conn.execute(jstmt).all()}
        rows: list[UsageRow] = []
        for r in conn.execute(stmt).mappings():
            rows.append(
                UsageRow(
                    group=r["grp"],
                    calls=int(r["calls"]),
                    jobs=job_counts.pop(r["grp"], 0),
                    input_tokens=int(r["input_tokens"]),
                    output_tokens=int(r["output_tokens"]),
                    credits_cost=r["credits_cost"] or Decimal(0),
                    fees=r["fees"] or Decimal(0),
                    byok_cost=r["byok_cost"] or Decimal(0),
                    unpriced_calls=int(r["unpriced_calls"]),
                    in_flight=r["in_flight"] or Decimal(0),
                )
            )
        zero = Decimal(0)
        for g, n in job_counts.items():  # jobs submitted in the period that made no call yet
            rows.append(UsageRow(g, 0, n, 0, 0, zero, zero, zero, 0, zero))
        return sorted(rows, key=lambda u: (-u.charged, -u.calls, u.group or ""))

    return q

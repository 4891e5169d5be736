"""Usage reports from the ledger (`attempts`): who spent what, on which models and providers, day by day —
and a reconciliation view per provider key to check against the providers' invoices.

    usage_report(by, since, until, where) -> query → Report        (`routeyard report`, `/admin/reports/usage`)
    reconciliation(since, until, provider) -> query → list[ReconRow] (`routeyard report --reconcile`)
    activity(since, until, key_id) -> query → list[dict]             (OpenRouter's `/api/v1/activity` shape)

Conventions (the same as `shared.spend` and `shared.usage`, whose aggregate columns are reused):
- money comes from the ledger's nano-dollar integers summed in SQL, so totals are exact — a report's total
  equals the ledger's sum to the nano-dollar, not only to the cent;
- `credits` is the cost of calls on pooled keys (an `abandoned` call at its worst-case reservation: the
  provider may have billed it), `byok` what teams' own provider keys were billed upstream, `fees` the
  platform fee on BYOK calls; a call of unknown price is counted in `unpriced_calls`, never as $0;
- calls still in flight are left out of the sums and shown as `in_flight` (their reservations);
- a call belongs to the day (UTC) it started, and to the team, project and environment its router key had
  when it was made (moving a key later does not move its history); `class` is the job's class;
- latency percentiles are over answered calls; failure rate is failed calls over finished calls (abandoned
  calls count as failed: nobody got their answer).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, get_args

from sqlalchemy import Connection, and_, case, func, select, type_coerce
from sqlalchemy.sql.elements import ColumnElement

from shared.money import Money
from shared.spend import ledger_aggregates
from shared.tables import Attempt, AttemptStatus, Job

attempts = Attempt.__table__  # type: ignore[attr-defined]
jobs = Job.__table__  # type: ignore[attr-defined]

Dimension = Literal[
    "key", "team", "project", "environment", "class", "model", "provider", "endpoint", "key_ref", "batch", "day"
]
DIMENSIONS: tuple[str, ...] = get_args(Dimension)
_ZERO = Decimal(0)
_S = AttemptStatus


def day_of(column: Any, dialect: str) -> ColumnElement[str]:
    """The UTC day (YYYY-MM-DD) of a timestamp column, in SQL."""
    if dialect == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD")
    return func.substr(column, 1, 10)  # SQLite keeps naive UTC as 'YYYY-MM-DD HH:MM:SS…'


def _dimension(name: str, dialect: str) -> Any:
    c = attempts.c
    columns: dict[str, Any] = {
        "key": c.api_key_id,
        "team": c.team,
        "project": c.project,
        "environment": c.environment,
        "class": jobs.c.class_name,
        "model": c.model,
        "provider": c.provider,
        "endpoint": c.endpoint,
        "key_ref": c.key_ref,
        "batch": c.batch_id,
    }
    if name == "day":
        return day_of(c.started_at, dialect)
    if name not in columns:
        raise ValueError(f"reports group by {', '.join(DIMENSIONS)}, not {name!r}")
    return columns[name]


@dataclass(frozen=True)
class Where:
    """Filters on the ledger rows a report covers."""

    key: str | None = None
    team: str | None = None
    project: str | None = None
    environment: str | None = None
    provider: str | None = None
    model: str | None = None
    batch: str | None = None
    class_name: str | None = None

    def clauses(self) -> list[Any]:
        out: list[Any] = []
        pairs = [
            (attempts.c.api_key_id, self.key),
            (attempts.c.team, self.team),
            (attempts.c.project, self.project),
            (attempts.c.environment, self.environment),
            (attempts.c.provider, self.provider),
            (attempts.c.model, self.model),
            (attempts.c.batch_id, self.batch),
            (jobs.c.class_name, self.class_name),
        ]
        for column, value in pairs:
            if value is not None:
                out.append(column == value)
        return out


def _count(cond: Any) -> Any:
    return func.coalesce(func.sum(case((cond, 1), else_=0)), 0)


def _source() -> Any:
    return attempts.join(jobs, jobs.c.id == attempts.c.job_id)


def _window(since: datetime | None, until: datetime | None) -> list[Any]:
    out = []
    if since is not None:
        out.append(attempts.c.started_at >= since)
    if until is not None:
        out.append(attempts.c.started_at < until)
    return out


@dataclass
class ReportRow:
    group: dict[str, str | None]
    jobs: int = 0
    calls: int = 0
    succeeded: int = 0
    failed: int = 0
    abandoned: int = 0
    in_flight_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    credits: Decimal = _ZERO
    byok: Decimal = _ZERO
    fees: Decimal = _ZERO
    in_flight: Decimal = _ZERO
    unpriced_calls: int = 0
    p50_ms: int | None = None
    p95_ms: int | None = None

    @property
    def charged(self) -> Decimal:
        """What routeyard charged in credits: pooled-key calls plus BYOK fees."""
        return self.credits + self.fees

    @property
    def total(self) -> Decimal:
        """Everything the calls cost, whoever was billed: credits + BYOK upstream + fees."""
        return self.credits + self.byok + self.fees

    @property
    def failure_rate(self) -> float | None:
        finished = self.succeeded + self.failed + self.abandoned
        return (self.failed + self.abandoned) / finished if finished else None

    def to_json(self) -> dict[str, Any]:
        """Money as decimal strings (exact); `null` percentiles and rates where nothing was measured."""
        return {
            **self.group,
            "jobs": self.jobs,
            "calls": self.calls,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "abandoned": self.abandoned,
            "in_flight_calls": self.in_flight_calls,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "credits": str(self.credits),
            "byok": str(self.byok),
            "fees": str(self.fees),
            "charged": str(self.charged),
            "total": str(self.total),
            "in_flight": str(self.in_flight),
            "unpriced_calls": self.unpriced_calls,
            "cost_complete": self.unpriced_calls == 0,
            "failure_rate": None if self.failure_rate is None else round(self.failure_rate, 6),
            "p50_ms": self.p50_ms,
            "p95_ms": self.p95_ms,
        }


@dataclass
class Report:
    by: tuple[str, ...]
    since: datetime | None
    until: datetime | None
    rows: list[ReportRow] = field(default_factory=list)
    totals: ReportRow = field(default_factory=lambda: ReportRow(group={}))

    def to_json(self) -> dict[str, Any]:
        return {
            "by": list(self.by),
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "rows": [r.to_json() for r in self.rows],
            "totals": self.totals.to_json(),
        }


def percentile(sorted_values: list[int], p: float) -> int | None:
    """Nearest-rank percentile of sorted values (None for none)."""
    if not sorted_values:
        return None
    rank = max(1, -(-len(sorted_values) * p // 100))  # ceil(n * p / 100)
    return sorted_values[int(rank) - 1]


def usage_report(
    by: tuple[str, ...] | list[str],
    since: datetime | None = None,
    until: datetime | None = None,
    where: Where | None = None,
) -> Any:
    """Query → `Report`: one row per distinct value of the `by` dimensions (largest total first) and the
    totals. Rows and totals come from the same aggregates, so they agree with each other and the ledger."""
    by = tuple(by)
    where = where or Where()

    def q(conn: Connection) -> Report:
        dialect = conn.dialect.name
        groups = [_dimension(d, dialect).label(f"g_{d}") for d in by]
        c = attempts.c
        filters = [*_window(since, until), *where.clauses()]
        stmt = (
            select(
                *groups,
                *ledger_aggregates(True),
                func.count(func.distinct(c.job_id)).label("jobs"),
                _count(c.status == _S.SUCCEEDED.value).label("succeeded"),
                _count(c.status == _S.FAILED.value).label("failed"),
                _count(c.status == _S.ABANDONED.value).label("abandoned"),
                _count(c.status == _S.STARTED.value).label("in_flight_calls"),
            )
            .select_from(_source())
            .where(*filters)
        )
        if groups:
            stmt = stmt.group_by(*groups)
        rows: dict[tuple[Any, ...], ReportRow] = {}
        for r in conn.execute(stmt).mappings():
            key = tuple(r[f"g_{d}"] for d in by)
            rows[key] = ReportRow(
                group={d: r[f"g_{d}"] for d in by},
                jobs=int(r["jobs"]),
                calls=int(r["calls"]),
                succeeded=int(r["succeeded"]),
                failed=int(r["failed"]),
                abandoned=int(r["abandoned"]),
                in_flight_calls=int(r["in_flight_calls"]),
                input_tokens=int(r["input_tokens"]),
                output_tokens=int(r["output_tokens"]),
                credits=r["credits_cost"] or _ZERO,
                byok=r["byok_cost"] or _ZERO,
                fees=r["fees"] or _ZERO,
                in_flight=r["in_flight"] or _ZERO,
                unpriced_calls=int(r["unpriced_calls"]),
            )
        # latency percentiles over answered calls, computed here (SQLite has no percentile function)
        lat = (
            select(*groups, c.latency_ms)
            .select_from(_source())
            .where(*filters, c.status == _S.SUCCEEDED.value, c.latency_ms.is_not(None))
        )
        latencies: dict[tuple[Any, ...], list[int]] = defaultdict(list)
        everything: list[int] = []
        for row in conn.execute(lat):
            value = int(row[-1])
            latencies[tuple(row[:-1])].append(value)
            everything.append(value)
        for key, values in latencies.items():
            values.sort()
            if key in rows:
                rows[key].p50_ms, rows[key].p95_ms = percentile(values, 50), percentile(values, 95)
        everything.sort()
        report = Report(by=by, since=since, until=until)
        report.rows = sorted(rows.values(), key=lambda x: (-x.total, -x.calls, [str(v) for v in x.group.values()]))
        if "day" in by:  # time series read in time order
            report.rows.sort(key=lambda x: str(x.group["day"]))
        report.totals = _sum_rows(report.rows)
        # jobs are distinct per group: the total counts each job once
        report.totals.jobs = int(
            conn.execute(
                select(func.count(func.distinct(c.job_id))).select_from(_source()).where(*filters)
            ).scalar_one()
        )
        report.totals.p50_ms, report.totals.p95_ms = percentile(everything, 50), percentile(everything, 95)
        return report

    return q


def _sum_rows(rows: list[ReportRow]) -> ReportRow:
    t = ReportRow(group={})
    for r in rows:
        t.calls += r.calls
        t.succeeded += r.succeeded
        t.failed += r.failed
        t.abandoned += r.abandoned
        t.in_flight_calls += r.in_flight_calls
        t.input_tokens += r.input_tokens
        t.output_tokens += r.output_tokens
        t.credits += r.credits
        t.byok += r.byok
        t.fees += r.fees
        t.in_flight += r.in_flight
        t.unpriced_calls += r.unpriced_calls
    return t


@dataclass(frozen=True)
class LedgerTotals:
    calls: int
    cost: Decimal
    """Sum of `attempts.cost` over finished calls (credits and BYOK upstream; abandoned at their estimate)."""
    fees: Decimal
    unpriced_calls: int


def ledger_totals(since: datetime | None = None, until: datetime | None = None) -> Any:
    """Query → `LedgerTotals`: the plain sums over the ledger, to check reports against."""

    def q(conn: Connection) -> LedgerTotals:
        c = attempts.c
        done = c.status != _S.STARTED.value
        row = conn.execute(
            select(
                func.count(),
                type_coerce(func.coalesce(func.sum(case((done, c.cost), else_=None)), 0), Money()),
                type_coerce(func.coalesce(func.sum(case((done, c.fee), else_=None)), 0), Money()),
                _count(and_(done, c.cost.is_(None))),
            ).where(*_window(since, until))
        ).one()
        return LedgerTotals(int(row[0]), row[1] or _ZERO, row[2] or _ZERO, int(row[3]))

    return q


# ---------------------------------------------------------------------------------------------- invoices
@dataclass
class ReconRow:
    """One provider key's day, as the provider should have billed it."""

    provider: str
    key_ref: str | None
    day: str
    billed_calls: int = 0
    """Answered calls: what the provider's invoice lists."""
    input_tokens: int = 0
    output_tokens: int = 0
    cost: Decimal = _ZERO
    """Measured cost of answered calls (list price times the tokens the provider reported)."""
    unpriced_calls: int = 0
    failed_calls: int = 0
    """Calls answered with an error: providers do not bill them (cost 0)."""
    abandoned_calls: int = 0
    """Calls cut off by a dying worker: maybe billed, maybe not; shown at their worst-case estimate."""
    abandoned_estimate: Decimal = _ZERO
    abandoned_unpriced: int = 0
    in_flight_calls: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "key_ref": self.key_ref,
            "day": self.day,
            "billed_calls": self.billed_calls,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost": str(self.cost),
            "unpriced_calls": self.unpriced_calls,
            "failed_calls": self.failed_calls,
            "abandoned_calls": self.abandoned_calls,
            "abandoned_estimate": str(self.abandoned_estimate),
            "abandoned_unpriced": self.abandoned_unpriced,
            "in_flight_calls": self.in_flight_calls,
        }


def reconciliation(since: datetime | None = None, until: datetime | None = None, provider: str | None = None) -> Any:
    """Query → list[ReconRow] per (provider, provider key, day), in that order."""

    def q(conn: Connection) -> list[ReconRow]:
        c = attempts.c
        day = day_of(c.started_at, conn.dialect.name).label("day")
        ok = c.status == _S.SUCCEEDED.value
        gone = c.status == _S.ABANDONED.value
        # an abandoned call answered after all is `succeeded` again, with its real cost: it counts as billed

        def money(expr: Any) -> Any:
            return type_coerce(func.coalesce(func.sum(expr), 0), Money())

        stmt = (
            select(
                c.provider,
                c.key_ref,
                day,
                _count(ok).label("billed"),
                func.coalesce(func.sum(case((ok, c.input_tokens), else_=0)), 0).label("inp"),
                func.coalesce(func.sum(case((ok, c.output_tokens), else_=0)), 0).label("out"),
                money(case((ok, c.cost), else_=None)).label("cost"),
                _count(and_(ok, c.cost.is_(None))).label("unpriced"),
                _count(c.status == _S.FAILED.value).label("failed"),
                _count(gone).label("abandoned"),
                money(case((gone, c.cost), else_=None)).label("abandoned_cost"),
                _count(and_(gone, c.cost.is_(None))).label("abandoned_unpriced"),
                _count(c.status == _S.STARTED.value).label("in_flight"),
            )
            .where(*_window(since, until), *([c.provider == provider] if provider else []))
            .group_by(c.provider, c.key_ref, day)
            .order_by(c.provider, c.key_ref, day)
        )
        return [
            ReconRow(
                provider=r["provider"],
                key_ref=r["key_ref"],
                day=r["day"],
                billed_calls=int(r["billed"]),
                input_tokens=int(r["inp"]),
                output_tokens=int(r["out"]),
                cost=r["cost"] or _ZERO,
                unpriced_calls=int(r["unpriced"]),
                failed_calls=int(r["failed"]),
                abandoned_calls=int(r["abandoned"]),
                abandoned_estimate=r["abandoned_cost"] or _ZERO,
                abandoned_unpriced=int(r["abandoned_unpriced"]),
                in_flight_calls=int(r["in_flight"]),
            )
            for r in conn.execute(stmt).mappings()
        ]

    return q


# ---------------------------------------------------------------------------------------------- activity
def activity(since: datetime, until: datetime, key_id: str | None = None) -> Any:
    """Query → OpenRouter's activity items: one per (day, model, endpoint), as `GET /api/v1/activity` returns
    them. `usage` is what was spent in credits (pooled calls and BYOK fees), `byok_usage_inference` what BYOK
    keys were billed upstream — JSON numbers, as OpenRouter sends them (the exact decimal strings are in
    `usage_decimal` and `byok_usage_decimal`); `usage` is null when some call's price is unknown and nothing
    else was. routeyard does not count reasoning tokens apart: `reasoning_tokens` is null."""
    inner = usage_report(("day", "model", "endpoint", "provider"), since, until, Where(key=key_id))

    def q(conn: Connection) -> list[dict[str, Any]]:
        report: Report = inner(conn)
        items = []
        for r in report.rows:
            unknown_only = r.unpriced_calls > 0 and r.charged == 0 and r.byok == 0
            items.append(
                {
                    "date": r.group["day"],
                    "model": r.group["model"],
                    "model_permaslug": r.group["model"],
                    "endpoint_id": r.group["endpoint"],
                    "provider_name": r.group["provider"],
                    "usage": None if unknown_only else float(r.charged),
                    "byok_usage_inference": float(r.byok),
                    "requests": r.calls,
                    "prompt_tokens": r.input_tokens,
                    "completion_tokens": r.output_tokens,
                    "reasoning_tokens": None,
                    "usage_decimal": str(r.charged),
                    "byok_usage_decimal": str(r.byok),
                    "unpriced_requests": r.unpriced_calls,
                }
            )
        items.sort(key=lambda i: (i["date"], i["model"], i["endpoint_id"]))
        return items

    return q


__all__ = [
    "DIMENSIONS",
    "LedgerTotals",
    "ReconRow",
    "Report",
    "ReportRow",
    "Where",
    "activity",
    "day_of",
    "ledger_totals",
    "percentile",
    "reconciliation",
    "usage_report",
]

"""What a router key has spent, from the ledger — the record that budget counters are checked against and,
when Redis has lost them, rebuilt from.

What counts against a key's limit (OpenRouter's rules):
- calls on pooled keys (`billed_to = credits`): their cost — real, or the worst-case reservation of an
  `abandoned` call (the provider may have billed it);
- calls on the team's own provider keys (`billed_to = byok`): the platform fee (`fee`, credits), and their
  upstream cost only when the key says `include_byok_in_limit`;
- a call whose price is unknown counts as *unknown*: `unpriced_calls` says how many, never $0.

Calls still in flight (`started`) are reported apart as `in_flight` (their reservations): a rebuilt budget
counter should start at `spent + in_flight`, so a call the lost counter had reserved stays reserved.

    spend(key_id, since, until=None, include_byok=False) -> query → Spend
    key_budget(key_id, now) -> query → KeyBudget | None        (the seam for the worker's Redis budgets)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, and_, case, func, or_, select, type_coerce

from shared.keys import ApiKey, get_key
from shared.money import Money
from shared.periods import period_bounds
from shared.store.queries import Query
from shared.tables import Attempt, AttemptStatus, Job
from shared.timeutil import utcnow

attempts = Attempt.__table__  # type: ignore[attr-defined]
jobs = Job.__table__  # type: ignore[attr-defined]
_STARTED = AttemptStatus.STARTED.value
_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Spend:
    since: datetime
    until: datetime | None
    include_byok: bool
    credits_cost: Decimal
    """Known cost of finished calls on pooled keys (abandoned calls at their reservation)."""
    fees: Decimal
    """Platform fees on BYOK calls (credits)."""
    byok_cost: Decimal
    """Known upstream cost of finished BYOK calls (the team's provider bills it)."""
    in_flight: Decimal
    """Reservations of calls not answered yet that count against the limit."""
    unpriced_calls: int
    """Calls that count against the limit but whose price is unknown."""
    calls: int
    input_tokens: int
    output_tokens: int
    jobs: int
    """Jobs submitted with the key in the period."""

    @property
    def spent(self) -> Decimal:
        """What counts against the limit, known amounts only (see `unpriced_calls`)."""
        return self.credits_cost + self.fees + (self.byok_cost if self.include_byok else _ZERO)

    @property
    def complete(self) -> bool:
        return self.unpriced_calls == 0


def _m(expr: Any) -> Any:
    return type_coerce(expr, Money())


def _count(cond: Any) -> Any:
    return func.coalesce(func.sum(case((cond, 1), else_=0)), 0)


def _counted(include_byok: bool | Any) -> Any:
    """Rows whose cost counts against a limit; `include_byok` is a bool or a column (usage reports)."""
    credits = attempts.c.billed_to == "credits"
    byok = attempts.c.billed_to == "byok"
    if isinstance(include_byok, bool):
        return or_(credits, byok) if include_byok else credits
    return or_(credits, and_(byok, include_byok))


def ledger_aggregates(include_byok: bool | Any) -> list[Any]:
    """Columns over `attempts` shared by per-key spend and usage reports."""
    c = attempts.c
    done = c.status != _STARTED
    counted = _counted(include_byok)
    return [
        _m(func.coalesce(func.sum(case((and_(done, c.billed_to == "credits"), c.cost), else_=None)), 0)).label(
            "credits_cost"
        ),
        _m(func.coalesce(func.sum(case((done, c.fee), else_=None)), 0)).label("fees"),
        _m(func.coalesce(func.sum(case((and_(done, c.billed_to == "byok"), c.cost), else_=None)), 0)).label(
            "byok_cost"
        ),
        _m(func.coalesce(func.sum(case((and_(~done, counted), c.reserved_cost), else_=None)), 0)).label("in_flight"),
        # unknown amounts: a finished call of unknown price (a BYOK one too: its fee is a share of that price)
        # and an in-flight call without a reservation
        _count(or_(and_(done, c.cost.is_(None)), and_(~done, counted, c.reserved_cost.is_(None)))).label(
            "unpriced_calls"
        ),
        func.count().label("calls"),
        func.coalesce(func.sum(c.input_tokens), 0).label("input_tokens"),
        func.coalesce(func.sum(c.output_tokens), 0).label("output_tokens"),
    ]


def spend(key_id: str, since: datetime, until: datetime | None = None, *, include_byok: bool = False) -> Query:
    """Query → `Spend` of one router key over [since, until). One index range scan on
    (api_key_id, started_at) and one on the key's jobs."""

    def q(conn: Connection) -> Spend:
        where = [attempts.c.api_key_id == key_id, attempts.c.started_at >= since]
        job_where = [jobs.c.api_key_id == key_id, jobs.c.created_at >= since]
        if until is not None:
            where.append(attempts.c.started_at < until)
            job_where.append(jobs.c.created_at < until)
        row = conn.execute(select(*ledger_aggregates(include_byok)).where(*where)).mappings().one()
        n_jobs = conn.execute(select(func.count()).select_from(jobs).where(*job_where)).scalar_one()
        return Spend(
            since=since,
            until=until,
            include_byok=include_byok,
            credits_cost=row["credits_cost"] or _ZERO,
            fees=row["fees"] or _ZERO,
            byok_cost=row["byok_cost"] or _ZERO,
            in_flight=row["in_flight"] or _ZERO,
            unpriced_calls=int(row["unpriced_calls"]),
            calls=int(row["calls"]),
            input_tokens=int(row["input_tokens"]),
            output_tokens=int(row["output_tokens"]),
            jobs=int(n_jobs),
        )

    return q


@dataclass(frozen=True, slots=True)
class KeyBudget:
    """A key's limit and where it stands in the current period."""

    key: ApiKey
    period_start: datetime
    period_end: datetime | None
    """When the limit resets (exclusive end of the period); None for `limit_reset = none`."""
    spend: Spend

    @property
    def limit(self) -> Decimal | None:
        return self.key.limit

    @property
    def spent(self) -> Decimal:
        return self.spend.spent

    @property
    def committed(self) -> Decimal:
        """Spent plus in-flight reservations: where a rebuilt budget counter starts."""
        return self.spend.spent + self.spend.in_flight

    @property
    def remaining(self) -> Decimal | None:
        """Limit minus spent and in-flight (never below 0); None = unlimited."""
        if self.key.limit is None:
            return None
        return max(_ZERO, self.key.limit - self.committed)

    @property
    def exhausted(self) -> bool:
        return self.key.limit is not None and self.committed >= self.key.limit

    @property
    def ttl_s(self) -> int | None:
        """Seconds from the period's start to its end (a budget counter's natural lifetime); None = forever."""
        if self.period_end is None:
            return None
        return int((self.period_end - self.period_start).total_seconds())


def key_budget(key_id: str, now: datetime | None = None) -> Query:
    """Query → `KeyBudget | None` (None: no such key): the key's limit, the current period's bounds and what
    the ledger says was spent in it. Use with `store.read(key_budget(...))`."""

    def q(conn: Connection) -> KeyBudget | None:
        key = get_key(key_id)(conn)
        if key is None:
            return None
        start, end = period_bounds(key.limit_reset, now or utcnow())
        s = spend(key_id, start, None, include_byok=key.include_byok_in_limit)(conn)
        return KeyBudget(key=key, period_start=start, period_end=end, spend=s)

    return q


__all__ = ["KeyBudget", "Spend", "key_budget", "spend"]

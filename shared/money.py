"""Money is `Decimal`, and an unknown amount is `None` — never zero.

In the database money is an integer count of nano-dollars (1e-9 USD): integers sum exactly in SQLite and
PostgreSQL alike (SQLite would turn NUMERIC into binary floats), and a nano-dollar is far below the smallest
price of a single token. Rounding happens once, per recorded amount, half-up.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import BigInteger
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

NANO = Decimal("0.000000001")
MILLION = Decimal(1_000_000)
MAX_USD = Decimal(1_000_000_000)
"""The largest amount a limit or budget may name: in nano-dollars it still fits a 64-bit column."""


def to_nanos(amount: Decimal) -> int:
    return int(amount.quantize(NANO, rounding=ROUND_HALF_UP) / NANO)


def from_nanos(nanos: int) -> Decimal:
    return (Decimal(nanos) * NANO).normalize() if nanos else Decimal(0)


def quantize(amount: Decimal) -> Decimal:
    """The amount as it will be stored (rounded to a nano-dollar)."""
    return from_nanos(to_nanos(amount))


def fmt_usd(amount: Decimal | None, places: int = 4) -> str:
    """Human form; unknown stays visibly unknown."""
    if amount is None:
        return "unknown"
    return f"${amount:,.{places}f}"


class Money(TypeDecorator[Decimal]):
    """A `Decimal | None` column stored as BIGINT nano-dollars."""

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> int | None:
        if value is None:
            return None
        return to_nanos(value if isinstance(value, Decimal) else Decimal(str(value)))

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        return None if value is None else from_nanos(int(value))

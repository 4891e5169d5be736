"""Time in one form: timezone-aware UTC datetimes in Python; naive UTC in SQLite, `timestamptz` in PostgreSQL."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import DateTime
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_when(text: str, *, now: datetime, future: bool = False) -> datetime:
    """`2026-05-01` (midnight UTC), an ISO datetime (UTC unless it says otherwise), or a duration like `7d`,
    `12h` — before `now`, or after it with `future`. InputError when it is none of these."""
    from shared.errors import InputError

    text = text.strip()
    m = _DURATION.match(text)
    if m:
        delta = timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
        return now + delta if future else now - delta
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(
            f"{text!r}: give a date (2026-05-01), a time (2026-05-01T12:00Z) or 7d/12h", code="invalid_time"
        ) from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def from_ms(ms: float) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def to_ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


class UTCDateTime(TypeDecorator[datetime]):
    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        out: datetime = value.replace(tzinfo=None) if dialect.name == "sqlite" else value
        return out

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        out: datetime = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return out

"""Spending-limit periods, as OpenRouter counts them: they reset at 00:00 UTC — every day, every Monday
(weeks run Monday to Sunday), or on the first of every month — or never (`none`: the limit is for all time).

    period_bounds(reset, now) -> Period(start, end)      start <= now < end; end is None for `none`

Pure and clock-free: the caller passes `now`, so the same instant always falls in the same period and the
periods of one reset kind tile time with no gap and no overlap (the property tests check this).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal, NamedTuple, get_args

LimitReset = Literal["daily", "weekly", "monthly", "none"]
LIMIT_RESETS: tuple[str, ...] = get_args(LimitReset)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
"""Start of the `none` period: all recorded time."""


class Period(NamedTuple):
    start: datetime
    end: datetime | None
    """Exclusive; None when the period never ends (`none`)."""


def period_bounds(reset: LimitReset | str, now: datetime) -> Period:
    """The period containing `now` (a timezone-aware datetime, any zone)."""
    if now.tzinfo is None:
        raise ValueError("period_bounds needs a timezone-aware datetime")
    now = now.astimezone(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if reset == "daily":
        return Period(midnight, midnight + timedelta(days=1))
    if reset == "weekly":
        monday = midnight - timedelta(days=midnight.weekday())
        return Period(monday, monday + timedelta(days=7))
    if reset == "monthly":
        first = midnight.replace(day=1)
        following = (
            first.replace(year=first.year + 1, month=1) if first.month == 12 else first.replace(month=first.month + 1)
        )
        return Period(first, following)
    if reset == "none":
        return Period(EPOCH, None)
    raise ValueError(f"unknown limit reset {reset!r}; one of {', '.join(LIMIT_RESETS)}")

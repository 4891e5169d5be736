"""Limit periods (`period_bounds`): UTC midnights, Monday weeks, calendar months, all time — property-tested
over dates, with the awkward ones (month ends, leap days, year ends, week boundaries) drawn on purpose."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from shared.periods import EPOCH, Period, period_bounds

MICRO = timedelta(microseconds=1)
RESETS = ["daily", "weekly", "monthly"]

offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(lambda m: timezone(timedelta(minutes=m)))


@st.composite
def instants(draw: st.DrawFn) -> datetime:
    """Any UTC instant from 1971 to 9998, biased towards period edges."""
    kind = draw(st.sampled_from(["any", "month_end", "month_start", "leap_day", "year_end", "monday"]))
    if kind == "any":
        return draw(
            st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(9998, 12, 31), timezones=st.just(UTC))
        )
    year = draw(st.integers(1971, 9998))
    month = draw(st.integers(1, 12))
    if kind == "leap_day":
        year = draw(st.integers(1971, 9998).filter(calendar.isleap))
        day = datetime(year, 2, 29, tzinfo=UTC)
    elif kind == "month_end":
        day = datetime(year, month, calendar.monthrange(year, month)[1], tzinfo=UTC)
    elif kind == "month_start":
        day = datetime(year, month, 1, tzinfo=UTC)
    elif kind == "year_end":
        day = datetime(year, 12, 31, tzinfo=UTC)
    else:
        first = datetime(year, month, 1, tzinfo=UTC)
        day = first + timedelta(days=(7 - first.weekday()) % 7)
    edge = draw(st.sampled_from([timedelta(0), -MICRO, MICRO, timedelta(hours=23, minutes=59, seconds=59)]))
    return day + edge


@settings(max_examples=150, deadline=None)
@given(now=instants(), reset=st.sampled_from(RESETS), tz=offsets)
def test_the_period_contains_now_and_starts_at_utc_midnight(now: datetime, reset: str, tz: timezone) -> None:
    start, end = period_bounds(reset, now.astimezone(tz))  # the caller's zone does not matter
    assert end is not None
    assert start <= now < end
    assert start.tzinfo is not None and start.utcoffset() == timedelta(0)
    assert (start.hour, start.minute, start.second, start.microsecond) == (0, 0, 0, 0)
    assert (end.hour, end.minute, end.second, end.microsecond) == (0, 0, 0, 0)


@settings(max_examples=150, deadline=None)
@given(now=instants(), reset=st.sampled_from(RESETS))
def test_periods_tile_time_without_gap_or_overlap(now: datetime, reset: str) -> None:
    start, end = period_bounds(reset, now)
    assert end is not None
    assert period_bounds(reset, end).start == end  # the next period begins where this one ends
    assert period_bounds(reset, end - MICRO) == (start, end)  # the last instant still belongs here
    assert period_bounds(reset, start) == (start, end)
    assert period_bounds(reset, start - MICRO).end == start


@settings(max_examples=100, deadline=None)
@given(now=instants())
def test_daily_and_weekly_lengths(now: datetime) -> None:
    d_start, d_end = period_bounds("daily", now)
    assert d_end is not None and d_end - d_start == timedelta(days=1) and d_start.date() == now.date()
    w_start, w_end = period_bounds("weekly", now)
    assert w_end is not None and w_end - w_start == timedelta(days=7)
    assert w_start.weekday() == 0  # Monday 00:00 UTC
    assert w_start <= d_start < w_end


@settings(max_examples=100, deadline=None)
@given(now=instants())
def test_monthly_is_the_calendar_month(now: datetime) -> None:
    start, end = period_bounds("monthly", now)
    assert end is not None
    assert (start.year, start.month, start.day) == (now.year, now.month, 1)
    assert end.day == 1 and (end.year, end.month) == (
        (now.year + 1, 1) if now.month == 12 else (now.year, now.month + 1)
    )
    assert (end - start).days == calendar.monthrange(now.year, now.month)[1]


@given(now=instants())
def test_none_is_all_time(now: datetime) -> None:
    assert period_bounds("none", now) == Period(EPOCH, None)


@pytest.mark.parametrize(
    ("reset", "now", "start", "end"),
    [
        ("monthly", "2024-02-29T12:00:00+00:00", "2024-02-01", "2024-03-01"),  # leap day
        ("monthly", "2023-02-28T23:59:59.999999+00:00", "2023-02-01", "2023-03-01"),
        ("monthly", "2023-12-31T23:59:59.999999+00:00", "2023-12-01", "2024-01-01"),  # year end
        ("monthly", "2024-01-01T00:00:00+00:00", "2024-01-01", "2024-02-01"),
        ("weekly", "2023-12-31T23:59:59+00:00", "2023-12-25", "2024-01-01"),  # Sunday before a Monday new year
        ("weekly", "2024-01-01T00:00:00+00:00", "2024-01-01", "2024-01-08"),  # Monday 00:00 starts a week
        ("weekly", "2024-02-29T10:00:00+00:00", "2024-02-26", "2024-03-04"),  # a week across a leap day
        ("daily", "2024-02-29T23:59:59.999999+00:00", "2024-02-29", "2024-03-01"),
        ("monthly", "2024-03-01T01:00:00+02:00", "2024-02-01", "2024-03-01"),  # 23:00 UTC on 29 Feb
        ("weekly", "2024-01-07T20:00:00-05:00", "2024-01-08", "2024-01-15"),  # Monday 01:00 UTC
    ],
)
def test_examples(reset: str, now: str, start: str, end: str) -> None:
    got = period_bounds(reset, datetime.fromisoformat(now))
    assert got == (datetime.fromisoformat(start).replace(tzinfo=UTC), datetime.fromisoformat(end).replace(tzinfo=UTC))


@example(reset="hourly")
@given(reset=st.sampled_from(["hourly", "", "Monthly"]))
def test_unknown_reset_is_refused(reset: str) -> None:
    with pytest.raises(ValueError, match="unknown limit reset"):
        period_bounds(reset, datetime(2024, 1, 1, tzinfo=UTC))


def test_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        period_bounds("daily", datetime(2024, 1, 1))

"""Calendar periods in IANA zones: tables for DST both ways (23- and 25-hour days), midnight
DST changes, half-hour DST (hours cut at the change), +05:30/+05:45 zones, Monday week starts,
month lengths and leap days; plus a sweep checking that periods tile time in every zone."""

from __future__ import annotations

from itertools import pairwise

import pytest
from usage_series_builders import HOUR, at, local

from alertd import calendar
from alertd.model import Granularity, Period

# (instant, granularity, zone, expected start, expected end, hours long). Instants with an
# offset are exact; without one they are wall time in the zone.
PERIODS: list[tuple[str, Granularity, str, str, str, float]] = [
    # --- hours
    ("2025-01-06 10:20", "hour", "UTC", "2025-01-06 10:00+00:00", "2025-01-06 11:00+00:00", 1),
    ("2025-01-06 10:20", "hour", "Asia/Kolkata",
     "2025-01-06 10:00+05:30", "2025-01-06 11:00+05:30", 1),
    ("2025-01-06 10:50", "hour", "Asia/Kathmandu",
     "2025-01-06 10:00+05:45", "2025-01-06 11:00+05:45", 1),
    ("2025-01-06 04:59+00:00", "hour", "Asia/Kathmandu",
     "2025-01-06 10:00+05:45", "2025-01-06 11:00+05:45", 1),
    # New York springs forward at 02:00 EST: the 01:00 hour is followed by 03:00 EDT.
    ("2025-03-09 06:59+00:00", "hour", "America/New_York",
     "2025-03-09 01:00-05:00", "2025-03-09 03:00-04:00", 1),
    ("2025-03-09 07:00+00:00", "hour", "America/New_York",
     "2025-03-09 03:00-04:00", "2025-03-09 04:00-04:00", 1),
    # ...and falls back at 02:00 EDT: two 01:00 hours, each its own hour.
    ("2025-11-02 05:30+00:00", "hour", "America/New_York",
     "2025-11-02 01:00-04:00", "2025-11-02 01:00-05:00", 1),
    ("2025-11-02 06:30+00:00", "hour", "America/New_York",
     "2025-11-02 01:00-05:00", "2025-11-02 02:00-05:00", 1),
    # Lord Howe moves clocks by 30 minutes; an hour never spans the change, so the hour in
    # which it happens is cut in two (hours never exceed 3600 s, and their keys stay unique).
    ("2025-04-05 14:10+00:00", "hour", "Australia/Lord_Howe",
     "2025-04-06 01:00+11:00", "2025-04-06 01:30+10:30", 1),
    ("2025-04-05 15:10+00:00", "hour", "Australia/Lord_Howe",
     "2025-04-06 01:30+10:30", "2025-04-06 02:00+10:30", 0.5),
    ("2025-10-04 15:40+00:00", "hour", "Australia/Lord_Howe",
     "2025-10-05 02:30+11:00", "2025-10-05 03:00+11:00", 0.5),
    ("2025-10-04 15:20+00:00", "hour", "Australia/Lord_Howe",
     "2025-10-05 01:00+10:30", "2025-10-05 02:30+11:00", 1),
    ("2025-04-05 14:05+00:00", "hour", "Pacific/Chatham",
     "2025-04-06 02:45+12:45", "2025-04-06 03:00+12:45", 0.25),
    # --- days
    ("2025-01-06 10:20", "day", "UTC", "2025-01-06 00:00+00:00", "2025-01-07 00:00+00:00", 24),
    ("2025-01-06 00:00", "day", "UTC", "2025-01-06 00:00+00:00", "2025-01-07 00:00+00:00", 24),
    ("2025-01-06 23:59", "day", "UTC", "2025-01-06 00:00+00:00", "2025-01-07 00:00+00:00", 24),
    ("2025-03-09 12:00", "day", "America/New_York",
     "2025-03-09 00:00-05:00", "2025-03-10 00:00-04:00", 23),
    ("2025-11-02 12:00", "day", "America/New_York",
     "2025-11-02 00:00-04:00", "2025-11-03 00:00-05:00", 25),
    ("2025-11-03 00:30", "day", "America/New_York",
     "2025-11-03 00:00-05:00", "2025-11-04 00:00-05:00", 24),
    ("2025-03-30 12:00", "day", "Europe/London",
     "2025-03-30 00:00+00:00", "2025-03-31 00:00+01:00", 23),
    ("2025-10-26 12:00", "day", "Europe/London",
     "2025-10-26 00:00+01:00", "2025-10-27 00:00+00:00", 25),
    ("2025-04-06 12:00", "day", "Australia/Sydney",
     "2025-04-06 00:00+11:00", "2025-04-07 00:00+10:00", 25),
    ("2025-10-05 12:00", "day", "Australia/Sydney",
     "2025-10-05 00:00+10:00", "2025-10-06 00:00+11:00", 23),
    ("2025-01-06 02:00+00:00", "day", "Asia/Kolkata",
     "2025-01-06 00:00+05:30", "2025-01-07 00:00+05:30", 24),
    ("2025-01-05 18:29+00:00", "day", "Asia/Kolkata",
     "2025-01-05 00:00+05:30", "2025-01-06 00:00+05:30", 24),
    ("2025-01-05 18:15+00:00", "day", "Asia/Kathmandu",
     "2025-01-06 00:00+05:45", "2025-01-07 00:00+05:45", 24),
    # Santiago changes clocks at midnight: Saturday falls back into a 25-hour day, and the
    # spring-forward Sunday starts at 01:00 because its midnight does not exist.
    ("2025-04-06 03:30+00:00", "day", "America/Santiago",
     "2025-04-05 00:00-03:00", "2025-04-06 00:00-04:00", 25),
    ("2025-04-06 04:30+00:00", "day", "America/Santiago",
     "2025-04-06 00:00-04:00", "2025-04-07 00:00-04:00", 24),
    ("2025-09-07 12:00", "day", "America/Santiago",
     "2025-09-07 01:00-03:00", "2025-09-08 00:00-03:00", 23),
    ("2024-02-29 12:00", "day", "UTC", "2024-02-29 00:00+00:00", "2024-03-01 00:00+00:00", 24),
    # Samoa skipped 30 December 2011 altogether.
    ("2011-12-29 12:00", "day", "Pacific/Apia",
     "2011-12-29 00:00-10:00", "2011-12-31 00:00+14:00", 24),
    # --- weeks (Monday to Monday)
    ("2025-01-05 12:00", "week", "UTC", "2024-12-30 00:00+00:00", "2025-01-06 00:00+00:00", 168),
    ("2025-01-06 00:00", "week", "UTC", "2025-01-06 00:00+00:00", "2025-01-13 00:00+00:00", 168),
    ("2025-03-26 12:00", "week", "Europe/Berlin",
     "2025-03-24 00:00+01:00", "2025-03-31 00:00+02:00", 167),
    ("2025-11-02 12:00", "week", "America/New_York",
     "2025-10-27 00:00-04:00", "2025-11-03 00:00-05:00", 169),
    ("2025-01-05 19:00+00:00", "week", "Asia/Kolkata",
     "2025-01-06 00:00+05:30", "2025-01-13 00:00+05:30", 168),
    ("2024-02-29 12:00", "week", "UTC", "2024-02-26 00:00+00:00", "2024-03-04 00:00+00:00", 168),
    # --- months
    ("2024-02-15 12:00", "month", "UTC", "2024-02-01 00:00+00:00", "2024-03-01 00:00+00:00", 696),
    ("2025-02-15 12:00", "month", "UTC", "2025-02-01 00:00+00:00", "2025-03-01 00:00+00:00", 672),
    ("2000-02-15 12:00", "month", "UTC", "2000-02-01 00:00+00:00", "2000-03-01 00:00+00:00", 696),
    ("2100-02-15 12:00", "month", "UTC", "2100-02-01 00:00+00:00", "2100-03-01 00:00+00:00", 672),
    ("2025-01-31 23:59", "month", "UTC", "2025-01-01 00:00+00:00", "2025-02-01 00:00+00:00", 744),
    ("2025-04-30 23:59", "month", "UTC", "2025-04-01 00:00+00:00", "2025-05-01 00:00+00:00", 720),
    ("2025-12-31 12:00", "month", "UTC", "2025-12-01 00:00+00:00", "2026-01-01 00:00+00:00", 744),
    ("2025-03-15 12:00", "month", "America/New_York",
     "2025-03-01 00:00-05:00", "2025-04-01 00:00-04:00", 743),
    ("2025-11-15 12:00", "month", "America/New_York",
     "2025-11-01 00:00-04:00", "2025-12-01 00:00-05:00", 721),
    ("2024-12-31 19:00+00:00", "month", "Asia/Kolkata",
     "2025-01-01 00:00+05:30", "2025-02-01 00:00+05:30", 744),
    ("2025-02-28 18:15+00:00", "month", "Asia/Kathmandu",
     "2025-03-01 00:00+05:45", "2025-04-01 00:00+05:45", 744),
]


@pytest.mark.parametrize(("instant", "granularity", "tz", "start", "end", "hours"), PERIODS)
def test_period_containing(
    instant: str, granularity: Granularity, tz: str, start: str, end: str, hours: float
) -> None:
    moment = at(instant, tz)
    period = calendar.period_containing(moment, granularity, tz)
    assert (local(period.starts_at, tz), local(period.ends_at, tz)) == (start, end)
    assert (period.ends_at - period.starts_at) / HOUR == hours
    assert period.contains(moment)
    assert period.timezone == tz
    assert calendar.floor(moment, granularity, tz) == period.starts_at
    assert calendar.next_start(moment, granularity, tz) == period.ends_at


@pytest.mark.parametrize(
    ("instant", "granularity", "tz", "key"),
    [
        ("2025-01-06 10:20", "day", "UTC", "2025-01-06"),
        ("2025-01-06 02:00+00:00", "day", "America/New_York", "2025-01-05"),
        ("2025-01-05 19:00+00:00", "day", "Asia/Kolkata", "2025-01-06"),
        ("2025-01-06 10:20", "month", "UTC", "2025-01"),
        ("2024-12-31 23:00+00:00", "month", "Asia/Kathmandu", "2025-01"),
        ("2025-01-01 12:00", "week", "UTC", "2025-W01"),
        ("2024-12-30 00:00", "week", "UTC", "2025-W01"),  # ISO year of the Monday
        ("2021-01-03 12:00", "week", "UTC", "2020-W53"),
        ("2025-01-06 10:20", "hour", "UTC", "2025-01-06T10+0000"),
        ("2025-01-06 10:20", "hour", "Asia/Kolkata", "2025-01-06T10+0530"),
        # The two 01:00 hours of a fall-back night have different keys.
        ("2025-11-02 05:30+00:00", "hour", "America/New_York", "2025-11-02T01-0400"),
        ("2025-11-02 06:30+00:00", "hour", "America/New_York", "2025-11-02T01-0500"),
    ],
)
def test_period_key(instant: str, granularity: Granularity, tz: str, key: str) -> None:
    period = calendar.period_containing(at(instant, tz), granularity, tz)
    assert calendar.period_key(period, granularity) == key


@pytest.mark.parametrize(
    ("instant", "granularity", "tz", "count", "start", "hours"),
    [
        ("2025-03-10 12:00", "day", "America/New_York", -1, "2025-03-09 00:00-05:00", 23),
        ("2025-03-10 12:00", "day", "America/New_York", -2, "2025-03-08 00:00-05:00", 24),
        ("2025-11-01 12:00", "day", "America/New_York", 1, "2025-11-02 00:00-04:00", 25),
        ("2025-01-06 12:00", "day", "UTC", 0, "2025-01-06 00:00+00:00", 24),
        ("2024-03-10 12:00", "month", "UTC", -1, "2024-02-01 00:00+00:00", 696),
        ("2024-03-10 12:00", "month", "UTC", -12, "2023-03-01 00:00+00:00", 744),
        ("2025-12-10 12:00", "month", "UTC", 1, "2026-01-01 00:00+00:00", 744),
        ("2025-03-31 12:00", "week", "Europe/Berlin", -1, "2025-03-24 00:00+01:00", 167),
        ("2025-03-09 01:30", "hour", "America/New_York", 1, "2025-03-09 03:00-04:00", 1),
        ("2025-03-09 03:30", "hour", "America/New_York", -1, "2025-03-09 01:00-05:00", 1),
        ("2025-11-02 00:30", "hour", "America/New_York", 2, "2025-11-02 01:00-05:00", 1),
        ("2025-04-06 00:30", "hour", "Australia/Lord_Howe", 2, "2025-04-06 01:30+10:30", 0.5),
        ("2025-04-06 00:30", "hour", "Australia/Lord_Howe", 3, "2025-04-06 02:00+10:30", 1),
        ("2025-01-06 10:20", "hour", "Asia/Kolkata", -24, "2025-01-05 10:00+05:30", 1),
    ],
)
def test_shift(
    instant: str, granularity: Granularity, tz: str, count: int, start: str, hours: float
) -> None:
    period = calendar.period_containing(at(instant, tz), granularity, tz)
    shifted = calendar.shift(period, granularity, count)
    assert local(shifted.starts_at, tz) == start
    assert (shifted.ends_at - shifted.starts_at) / HOUR == hours


@pytest.mark.parametrize(
    ("start", "end", "granularity", "tz", "count", "first", "last"),
    [
        # Whole periods overlapping the range, not clipped to it.
        ("2025-01-06 10:20", "2025-01-06 13:05", "hour", "UTC", 4,
         "2025-01-06 10:00+00:00", "2025-01-06 13:00+00:00"),
        ("2025-03-08 00:00", "2025-03-11 00:00", "hour", "America/New_York", 71,
         "2025-03-08 00:00-05:00", "2025-03-10 23:00-04:00"),
        ("2025-11-01 00:00", "2025-11-04 00:00", "hour", "America/New_York", 73,
         "2025-11-01 00:00-04:00", "2025-11-03 23:00-05:00"),
        ("2025-01-01 00:00", "2025-01-31 10:00", "day", "Asia/Kolkata", 31,
         "2025-01-01 00:00+05:30", "2025-01-31 00:00+05:30"),
        ("2024-01-01 00:00", "2025-01-01 00:00", "day", "UTC", 366,
         "2024-01-01 00:00+00:00", "2024-12-31 00:00+00:00"),
        ("2025-01-01 00:00", "2026-01-01 00:00", "week", "UTC", 53,
         "2024-12-30 00:00+00:00", "2025-12-29 00:00+00:00"),
        ("2025-01-15 00:00", "2025-03-01 00:00", "month", "UTC", 2,
         "2025-01-01 00:00+00:00", "2025-02-01 00:00+00:00"),
        ("2025-01-06 10:00", "2025-01-06 10:00", "hour", "UTC", 0, "", ""),
    ],
)
def test_periods(
    start: str, end: str, granularity: Granularity, tz: str, count: int, first: str, last: str
) -> None:
    found = calendar.periods(at(start, tz), at(end, tz), granularity, tz)
    assert len(found) == count
    if found:
        assert (local(found[0].starts_at, tz), local(found[-1].starts_at, tz)) == (first, last)


ZONES = [
    "UTC", "America/New_York", "Europe/London", "Australia/Sydney", "Asia/Kolkata",
    "Asia/Kathmandu", "America/Santiago", "Australia/Lord_Howe", "Pacific/Chatham",
    "America/St_Johns", "Africa/Cairo",
]
# Chatham (+12:45/+13:45) changes clocks at 03:45 local, so one hour is cut to 15 minutes.
SPANS: dict[Granularity, tuple[float, float]] = {
    "hour": (0.25, 1), "day": (23, 25), "week": (167, 169), "month": (671, 745),
}


@pytest.mark.parametrize("tz", ZONES)
@pytest.mark.parametrize("granularity", ["hour", "day", "week", "month"])
def test_periods_tile_time(tz: str, granularity: Granularity) -> None:
    """Over 2025 (hours: the weeks around both DST changes), periods are contiguous, each is
    what period_containing returns for its first, middle and last second, and none is
    shorter or longer than a DST change allows."""
    ranges = [("2025-01-01 00:00", "2026-01-01 00:00")]
    if granularity == "hour":
        ranges = [("2025-03-24 00:00", "2025-04-10 00:00"),
                  ("2025-09-01 00:00", "2025-09-10 00:00"),
                  ("2025-09-24 00:00", "2025-10-10 00:00"),
                  ("2025-10-22 00:00", "2025-11-05 00:00")]
    low, high = SPANS[granularity]
    for start, end in ranges:
        found = calendar.periods(at(start, tz), at(end, tz), granularity, tz)
        for before, after in pairwise(found):
            assert before.ends_at == after.starts_at
        for period in found:
            assert low <= (period.ends_at - period.starts_at) / HOUR <= high
            for instant in (period.starts_at, (period.starts_at + period.ends_at) // 2,
                            period.ends_at - 1):
                assert calendar.period_containing(instant, granularity, tz) == period


@pytest.mark.parametrize(
    ("instant", "up", "down"),
    [(0, 0, 0), (1, 60, 0), (59.5, 60, 0), (60, 60, 60), (60.0001, 120, 60), (119, 120, 60),
     (1736158800, 1736158800, 1736158800), (1736158801.2, 1736158860, 1736158800)],
)
def test_minute_rounding(instant: float, up: int, down: int) -> None:
    assert calendar.ceil_minute(instant) == up
    assert calendar.floor_minute(instant) == down


def test_period_is_half_open() -> None:
    period = Period(100, 200, "UTC")
    assert period.contains(100) and period.contains(199)
    assert not period.contains(200) and not period.contains(99)

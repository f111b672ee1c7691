"""Rows → series: zero-filling, group-by series, clipping, the freshness rule, staleness, and
day buckets summed into the rule's weeks and months."""

from __future__ import annotations

import pytest
from usage_series_builders import DAY, HOUR, at, make_rule

from alertd import calendar
from alertd.clock import readable_duration
from alertd.conditions.series import (
    build_series,
    data_need,
    describe_period,
    is_stale,
    number,
    window_buckets,
)
from alertd.model import Bucket, DataNeed, Granularity, MeterSpec, Series, SeriesKey, UsageRow

THRESHOLD = {"type": "threshold", "op": ">", "value": 10}


def need(start: str, end: str, granularity: Granularity = "hour", tz: str = "UTC") -> DataNeed:
    return DataNeed("cus_1", MeterSpec("mtr_1"), granularity, tz, at(start, tz), at(end, tz))


def row(start: str, value: float, hours: int = 1, **dims: str) -> UsageRow:
    dimensions = tuple(sorted(dims.items()))
    return UsageRow(at(start), at(start) + hours * HOUR, value, "mtr_1", dimensions)


@pytest.mark.parametrize(
    ("refreshed_at", "now", "stale_after", "stale"),
    [
        (None, 10_000, 7200, True),
        (10_000, 10_000, 7200, False),
        (10_000 - 7200, 10_000, 7200, False),
        (10_000 - 7201, 10_000, 7200, True),
        (10_000 + 60, 10_000, 7200, False),  # refreshed "after now" (--at in the past)
        (0, 10_000, 7200, True),
    ],
)
def test_is_stale(refreshed_at: int | None, now: int, stale_after: float, stale: bool) -> None:
    assert is_stale(refreshed_at, now, stale_after) is stale


def test_no_rows_is_one_zero_series() -> None:
    the_need = need("2025-01-06 00:00", "2025-01-06 05:00")
    (series,) = build_series(make_rule(THRESHOLD), the_need, [], at("2025-01-06 05:00"),
                             now=at("2025-01-06 05:00"), freshness_lag=0)
    assert series.key == SeriesKey("r", "cus_1", ())
    assert [b.value for b in series.buckets] == [0.0] * 5
    assert all(b.complete for b in series.buckets)
    assert (series.granularity, series.timezone, series.meter) == ("hour", "UTC", "mtr_1")


def test_group_by_without_rows_is_no_series() -> None:
    rule = make_rule(THRESHOLD, group_by=["model"])
    assert build_series(rule, need("2025-01-06 00:00", "2025-01-06 05:00"), [], None,
                        now=at("2025-01-06 05:00"), freshness_lag=0) == []


def test_one_series_per_group_zero_filled_and_summed() -> None:
    rule = make_rule(THRESHOLD, window="hour", group_by=["model"],
                     filters={"tier": ["pro", "premium"]})
    the_need = data_need(rule, "cus_1", at("2025-01-06 03:30"), at("2025-01-06 00:00"))
    rows = [
        row("2025-01-06 00:00", 5, model="gpt-4", region="eu"),
        row("2025-01-06 00:00", 7, model="gpt-4", region="us"),  # summed with the one above
        row("2025-01-06 02:00", 1, model="gpt-4o"),
        row("2025-01-06 01:00", 3),  # no model: the group ""
        row("2025-01-05 23:00", 100, model="gpt-4"),  # before the range
        row("2025-01-06 04:00", 100, model="gpt-4"),  # after it
    ]
    found = build_series(rule, the_need, rows, at("2025-01-06 03:30"),
                         now=at("2025-01-06 03:30"), freshness_lag=0)
    assert [s.key.group for s in found] == [
        (("model", ""),), (("model", "gpt-4"),), (("model", "gpt-4o"),)]
    assert [[b.value for b in s.buckets] for s in found] == [
        [0, 3, 0, 0], [12, 0, 0, 0], [0, 0, 1, 0]]
    assert found[1].dimensions == (("model", "gpt-4"), ("tier", "premium,pro"))


def test_running_bucket_is_clipped_and_never_complete() -> None:
    """The range ends at now rounded up to the minute; the running hour is cut there and is
    incomplete even with no lag and data refreshed at now."""
    rule = make_rule(THRESHOLD, window="hour")
    now = at("2025-01-06 10:20:30")
    the_need = data_need(rule, "cus_1", now, at("2025-01-06 08:00"))
    assert the_need.ends_at == at("2025-01-06 10:21")
    rows = [UsageRow(at("2025-01-06 10:00"), the_need.ends_at, 4, "mtr_1")]
    (series,) = build_series(rule, the_need, rows, now, now=now, freshness_lag=0)
    assert [(b.starts_at, b.ends_at, b.value, b.complete) for b in series.buckets] == [
        (at("2025-01-06 08:00"), at("2025-01-06 09:00"), 0, True),
        (at("2025-01-06 09:00"), at("2025-01-06 10:00"), 0, True),
        (at("2025-01-06 10:00"), at("2025-01-06 10:21"), 4, False),
    ]


def test_row_starting_inside_a_clipped_first_bucket_lands_in_it() -> None:
    the_need = need("2025-01-06 00:30", "2025-01-06 02:00")
    rows = [UsageRow(at("2025-01-06 00:30"), at("2025-01-06 01:00"), 2, "mtr_1")]
    (series,) = build_series(make_rule(THRESHOLD), the_need, rows, None,
                             now=at("2025-01-06 03:00"), freshness_lag=0)
    assert [(b.starts_at, b.value) for b in series.buckets] == [
        (at("2025-01-06 00:30"), 2), (at("2025-01-06 01:00"), 0)]


# (refreshed_at, now, lag) → which of the hours 00:00..04:00 are complete. A bucket is complete
# when its period ended at least `lag` before refreshed_at, and refreshed_at never exceeds now.
FRESHNESS = [
    ("2025-01-06 05:00", "2025-01-06 05:00", 0, [True] * 5),
    ("2025-01-06 05:00", "2025-01-06 05:00", 300, [True] * 4 + [False]),
    ("2025-01-06 05:04:59", "2025-01-06 05:10", 300, [True] * 4 + [False]),
    ("2025-01-06 05:05", "2025-01-06 05:10", 300, [True] * 5),
    ("2025-01-06 02:30", "2025-01-06 05:10", 300, [True, True, False, False, False]),
    ("2025-01-06 09:00", "2025-01-06 03:00", 0, [True] * 3 + [False] * 2),  # capped at now
    (None, "2025-01-06 04:10", 300, [True] * 4 + [False]),  # no freshness reported: now
    ("2025-01-05 12:00", "2025-01-06 05:10", 300, [False] * 5),
]


@pytest.mark.parametrize(("refreshed", "now", "lag", "complete"), FRESHNESS)
def test_freshness_rule(refreshed: str | None, now: str, lag: float, complete: list[bool]) -> None:
    the_need = need("2025-01-06 00:00", "2025-01-06 05:00")
    refreshed_at = None if refreshed is None else at(refreshed)
    (series,) = build_series(make_rule(THRESHOLD), the_need, [], refreshed_at,
                             now=at(now), freshness_lag=lag)
    assert [b.complete for b in series.buckets] == complete
    expected = None if refreshed_at is None else min(refreshed_at, at(now))
    assert series.refreshed_at == expected


def day_series(start: str, values: list[float], tz: str, complete_days: int) -> Series:
    """Day buckets from local midnight ``start``, the first ``complete_days`` complete."""
    first = at(start, tz)
    days = calendar.periods(first, first + len(values) * DAY - 2 * HOUR, "day", tz)
    buckets = tuple(
        Bucket(day.starts_at, day.ends_at, value, index < complete_days)
        for index, (day, value) in enumerate(zip(days, values, strict=True))
    )
    return Series(SeriesKey("r", "cus_1"), "mtr_1", (), "day", tz, buckets, None)


@pytest.mark.parametrize(
    ("start", "days", "complete_days", "granularity", "tz", "expected"),
    [
        # Monday 2025-01-06 to Sunday 2025-01-19, all complete: two whole weeks.
        ("2025-01-06", 14, 14, "week", "UTC", [(7, True, 168), (7, True, 168)]),
        # A range starting mid-week drops the partial first week.
        ("2025-01-08", 12, 12, "week", "UTC", [(7, True, 168)]),
        # The running week (its last day incomplete) is incomplete.
        ("2025-01-06", 14, 13, "week", "UTC", [(7, True, 168), (7, False, 168)]),
        # A week cut short by the range end is incomplete even if its days are complete.
        ("2025-01-06", 10, 10, "week", "UTC", [(7, True, 168), (3, False, 168)]),
        # DST in Berlin: the week of the change lasts 167 hours.
        ("2025-03-24", 7, 7, "week", "Europe/Berlin", [(7, True, 167)]),
        # Months: a leap February, then a March that is still running.
        ("2024-02-01", 40, 40, "month", "UTC", [(29, True, 696), (11, False, 744)]),
        ("2025-03-01", 31, 31, "month", "America/New_York", [(31, True, 743)]),
        # Days into days: unchanged.
        ("2025-01-06", 3, 2, "day", "UTC", [(1, True, 24), (1, True, 24), (1, False, 24)]),
    ],
)
def test_window_buckets(
    start: str, days: int, complete_days: int, granularity: Granularity, tz: str,
    expected: list[tuple[float, bool, float]],
) -> None:
    series = day_series(start + " 00:00", [1.0] * days, tz, complete_days)
    summed = window_buckets(series, granularity, tz)
    assert [(b.value, b.complete, (b.ends_at - b.starts_at) / HOUR) for b in summed] == expected


def test_window_buckets_of_empty_series() -> None:
    series = Series(SeriesKey("r", "c"), None, (), "day", "UTC", (), None)
    assert window_buckets(series, "week", "UTC") == []


@pytest.mark.parametrize(
    ("value", "text"),
    [(42100.0, "42,100"), (0.0, "0"), (0.25, "0.25"), (1234567.891, "1,234,568"),
     (-3.0, "-3"), (2.5, "2.5")],
)
def test_number(value: float, text: str) -> None:
    assert number(value) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (45, "45s"), (5400, "1h 30m"), (86400, "1d"), (123540, "1d 10h"),
     (3 * DAY, "3d"), (3661, "1h 1m"), (-5, "-5s")],
)
def test_readable_duration_in_two_units(seconds: float, text: str) -> None:
    """How evaluators word durations: the two largest units (one formatter for people)."""
    assert readable_duration(seconds, units=2) == text


@pytest.mark.parametrize(
    ("granularity", "now", "text"),
    [
        ("day", "2025-01-06 10:00", "today (UTC)"),
        ("day", "2025-01-07 10:00", "on 2025-01-06 (UTC)"),
        ("hour", "2025-01-06 00:30", "this hour (UTC)"),
        ("week", "2025-01-06 10:00", "this week (UTC)"),
        ("month", "2025-02-06 10:00", "in 2025-01 (UTC)"),
    ],
)
def test_describe_period(granularity: Granularity, now: str, text: str) -> None:
    period = calendar.period_containing(at("2025-01-06 00:30"), granularity, "UTC")
    assert describe_period(period, granularity, at(now)) == text

"""Absence conditions: no usage (total at most ``floor``) over the last ``duration`` of
complete hourly buckets; never judged on stale data or on data that does not reach back far
enough. Includes a customer with zero usage on most days and a stop's detection time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from usage_series_builders import DAY, HOUR, at, judge, local, make_rule, series_for

from alertd.conditions.absence import AbsenceEvaluator
from alertd.model import Customer, Period

STOP = at("2025-01-06 03:00")


def stops_at(stop: int, per_hour: float = 10) -> Callable[[int], float]:
    return lambda start: per_hour if start < stop else 0.0


def absence(duration: str = "6h", **fields: Any) -> dict[str, Any]:
    return {"type": "absence", "duration": duration, **fields}


def first_firing(rule_fields: dict[str, Any], usage: Callable[[int], float], start: str,
                 hours: int, every: int = 900) -> int | None:
    """The first evaluation (every ``every`` seconds from ``start``) at which the rule holds."""
    rule = make_rule(**rule_fields)
    for now in range(at(start), at(start) + hours * HOUR, every):
        if judge(rule, now, usage).active:
            return now
    return None


@pytest.mark.parametrize(
    ("duration", "window", "tz", "fires_at"),
    [
        # Stopped at 03:00: hours 03..08 are silent and complete (lag 5 min) at 09:05; the
        # next 15-minute evaluation notices.
        ("6h", "hour", "UTC", "2025-01-06 09:15+00:00"),
        ("6h", "day", "UTC", "2025-01-06 09:15+00:00"),  # hourly buckets whatever the window
        ("90m", "hour", "UTC", "2025-01-06 05:15+00:00"),  # rounded up to 2 whole hours
        ("1d", "day", "UTC", "2025-01-07 03:15+00:00"),
        # Hours start at :15 UTC; the stop at 08:45 local leaves 08:00 busy, so silence runs
        # from 09:00 local and is complete for 6h at 15:05.
        ("6h", "hour", "Asia/Kathmandu", "2025-01-06 15:15+05:45"),
    ],
)
def test_a_stop_is_noticed_after_duration(
    duration: str, window: str, tz: str, fires_at: str
) -> None:
    fields = {"condition": absence(duration), "window": window, "timezone": tz}
    found = first_firing(fields, stops_at(STOP), "2025-01-06 00:00", 30)
    assert found is not None and local(found, tz) == fires_at


def test_the_finding_explains_itself() -> None:
    rule = make_rule(absence(), severity="critical")
    finding = judge(rule, at("2025-01-06 10:20"), stops_at(STOP))
    assert (finding.active, finding.value, finding.threshold, finding.level) == (
        True, 0, 0, "critical")
    assert finding.window == Period(at("2025-01-06 04:00"), at("2025-01-06 10:00"), "UTC")
    assert (finding.complete, finding.period_key, finding.state) == (True, "", "inactive")
    assert finding.details["last_usage_at"] == STOP
    assert finding.message == (
        "no usage in the last 6h of complete data (2025-01-06 04:00 UTC to 2025-01-06 10:00 "
        "UTC); last usage in the hour before 2025-01-06 03:00 UTC")


@pytest.mark.parametrize(
    ("floor", "per_hour", "active", "message"),
    [
        (0, 0, True, "no usage in the last 6h"),
        (0, 1, False, "6 in the last 6h"),
        (6, 1, True, "only 6 (floor 6) in the last 6h"),
        (5, 1, False, "6 in the last 6h"),
        (100, 20, False, "120 in the last 6h"),
    ],
)
def test_floor(floor: float, per_hour: float, active: bool, message: str) -> None:
    finding = judge(make_rule(absence(floor=floor)), at("2025-01-06 10:20"), per_hour)
    assert finding.active is active
    assert finding.message.startswith(message)


def sparse(start: int) -> float:
    """Zero usage on most days: 40 calls at 09:00 every third day, from 2025-01-01."""
    day = (start - at("2025-01-01 00:00")) // DAY
    return 40.0 if day % 3 == 0 and start % DAY == 9 * HOUR else 0.0


@pytest.mark.parametrize(
    ("duration", "holding"),
    [
        # A 6h span misses the call only at the 6 evaluations after it (10:30..15:30), on
        # each of the 3 call days in range (the 4th, 7th and 10th).
        ("6h", 9 * 24 - 6 * 3),
        # Each gap between calls has 71 silent hours, so a 48h span fits in 24 positions;
        # three gaps end inside the range.
        ("2d", 24 * 3),
        ("3d", 0),  # never three days without a call
    ],
)
def test_zero_usage_on_most_days(duration: str, holding: int) -> None:
    """Evaluated at :30 past every hour from 2 to 10 January 2025: how often absence holds
    for a customer that calls once every three days."""
    rule = make_rule(absence(duration))
    start = at("2025-01-02 00:30")
    assert sum(judge(rule, start + hour * HOUR, sparse).active for hour in range(9 * 24)) == (
        holding)


def test_stale_data_is_never_judged() -> None:
    rule = make_rule(absence())
    now = at("2025-01-06 10:20")
    finding = judge(rule, now, 0, refreshed_at=now - 2 * HOUR - 60)
    assert (finding.state, finding.active, finding.value, finding.period_key) == (
        "nodata", False, None, "")
    assert finding.message == (
        "usage data is stale (refreshed 2025-01-06 08:19 UTC, more than 2h ago): absence "
        "not judged")


@pytest.mark.parametrize("behind", [0, HOUR, 2 * HOUR])
def test_data_trailing_now_but_not_stale_is_judged(behind: int) -> None:
    """The need reaches back far enough that any data fresher than stale_after covers the
    whole span."""
    now = at("2025-01-06 10:20")
    finding = judge(make_rule(absence()), now, 0, refreshed_at=now - behind)
    assert (finding.state, finding.active) == ("inactive", True)
    assert finding.window.ends_at <= now - behind


def test_unknown_freshness_is_judged_as_of_now() -> None:
    """A source that reports no freshness (event summaries) is judged as of now minus the
    lag; the engine decides whether such a source may be judged at all."""
    rule = make_rule(absence())
    (series,) = series_for(rule, at("2025-01-06 10:20"), stops_at(STOP))
    unknown = type(series)(**{**{f: getattr(series, f) for f in series.__slots__},
                              "refreshed_at": None})
    finding = AbsenceEvaluator().evaluate(rule, unknown, Customer("cus_1"), at("2025-01-06 10:20"))
    assert (finding.state, finding.active) == ("inactive", True)


def test_stale_after_comes_from_the_constructor() -> None:
    rule = make_rule(absence())
    now = at("2025-01-06 10:20")
    strict = AbsenceEvaluator(stale_after=600)
    (need,) = strict.needs(rule, "cus_1", now)
    # The 6h span, the running hour, and one hour for data up to 10 minutes behind.
    assert local(need.starts_at, "UTC") == "2025-01-06 02:00+00:00"
    (series,) = series_for(rule, now, 0, refreshed_at=now - 900)
    finding = strict.evaluate(rule, series, Customer("cus_1"), now)
    assert finding.state == "nodata" and "more than 10m ago" in finding.message


def test_too_little_complete_data_is_nodata() -> None:
    rule = make_rule(absence())
    strict = AbsenceEvaluator(stale_after=6 * HOUR)
    now = at("2025-01-06 10:20")
    (series,) = series_for(rule, now, 0, refreshed_at=now - 4 * HOUR)
    short = type(series)(**{**{f: getattr(series, f) for f in series.__slots__},
                            "buckets": series.buckets[-9:]})
    finding = strict.evaluate(rule, short, Customer("cus_1"), now)
    assert finding.state == "nodata"
    assert finding.message == "only 4h of complete data, 6h needed: absence not judged"


def test_group_by_series_are_judged_apart() -> None:
    rule = make_rule(absence(), group_by=["region"])
    now = at("2025-01-06 10:20")
    quiet = series_for(rule, now, stops_at(STOP), groups=[(("region", "eu"),)])
    busy = series_for(rule, now, 10, groups=[(("region", "us"),)])
    findings = [AbsenceEvaluator().evaluate(rule, s, Customer("cus_1"), now)
                for s in quiet + busy]
    assert [(f.key.group, f.active) for f in findings] == [
        ((("region", "eu"),), True), ((("region", "us"),), False)]

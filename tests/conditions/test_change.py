"""Change conditions: the last complete period against the previous one or the same period a
week earlier, by percent up/down/both, with min_volume on both sides; weekends, a holiday-like
dip, a level shift, and no verdict before the judged period is complete."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from usage_series_builders import DAY, at, judge, local, make_rule

from alertd.model import Period

MONDAY = at("2025-01-06 00:00")


def weekly(weekday: float = 1000, weekend: float = 200) -> Callable[[int], float]:
    """Daily usage with a weekly pattern: quiet Saturdays and Sundays."""
    return lambda start: weekend if (start - MONDAY) // DAY % 7 >= 5 else weekday


def with_days(base: Callable[[int], float], days: dict[str, float]) -> Callable[[int], float]:
    """``base`` with some days (``"2025-01-15"``) replaced."""
    special = {at(day + " 00:00"): value for day, value in days.items()}
    return lambda start: special.get(start, base(start))


def change(**fields: Any) -> dict[str, Any]:
    return {"type": "change", "percent": 100, **fields}


def firing_days(condition: dict[str, Any], usage: Callable[[int], float], days: int,
                window: str = "day") -> list[str]:
    """The judged days on which the rule held, evaluated at 10:00 on each of ``days`` days
    from Monday 2025-01-20 (after two weeks of history)."""
    rule = make_rule(condition, window=window)
    fired = []
    for day in range(days):
        finding = judge(rule, at("2025-01-20 10:00") + day * DAY, usage)
        assert finding.state == "inactive", finding.message
        if finding.active:
            fired.append(finding.period_key)
    return fired


@pytest.mark.parametrize(
    ("condition", "usage", "fired"),
    [
        # Weekends: against the previous day, every Monday is a jump and every Saturday a drop.
        (change(direction="up"), weekly(), ["2025-01-20", "2025-01-27"]),
        (change(direction="both", percent=50), weekly(),
         ["2025-01-20", "2025-01-25", "2025-01-27", "2025-02-01"]),
        # ...against the same day last week, a steady weekly pattern never fires.
        (change(direction="both", percent=50, compare_to="last_week"), weekly(), []),
        # A spike on Wednesday 22nd: the day after shows it, against last week.
        (change(compare_to="last_week"), with_days(weekly(), {"2025-01-22": 3000}),
         ["2025-01-22"]),
        # A holiday-like dip on Wednesday 22nd: caught going down; a week later the normal
        # Wednesday is +900 % against the holiday (change has no memory; anomaly rules do).
        (change(direction="down", percent=50, compare_to="last_week"),
         with_days(weekly(), {"2025-01-22": 100}), ["2025-01-22"]),
        (change(direction="up", compare_to="last_week"),
         with_days(weekly(), {"2025-01-22": 100}), ["2025-01-29"]),
        # A level shift (×3 from Thursday 23rd) alerts once against the previous day, then is
        # the new normal.
        (change(), lambda start: 3000 if start >= at("2025-01-23 00:00") else 1000,
         ["2025-01-23"]),
        # ...and once a week later against last week: seven days in a row, then quiet.
        (change(compare_to="last_week"),
         lambda start: 3000 if start >= at("2025-01-23 00:00") else 1000,
         ["2025-01-23", "2025-01-24", "2025-01-25", "2025-01-26", "2025-01-27",
          "2025-01-28", "2025-01-29"]),
        # A customer with zero usage on most days: min_volume keeps 0 → 5 from alarming.
        (change(direction="both", min_volume=50),
         lambda start: 5 if (start - MONDAY) // DAY % 4 == 0 else 0, []),
        (change(direction="both"),
         lambda start: 5 if (start - MONDAY) // DAY % 4 == 0 else 0,
         ["2025-01-19", "2025-01-22", "2025-01-23", "2025-01-26", "2025-01-27", "2025-01-30",
          "2025-01-31"]),
    ],
)
def test_change_over_two_weeks(
    condition: dict[str, Any], usage: Callable[[int], float], fired: list[str]
) -> None:
    assert firing_days(condition, usage, 14) == fired


@pytest.mark.parametrize(
    ("condition", "previous", "current", "active", "percent"),
    [
        (change(), 1000, 2000, True, 100.0),
        (change(), 1000, 1999, False, 99.9),
        (change(direction="down", percent=50), 1000, 500, True, -50.0),
        (change(direction="down", percent=50), 1000, 501, False, -49.9),
        (change(direction="up", percent=50), 1000, 400, False, -60.0),
        (change(direction="both", percent=50), 1000, 400, True, -60.0),
        (change(direction="both", percent=50), 1000, 1600, True, 60.0),
        # min_volume on both sides: "2 → 4 calls" is no alarm...
        (change(min_volume=10), 2, 4, False, 100.0),
        (change(min_volume=0), 2, 4, True, 100.0),
        (change(min_volume=10), 10, 20, True, 100.0),
        (change(min_volume=1000), 500, 5000, False, 900.0),
        # ...nor is a fall to almost nothing (absence and anomaly rules catch stops).
        (change(direction="down", percent=50, min_volume=1000), 10_000, 0, False, -100.0),
        (change(direction="down", percent=50, min_volume=1000), 10_000, 2000, True, -80.0),
        # From zero, any usage is an infinite rise (reported as None: JSON has no infinity).
        (change(), 0, 50, True, None),
        (change(), 0, 0, False, 0.0),
        (change(direction="down", percent=100), 50, 0, True, -100.0),
    ],
)
def test_change_verdicts(
    condition: dict[str, Any], previous: float, current: float, active: bool,
    percent: float | None,
) -> None:
    now = at("2025-01-08 10:00")
    usage = with_days(lambda start: previous, {"2025-01-07": current})
    finding = judge(make_rule(condition, severity="info"), now, usage)
    assert (finding.active, finding.details["change_percent"]) == (active, percent)
    assert (finding.value, finding.baseline) == (current, previous)
    assert finding.level == ("info" if active else None)
    assert (finding.complete, finding.period_key) == (True, "2025-01-07")
    assert finding.window == Period(at("2025-01-07 00:00"), at("2025-01-08 00:00"), "UTC")
    assert finding.details["compared_window"]["starts_at"] == at("2025-01-06 00:00")


def test_change_message_explains_itself() -> None:
    usage = with_days(lambda start: 1000, {"2025-01-07": 2400})
    rule = make_rule(change(compare_to="last_week", min_volume=100))
    finding = judge(rule, at("2025-01-08 10:00"), usage)
    assert finding.message == (
        "2,400 on 2025-01-07 (UTC): +140% vs 1,000 on 2024-12-31 (UTC); alerts at +100% "
        "with at least 100 on both sides")
    assert finding.details["compare_to"] == "last_week"
    zero = judge(make_rule(change()), at("2025-01-08 10:00"),
                 with_days(lambda start: 0, {"2025-01-07": 5}))
    assert "new usage from zero vs 0 on 2025-01-06" in zero.message


@pytest.mark.parametrize(
    ("now", "refreshed", "state"),
    [
        ("2025-01-08 00:05", "2025-01-08 00:04", "nodata"),  # the day has just ended
        ("2025-01-08 00:05", "2025-01-08 00:05", "inactive"),
        ("2025-01-08 12:00", "2025-01-07 23:00", "nodata"),  # refreshed before it ended
    ],
)
def test_change_waits_for_a_complete_period(now: str, refreshed: str, state: str) -> None:
    finding = judge(make_rule(change()), at(now), 100, refreshed_at=at(refreshed))
    assert (finding.state, finding.active, finding.period_key) == (state, False, "2025-01-07")
    if state == "nodata":
        assert finding.message.startswith("no complete data for 2025-01-07 yet")


def test_hourly_last_week_compares_the_same_wall_clock_hour_across_dst() -> None:
    """09:00 on Wednesday 12 March (EDT) is compared with 09:00 on 5 March (EST)."""
    tz = "America/New_York"
    rule = make_rule(change(compare_to="last_week"), window="hour", timezone=tz)
    spike = at("2025-03-12 09:00", tz)
    finding = judge(rule, at("2025-03-12 10:20", tz), lambda start: 50 if start == spike else 10)
    assert (finding.active, finding.value, finding.baseline) == (True, 50, 10)
    compared = finding.details["compared_window"]
    assert local(compared["starts_at"], tz) == "2025-03-05 09:00-05:00"


@pytest.mark.parametrize(
    ("window", "now", "value", "baseline", "key"),
    [
        ("week", "2025-01-22 10:00", 7000, 7000, "2025-W03"),
        ("month", "2025-03-10 10:00", 28_000, 31_000, "2025-02"),
    ],
)
def test_weeks_and_months_are_summed_from_days(
    window: str, now: str, value: float, baseline: float, key: str
) -> None:
    finding = judge(make_rule(change(direction="both", percent=5), window=window), at(now), 1000)
    assert (finding.value, finding.baseline, finding.period_key) == (value, baseline, key)
    assert finding.active is (abs(value - baseline) / baseline >= 0.05)

"""Forecast conditions: the period so far projected to its end from the recent run rate.

Generated months with known totals (weekly seasonality, noise, drift) measure the projection
error after 7, 14 and 21 days and check that every month ending clearly over budget is
flagged (and none clearly under); plus min_elapsed, crosses_at, value_from, zones."""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Callable

import pytest
from usage_series_builders import DAY, HOUR, at, judge, make_rule

from alertd import calendar
from alertd.model import Customer, Finding, Period

EPOCH = at("2024-01-01 00:00")  # a Monday


def generated_month(seed: int) -> tuple[Period, Callable[[int], float], float]:
    """A month, its daily usage (weekday/weekend pattern, ±15 % lognormal noise, drift) and
    its true total."""
    rng = random.Random(seed)
    base, weekend, drift = rng.uniform(1e3, 1e5), rng.uniform(0.2, 0.8), rng.uniform(-0.01, 0.01)

    def usage(start: int) -> float:
        day = (start - EPOCH) // DAY
        factor = weekend if day % 7 >= 5 else 1.0
        noise = math.exp(random.Random(seed * 100_000 + day).gauss(0, 0.15))
        return base * factor * (1 + drift * day / 30) * noise

    month = calendar.period_containing(at("2025-01-15 00:00") + seed % 12 * 30 * DAY, "month",
                                      "UTC")
    days = calendar.periods(month.starts_at, month.ends_at, "day", "UTC")
    return month, usage, sum(usage(day.starts_at) for day in days)


def forecast_on_day(month: Period, usage: Callable[[int], float], day: int,
                    budget: float = 1e15) -> Finding:
    """The finding at noon on day ``day`` of the month (data fresh to the minute)."""
    rule = make_rule({"type": "forecast", "value": budget, "min_elapsed": "3d"}, window="month")
    now = month.starts_at + day * DAY + 12 * HOUR
    return judge(rule, now, usage, refreshed_at=now, prorate=True)


MONTHS = [generated_month(seed) for seed in range(48)]


@pytest.mark.parametrize(("day", "bound"), [(7, 0.06), (14, 0.05), (21, 0.04)])
def test_projection_error_on_generated_months(day: int, bound: float) -> None:
    """Median absolute percentage error of the projected total (measured: about 3.0 %, 2.7 %
    and 1.9 % after 7, 14 and 21 days)."""
    errors = []
    for month, usage, total in MONTHS:
        finding = forecast_on_day(month, usage, day)
        assert finding.projected is not None
        errors.append(abs(finding.projected - total) / total)
    assert statistics.median(errors) <= bound


@pytest.mark.parametrize("day", [14, 21])
@pytest.mark.parametrize("ratio", [0.75, 0.85, 1.15, 1.3])
def test_months_ending_over_budget_are_flagged(day: int, ratio: float) -> None:
    """Budget = true total × ratio: flagged exactly when the month ends over budget."""
    for month, usage, total in MONTHS:
        finding = forecast_on_day(month, usage, day, budget=total * ratio)
        assert finding.active is (ratio < 1), (month, finding.message)


def test_a_runaway_job_is_flagged_within_days_with_its_crossing_date() -> None:
    """1,000 a day, then 5,000 a day from the 10th: a 60,000 budget is blown on the 20th,
    and the forecast says so from the 12th (evaluated at noon each day)."""
    def usage(start: int) -> float:
        return 5000.0 if start >= at("2025-01-10 00:00") else 1000.0

    rule = make_rule({"type": "forecast", "value": 60_000}, window="month")
    fired = {}
    for day in range(9, 16):
        now = at("2025-01-01 12:00") + day * DAY
        finding = judge(rule, now, usage, refreshed_at=now, prorate=True)
        fired[day + 1] = (finding.active, finding.details["crosses_at"])
    assert fired[11] == (False, None)
    assert fired[12] == (True, "2025-01-30")  # two complete days at the new rate
    # As the run rate fills with the new level, the crossing date converges on the true one.
    assert [fired[day][1] for day in (13, 14, 15, 16)] == [
        "2025-01-25", "2025-01-23", "2025-01-21", "2025-01-20"]


@pytest.mark.parametrize(
    ("now", "budget", "active", "crosses_at", "ending"),
    [
        # 4,000 a day; at noon on the 16th, 62,000 so far, 15.5 days left: 124,000.
        ("2025-01-16 12:00", 101_000, True, "2025-01-26", "crosses it on 2025-01-26"),
        ("2025-01-16 12:00", 130_000, False, None, "stays under it"),
        ("2025-01-16 12:00", 30_000, True, "2025-01-08", "crossed it on 2025-01-08"),
        ("2025-01-31 23:00", 123_900, True, "2025-01-31", "crosses it on 2025-01-31"),
        ("2025-01-31 23:00", 123_000, True, "2025-01-31", "crossed it on 2025-01-31"),
    ],
)
def test_projection_and_crossing_date(
    now: str, budget: float, active: bool, crosses_at: str | None, ending: str
) -> None:
    rule = make_rule({"type": "forecast", "value": budget}, window="month")
    finding = judge(rule, at(now), 4000, refreshed_at=at(now), prorate=True)
    elapsed = (at(now) - at("2025-01-01 00:00")) / DAY
    assert finding.value == pytest.approx(4000 * elapsed)
    assert finding.projected == pytest.approx(124_000)
    assert (finding.active, finding.details["crosses_at"]) == (active, crosses_at)
    assert (finding.threshold, finding.period_key, finding.complete) == (budget, "2025-01", False)
    assert finding.level == ("warning" if active else None)
    assert finding.message.endswith(ending)
    assert finding.details["rate_per_day"] == pytest.approx(4000)
    assert "run rate of the last 7 complete day(s)" in finding.details["method"]


def test_message_reads_well() -> None:
    rule = make_rule({"type": "forecast", "value": 100_000}, window="month")
    finding = judge(rule, at("2025-01-16 12:00"), 4000, refreshed_at=at("2025-01-16 12:00"),
                    prorate=True)
    assert finding.message == (
        "62,000 so far, on track for 124,000 by 2025-01-31 (UTC), budget 100,000: crosses it "
        "on 2025-01-26")


@pytest.mark.parametrize(
    ("now", "active", "message"),
    [
        ("2025-01-03 11:59", False,
         "9,997 so far; no forecast until 3d of the month have passed (2d 11h so far)"),
        ("2025-01-04 00:00", True, None),
    ],
)
def test_no_verdict_before_min_elapsed(now: str, active: bool, message: str | None) -> None:
    rule = make_rule({"type": "forecast", "value": 10_000, "min_elapsed": "3d"}, window="month")
    finding = judge(rule, at(now), 4000, refreshed_at=at(now), prorate=True)
    assert finding.active is active
    assert finding.state == "inactive"
    if message is not None:
        assert finding.message == message
        assert (finding.projected, finding.details["crosses_at"]) == (None, None)


def test_min_elapsed_counts_from_the_data_not_the_clock() -> None:
    """Data refreshed on day 2 has seen two days of the month, whatever the clock says."""
    rule = make_rule({"type": "forecast", "value": 10_000, "min_elapsed": "3d"}, window="month")
    finding = judge(rule, at("2025-01-04 12:00"), 4000, refreshed_at=at("2025-01-03 00:00"))
    assert not finding.active and "no forecast until 3d" in finding.message


@pytest.mark.parametrize(
    ("metadata", "percent", "state", "threshold"),
    [
        ({"budget": "200000"}, 100, "inactive", 200_000),
        ({"budget": "200000"}, 50, "inactive", 100_000),
        ({}, 100, "error", None),
        ({"budget": "a lot"}, 100, "error", None),
    ],
)
def test_budget_from_metadata(
    metadata: dict[str, str], percent: float, state: str, threshold: float | None
) -> None:
    rule = make_rule({"type": "forecast", "value_from": {"metadata": "budget",
                                                         "percent": percent}}, window="month")
    finding = judge(rule, at("2025-01-16 12:00"), 4000, customer=Customer("cus_b", None, None,
                                                                           metadata))
    assert (finding.state, finding.threshold) == (state, threshold)
    assert finding.active is (threshold == 100_000)
    if state == "error":
        assert "cus_b" in finding.message and "'budget'" in finding.message


def test_crossing_date_is_local() -> None:
    """In Asia/Kolkata the month and the crossing date are local: the budget is crossed at
    01:00 local on the 26th, which is still the 25th in UTC."""
    tz = "Asia/Kolkata"
    rule = make_rule({"type": "forecast", "value": 100_166.67}, window="month", timezone=tz)
    now = at("2025-01-16 12:00", tz)
    finding = judge(rule, now, 4000, refreshed_at=now, prorate=True)
    assert finding.details["crosses_at"] == "2025-01-26"
    assert finding.window == Period(at("2025-01-01 00:00", tz), at("2025-02-01 00:00", tz), tz)


def test_no_complete_data_for_the_rate_is_nodata() -> None:
    rule = make_rule({"type": "forecast", "value": 1000}, window="month")
    finding = judge(rule, at("2025-01-16 12:00"), 4000, refreshed_at=at("2024-12-01 00:00"))
    assert finding.state == "nodata"
    assert finding.message.startswith("no complete data for the run rate yet")


def test_daily_forecast_uses_day_buckets_of_the_last_week() -> None:
    """A forecast of the running week, from the last 7 complete days."""
    rule = make_rule({"type": "forecast", "value": 6000, "min_elapsed": "1d"}, window="week")
    now = at("2025-01-09 12:00")  # Thursday noon: 3.5 days so far, 3.5 to go
    finding = judge(rule, now, 1000, refreshed_at=now, prorate=True)
    assert finding.projected == pytest.approx(7000)
    assert (finding.active, finding.period_key) == (True, "2025-W02")

"""The deadline arithmetic (alertd.deadlines): pure tables, ``now`` given."""

from __future__ import annotations

import math
from typing import Any

import pytest

from alertd.conditions.base import Bound
from alertd.deadlines import (
    Memory,
    Pacing,
    completion_deadline,
    crossing_deadline,
    remember,
    series_deadline,
)
from alertd.model import Finding, FindingState, Period, SeriesKey
from alertd.rules.schema import Rule

DAY = 86_400
HOUR = 3_600
#: Monday 2025-03-10 00:00 UTC.
MIDNIGHT = 1_741_564_800
NOON = MIDNIGHT + 12 * HOUR
PACING = Pacing(safety=2.0, min_interval=60.0, peak_half_life=DAY, freshness_lag=300.0)


def threshold(every: float = HOUR, op: str = ">", **extra: Any) -> Rule:
    return Rule.model_validate({
        "name": "tokens", "meter": "mtr_x", "window": "day", "every": every,
        "condition": {"type": "threshold", "op": op, "value": 1000.0}, **extra})


def anomaly(every: float = 900.0) -> Rule:
    return Rule.model_validate({
        "name": "odd", "meter": "mtr_x", "window": "hour", "every": every,
        "condition": {"type": "anomaly"}})


def finding(value: float | None, *, state: FindingState = "inactive", active: bool = False,
            bound: float = 1000.0, day: int = MIDNIGHT, key: str = "2025-03-10") -> Finding:
    return Finding(SeriesKey("tokens", "cus_1"), "mtr_x", (), Period(day, day + DAY), False,
                   value, active, None, state, "", figures=Bound(bound), period_key=key)


@pytest.mark.parametrize(("value", "bound", "rate", "at", "end", "expected"), [
    (0.0, 1000.0, 1.0, 0.0, 10_000.0, 1000.0),          # far below: the whole gap at the rate
    (900.0, 1000.0, 1.0, 0.0, 10_000.0, 100.0),         # near the limit: soon
    (1000.0, 1000.0, 1.0, 50.0, 10_000.0, 50.0),        # at it: now
    (0.0, 1000.0, 0.0, 0.0, 10_000.0, math.inf),        # no growth: never at this pace
    (500.0, 1000.0, 0.1, 0.0, 1000.0, 1000.0 + 10_000.0),  # the window resets first
    (-200.0, 1000.0, 1.0, 0.0, 10_000.0, 1200.0),       # corrections: a longer way up
])
def test_crossing_deadline(value: float, bound: float, rate: float, at: float, end: float,
                           expected: float) -> None:
    assert crossing_deadline(value, bound, rate, at, end) == expected


@pytest.mark.parametrize(("now", "every", "expected"), [
    (NOON - 600, 900.0, NOON + 300),                    # every < an hour: each completed hour
    (NOON + 200, 900.0, NOON + 300),                    # the hour just ended, not yet complete
    (NOON + 300, 900.0, NOON + HOUR + 300),             # ... and now it is: the next one
    (NOON + 301, 6 * HOUR, NOON + 6 * HOUR + 300),      # every 6 h: a completion ≥ 5 h away
    (NOON + 301, HOUR, NOON + HOUR + 300),              # every = the bucket: the next one
])
def test_completion_deadline_one_read_per_completed_hour(now: float, every: float,
                                                         expected: float) -> None:
    assert completion_deadline(now, every, "hour", "UTC", 300.0) == expected


def test_completion_deadline_follows_local_days_across_dst() -> None:
    # America/New_York, Sunday 2025-03-09 has 23 hours: the next day starts at 04:00 UTC.
    now = 1_741_500_000  # 2025-03-09 06:00 UTC
    due = completion_deadline(now, 900.0, "day", "America/New_York", 300.0)
    assert due == 1_741_579_200 + 300  # 2025-03-10 04:00 UTC + lag


def memory(rate: float, value: float = 0.0, at: float = NOON) -> Memory:
    return Memory(at, value, "2025-03-10", rate)


@pytest.mark.parametrize(("value", "rate", "every", "due"), [
    # Far below the limit: the crossing is past every, so every bounds it.
    (100.0, 0.001, HOUR, NOON + HOUR),
    # Near the limit at a steady pace: (1000 − 900) / (2 × 0.01) = 5000 s, within every.
    (900.0, 0.01, 6 * HOUR, NOON + 5000),
    # Very near and fast: never sooner than min_interval.
    (999.0, 10.0, HOUR, NOON + 60),
    # No usage at all: every.
    (0.0, 0.0, 6 * HOUR, NOON + 6 * HOUR),
    # min_interval never exceeds every.
    (999.0, 10.0, 30.0, NOON + 30),
])
def test_threshold_deadline(value: float, rate: float, every: float, due: float) -> None:
    rule = threshold(every=every)
    assert series_deadline(rule, finding(value), memory(rate, value), NOON, PACING) == due


def test_far_below_is_read_later_than_near() -> None:
    rule = threshold(every=12 * HOUR)
    far = series_deadline(rule, finding(50.0), memory(0.005, 50.0), NOON, PACING)
    near = series_deadline(rule, finding(950.0), memory(0.005, 950.0), NOON, PACING)
    # Far: 950 to go at 0.01/s is past midnight, and tomorrow's 1000 from zero past every.
    assert near == NOON + 50 / 0.01 and far == NOON + 12 * HOUR
    assert near < far


def test_window_reset_moves_the_deadline_into_the_next_period() -> None:
    # At 22:00, 500 to go at 2 × 0.001/s = 250,000 s: not today. Tomorrow starts at zero and
    # needs 1000 / 0.002 = 500,000 s from midnight; every (7 days) caps nothing.
    rule = threshold(every=7 * DAY)
    late = MIDNIGHT + 22 * HOUR
    due = series_deadline(rule, finding(500.0), memory(0.001, 500.0, late), late, PACING)
    assert due == MIDNIGHT + DAY + 500_000


def test_data_delay_counts_from_the_data_not_from_now() -> None:
    rule = threshold(every=6 * HOUR)
    delayed = series_deadline(rule, finding(900.0), memory(0.01, 900.0), NOON, PACING,
                              data_delay=600.0)
    # The data is as of 11:50: crossing at 11:50 + 5000 s, seen 600 s later = NOON + 5000.
    assert delayed == NOON + 5000


@pytest.mark.parametrize("state", ["firing", "pending", "nodata", "error"])
def test_watched_states_are_read_at_every(state: FindingState) -> None:
    rule = threshold(every=HOUR)
    due = series_deadline(rule, finding(10.0, state=state, active=state != "nodata"),
                          memory(0.0, 10.0), NOON, PACING)
    assert due == NOON + HOUR


def test_the_group_every_overrides_the_rules() -> None:
    rule = threshold(every=6 * HOUR)
    due = series_deadline(rule, finding(0.0), None, NOON, PACING, every=600.0)
    assert due == NOON + 600


def test_lower_thresholds_and_anomalies_wait_for_a_completed_bucket() -> None:
    lower = threshold(every=900.0, op="<")
    due = series_deadline(lower, finding(10.0), None, NOON, PACING)
    assert due == MIDNIGHT + DAY + 300  # a daily "usage dropped": once, after the day ends
    odd = anomaly()
    due = series_deadline(odd, finding(10.0), None, NOON + 400, PACING)
    assert due == NOON + HOUR + 300


def test_cost_thresholds_are_read_at_every() -> None:
    rule = Rule.model_validate({
        "name": "spend", "meter": "mtr_x", "window": "billing_period", "every": HOUR,
        "condition": {"type": "threshold", "op": ">", "measure": "cost", "value": "100 usd"}})
    assert series_deadline(rule, finding(1.0), memory(0.0), NOON, PACING) == NOON + HOUR


@pytest.mark.parametrize(("previous", "value", "at", "rate"), [
    # First read at noon: the period's mean so far, 43,200 / 43,200 s.
    (None, 43_200.0, NOON, 1.0),
    # Growth since the last read beats the mean: (43,200 + 3,600 − 43,200) / 600 s.
    (Memory(NOON - 600, 43_200.0 - 3_600.0 + 3_600.0 - 600.0 * 6, "2025-03-10", 0.0),
     43_200.0, NOON, 6.0),
    # A remembered peak of 8/s, half a half-life ago: 8 × 2^-0.5.
    (Memory(NOON - DAY / 2, 0.0, "2025-03-09", 8.0), 0.0, NOON, 8 * 2 ** -0.5),
    # A correction (usage went down) never makes the rate negative.
    (Memory(NOON - 600, 5_000.0, "2025-03-10", 0.0), 0.0, NOON, 0.0),
])
def test_remember_keeps_a_robust_recent_peak(previous: Memory | None, value: float, at: float,
                                             rate: float) -> None:
    remembered = remember(previous, finding(value), at, PACING)
    assert remembered is not None
    assert remembered.peak_rate == pytest.approx(rate)
    assert (remembered.at, remembered.value) == (at, value)


def test_remember_ignores_a_finding_without_a_value() -> None:
    previous = memory(1.0)
    assert remember(previous, finding(None, state="error"), NOON, PACING) is previous
    assert remember(None, finding(math.nan), NOON, PACING) is None

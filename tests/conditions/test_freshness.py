"""The freshness contract, operator by operator: upper thresholds may fire on the running
(incomplete) period; lower ones judge only complete periods, so "usage dropped" never fires at
00:05 because the day has just begun; data after ``--at`` counts as not yet refreshed."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from usage_series_builders import at, judge, make_rule

from alertd.model import FindingState

TODAY = at("2025-01-06 00:00")


def steady(start: int) -> float:
    """100 a day, every day."""
    return 100.0


def day_just_began(start: int) -> float:
    """100 a day until yesterday; nothing yet today."""
    return 0.0 if start >= TODAY else 100.0


# op, bound, usage, now, refreshed_at, lag → state, active, complete, judged day
TABLE = [
    # Upper thresholds judge today, incomplete, before and after refreshed_at passes its end.
    (">", 50, steady, "2025-01-06 10:00", "2025-01-06 09:59", 300,
     "inactive", True, False, "2025-01-06"),
    (">=", 100, steady, "2025-01-06 10:00", "2025-01-06 09:59", 300,
     "inactive", True, False, "2025-01-06"),
    (">", 100, steady, "2025-01-06 10:00", "2025-01-06 09:59", 300,
     "inactive", False, False, "2025-01-06"),
    (">", 50, steady, "2025-01-06 00:05", "2025-01-06 00:04", 300,
     "inactive", True, False, "2025-01-06"),
    (">", 50, day_just_began, "2025-01-06 00:05", "2025-01-06 00:04", 300,
     "inactive", False, False, "2025-01-06"),
    (">", 50, steady, "2025-01-06 10:00", "2025-01-05 12:00", 300,
     "inactive", True, False, "2025-01-06"),
    # Lower thresholds: yesterday, once complete (refreshed_at ≥ midnight + lag).
    ("<", 50, day_just_began, "2025-01-06 00:05", "2025-01-06 00:04", 300,
     "nodata", False, False, "2025-01-05"),
    ("<", 50, day_just_began, "2025-01-06 00:05", "2025-01-06 00:05", 300,
     "inactive", False, True, "2025-01-05"),
    ("<", 50, day_just_began, "2025-01-06 23:59", "2025-01-06 23:58", 300,
     "inactive", False, True, "2025-01-05"),
    ("<", 200, steady, "2025-01-06 00:05", "2025-01-06 00:04:59", 300,
     "nodata", False, False, "2025-01-05"),
    ("<", 200, steady, "2025-01-06 00:05", "2025-01-06 00:05", 300,
     "inactive", True, True, "2025-01-05"),
    ("<=", 100, steady, "2025-01-06 00:05", "2025-01-06 00:04", 300,
     "nodata", False, False, "2025-01-05"),
    ("<=", 100, steady, "2025-01-06 00:11", "2025-01-06 00:10", 300,
     "inactive", True, True, "2025-01-05"),
    ("<=", 99, steady, "2025-01-06 00:11", "2025-01-06 00:10", 300,
     "inactive", False, True, "2025-01-05"),
    ("<", 200, steady, "2025-01-06 00:00", "2025-01-06 00:00", 0,
     "inactive", True, True, "2025-01-05"),
    # Refreshed long ago: yesterday never became complete.
    ("<", 200, steady, "2025-01-06 10:00", "2025-01-05 23:00", 300,
     "nodata", False, False, "2025-01-05"),
    # --at 00:03 with data refreshed later in real time: capped at --at, so not complete.
    ("<", 200, steady, "2025-01-06 00:03", "2025-01-07 12:00", 300,
     "nodata", False, False, "2025-01-05"),
    ("<", 200, steady, "2025-01-06 00:03", "2025-01-07 12:00", 0,
     "inactive", True, True, "2025-01-05"),
]


@pytest.mark.parametrize(
    ("op", "bound", "usage", "now", "refreshed", "lag", "state", "active", "complete", "day"),
    TABLE,
)
def test_freshness_per_operator(
    op: str, bound: float, usage: Callable[[int], float], now: str, refreshed: str, lag: float,
    state: FindingState, active: bool, complete: bool, day: str,
) -> None:
    rule = make_rule({"type": "threshold", "op": op, "value": bound})
    finding = judge(rule, at(now), usage, refreshed_at=at(refreshed), lag=lag)
    assert (finding.state, finding.active, finding.complete, finding.period_key) == (
        state, active, complete, day)
    if state == "nodata":
        assert finding.value is None and finding.level is None
        assert "no complete data for 2025-01-05" in finding.message


@pytest.mark.parametrize(
    ("now", "refreshed", "state", "judged_hour"),
    [
        ("2025-01-06 10:02", "2025-01-06 10:01", "nodata", "2025-01-06T09+0000"),
        ("2025-01-06 10:06", "2025-01-06 10:05", "inactive", "2025-01-06T09+0000"),
        ("2025-01-06 10:59", "2025-01-06 10:58", "inactive", "2025-01-06T09+0000"),
    ],
)
def test_hourly_lower_threshold_waits_for_the_lag(
    now: str, refreshed: str, state: FindingState, judged_hour: str
) -> None:
    rule = make_rule({"type": "threshold", "op": "<", "value": 5}, window="hour")
    finding = judge(rule, at(now), 1.0, refreshed_at=at(refreshed))
    assert (finding.state, finding.period_key) == (state, judged_hour)
    assert finding.active is (state == "inactive")

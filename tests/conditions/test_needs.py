"""What each condition asks for: exactly one DataNeed with the rule's spec and zone, hour
buckets only for hourly rules (and absence), ranges ending at the current period's end or at
now rounded up to the minute, starting as far back as the condition looks."""

from __future__ import annotations

from typing import Any

import pytest
from usage_series_builders import at, local, make_rule

from alertd import conditions
from alertd.model import Granularity, MeterSpec, make_filters

GT = {"type": "threshold", "op": ">", "value": 1}
LT = {"type": "threshold", "op": "<", "value": 1}
CHANGE = {"type": "change", "percent": 50}
LAST_WEEK = {"type": "change", "percent": 50, "compare_to": "last_week"}
FORECAST = {"type": "forecast", "value": 1, "rate_window": "7d"}
ABSENCE = {"type": "absence", "duration": "6h"}

NEEDS: list[tuple[dict[str, Any], Granularity, str, str, Granularity, str, str]] = [
    # condition, window, zone, now (local), granularity, start (local), end (local)
    (GT, "day", "UTC", "2025-01-06 10:20:30", "day",
     "2025-01-06 00:00+00:00", "2025-01-06 10:21+00:00"),
    (GT, "day", "America/New_York", "2025-01-06 10:20", "day",
     "2025-01-06 00:00-05:00", "2025-01-06 10:20-05:00"),
    (GT, "hour", "Asia/Kolkata", "2025-01-06 10:20", "hour",
     "2025-01-06 10:00+05:30", "2025-01-06 10:20+05:30"),
    (GT, "week", "UTC", "2025-01-08 10:20", "day",
     "2025-01-06 00:00+00:00", "2025-01-08 10:20+00:00"),
    (GT, "month", "UTC", "2025-01-08 10:20", "day",
     "2025-01-01 00:00+00:00", "2025-01-08 10:20+00:00"),
    # now at the very start of a period: the range reaches back a bucket (never empty).
    (GT, "day", "UTC", "2025-01-06 00:00", "day",
     "2025-01-05 00:00+00:00", "2025-01-06 00:00+00:00"),
    (GT, "hour", "UTC", "2025-01-06 10:00", "hour",
     "2025-01-06 09:00+00:00", "2025-01-06 10:00+00:00"),
    # Lower thresholds judge the previous period.
    (LT, "day", "UTC", "2025-01-06 00:05", "day",
     "2025-01-05 00:00+00:00", "2025-01-06 00:05+00:00"),
    (LT, "day", "America/New_York", "2025-03-10 08:00", "day",
     "2025-03-09 00:00-05:00", "2025-03-10 08:00-04:00"),
    (LT, "month", "UTC", "2025-03-02 00:00", "day",
     "2025-02-01 00:00+00:00", "2025-03-02 00:00+00:00"),
    (LT, "hour", "UTC", "2025-01-06 10:20", "hour",
     "2025-01-06 09:00+00:00", "2025-01-06 10:20+00:00"),
    # Change: the judged (previous) period and the one it is compared with.
    (CHANGE, "day", "UTC", "2025-01-08 10:20", "day",
     "2025-01-06 00:00+00:00", "2025-01-08 10:20+00:00"),
    (LAST_WEEK, "day", "UTC", "2025-01-08 10:20", "day",
     "2024-12-31 00:00+00:00", "2025-01-08 10:20+00:00"),
    (LAST_WEEK, "hour", "America/New_York", "2025-03-12 10:20", "hour",
     "2025-03-05 09:00-05:00", "2025-03-12 10:20-04:00"),
    (CHANGE, "week", "UTC", "2025-01-08 10:20", "day",
     "2024-12-23 00:00+00:00", "2025-01-08 10:20+00:00"),
    (LAST_WEEK, "month", "UTC", "2025-03-08 10:20", "day",
     "2025-01-01 00:00+00:00", "2025-03-08 10:20+00:00"),
    # Forecast: the period, or further back for 7 whole days of run rate plus a spare day.
    (FORECAST, "month", "UTC", "2025-01-20 10:20", "day",
     "2025-01-01 00:00+00:00", "2025-01-20 10:20+00:00"),
    (FORECAST, "month", "UTC", "2025-01-03 10:20", "day",
     "2024-12-26 00:00+00:00", "2025-01-03 10:20+00:00"),
    # Absence: hour buckets whatever the window; the span, the running hour and the hours
    # data may trail without being stale (2h by default).
    (ABSENCE, "day", "UTC", "2025-01-06 10:20", "hour",
     "2025-01-06 01:00+00:00", "2025-01-06 10:20+00:00"),
    (ABSENCE, "hour", "Asia/Kathmandu", "2025-01-06 10:20", "hour",
     "2025-01-06 01:00+05:45", "2025-01-06 10:20+05:45"),
]


@pytest.mark.parametrize(
    ("condition", "window", "tz", "now", "granularity", "start", "end"), NEEDS
)
def test_need(
    condition: dict[str, Any], window: Granularity, tz: str, now: str,
    granularity: Granularity, start: str, end: str,
) -> None:
    rule = make_rule(condition, window=window, timezone=tz)
    (need,) = conditions.needs(rule, "cus_1", at(now, tz))
    assert need.granularity == granularity
    assert (local(need.starts_at, tz), local(need.ends_at, tz)) == (start, end)
    assert need.timezone == tz
    assert need.customer == "cus_1"
    assert need.starts_at % 60 == 0 and need.ends_at % 60 == 0
    assert need.starts_at < need.ends_at


@pytest.mark.parametrize("condition", [GT, LT, CHANGE, FORECAST, ABSENCE])
def test_need_carries_the_rules_spec(condition: dict[str, Any]) -> None:
    rule = make_rule(condition, filters={"model": "gpt-4", "tier": ["pro", "free"]},
                     tenant_filters={"user_id": "u1"}, group_by=["region", "model"])
    (need,) = conditions.needs(rule, "cus_9", at("2025-01-06 10:20"))
    assert need.spec == MeterSpec(
        "mtr_1", make_filters({"model": "gpt-4", "tier": ["free", "pro"]}),
        make_filters({"user_id": "u1"}), ("region", "model"),
    )


def test_rules_of_different_windows_share_day_buckets() -> None:
    """Day, week and month rules on one meter ask for the same granularity and zone, so the
    planner can serve them with one request."""
    now = at("2025-01-08 10:20")
    found = {
        conditions.needs(make_rule(GT, window=window), "cus_1", now)[0].granularity
        for window in ("day", "week", "month")
    }
    assert found == {"day"}

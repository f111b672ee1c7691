"""Threshold conditions: fixed values, per-customer quotas from metadata (missing ones are
reported, not guessed), levels (absolute or percents of the quota), and group-by series."""

from __future__ import annotations

from typing import Any

import pytest
from usage_series_builders import at, judge, make_rule, series_for

from alertd import calendar, conditions
from alertd.model import Customer, Period

NOW = at("2025-01-06 15:00")


@pytest.mark.parametrize(
    ("op", "value", "usage", "active", "message"),
    [
        (">", 40_000, 42_100, True, "42,100 today (UTC) > 40,000"),
        (">", 40_000, 40_000, False, "40,000 today (UTC); fires when > 40,000"),
        (">=", 40_000, 40_000, True, "40,000 today (UTC) >= 40,000"),
        (">", 0, 0.5, True, "0.5 today (UTC) > 0"),
        ("<", 100, 99, True, "99 on 2025-01-05 (UTC) < 100"),
        ("<", 100, 100, False, "100 on 2025-01-05 (UTC); fires when < 100"),
        ("<=", 100, 100, True, "100 on 2025-01-05 (UTC) <= 100"),
        ("<", 1, 0, True, "0 on 2025-01-05 (UTC) < 1"),
    ],
)
def test_fixed_value(op: str, value: float, usage: float, active: bool, message: str) -> None:
    rule = make_rule({"type": "threshold", "op": op, "value": value}, severity="critical")
    finding = judge(rule, NOW, usage)
    assert (finding.active, finding.message, finding.threshold) == (active, message, value)
    assert finding.value == usage
    assert finding.level == ("critical" if active else None)
    assert finding.state == "inactive"


def test_the_finding_names_the_customers_day_in_its_zone() -> None:
    tz = "America/New_York"
    rule = make_rule({"type": "threshold", "value": 40_000}, timezone=tz)
    now = at("2025-01-06 22:30", tz)  # already 2025-01-07 in UTC
    finding = judge(rule, now, 42_100)
    assert finding.message == "42,100 today (America/New_York) > 40,000"
    assert finding.window == Period(at("2025-01-06 00:00", tz), at("2025-01-07 00:00", tz), tz)
    assert finding.period_key == "2025-01-06"
    assert (finding.complete, finding.rule, finding.customer) == (False, "r", "cus_1")
    assert finding.meter == "mtr_1"


def quota(value: str | None) -> Customer:
    metadata = {} if value is None else {"daily_quota": value}
    return Customer("cus_q", "Quota Co", metadata=metadata)


@pytest.mark.parametrize(
    ("metadata", "percent", "usage", "active", "bound"),
    [
        ("1000", 100, 1001, True, 1000),
        ("1000", 100, 999, False, 1000),
        ("1000", 80, 850, True, 800),
        ("1000", 80, 750, False, 800),
        (" 2000 ", 50, 1001, True, 1000),
        ("1e6", 100, 999_999, False, 1_000_000),
        ("1_500", 100, 1600, True, 1500),
        ("0", 100, 1, True, 0),
    ],
)
def test_value_from_metadata(
    metadata: str, percent: float, usage: float, active: bool, bound: float
) -> None:
    rule = make_rule({"type": "threshold", "value_from": {"metadata": "daily_quota",
                                                          "percent": percent}})
    finding = judge(rule, NOW, usage, customer=quota(metadata))
    assert (finding.active, finding.threshold, finding.state) == (active, bound, "inactive")


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        (None, "customer cus_q has no metadata key 'daily_quota' (value_from needs a number "
               "there)"),
        ("", "customer cus_q metadata 'daily_quota' is '', not a number"),
        ("lots", "customer cus_q metadata 'daily_quota' is 'lots', not a number"),
        ("1,000", "customer cus_q metadata 'daily_quota' is '1,000', not a number"),
        ("nan", "customer cus_q metadata 'daily_quota' is 'nan', not a number"),
        ("inf", "customer cus_q metadata 'daily_quota' is 'inf', not a number"),
    ],
)
@pytest.mark.parametrize("levels", [None, {"warning": 80, "critical": 100}])
def test_missing_or_bad_quota_is_an_error_not_a_guess(
    metadata: str | None, message: str, levels: dict[str, float] | None
) -> None:
    condition: dict[str, Any] = {"type": "threshold", "value_from": {"metadata": "daily_quota"}}
    if levels:
        condition["levels"] = levels
    finding = judge(make_rule(condition), NOW, 10**9, customer=quota(metadata))
    assert (finding.state, finding.active, finding.level, finding.value) == (
        "error", False, None, None)
    assert finding.message == message
    assert finding.period_key == "2025-01-06"


LEVELS = {"warning": 1000, "critical": 2000, "info": 500}


@pytest.mark.parametrize(
    ("op", "levels", "usage", "level", "bound", "suffix"),
    [
        (">", LEVELS, 400, None, 500, "; fires when > 500"),
        (">", LEVELS, 501, "info", 500, " > 500 [info]"),
        (">", LEVELS, 1500, "warning", 1000, " > 1,000 [warning]"),
        (">", LEVELS, 2000, "warning", 1000, " > 1,000 [warning]"),
        (">=", LEVELS, 2000, "critical", 2000, " >= 2,000 [critical]"),
        (">", LEVELS, 10**9, "critical", 2000, " > 2,000 [critical]"),
        # Lower levels: the lower the bound, the more severe.
        ("<", {"warning": 100, "critical": 10}, 500, None, 100, "; fires when < 100"),
        ("<", {"warning": 100, "critical": 10}, 50, "warning", 100, " < 100 [warning]"),
        ("<", {"warning": 100, "critical": 10}, 5, "critical", 10, " < 10 [critical]"),
        (">", {"page": 7}, 8, "page", 7, " > 7 [page]"),
    ],
)
def test_levels(
    op: str, levels: dict[str, float], usage: float, level: str | None, bound: float,
    suffix: str,
) -> None:
    rule = make_rule({"type": "threshold", "op": op, "levels": levels})
    finding = judge(rule, NOW, usage)
    assert (finding.level, finding.threshold, finding.active) == (level, bound, level is not None)
    assert finding.message.endswith(suffix)


@pytest.mark.parametrize(
    ("metadata", "percent", "usage", "level", "bound"),
    [
        ("1000000", 100, 900_000, None, 1_000_000),
        ("1000000", 100, 1_200_000, "warning", 1_000_000),
        ("1000000", 100, 1_600_000, "critical", 1_500_000),
        ("2000000", 100, 1_600_000, None, 2_000_000),
        ("1000000", 50, 600_000, "warning", 500_000),  # levels are percents of quota × 50 %
    ],
)
def test_levels_as_percent_of_the_quota(
    metadata: str, percent: float, usage: float, level: str | None, bound: float
) -> None:
    rule = make_rule({
        "type": "threshold",
        "value_from": {"metadata": "daily_quota", "percent": percent},
        "levels": {"warning": 100, "critical": 150},
    })
    finding = judge(rule, NOW, usage, customer=quota(metadata))
    assert (finding.level, finding.threshold) == (level, bound)


def test_group_by_judges_each_series() -> None:
    rule = make_rule({"type": "threshold", "value": 1000}, group_by=["model"])
    by_model = {"gpt-4": 1500.0, "gpt-4o": 200.0}
    found = []
    for model, value in by_model.items():
        found += series_for(rule, NOW, value, groups=[(("model", model),)])
    findings = [conditions.evaluate(rule, s, Customer("cus_1"), NOW) for s in found]
    assert [(f.key.group, f.dimensions, f.active, f.value) for f in findings] == [
        ((("model", "gpt-4"),), (("model", "gpt-4"),), True, 1500),
        ((("model", "gpt-4o"),), (("model", "gpt-4o"),), False, 200),
    ]
    assert findings[0].key.fingerprint != findings[1].key.fingerprint


@pytest.mark.parametrize(
    ("window", "now", "usage_per_day", "value", "key"),
    [
        ("week", "2025-01-08 12:00", 100, 300, "2025-W02"),  # Mon..Wed
        ("month", "2025-01-08 12:00", 100, 800, "2025-01"),
        ("hour", "2025-01-08 12:30", 7, 7, "2025-01-08T12+0000"),
    ],
)
def test_longer_and_shorter_windows(
    window: str, now: str, usage_per_day: float, value: float, key: str
) -> None:
    rule = make_rule({"type": "threshold", "value": 10**9}, window=window)
    finding = judge(rule, at(now), usage_per_day)
    assert (finding.value, finding.period_key) == (value, key)
    assert finding.window == calendar.period_containing(at(now), rule.window, "UTC")


def test_a_period_that_has_just_begun_has_used_nothing_yet() -> None:
    rule = make_rule({"type": "threshold", "op": ">=", "value": 0})
    finding = judge(rule, at("2025-01-06 00:00"), 500)
    assert (finding.value, finding.active, finding.period_key) == (0, True, "2025-01-06")

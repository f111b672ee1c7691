"""Table tests of issue 12: a five-hour burst is one firing and one resolve; a level shift
alerts once then becomes normal; an excluded day neither alerts nor moves the baseline; named
sensitivities; a sparse customer's usual gaps are not absences (a fixed duration still is)."""

from __future__ import annotations

import pytest
from test_anomaly import BUSINESS, changed, fired, make_rule, quick_series, runs
from usage_series_builders import HOUR, at, judge

from alertd.alerts import AlertState, apply
from alertd.conditions.absence import AbsenceEvaluator, learned_span
from alertd.conditions.anomaly import AnomalyCondition, AnomalyEvaluator
from alertd.model import Bucket, Customer, Series, SeriesKey


def transitions(condition: dict[str, object], usage: object, first: str, hours: int) -> list[str]:
    """The lifecycle's notifying transitions over ``hours`` judged hours from ``first``."""
    rule = make_rule(condition, window="hour")
    state, kinds = AlertState(), []
    for n in range(hours):
        now = at(first) + (n + 1) * HOUR + 600
        finding = AnomalyEvaluator().evaluate(rule, quick_series(rule, now, usage),  # type: ignore[arg-type]
                                              Customer("cus_1"), now)
        state, steps = apply(state, finding, rule, now)
        kinds += [t.kind for t in steps if t.notifies]
    return kinds


@pytest.mark.parametrize(
    ("name", "usage", "expected"),
    [
        ("five-hour burst x4", changed(BUSINESS, "2025-02-12 10:00", "2025-02-12 15:00", 4.0),
         ["fired", "resolved"]),
        ("burst flickering x4, x2.2, x4, x2.2, x4",
         changed(changed(BUSINESS, "2025-02-12 10:00", "2025-02-12 15:00", 4.0),
                 "2025-02-12 11:00", "2025-02-12 12:00", 0.55),
         ["fired", "resolved"]),
        ("a level shift x3 for good", changed(BUSINESS, "2025-02-12 10:00", None, 3.0),
         ["fired", "resolved"]),
        ("an ordinary day", BUSINESS, []),
    ],
)
def test_one_alert_per_episode(name: str, usage: object, expected: list[str]) -> None:
    condition = {"type": "anomaly"}
    assert transitions(condition, usage, "2025-02-12 08:00", 36) == expected, name


def test_level_shift_is_normal_the_days_after() -> None:
    tripled = changed(BUSINESS, "2025-02-12 10:00", None, 3.0)
    alerts = fired({"type": "anomaly"}, tripled, "2025-02-12 08:00", 24)
    assert alerts[0] == "02-12 10" and runs(alerts) == 1
    assert fired({"type": "anomaly"}, tripled, "2025-02-14 00:00", 48) == []


def test_excluded_day_neither_alerts_nor_moves_the_baseline() -> None:
    """A launch day at x5 all day: excluded, it does not alert; and the same hours a week later
    (when a launch-day value would be one of the same hour of week's earlier samples) are
    expected exactly as if the launch had never happened."""
    launch = changed(BUSINESS, "2025-02-12 00:00", "2025-02-13 00:00", 5.0)
    excluded = {"type": "anomaly", "exclude": ["2025-02-12"]}
    assert fired({"type": "anomaly"}, launch, "2025-02-12 00:00", 4)
    assert fired(excluded, launch, "2025-02-12 00:00", 24) == []
    rule = make_rule(excluded, window="hour")
    during = judge(rule, at("2025-02-12 09:10"), launch)
    assert not during.active and "excluded" in during.message
    clean = make_rule({"type": "anomaly", "exclude": ["2025-02-12"]}, window="hour")
    for hour in ("2025-02-19 10:10", "2025-02-13 10:10"):
        with_launch = judge(rule, at(hour), launch)
        without = judge(clean, at(hour), BUSINESS)
        assert with_launch.baseline == without.baseline
        assert with_launch.details["band"] == without.details["band"]


def test_recurring_exclusions() -> None:
    sundays = changed(BUSINESS, "2025-02-16 02:00", "2025-02-16 04:00", 6.0)
    rule = {"type": "anomaly", "exclude": [{"weekdays": ["sun"], "hours": [2, 4]}]}
    assert fired({"type": "anomaly"}, sundays, "2025-02-16 00:00", 6)
    assert fired(rule, sundays, "2025-02-16 00:00", 6) == []
    yearly = {"type": "anomaly", "exclude": [{"dates": ["02-12"]}]}
    spike = changed(BUSINESS, "2025-02-12 10:00", "2025-02-12 11:00", 5.0)
    assert fired(yearly, spike, "2025-02-12 08:00", 4) == []


@pytest.mark.parametrize(("given", "spreads"), [("low", 6.0), ("medium", 4.0), ("high", 3.0),
                                                (2.5, 2.5), ("4.5", 4.5)])
def test_sensitivity_names_and_numbers(given: object, spreads: float) -> None:
    assert AnomalyCondition(type="anomaly", sensitivity=given).sensitivity == spreads  # type: ignore[arg-type]


def test_higher_sensitivity_is_a_narrower_band() -> None:
    widths = []
    for name in ("low", "medium", "high"):
        finding = judge(make_rule({"type": "anomaly", "sensitivity": name}, window="hour"),
                        at("2025-02-12 15:10"), BUSINESS)
        low, high = finding.details["band"]
        widths.append(high - low)
    assert widths[0] > widths[1] > widths[2] > 0


# --------------------------------------------------------------------------- absence


def night_owl(hours: int, start: int) -> list[Bucket]:
    """A small customer: a little usage from 09:00 to 17:00, nothing at night."""
    return [Bucket(start + h * HOUR, start + (h + 1) * HOUR,
                   3.0 if 9 <= h % 24 < 17 else 0.0, True) for h in range(hours)]


def absence_at(condition: dict[str, object], buckets: list[Bucket]) -> tuple[bool, str]:
    rule = make_rule(condition, window="hour")
    now = buckets[-1].ends_at + 600
    running = Bucket(buckets[-1].ends_at, buckets[-1].ends_at + HOUR, 0.0, False)
    series = Series(SeriesKey(rule.name, "cus_1"), None, (), "hour", "UTC",
                    (*buckets, running), now)
    finding = AbsenceEvaluator().evaluate(rule, series, Customer("cus_1"), now)
    return finding.active, finding.message


@pytest.mark.parametrize(
    ("name", "condition", "hours", "active"),
    [
        # 02:00 of day 20: nine silent hours, as every night: learned, no absence.
        ("usual night gap, learned", {"type": "absence"}, 19 * 24 + 2, False),
        ("usual night gap, fixed 2h", {"type": "absence", "duration": "2h"}, 19 * 24 + 2,
         True),
        # 02:00 of day 21 with nothing since day 19, 17:00 (day 20 missing): 33 silent hours,
        # more than 1.5 x the usual 16: an absence.
        ("a missed day, learned", {"type": "absence"}, 20 * 24 + 2, True),
    ],
)
def test_sparse_customer_usual_gaps_are_not_absences(
    name: str, condition: dict[str, object], hours: int, active: bool
) -> None:
    start = at("2025-02-01 00:00")
    buckets = night_owl(hours, start)
    if name.startswith("a missed"):
        buckets = [Bucket(b.starts_at, b.ends_at, 0.0 if i >= 19 * 24 else b.value, True)
                   for i, b in enumerate(buckets)]
    assert absence_at(condition, buckets)[0] is active, name


def test_learned_span_uses_the_second_longest_gap() -> None:
    values = [1, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0]
    buckets = [Bucket(i * HOUR, (i + 1) * HOUR, float(v), True) for i, v in enumerate(values)]
    assert learned_span(buckets, 0.0) == (5, 3)  # gaps 4, 3, 2 (the last run is not one)
    assert learned_span(buckets[:3], 0.0) == (2, 0)

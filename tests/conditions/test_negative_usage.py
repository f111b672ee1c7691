"""Negative usage (Stripe accepts negative meter events: corrections) and numbers that are not
finite, condition by condition. The decisions (documented in each evaluator's module):

* upper threshold, forecast: the net total; a correction only lowers it;
* lower threshold, change, anomaly: a negative total is not judged (``nodata``);
* absence: negative usage is never "no usage";
* any figure or bound that is not finite: an ``error`` finding.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from usage_series_builders import DAY, HOUR, at, judge, make_rule, series_for

from alertd import alerts, conditions
from alertd.model import Customer

CUSTOMER = Customer("cus_1", "Acme")
NOW = at("2025-01-15 12:00")
BIG_CORRECTION = -2_000_024_855


def yesterday(value: float, other: float = 1000.0):  # type: ignore[no-untyped-def]
    """Usage per day bucket: ``value`` on 2025-01-14, ``other`` on any other day."""
    return lambda start: value if start == at("2025-01-14") else other


def test_upper_threshold_compares_the_net_total() -> None:
    rule = make_rule({"type": "threshold", "op": ">", "value": 100})
    found = judge(rule, NOW, lambda start: BIG_CORRECTION if start == at("2025-01-15") else 0)
    assert (found.state, found.active, found.value) == ("inactive", False, BIG_CORRECTION)
    assert "-2,000,024,855 today" in found.message


def test_a_correction_below_the_bound_resolves_a_firing_upper_threshold() -> None:
    rule = make_rule({"type": "threshold", "op": ">", "value": 100})
    fired, _ = alerts.apply(None, judge(rule, NOW, 150.0), rule, NOW)
    corrected = judge(rule, NOW + HOUR, 150.0 - 100)  # the day's net total after a -100
    _, transitions = alerts.apply(fired, corrected, rule, NOW + HOUR)
    assert fired.status == "firing" and [t.kind for t in transitions] == ["resolved"]


def test_lower_threshold_is_not_judged_on_a_negative_total() -> None:
    rule = make_rule({"type": "threshold", "op": "<", "value": 100})
    found = judge(rule, NOW, yesterday(BIG_CORRECTION))
    assert (found.state, found.active, found.level) == ("nodata", False, None)
    assert "corrections" in found.message and "-2,000,024,855" in found.message
    # Neither fires nor resolves: a firing "usage dropped" alert stays as it was.
    firing = alerts.AlertState(status="firing", announced_rank=0, firing_since=NOW - DAY)
    assert alerts.apply(firing, found, rule, NOW) == (firing, ())


def test_lower_threshold_judges_a_net_total_of_zero_or_more_as_usual() -> None:
    rule = make_rule({"type": "threshold", "op": "<", "value": 100})
    found = judge(rule, NOW, yesterday(30))  # e.g. 240 used, 210 corrected
    assert (found.state, found.active, found.value) == ("inactive", True, 30)


def test_change_is_not_judged_when_either_side_is_negative() -> None:
    rule = make_rule({"type": "change", "percent": 50})
    usage = {at("2025-01-13"): -500.0, at("2025-01-14"): 1000.0}
    found = judge(rule, NOW, lambda start: usage.get(start, 0.0))
    assert (found.state, found.active) == ("nodata", False)
    assert "percent change" in found.message
    found = judge(rule, NOW, lambda start: {at("2025-01-14"): -1.0}.get(start, 10.0))
    assert found.state == "nodata"


def anomaly_rule():  # type: ignore[no-untyped-def]
    return make_rule({"type": "anomaly", "history": "35d", "min_history": "7d"}, window="hour")


def steady(start: int) -> float:
    return 100.0 + 20 * ((start // HOUR) % 3)


def test_anomaly_does_not_judge_a_negative_bucket() -> None:
    judged = at("2025-01-15 10:00")  # the latest complete hour at 12:00
    found = judge(anomaly_rule(), NOW, lambda s: BIG_CORRECTION if s == judged else steady(s))
    assert (found.state, found.active, found.value) == ("nodata", False, BIG_CORRECTION)
    assert "corrections" in found.message


def test_anomaly_history_counts_a_correction_as_zero() -> None:
    rule = anomaly_rule()
    earlier = at("2025-01-08 10:00")  # the same hour a week before: a seasonal sample
    plain = judge(rule, NOW, steady)
    corrected = judge(rule, NOW, lambda s: BIG_CORRECTION if s == earlier else steady(s))
    zeroed = judge(rule, NOW, lambda s: 0.0 if s == earlier else steady(s))
    assert plain.state == corrected.state == "inactive" and not corrected.active
    assert corrected.baseline == zeroed.baseline and corrected.details == zeroed.details


def test_forecast_corrections_only_lower_the_projection() -> None:
    rule = make_rule({"type": "forecast", "value": 10_000, "min_elapsed": "1d"}, window="month")
    found = judge(rule, NOW, -50.0)
    assert found.state == "inactive" and not found.active
    assert found.projected is not None and found.projected < 0
    assert found.details["crosses_at"] is None


def absence_rule(**fields: float):  # type: ignore[no-untyped-def]
    return make_rule({"type": "absence", "duration": "6h", **fields}, window="hour")


def test_absence_never_calls_negative_usage_no_usage() -> None:
    found = judge(absence_rule(), NOW, lambda s: BIG_CORRECTION if s == at("2025-01-15 08:00")
                  else (0.0 if s >= at("2025-01-15 05:00") else 50.0))
    assert (found.state, found.active) == ("nodata", False)
    assert "no usage" not in found.message and "only" not in found.message
    assert "corrections" in found.message


def test_absence_counts_usage_a_correction_cannot_cancel() -> None:
    # 40 an hour, and one correction larger than the whole span: there was usage.
    found = judge(absence_rule(floor=10), NOW,
                  lambda s: -1000.0 if s == at("2025-01-15 09:00") else 40.0)
    assert (found.state, found.active) == ("inactive", False)
    assert found.value == 40.0 * 5


@pytest.mark.parametrize("bound", [math.inf, -math.inf, math.nan])
def test_a_bound_that_is_not_finite_is_an_error(bound: float) -> None:
    # validate refuses these; each rule is built valid, then given the bound unchecked.
    for condition, bad in (
        ({"type": "threshold", "op": ">", "value": 1}, {"value": bound}),
        ({"type": "threshold", "op": "<", "levels": {"warning": 10}},
         {"levels": {"warning": 10, "critical": bound}}),
        ({"type": "forecast", "value": 1, "min_elapsed": "1d"}, {"value": bound}),
    ):
        rule = make_rule(condition, window="month")
        rule = rule.model_copy(update={"condition": rule.condition.model_copy(update=bad)})
        found = judge(rule, NOW, 10.0)
        assert (found.state, found.active) == ("error", False), condition
        assert "finite" in found.message


def test_a_figure_that_is_not_finite_becomes_an_error_finding() -> None:
    rule = make_rule({"type": "threshold", "op": ">", "value": 100})
    (series,) = series_for(rule, NOW, 10.0)
    poisoned = replace(series, buckets=tuple(replace(b, value=math.nan) for b in series.buckets))
    found = conditions.evaluate(rule, poisoned, CUSTOMER, NOW)
    assert (found.state, found.active, found.value) == ("error", False, None)
    assert "value nan is not a finite number" in found.message
    monthly = make_rule({"type": "threshold", "op": ">", "value": 1}, window="month")
    (series,) = series_for(monthly, NOW, 10.0)
    huge = replace(series, buckets=tuple(replace(b, value=1e308) for b in series.buckets))
    found = conditions.evaluate(monthly, huge, CUSTOMER, NOW)
    assert found.state == "error"  # 1e308 a day, summed into the month, overflows

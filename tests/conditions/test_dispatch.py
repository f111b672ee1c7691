"""The package's dispatch: one evaluator per condition type, one DataNeed per rule, and every
finding tied to its series (key, meter, dimensions)."""

from __future__ import annotations

from typing import Any

import pytest
from usage_series_builders import at, make_rule, series_for

from alertd import conditions
from alertd.conditions.change import ChangeEvaluator
from alertd.conditions.threshold import ThresholdEvaluator
from alertd.model import Customer, DataNeed

CONDITIONS: list[dict[str, Any]] = [
    {"type": "threshold", "value": 10},
    {"type": "change", "percent": 50},
    {"type": "forecast", "value": 10},
    {"type": "absence", "duration": "6h"},
]


def test_every_condition_type_of_this_package_is_registered() -> None:
    assert {"threshold", "change", "forecast", "absence"} <= set(conditions.KINDS)


@pytest.mark.parametrize("condition", CONDITIONS)
def test_one_need_and_one_finding_per_series(condition: dict[str, Any]) -> None:
    rule = make_rule(condition, group_by=["model"], filters={"tier": "pro"})
    now = at("2025-01-16 10:20")
    needs = conditions.needs(rule, "cus_1", now)
    assert len(needs) == 1 and isinstance(needs[0], DataNeed)
    found = series_for(rule, now, 5.0, groups=[(("model", "a"),), (("model", "b"),)])
    assert [s.key.group for s in found] == [(("model", "a"),), (("model", "b"),)]
    for series in found:
        finding = conditions.evaluate(rule, series, Customer("cus_1"), now)
        assert (finding.key, finding.meter, finding.dimensions) == (
            series.key, "mtr_1", (("model", series.key.group[0][1]), ("tier", "pro")))
        assert finding.state in ("inactive", "nodata")
        assert finding.message


def test_an_evaluator_refuses_a_rule_of_another_type() -> None:
    rule = make_rule({"type": "change", "percent": 50})
    with pytest.raises(TypeError, match="rule r has no threshold condition"):
        ThresholdEvaluator().needs(rule, "cus_1", at("2025-01-16 10:20"))
    assert isinstance(conditions.kind_of(rule), ChangeEvaluator)

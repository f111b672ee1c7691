"""Cost and credit rules the loader refuses: each with one located, actionable problem.

These were the rule checks of :mod:`alertd.conditions.cost` and :mod:`alertd.conditions.credit`
no test reached (coverage, December 2026): a money rule written wrong must be reported by
``validate`` at the key that is wrong, not priced wrongly at run time.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from alertd.rules.loader import check_rules
from tests.rules.test_loader import MakeSettings, ProblemsOf

HEAD = "rules:\n  - name: r\n    meter: mtr_1\n"

# Each case: the rule's remaining lines (4 spaces in) and the one problem they must produce,
# as FILE:LINE:COL and a part of the message that says what to write instead.
CASES = {
    "cost with a per-customer quota": (
        "    window: billing_period\n"
        "    condition: {type: threshold, measure: cost, value_from: {metadata: quota}}\n",
        "a.yaml:5:16:", "measure: cost takes 'value' or 'levels' amounts, not value_from"),
    "cost with value and levels": (
        "    window: billing_period\n"
        "    condition: {type: threshold, measure: cost, value: '5.00 usd',\n"
        "                levels: {warning: '1.00 usd'}}\n",
        "a.yaml:5:16:", "measure: cost needs exactly one of 'value' or 'levels'"),
    "cost without an amount": (
        "    window: billing_period\n"
        "    condition: {type: threshold, measure: cost}\n",
        "a.yaml:5:16:", "(amounts with a currency, e.g. \"500.00 usd\")"),
    "cost levels in two currencies": (
        "    window: billing_period\n"
        "    condition: {type: threshold, measure: cost,\n"
        "                levels: {warning: '1.00 usd', critical: '2.00 eur'}}\n",
        "a.yaml:5:16:", "all amounts of a cost condition must be in one currency"),
    "cost on a calendar window": (
        "    window: day\n"
        "    condition: {type: threshold, measure: cost, value: '5.00 usd'}\n",
        "a.yaml:4:13:", "measure: cost needs window: billing_period"),
    "cost grouped by a dimension": (
        "    window: billing_period\n"
        "    group_by: [model]\n"
        "    condition: {type: threshold, measure: cost, value: '5.00 usd'}\n",
        "a.yaml:5:15:", "group_by cannot be priced"),
    "cost as a lower bound": (
        "    window: billing_period\n"
        "    condition: {type: threshold, measure: cost, op: '<', value: '5.00 usd'}\n",
        "a.yaml:5:53:", "billing-period thresholds are upper bounds (> or >=)"),
    "billing_period as a flag": (
        "    billing_period: true\n"
        "    condition: {type: threshold, value: 5}\n",
        "a.yaml:2:5:", "write window: billing_period"),
    "credit with two bounds": (
        "    condition: {type: credit, below: '5.00 usd', below_percent: 20}\n",
        "a.yaml:4:16:", "exactly one of 'below', 'below_percent' or 'depletes_within'"),
    "credit without a bound": (
        "    condition: {type: credit}\n",
        "a.yaml:4:16:", "exactly one of 'below', 'below_percent' or 'depletes_within'"),
    "credit below a bare number": (
        "    condition: {type: credit, below: 5}\n",
        "a.yaml:4:38:", "give an amount with a currency, e.g. \"50.00 usd\""),
    "credit grouped by a dimension": (
        "    group_by: [model]\n"
        "    condition: {type: credit, below_percent: 20}\n",
        "a.yaml:4:15:", "credit burns on the meter's total: group_by cannot be priced"),
    "an empty list of filter values": (
        "    filters: {model: []}\n"
        "    condition: {type: threshold, value: 5}\n",
        "a.yaml:4:14:", "filter 'model' needs at least one value"),
}


@pytest.mark.parametrize(("body", "where", "words"), CASES.values(), ids=CASES.keys())
def test_a_money_rule_written_wrong_is_one_located_problem(
    problems_of: ProblemsOf, body: str, where: str, words: str
) -> None:
    problems = problems_of({"a.yaml": HEAD + body})
    assert len(problems) == 1, problems
    assert problems[0].startswith(where) and words in problems[0], problems


@pytest.mark.parametrize(("condition", "words"), [
    ("{type: threshold, value: 5}", "a billing-period usage rule needs a meter"),
    ("{type: credit, below_percent: 20}", "a credit rule needs the meter whose priced usage"),
], ids=["billing-period usage", "credit"])
def test_a_money_rule_without_a_meter_points_at_the_rule(
    problems_of: ProblemsOf, condition: str, words: str
) -> None:
    window = "    window: billing_period\n" if "threshold" in condition else ""
    problems = problems_of({"a.yaml": f"rules:\n  - name: r\n{window}    condition: {condition}\n"})
    assert len(problems) == 1 and problems[0].startswith("a.yaml:2:5:"), problems
    assert words in problems[0]


def test_one_bad_money_rule_leaves_the_good_ones_loaded(
    tmp_path: Path, make_settings: MakeSettings
) -> None:
    good = ("  - name: good\n    meter: mtr_1\n    window: billing_period\n"
            "    condition: {type: threshold, measure: cost, value: '5.00 usd'}\n")
    bad = ("  - name: bad\n    meter: mtr_1\n    window: day\n"
           "    condition: {type: threshold, measure: cost, value: '5.00 usd'}\n")
    (tmp_path / "a.yaml").write_text("rules:\n" + good + bad + good.replace("good", "also"))
    rules, problems = check_rules([Path("a.yaml")], make_settings())
    assert rules.names() == ("good", "also")
    assert [str(p)[:12] for p in problems] == ["a.yaml:8:13:"]

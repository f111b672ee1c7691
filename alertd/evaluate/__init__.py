"""Evaluation: one pure :class:`~alertd.evaluate.base.Evaluator` per condition type.

Data flow inside this package::

    rule, customer, now --needs--> DataNeed   (the planner merges needs into requests)
    rows --series.build_series--> Series --evaluate--> Finding

:data:`EVALUATORS` maps a condition ``type`` to its evaluator; :func:`needs` and
:func:`evaluate` dispatch on the rule's condition. ``anomaly`` lives in
:mod:`alertd.evaluate.anomaly` and is registered when that module is present.

Wrong numbers never become alerts: a finding whose ``value``, ``threshold``, ``baseline`` or
``projected`` is not a finite number (``NaN`` compares false with everything, infinity with
nothing sensible) is turned into an ``error`` finding that says so, which the alert lifecycle
ignores. The sources already refuse such values; this holds for any that slip through, e.g.
from arithmetic on extreme ones.

Negative usage, condition by condition (each module's docstring has the detail): upper
thresholds and ``forecast`` use the net total, so corrections only ever lower it; lower
thresholds, ``change`` and ``anomaly`` do not judge a negative total (``nodata``); and
``absence`` never calls negative usage "no usage".
"""

from __future__ import annotations

import importlib
import math
from dataclasses import replace
from typing import cast

from alertd.errors import AlertdError
from alertd.evaluate.absence import AbsenceEvaluator
from alertd.evaluate.base import Evaluator
from alertd.evaluate.change import ChangeEvaluator
from alertd.evaluate.forecast import ForecastEvaluator
from alertd.evaluate.threshold import ThresholdEvaluator
from alertd.model import Customer, DataNeed, Finding, Series
from alertd.rules.schema import Rule

_ANOMALY_MODULE = "alertd.evaluate.anomaly"


def _anomaly() -> Evaluator | None:
    """``AnomalyEvaluator()`` when its module exists; a module that exists but fails to import
    is a real error and propagates."""
    try:
        module = importlib.import_module(_ANOMALY_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name != _ANOMALY_MODULE:
            raise
        return None
    return cast(Evaluator, module.AnomalyEvaluator())


def _registry() -> dict[str, Evaluator]:
    registry: dict[str, Evaluator] = {
        "threshold": ThresholdEvaluator(),
        "change": ChangeEvaluator(),
        "forecast": ForecastEvaluator(),
        "absence": AbsenceEvaluator(),
    }
    anomaly = _anomaly()
    if anomaly is not None:
        registry["anomaly"] = anomaly
    return registry


EVALUATORS: dict[str, Evaluator] = _registry()


def evaluator_for(rule: Rule) -> Evaluator:
    """The evaluator of ``rule``'s condition type."""
    kind = rule.condition.type
    try:
        return EVALUATORS[kind]
    except KeyError:
        raise AlertdError(f"rule {rule.name}: no evaluator for condition type {kind!r}") from None


def needs(rule: Rule, customer_id: str, now: int) -> tuple[DataNeed, ...]:
    """What ``rule`` needs fetched for ``customer_id`` to be evaluated at ``now``."""
    return evaluator_for(rule).needs(rule, customer_id, now)


def evaluate(rule: Rule, series: Series, customer: Customer, now: int) -> Finding:
    """The verdict of ``rule`` on one ``series`` of ``customer`` at ``now`` (an ``error``
    finding when it holds a number that is not finite)."""
    return finite(evaluator_for(rule).evaluate(rule, series, customer, now))


def finite(finding: Finding) -> Finding:
    """``finding``, or an ``error`` finding in its place when one of its figures is ``NaN``
    or infinite."""
    figures = {"value": finding.value, "threshold": finding.threshold,
               "baseline": finding.baseline, "projected": finding.projected}
    wrong = [f"{name} {number!r}" for name, number in figures.items()
             if number is not None and not math.isfinite(number)]
    if not wrong:
        return finding
    return replace(
        finding, state="error", active=False, level=None, value=None, threshold=None,
        baseline=None, projected=None, details={},
        message=f"not judged: {', '.join(wrong)} is not a finite number ({finding.message})",
    )


__all__ = ["EVALUATORS", "Evaluator", "evaluate", "evaluator_for", "finite", "needs"]

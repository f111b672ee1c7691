"""Evaluation: one pure :class:`~alertd.evaluate.base.Evaluator` per condition type.

Data flow inside this package::

    rule, customer, now --needs--> DataNeed   (the planner merges needs into requests)
    rows --series.build_series--> Series --evaluate--> Finding

:data:`EVALUATORS` maps a condition ``type`` to its evaluator; :func:`needs` and
:func:`evaluate` dispatch on the rule's condition. ``anomaly`` lives in
:mod:`alertd.evaluate.anomaly` and is registered when that module is present.
"""

from __future__ import annotations

import importlib
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
    """The verdict of ``rule`` on one ``series`` of ``customer`` at ``now``."""
    return evaluator_for(rule).evaluate(rule, series, customer, now)


__all__ = ["EVALUATORS", "Evaluator", "evaluate", "evaluator_for", "needs"]

"""Condition kinds: everything about one condition ``type`` in one module, found through one
registry.

Data flow inside this package::

    rule, customer, now --needs--> DataNeed   (the planner merges needs into requests)
    rows --series.build_series--> Series --evaluate--> Finding (with the kind's Figures)

Each kind (:class:`~alertd.conditions.base.ConditionKind`) owns its schema model, ``needs``,
``evaluate``, its traits (judged per period, the granularity it is judged at, whether it reads
the running period, whether its verdict only grows within a period, its levels), its rule
checks, its sample figures for ``render`` and the figures payload of its findings.
:data:`~alertd.conditions.registry.KINDS` lists them; every other module asks
:func:`kind_of` instead of switching on condition classes or ``type`` strings. The rule schema
builds its discriminated union on ``type`` from the registry.

Why kinds are objects and not just evaluators: what other modules used to know about a type
(the alert lifecycle's per-period episodes, backtest's evaluation instants and bisection,
``validate``'s checks, ``render``'s figures, the tables' bound column) is now a question the
kind answers, so a type's knowledge cannot drift apart across modules.

Adding a condition type
-----------------------
1. Write ``alertd/conditions/<type>.py`` with: its condition model (a
   :class:`~alertd.conditions.base.ConditionModel` with ``type: Literal["<type>"]``), its
   figures (reuse :class:`~alertd.conditions.base.Bound` or
   :class:`~alertd.conditions.base.Baseline`, or subclass :class:`~alertd.model.Figures` and
   say in ``contract()`` which of ``threshold``/``baseline``/``projected`` it fills), and a
   :class:`~alertd.conditions.base.ConditionKind` subclass implementing ``needs``,
   ``evaluate``, ``judged_at``, ``reads_running_period`` and ``sample`` (and ``check``,
   ``levels``, ``grows_within_period`` where the defaults do not hold), plus one instance.
2. Add that instance to the tuple in :data:`~alertd.conditions.registry.KINDS`.

Nothing else changes: the loader, ``validate``, ``check``, ``run``, ``backtest`` and ``render``
take it from there (``tests/conditions/test_new_kind.py`` shows a kind defined in a test).

Wrong numbers never become alerts: a finding whose ``value`` or a figure is not a finite number
(``NaN`` compares false with everything, infinity with nothing sensible) is turned into an
``error`` finding that says so, which the alert lifecycle ignores. The sources already refuse
such values; this holds for any that slip through, e.g. from arithmetic on extreme ones.

Negative usage, condition by condition (each module's docstring has the detail): upper
thresholds and ``forecast`` use the net total, so corrections only ever lower it; lower
thresholds, ``change`` and ``anomaly`` do not judge a negative total (``nodata``); and
``absence`` never calls negative usage "no usage".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from alertd.conditions.base import ConditionKind, Evaluator
from alertd.conditions.registry import KINDS, kind_of, register, unregister
from alertd.model import NO_FIGURES, Customer, DataNeed, Finding, Series

if TYPE_CHECKING:
    from alertd.rules.schema import Rule


def needs(rule: Rule, customer_id: str, now: int) -> tuple[DataNeed, ...]:
    """What ``rule`` needs fetched for ``customer_id`` to be evaluated at ``now``."""
    return kind_of(rule).needs(rule, customer_id, now)


def evaluate(rule: Rule, series: Series, customer: Customer, now: int) -> Finding:
    """The verdict of ``rule`` on one ``series`` of ``customer`` at ``now`` (an ``error``
    finding when it holds a number that is not finite)."""
    return finite(kind_of(rule).evaluate(rule, series, customer, now))


def evaluate_many(rule: Rule, items: Sequence[tuple[Series, Customer]], now: int
                  ) -> list[Finding]:
    """:func:`evaluate` of each ``(series, customer)`` of ``rule``, in order: a kind may judge
    them together (``anomaly`` does: its detector runs over all of them at once)."""
    return [finite(f) for f in kind_of(rule).evaluate_many(rule, items, now)]


def finite(finding: Finding) -> Finding:
    """``finding``, or an ``error`` finding in its place when its value or one of its figures
    is ``NaN`` or infinite."""
    figures = {"value": finding.value, **finding.figures.contract()}
    wrong = [f"{name} {number!r}" for name, number in figures.items()
             if number is not None and not math.isfinite(number)]
    if not wrong:
        return finding
    return replace(
        finding, state="error", active=False, level=None, value=None, figures=NO_FIGURES,
        details={},
        message=f"not judged: {', '.join(wrong)} is not a finite number ({finding.message})",
    )


__all__ = ["KINDS", "ConditionKind", "Evaluator", "evaluate", "evaluate_many", "finite",
           "kind_of", "needs", "register", "unregister"]

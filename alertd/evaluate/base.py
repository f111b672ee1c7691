"""The evaluator interface: one per condition type, pure functions of their inputs.

An evaluator first says what data it needs (:meth:`Evaluator.needs`), then judges one
:class:`~alertd.model.Series` built from that data (:meth:`Evaluator.evaluate`). Both take
``now`` (unix seconds) and do no I/O, so ``--at``, ``backtest`` and the daemon share them.

Series arrive with every bucket's ``complete`` flag already set by the freshness rule (a bucket
is complete only when it ended at least ``freshness_lag`` before ``refreshed_at``, and
``refreshed_at`` is never later than ``now``), so evaluators only read buckets.
"""

from __future__ import annotations

from typing import Protocol

from alertd.model import Customer, DataNeed, Finding, Series
from alertd.rules.schema import Rule


class Evaluator(Protocol):
    """Judges one condition type."""

    def needs(self, rule: Rule, customer: str, now: int) -> tuple[DataNeed, ...]:
        """The data this rule needs for ``customer`` to be evaluated at ``now``."""
        ...

    def evaluate(self, rule: Rule, series: Series, customer: Customer, now: int) -> Finding:
        """The verdict on one series (``state`` is ``inactive``, ``nodata`` or ``error``;
        ``active`` says whether the condition holds; the lifecycle decides pending/firing)."""
        ...

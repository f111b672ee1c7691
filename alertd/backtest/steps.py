"""The daemon's own steps, shared by backtest and ``alertd test`` (:mod:`alertd.ruletest`):
:func:`judge` makes a rule's findings at an instant as the daemon does, and
:class:`SeriesStates` steps the alert lifecycle on them. In backtest,
:mod:`~alertd.backtest.replaying` steps the lifecycle with :class:`SeriesStates`, and
:func:`~alertd.backtest.evaluating.findings_at` makes what :func:`judge` would, on series
built once (:class:`~alertd.backtest.history.HistorySeries`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from alertd import alerts, conditions
from alertd.alerts import AlertState, Policy, Transition
from alertd.conditions.money import per_meter, priced_meters, summed_series, sums_meters
from alertd.conditions.series import build_series
from alertd.model import Customer, DataNeed, Finding, SeriesKey, UsageRow
from alertd.rules.schema import Rule


def judge(
    rule: Rule,
    customer: Customer,
    need: DataNeed,
    rows: Sequence[UsageRow],
    now: int,
    *,
    refreshed_at: int | None,
    freshness_lag: float,
) -> list[Finding]:
    """The findings of ``rule`` at ``now`` on ``rows`` (already the rule's own: its meter and
    filters), exactly as the daemon makes them: series of ``need`` under the freshness rule,
    then the rule's evaluator. Shared by ``backtest`` and ``alertd test``. For a cost summed
    over the customer's meters, ``rows`` are those of all its meters (each row names its
    meter): one series per priced meter, put together as a pass does."""
    if sums_meters(rule):
        parts = {one.spec.meter or "": build_series(
                     rule, one, [r for r in rows if r.meter == one.spec.meter], refreshed_at,
                     now=now, freshness_lag=freshness_lag)[0]
                 for one in per_meter(need, priced_meters(rule, customer))}
        summed = summed_series(SeriesKey(rule.name, customer.id), parts)
        return [conditions.evaluate(rule, summed, customer, now)]
    series = build_series(rule, need, rows, refreshed_at, now=now, freshness_lag=freshness_lag)
    return conditions.evaluate_many(rule, [(s, customer) for s in series], now)


class SeriesStates:
    """The lifecycle states of one rule's alert series, stepped through time.

    Runtime state in its own object: each :meth:`apply` feeds findings to the pure
    :func:`alerts.apply` and keeps what it returns.
    """

    def __init__(self, rule: Rule) -> None:
        self.policy = Policy.of(rule)
        self.states: dict[SeriesKey, AlertState] = {}

    def apply(self, findings: Iterable[Finding], now: int) -> list[tuple[Transition, Finding]]:
        """Every transition the findings cause at ``now``, each with its finding."""
        changes: list[tuple[Transition, Finding]] = []
        for finding in findings:
            state, transitions = alerts.apply(self.states.get(finding.key), finding,
                                              self.policy, now)
            self.states[finding.key] = state
            changes.extend((transition, finding) for transition in transitions)
        return changes

    def would_change(self, findings: Iterable[Finding], now: int) -> bool:
        """Whether applying ``findings`` at ``now`` would cause any transition (nothing is
        kept)."""
        return any(alerts.apply(self.states.get(f.key), f, self.policy, now)[1] for f in findings)

    @property
    def live(self) -> bool:
        """Whether time alone may still change a state (``for``, ``keep_firing_for``)."""
        return any(state.status != "inactive" for state in self.states.values())

"""What replay evaluates: a rule's findings at an instant on the history visible then
(:func:`findings_at`), and the instants of its schedule worth evaluating
(:func:`evaluations`). Pure; between :mod:`~alertd.backtest.history` (the series at an
instant) and :mod:`~alertd.backtest.replaying` (which steps the lifecycle on the findings).

Upper thresholds are monotone within a period (usage only grows), so a period costs two
evaluations unless a level changes, found by bisection; other rules are evaluated at every
instant of :func:`~alertd.backtest.window.instants`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from alertd import evaluate
from alertd.backtest.history import HistorySeries
from alertd.backtest.window import ReplayWindow
from alertd.evaluate import windows
from alertd.model import Customer, Finding
from alertd.rules.schema import UPPER_OPS, Rule, ThresholdCondition


def findings_at(
    history: HistorySeries, customer: Customer, now: int, window: ReplayWindow
) -> list[Finding]:
    """The daemon's findings at ``now`` on the history visible then."""
    rule = history.rule
    refreshed = now - window.refresh_delay
    need = history.frame.need_at(now, customer.id)
    series = history.series(need, now, refreshed, window.freshness_lag)
    return [evaluate.evaluate(rule, s, customer, now) for s in series]


def monotone(rule: Rule) -> bool:
    """Whether, within one period, each series' verdict can only climb: upper thresholds
    judge the running period's total, and usage only grows (the contract's own premise for
    letting them fire on incomplete data)."""
    condition = rule.condition
    return isinstance(condition, ThresholdCondition) and condition.op in UPPER_OPS


Evaluation = tuple[int, list[Finding]]


def evaluations(history: HistorySeries, customer: Customer, window: ReplayWindow
                ) -> list[Evaluation]:
    """``(instant, findings)`` at every instant of the rule's schedule where the findings may
    differ from the previous ones, in time order.

    For a :func:`monotone` rule the verdicts at the first and last instant of a period bound
    every verdict between them, so a period whose ends agree costs two evaluations, and a
    change is found by bisection (a few more); other rules are evaluated at every instant.
    """
    def judge_at(instant: int) -> list[Finding]:
        return findings_at(history, customer, instant, window)

    schedule = history.frame.schedule
    if not monotone(history.rule):
        return [(instant, judge_at(instant)) for instant in schedule]
    found: list[Evaluation] = []
    for period in _by_period(history.rule, schedule):
        first = (period[0], judge_at(period[0]))
        found.append(first)
        if len(period) > 1:
            last = (period[-1], judge_at(period[-1]))
            _bisect_changes(period, first, last, judge_at, found)
    return found


def _by_period(rule: Rule, schedule: Sequence[int]) -> list[list[int]]:
    """The instants grouped by the rule's period containing them."""
    groups: list[list[int]] = []
    ends_at = None
    for instant in schedule:
        if ends_at is None or instant >= ends_at:
            groups.append([])
            ends_at = windows.next_start(instant, rule.window, rule.timezone)
        groups[-1].append(instant)
    return groups


def _verdicts(findings: Sequence[Finding]) -> tuple[tuple[object, ...], ...]:
    return tuple((f.key, f.state, f.active, f.level) for f in findings)


def _bisect_changes(
    instants: Sequence[int],
    low: Evaluation,
    high: Evaluation,
    judge_at: Callable[[int], list[Finding]],
    found: list[Evaluation],
) -> None:
    """Appends, in time order, each instant after ``low`` up to ``high`` whose verdicts differ
    from the instant before it (``low`` and ``high`` are in ``instants``)."""
    if _verdicts(low[1]) == _verdicts(high[1]):
        return
    first, last = instants.index(low[0]), instants.index(high[0])
    if last - first == 1:
        found.append(high)
        return
    middle = instants[(first + last) // 2]
    between = (middle, judge_at(middle))
    _bisect_changes(instants, low, between, judge_at, found)
    _bisect_changes(instants, between, high, judge_at, found)

"""What replay evaluates: a rule's findings at an instant on the history visible then
(:func:`findings_at`), and the instants of its schedule worth evaluating
(:func:`evaluations`). Pure; between :mod:`~alertd.backtest.history` (the series at an
instant) and :mod:`~alertd.backtest.replaying` (which steps the lifecycle on the findings).

Upper thresholds are monotone within a period while usage only grows, so a period costs two
evaluations unless a level changes, found by bisection; a period holding a negative row (Stripe
accepts negative meter events: corrections) and other rules are evaluated at every instant of
:func:`~alertd.backtest.window.instants`.

**A period's last hour.** History is hourly, and an hour becomes visible only once it has
ended — by which time, at a period boundary, the period it belongs to is over and a daemon's
"now" is in the next one. Replaying upper thresholds at the boundary instant alone would never
judge a period on its last hour: a ``window: hour`` rule (``hourly usage > 10``) would never
fire, and a daily one would miss a crossing in the day's last hour. So each period of an upper
threshold also gets a *closing* evaluation (:func:`closing_findings`): at the instant its last
hour becomes visible, the period judged as the running one (as of its last second), on all its
hours, so the alert fires at the period's end. When that is news, the next period is judged
only once an hour of it is visible, so the firing is announced before the new period resolves
it. (A ``for:`` longer than nothing cannot play out on an hour window: the whole hour is
seen at one instant.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from functools import partial

from alertd import calendar, conditions
from alertd.backtest.history import History
from alertd.backtest.window import ReplayWindow
from alertd.conditions.money import billing_period_at
from alertd.model import Customer, Finding
from alertd.rules.schema import Rule

HOUR = 3600


def findings_at(
    history: History, customer: Customer, now: int, window: ReplayWindow
) -> list[Finding]:
    """The daemon's findings at ``now`` on the history visible then."""
    rule = history.rule
    refreshed = now - window.refresh_delay
    need = history.frame.need_at(now, customer.id)
    series = history.series(need, now, refreshed, window.freshness_lag)
    return conditions.evaluate_many(rule, [(s, customer) for s in series], now)


def closing_findings(
    history: History, customer: Customer, period_end: int, window: ReplayWindow
) -> list[Finding]:
    """The findings on the period ending at ``period_end`` once all of it is visible (at
    ``period_end + refresh_delay``): judged as the running period at its last second."""
    rule = history.rule
    now = period_end - 1
    need = history.frame.need_at(now, customer.id)
    series = history.series(need, now, period_end, window.freshness_lag)
    return conditions.evaluate_many(rule, [(s, customer) for s in series], now)


def closing_ends(rule: Rule, schedule: Sequence[int], window: ReplayWindow) -> list[int]:
    """The ends of the periods that get a closing evaluation (at ``end + refresh_delay``,
    within the schedule): every one, for :func:`monotone` rules; none for others."""
    if not monotone(rule) or not schedule:
        return []
    delay = window.refresh_delay
    ends = (period.ends_at for period in calendar.periods(
        schedule[0], schedule[-1] + 1, rule.window, rule.timezone))
    return [end for end in ends if schedule[0] < end + delay <= schedule[-1]]


def monotone(rule: Rule) -> bool:
    """Whether, within one period, each series' verdict can only climb; the kind says
    (:meth:`~alertd.conditions.base.ConditionKind.grows_within_period`: upper thresholds)."""
    return conditions.kind_of(rule).grows_within_period(rule)


Evaluation = tuple[int, list[Finding]]


def evaluations(history: History, customer: Customer, window: ReplayWindow
                ) -> list[Evaluation]:
    """``(instant, findings)`` at every instant of the rule's schedule where the findings may
    differ from the previous ones, in time order.

    For a :func:`monotone` rule the verdicts at the first and last instant of a period bound
    every verdict between them, so a period whose ends agree costs two evaluations, and a
    change is found by bisection (a few more) — unless the period holds a negative row (a
    correction: usage went down, so a crossing may be undone before the period's end), when
    every instant of it is judged. A ``window: billing_period`` rule's periods are also cut
    where the customer's billing period turns over (:func:`_by_billing`). Other rules are
    evaluated at every instant.
    """
    def judge_at(instant: int) -> list[Finding]:
        return findings_at(history, customer, instant, window)

    schedule = history.frame.schedule
    if not monotone(history.rule):
        return [(instant, judge_at(instant)) for instant in schedule]
    closing = set(closing_ends(history.rule, schedule, window))
    found: list[Evaluation] = []
    visible_from: int | None = None  # after news at a closing: the next period's first data
    for period, ends_at, last in _by_billing(
            history.rule, customer, _by_period(history.rule, schedule, window.refresh_delay)):
        instants = [t for t in period if visible_from is None or t >= visible_from]
        judge: Callable[[int], list[Finding]] = judge_at
        closing_at = ends_at + window.refresh_delay if last and ends_at in closing else None
        if closing_at is not None:
            # The closing evaluation is one more instant, the period's last, for bisection.
            instants.append(closing_at)
            close = partial(closing_findings, history, customer, ends_at, window)
            judge = partial(_judge_or_close, judge_at, close, closing_at)
        if not instants:
            continue
        before = len(found)
        starts_at = calendar.floor(ends_at - 1, history.rule.window, history.rule.timezone)
        _judge_period(instants, judge, found, bisect=not history.corrected(starts_at, ends_at))
        # A crossing only the closing evaluation saw (in the period's last hour) would be
        # resolved by the next period, judged empty, at the very same instant — before it
        # could be announced (``group_wait``), where a daemon would have announced it while
        # the period ran. So the next period is then judged only once an hour of it is
        # visible.
        news = closing_at is not None and _news_at(found[before:], closing_at)
        visible_from = ends_at + HOUR + window.refresh_delay if news else None
    return found


def _by_billing(rule: Rule, customer: Customer, groups: Sequence[tuple[list[int], int]]
                ) -> Iterator[tuple[list[int], int, bool]]:
    """Each group of instants split where the customer's billing period turns over, for a
    ``window: billing_period`` rule (a billing period rarely ends with the calendar period the
    groups follow, and its total starts again from zero then, so a verdict can fall inside a
    calendar period); with whether it is the group's last part (the one its closing
    evaluation belongs to). Other rules' groups pass unchanged."""
    for instants, ends_at in groups:
        if not rule.billing_period:
            yield instants, ends_at, True
            continue
        parts: list[list[int]] = []
        current: object = object()
        for instant in instants:
            period = billing_period_at(rule, customer, instant)
            if not parts or period != current:
                parts.append([])
                current = period
            parts[-1].append(instant)
        for index, part in enumerate(parts):
            yield part, ends_at, index == len(parts) - 1


def _judge_period(instants: Sequence[int], judge: Callable[[int], list[Finding]],
                  found: list[Evaluation], *, bisect: bool) -> None:
    """Appends the period's evaluations: its first and last instant and the changes between
    them found by bisection, or, where the period's usage went down (a negative correction,
    so verdicts need not climb), every instant."""
    if not bisect:
        found.extend((instant, judge(instant)) for instant in instants)
        return
    first = (instants[0], judge(instants[0]))
    found.append(first)
    if len(instants) > 1:
        last = (instants[-1], judge(instants[-1]))
        _bisect_changes(instants, first, last, judge, found)


def _news_at(evaluations: Sequence[Evaluation], instant: int) -> bool:
    """Whether the last of ``evaluations`` is at ``instant`` and newly holds an active
    finding: active, and not the verdicts of the evaluation before it."""
    if not evaluations or evaluations[-1][0] != instant:
        return False
    last = evaluations[-1][1]
    if not any(f.active for f in last):
        return False
    return len(evaluations) < 2 or _verdicts(evaluations[-2][1]) != _verdicts(last)


def _judge_or_close(judge_at: Callable[[int], list[Finding]],
                    close: Callable[[], list[Finding]], closing_at: int,
                    instant: int) -> list[Finding]:
    return close() if instant == closing_at else judge_at(instant)


def _by_period(rule: Rule, schedule: Sequence[int], delay: int = 0
               ) -> list[tuple[list[int], int]]:
    """The instants grouped by the rule's period containing them, each group with its
    period's end. With a ``refresh_delay``, a period's instants before ``start + delay``
    (but the replay's very first) are left out: nothing of the period is visible yet, and the
    previous period's closing evaluation is still to come at ``start + delay``."""
    groups: list[tuple[list[int], int]] = []
    for instant in schedule:
        if not groups or instant >= groups[-1][1]:
            starts_at = calendar.floor(instant, rule.window, rule.timezone)
            groups.append(([], calendar.next_start(instant, rule.window, rule.timezone)))
        if instant >= starts_at + delay or instant == schedule[0]:
            groups[-1][0].append(instant)
    return [(instants, ends_at) for instants, ends_at in groups if instants]


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

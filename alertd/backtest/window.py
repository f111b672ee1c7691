"""What a backtest covers: the replay window and how data became visible in it, the warm-up,
the one hourly need per (rule, customer) the command fetches, the rules selected, and the
instants at which a rule's findings may change. Pure; the first step of the data flow in
:mod:`alertd.backtest`: the command plans its fetch from :func:`history_need`, and
:class:`~alertd.backtest.history.RuleFrame` frames each rule with :func:`warm_start` and
:func:`instants`.

**Visibility.** At instant ``t`` data is taken as refreshed at ``t - refresh_delay`` and an hour
is visible once it ended by then; completeness follows the daemon's freshness rule (ended at
least ``freshness_lag`` before the refresh). ``refresh_delay`` defaults to 0, which makes the
``at`` of a complete-bucket rule exactly the contract's "bucket end plus ``freshness_lag``".
Two consequences: an upper threshold crossed mid-hour is reported at the end of that hour (a
live daemon may see the partial hour earlier), and history is read as it is *now*, so usage
that arrived late counts as if it had been on time. Replay ends where the data ends
(:func:`within_data`).

**Evaluation instants.** A daemon evaluates every ``every``, but between two instants at which
new data becomes visible its findings cannot change. So replay evaluates only at
:func:`instants`: the ends of judged buckets plus ``freshness_lag`` (rules judging complete
buckets), and hour ends and period boundaries (rules reading the running period: upper
thresholds, forecasts). Each condition kind says which it is
(:meth:`~alertd.conditions.base.ConditionKind.judged_at`,
:meth:`~alertd.conditions.base.ConditionKind.reads_running_period`).

**Warm-up.** Data: each history starts where the evaluator's need at the warm-up start begins
(anomaly ``history``, the compared period of ``change``, the rate window of ``forecast``, the
span of ``absence``). State: replay starts at the beginning of the rule's period containing
the instant before ``since - for - keep_firing_for`` and reports only firings at or after
``since`` (:func:`~alertd.backtest.replaying.firings_of`), so an alert already firing at
``since`` is not reported as a new firing; its notifications before ``since`` still fill the
notification log that dedup reads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from alertd import calendar, conditions
from alertd.conditions.money import per_meter, priced_meters, sums_meters
from alertd.conditions.series import data_need
from alertd.model import Customer, DataNeed, Granularity
from alertd.rules.schema import Rule


@dataclass(frozen=True, slots=True)
class ReplayWindow:
    """What replay covers and how data became visible (see the module docstring)."""

    since: int
    until: int
    freshness_lag: float
    refresh_delay: int = 0

    def __post_init__(self) -> None:
        if self.until <= self.since:
            raise ValueError("a backtest needs --since before --until")


def warm_start(rule: Rule, since: int) -> int:
    """Where replay of ``rule`` starts: the beginning of its period containing the instant
    before ``since - for - keep_firing_for``, so the states at ``since`` are what a daemon
    running all along had (strictly before ``since``: a condition already holding then fired
    in the warm-up, not at ``since``)."""
    earliest = since - 1 - math.ceil(rule.for_ + rule.keep_firing_for)
    return calendar.floor(earliest, rule.window, rule.timezone)


def history_need(rule: Rule, customer: str, since: int, until: int) -> DataNeed:
    """The one hourly need covering every evaluation of ``rule`` for ``customer`` from the
    warm-up to ``until``. Needs only move forward with time, so the evaluator's need at the
    warm-up start is the earliest one."""
    starts_at = conditions.needs(rule, customer, warm_start(rule, since))[0].starts_at
    starts_at = calendar.floor(starts_at, "hour", rule.timezone)
    return data_need(rule, customer, until, starts_at, granularity="hour")


def history_needs(rule: Rule, customer: Customer, window: ReplayWindow
                  ) -> tuple[DataNeed, ...]:
    """The (rule, customer)'s hourly history need; for a cost summed over the customer's
    meters, that need once per priced meter (none when the sum cannot be stated)."""
    need = history_need(rule, customer.id, window.since, window.until)
    return per_meter(need, priced_meters(rule, customer)) if sums_meters(rule) else (need,)


def within_data(window: ReplayWindow, refreshed_at: int | None) -> ReplayWindow:
    """``window`` ending no later than the data does: past the source's ``refreshed_at``
    an hour without rows is not yet known to be empty, and replaying it as zero would report
    false silences."""
    if refreshed_at is None or refreshed_at + window.refresh_delay >= window.until:
        return window
    return replace(window, until=max(window.since + 1, refreshed_at + window.refresh_delay))


def judged_granularity(rule: Rule) -> Granularity | None:
    """The buckets whose completion can change ``rule``'s verdict (``None``: completion
    never does, as for upper thresholds, which judge the running period); the kind says."""
    return conditions.kind_of(rule).judged_at(rule)


def instants(rule: Rule, start: int, window: ReplayWindow) -> list[int]:
    """Every instant in ``[start, until]`` at which ``rule``'s findings may change, sorted:
    ``start`` and ``until`` themselves; for rules reading the running period, its boundaries
    (the judged period moves on) and hour ends plus ``refresh_delay``; and the ends of the
    judged buckets plus ``freshness_lag`` + ``refresh_delay``. Rules that judge complete
    buckets only need no period boundaries: until the bucket that just ended is complete they
    judge what they judged before. The same for every customer of the rule."""
    delay = window.refresh_delay
    complete_after = math.ceil(window.freshness_lag) + delay
    found = {start, window.until}
    wanted: list[tuple[Granularity, tuple[int, ...]]] = []
    if conditions.kind_of(rule).reads_running_period(rule):
        wanted += [(rule.window, (0, delay)), ("hour", (delay,))]
    judged = judged_granularity(rule)
    if judged is not None:
        wanted.append((judged, (complete_after,)))
    reach_back = start - complete_after
    for granularity, offsets in wanted:
        for period in calendar.periods(reach_back, window.until + 1, granularity, rule.timezone):
            found.update(period.ends_at + offset for offset in offsets)
    return sorted(t for t in found if start <= t <= window.until)

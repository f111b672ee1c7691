"""Backtest: replay history through the daemon's own evaluation, lifecycle and notification
pipeline. The pure core; :mod:`alertd.commands.backtest` is the shell that fetches and prints.

Where it sits::

    rules × customers --history_need--> one hourly DataNeed per (rule, customer),
        from the warm-up before ``since`` to ``until``
        --planner.plan--> UsageQuery… --Source.fetch, each once--> UsageResult…
        --planner.extract_rows--> hourly rows per (rule, customer)
        --replay_all--> Change… (fired / escalated / resolved) --firings_of--> Firing…
        --NotificationReplay--> what would have been sent

**Fetching once.** Hour buckets in a rule's time zone sum exactly into that zone's days, weeks
and months, and they are the finest buckets Stripe serves, so one hourly history per (rule,
customer) answers every evaluation instant: at instant ``t`` the evaluator's own need
(``evaluate.needs(rule, customer, t)``) is filled from the hours visible at ``t``. The planner
folds the histories into the fewest requests and the source paces them within the rate budget,
so a backtest costs one request per customer and time zone (more only when Stripe answers
``has_more`` and the source splits the range).

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
thresholds, forecasts). Upper thresholds are monotone within a period (usage only grows), so
a period costs two evaluations unless a level changes, found by bisection
(:func:`evaluations`). Between evaluations, while any series is pending or firing, the
lifecycle alone is stepped every ``every`` on the same findings, so ``for`` and
``keep_firing_for`` play out as in the daemon (only the ticks where something can happen
are visited: :func:`_tick_through`). A complete bucket never changes, so
:class:`HistorySeries` builds it once for all instants instead of rebuilding the series, and
the evaluator's need at an instant is worked out once for all customers
(:meth:`RuleFrame.need_at`). The tests hold each shortcut against the plain way.

**Warm-up.** Data: each history starts where the evaluator's need at the warm-up start begins
(anomaly ``history``, the compared period of ``change``, the rate window of ``forecast``, the
span of ``absence``). State: replay starts at the beginning of the rule's period containing
the instant before ``since - for - keep_firing_for`` and reports only firings at or after
``since``, so an alert already firing at ``since`` is not reported as a new firing; its
notifications before ``since`` still fill the notification log that dedup reads.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import groupby
from typing import Literal, Protocol

from alertd import alerts, evaluate
from alertd.alerts import AlertState, Policy, Transition, build_alert
from alertd.errors import ConfigError
from alertd.evaluate import windows
from alertd.evaluate.series import build_series, data_need, granularity_for, series_dimensions
from alertd.model import (
    Bucket,
    Customer,
    DataNeed,
    Dimensions,
    Finding,
    Granularity,
    Notification,
    Period,
    Series,
    SeriesKey,
    UsageRow,
)
from alertd.notify.grouping import (
    FiringUpdate,
    Group,
    GroupId,
    ResolvedUpdate,
    SentRecord,
    Update,
    ingest,
)
from alertd.notify.routing import RouteTree
from alertd.notify.stages import FlushContext, flush_groups, is_due
from alertd.rules.schema import UPPER_OPS, Rule, ThresholdCondition
from alertd.settings import Receiver
from alertd.silences import Silence

FiringKind = Literal["fired", "escalated"]
REPORTED: frozenset[str] = frozenset({"fired", "escalated"})


# --------------------------------------------------------------------------- shared steps


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
    then the rule's evaluator. Shared by ``backtest`` and ``alertd test``."""
    series = build_series(rule, need, rows, refreshed_at, now=now, freshness_lag=freshness_lag)
    return [evaluate.evaluate(rule, s, customer, now) for s in series]


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


# --------------------------------------------------------------------------- what replay reports


@dataclass(frozen=True, slots=True)
class Firing:
    """A series that would have started firing (``fired``) or climbed a level (``escalated``)
    at ``at``, the moment the daemon would have noticed, with the finding that did it."""

    at: int
    kind: FiringKind
    finding: Finding
    previous_level: str | None = None


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


# --------------------------------------------------------------------------- planning the fetch


def warm_start(rule: Rule, since: int) -> int:
    """Where replay of ``rule`` starts: the beginning of its period containing the instant
    before ``since - for - keep_firing_for``, so the states at ``since`` are what a daemon
    running all along had (strictly before ``since``: a condition already holding then fired
    in the warm-up, not at ``since``)."""
    earliest = since - 1 - math.ceil(rule.for_ + rule.keep_firing_for)
    return windows.floor(earliest, rule.window, rule.timezone)


def history_need(rule: Rule, customer: str, since: int, until: int) -> DataNeed:
    """The one hourly need covering every evaluation of ``rule`` for ``customer`` from the
    warm-up to ``until``. Needs only move forward with time, so the evaluator's need at the
    warm-up start is the earliest one."""
    starts_at = evaluate.needs(rule, customer, warm_start(rule, since))[0].starts_at
    starts_at = windows.floor(starts_at, "hour", rule.timezone)
    return data_need(rule, customer, until, starts_at, granularity="hour")


def within_data(window: ReplayWindow, refreshed_at: int | None) -> ReplayWindow:
    """``window`` ending no later than the data does: past the source's ``refreshed_at``
    an hour without rows is not yet known to be empty, and replaying it as zero would report
    false silences."""
    if refreshed_at is None or refreshed_at + window.refresh_delay >= window.until:
        return window
    return replace(window, until=max(window.since + 1, refreshed_at + window.refresh_delay))


def select_rules(rules: Sequence[Rule], names: Iterable[str] | None) -> list[Rule]:
    """The rules named (all when ``names`` is ``None``); an unknown name is a usage error."""
    if names is None:
        return list(rules)
    wanted = list(dict.fromkeys(names))
    known = {rule.name for rule in rules}
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise ConfigError(f"--rule: no rule named {', '.join(map(repr, unknown))} "
                          f"(rules: {', '.join(sorted(known)) or 'none'})")
    return [rule for rule in rules if rule.name in wanted]


# --------------------------------------------------------------------------- instants


def _reads_running_period(rule: Rule) -> bool:
    condition = rule.condition
    if isinstance(condition, ThresholdCondition):
        return condition.op in UPPER_OPS
    return condition.type not in ("change", "anomaly", "absence")


def judged_granularity(rule: Rule) -> Granularity | None:
    """The buckets whose completion can change ``rule``'s verdict (``None``: completion
    never does, as for upper thresholds, which judge the running period)."""
    condition = rule.condition
    if isinstance(condition, ThresholdCondition):
        return None if condition.op in UPPER_OPS else rule.window
    if condition.type in ("change", "anomaly"):
        return rule.window
    if condition.type == "forecast":
        return granularity_for(rule)
    return "hour"  # absence, and any evaluator not known here: every hour, to be safe


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
    if _reads_running_period(rule):
        wanted += [(rule.window, (0, delay)), ("hour", (delay,))]
    judged = judged_granularity(rule)
    if judged is not None:
        wanted.append((judged, (complete_after,)))
    reach_back = start - complete_after
    for granularity, offsets in wanted:
        for period in windows.periods(reach_back, window.until + 1, granularity, rule.timezone):
            found.update(period.ends_at + offset for offset in offsets)
    return sorted(t for t in found if start <= t <= window.until)


# --------------------------------------------------------------------------- replay (pure)


@dataclass(frozen=True, slots=True)
class RuleFrame:
    """What replaying one rule shares across its customers: the evaluation instants, and the
    calendar slots (of the evaluator's own granularity) its history is cut into."""

    rule: Rule
    schedule: tuple[int, ...]
    granularity: Granularity
    slots: tuple[Period, ...]
    starts: tuple[int, ...]
    ends: tuple[int, ...]
    _needs: dict[int, DataNeed] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, rule: Rule, window: ReplayWindow) -> RuleFrame:
        start = warm_start(rule, window.since)
        history = history_need(rule, "", window.since, window.until)
        granularity = evaluate.needs(rule, "", start)[0].granularity
        slots = tuple(windows.periods(history.starts_at, history.ends_at, granularity,
                                      rule.timezone))
        return cls(rule, tuple(instants(rule, start, window)), granularity, slots,
                   tuple(s.starts_at for s in slots), tuple(s.ends_at for s in slots))

    def need_at(self, instant: int, customer: str) -> DataNeed:
        """``evaluate.needs(rule, customer, instant)[0]``, worked out once per instant for all
        customers: an evaluator only learns the customer's id, which the need merely carries."""
        need = self._needs.get(instant)
        if need is None:
            need = self._needs[instant] = evaluate.needs(self.rule, "", instant)[0]
        return replace(need, customer=customer)

    def slot_at(self, instant: int) -> int | None:
        """The index of the slot starting exactly at ``instant``."""
        index = bisect_left(self.starts, instant)
        return index if index < len(self.starts) and self.starts[index] == instant else None


def _group_of(dimensions: Dimensions, group_by: Sequence[str]) -> Dimensions:
    found = dict(dimensions)
    return tuple(sorted((key, found.get(key, "")) for key in group_by))


@dataclass(frozen=True, slots=True)
class _GroupHistory:
    """The rows of one group-by value set, and its slots' complete buckets built once."""

    starts: list[int]
    ends: list[int]
    values: list[float]
    complete: tuple[Bucket, ...]

    @classmethod
    def of(cls, rows: Sequence[UsageRow], frame: RuleFrame) -> _GroupHistory:
        sums = [0.0] * len(frame.slots)
        for row in rows:
            index = bisect_right(frame.starts, row.starts_at) - 1
            if index >= 0 and frame.slots[index].contains(row.starts_at):
                sums[index] += row.value
        complete = tuple(Bucket(slot.starts_at, slot.ends_at, value, True)
                         for slot, value in zip(frame.slots, sums, strict=True))
        return cls([r.starts_at for r in rows], [r.ends_at for r in rows],
                   [r.value for r in rows], complete)

    def present(self, starts_at: int, ends_at: int, visible_until: int) -> bool:
        """Whether a visible row starts in ``[starts_at, ends_at)``."""
        first = bisect_left(self.starts, starts_at)
        return first < bisect_right(self.ends, visible_until) and self.starts[first] < ends_at

    def partial(self, starts_at: int, ends_at: int, visible_until: int) -> float:
        """The sum of visible rows starting in ``[starts_at, ends_at)``."""
        total, index = 0.0, bisect_left(self.starts, starts_at)
        while index < len(self.starts) and self.starts[index] < ends_at:
            if self.ends[index] <= visible_until:
                total += self.values[index]
            index += 1
        return total


class HistorySeries:
    """One (rule, customer)'s history, cut into the series each evaluation needs.

    :meth:`series` equals :func:`~alertd.evaluate.series.build_series` on the rows visible at
    that instant (the tests check it), but a complete bucket never changes, so it is built
    once and shared by every instant; only the few buckets not yet complete are summed again.
    That keeps an hourly anomaly rule with five weeks of history at a fraction of a
    millisecond of series building per evaluation instead of rebuilding 840 buckets each time.
    """

    def __init__(self, frame: RuleFrame, customer: str, rows: Iterable[UsageRow]) -> None:
        self.frame = frame
        self.rule = frame.rule
        self.customer = customer
        self.rows = sorted(rows, key=lambda r: (r.starts_at, r.ends_at, r.dimensions))
        self._starts = [row.starts_at for row in self.rows]
        self._ends = [row.ends_at for row in self.rows]
        grouped: dict[Dimensions, list[UsageRow]] = {} if self.rule.group_by else {(): []}
        for row in self.rows:
            grouped.setdefault(_group_of(row.dimensions, self.rule.group_by), []).append(row)
        self._groups = {group: _GroupHistory.of(members, frame)
                        for group, members in sorted(grouped.items())}

    def visible(self, starts_at: int, refreshed_at: int) -> Sequence[UsageRow]:
        """Rows starting at or after ``starts_at`` that ended by ``refreshed_at``."""
        low = bisect_left(self._starts, starts_at)
        high = bisect_right(self._ends, refreshed_at)
        return self.rows[low:high] if high > low else ()

    def series(self, need: DataNeed, now: int, refreshed_at: int, freshness_lag: float
               ) -> list[Series]:
        """``build_series(rule, need, visible rows, refreshed_at, now=now, …)``."""
        low = self.frame.slot_at(need.starts_at)
        if (low is None or need.granularity != self.frame.granularity
                or need.ends_at > self.frame.ends[-1]):
            rows = self.visible(need.starts_at, refreshed_at)
            return build_series(self.rule, need, rows, refreshed_at, now=now,
                                freshness_lag=freshness_lag)
        high = bisect_left(self.frame.starts, need.ends_at)
        complete_before = min(refreshed_at, now) - freshness_lag
        cut = bisect_right(self.frame.ends, min(complete_before, need.ends_at))
        cut = max(low, min(high, cut))
        return [
            self._series(need, group, history, (low, cut, high), refreshed_at, now)
            for group, history in self._groups.items()
            if not self.rule.group_by
            or history.present(need.starts_at, need.ends_at, refreshed_at)
        ]

    def _series(self, need: DataNeed, group: Dimensions, history: _GroupHistory,
                cuts: tuple[int, int, int], refreshed_at: int, now: int) -> Series:
        low, cut, high = cuts
        running = []
        for slot in self.frame.slots[cut:high]:
            ends_at = min(slot.ends_at, need.ends_at)
            value = history.partial(slot.starts_at, ends_at, refreshed_at)
            running.append(Bucket(slot.starts_at, ends_at, value, False))
        return Series(
            key=SeriesKey(self.rule.name, need.customer, group),
            meter=self.rule.meter,
            dimensions=series_dimensions(need.spec.dimension_filters, group),
            granularity=need.granularity,
            timezone=need.timezone,
            buckets=history.complete[low:cut] + tuple(running),
            refreshed_at=min(refreshed_at, now),
        )


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


@dataclass(frozen=True, slots=True)
class Change:
    """A notifying transition (``fired``, ``escalated``, ``resolved``) during replay, warm-up
    included, with the finding behind it and the series' state right after it: what the
    notification pipeline is fed."""

    transition: Transition
    finding: Finding
    state: AlertState

    @property
    def at(self) -> int:
        return self.transition.at


def replay_changes(
    rule: Rule,
    customer: Customer,
    rows: Iterable[UsageRow],
    window: ReplayWindow,
    frame: RuleFrame | None = None,
) -> list[Change]:
    """Every notifying transition of ``rule`` for ``customer`` from the warm-up to ``until``,
    in time order. Pure.

    ``rows`` are the customer's hourly rows for the rule (see :func:`history_need`);
    ``frame`` is :meth:`RuleFrame.of` the rule, passed in when many customers share it.
    Between evaluations, while a series is pending or firing, the lifecycle is stepped every
    ``every`` on the latest findings, as the daemon's passes would (:func:`_tick_through`).
    """
    frame = frame or RuleFrame.of(rule, window)
    history = HistorySeries(frame, customer.id, rows)
    states = SeriesStates(rule)
    every = max(1, int(rule.every))
    changes: list[Change] = []

    def step(findings: list[Finding], instant: int) -> None:
        for transition, finding in states.apply(findings, instant):
            if transition.notifies:
                changes.append(Change(transition, finding, states.states[finding.key]))

    steps = evaluations(history, customer, window)
    for index, (instant, findings) in enumerate(steps):
        step(findings, instant)
        following = steps[index + 1][0] if index + 1 < len(steps) else window.until + 1
        _tick_through(states, findings, range(instant + every, following, every), step)
    return changes


def _tick_through(
    states: SeriesStates,
    findings: list[Finding],
    ticks: range,
    step: Callable[[list[Finding], int], None],
) -> None:
    """Steps the lifecycle on unchanged findings at ``ticks`` while a series is pending or
    firing, visiting only the ticks that matter.

    On unchanged findings a pass can only bump ``last_active_at`` until the tick at which
    ``for`` or ``keep_firing_for`` has elapsed, and whether a transition is due at a tick
    depends only on how far that tick is from the state's timestamps: so the first tick with a
    transition is found by bisection, and a final step at the last tick leaves the state as
    stepping every tick would.
    """
    while ticks and states.live:
        if not states.would_change(findings, ticks[-1]):
            step(findings, ticks[-1])
            return
        low, high = 0, len(ticks) - 1  # the answer is in [low, high]
        while low < high:
            middle = (low + high) // 2
            if states.would_change(findings, ticks[middle]):
                high = middle
            else:
                low = middle + 1
        step(findings, ticks[low])
        ticks = ticks[low + 1:]


def firings_of(changes: Iterable[Change], since: int) -> list[Firing]:
    """The changes a backtest reports: series starting to fire or escalating at or after
    ``since``."""
    return [
        Firing(change.at, "fired" if change.transition.kind == "fired" else "escalated",
               change.finding, change.transition.previous_level)
        for change in changes
        if change.transition.kind in REPORTED and change.at >= since
    ]


def replay(
    rule: Rule,
    customer: Customer,
    rows: Iterable[UsageRow],
    window: ReplayWindow,
    frame: RuleFrame | None = None,
) -> list[Firing]:
    """When ``rule`` would have fired for ``customer`` in ``[since, until]``. Pure."""
    return firings_of(replay_changes(rule, customer, rows, window, frame), window.since)


class Progress(Protocol):
    """Told how far a phase has come (the command draws a bar on a terminal)."""

    def start(self, phase: str, total: int) -> None: ...

    def advance(self, done: int = 1) -> None: ...

    def finish(self) -> None: ...


class NoProgress:
    """Reports nothing: for tests, pipes and files."""

    def start(self, phase: str, total: int) -> None:
        return None

    def advance(self, done: int = 1) -> None:
        return None

    def finish(self) -> None:
        return None


@dataclass(frozen=True, slots=True)
class Replayed:
    """What replaying every rule found: the firings to report (time order) and every
    notifying change, warm-up included (time order), for :class:`NotificationReplay`."""

    firings: tuple[Firing, ...]
    changes: tuple[Change, ...]


def replay_all(
    rules: Sequence[Rule],
    customers: Mapping[str, Sequence[Customer]],
    histories: Mapping[tuple[str, str], Sequence[UsageRow]],
    window: ReplayWindow,
    progress: Progress | None = None,
) -> Replayed:
    """Every rule replayed for each of its ``customers`` (by rule name) on ``histories``
    (by rule name and customer id). Pure apart from ``progress``."""
    progress = progress or NoProgress()
    progress.start("replaying", sum(len(customers[rule.name]) for rule in rules))
    changes: list[Change] = []
    for rule in rules:
        frame = RuleFrame.of(rule, window)
        for customer in customers[rule.name]:
            rows = histories[(rule.name, customer.id)]
            changes += replay_changes(rule, customer, rows, window, frame)
            progress.advance()
    progress.finish()
    changes.sort(key=_change_order)
    return Replayed(tuple(firings_of(changes, window.since)), tuple(changes))


def _change_order(change: Change) -> tuple[int, str, str, Dimensions]:
    key = change.finding.key
    return (change.at, key.rule, key.customer, key.group)


# --------------------------------------------------------------------------- notifications


@dataclass(frozen=True, slots=True)
class SentNotification:
    """A notification the daemon would have queued at ``at``, and why it was sent."""

    at: int
    notification: Notification
    reason: str


class NotificationReplay:
    """Replayed transitions through the notification pipeline's own pure stages, with the
    daemon's timers: what would have been *sent* after routing, grouping, silences and dedup.

    The daemon files every announced alert into its receivers' groups after each pass
    (:func:`~alertd.notify.grouping.ingest`), flushes all groups then
    (:func:`~alertd.notify.stages.flush_groups`), and flushes again whenever a group falls due
    (``group_wait``, then every ``group_interval``). Here the changes are filed when they
    happen, and a group is flushed when it falls due with news in it, or, when it only holds
    what its receiver already heard, at the first ``group_interval`` tick after
    ``repeat_interval``: the flushes in between would all be suppressed by dedup and only move
    the group's timer on, which :meth:`_catch_up` does. Re-filing an unchanged alert at every
    pass only refreshes its snapshot, so only transitions are filed. Runtime state in its own
    object; every decision is the pipeline's (the tests check the skipping against flushing at
    every tick).
    """

    def __init__(self, tree: RouteTree, receivers: Iterable[Receiver] = (),
                 silences: Sequence[Silence] = ()) -> None:
        self.tree = tree
        self.send_resolved = {receiver.name: receiver.send_resolved for receiver in receivers}
        self.silences = tuple(silences)
        self.groups: dict[GroupId, Group] = {}
        self.sent: dict[GroupId, SentRecord] = {}
        self.news: set[GroupId] = set()
        self.queued: list[SentNotification] = []

    def run(self, changes: Iterable[Change], rules: Mapping[str, Rule],
            customers: Mapping[str, Customer], until: int) -> list[SentNotification]:
        """Every notification queued up to ``until``, in time order (``changes`` in time
        order, as :func:`replay_all` gives them)."""
        for at, batch in groupby(changes, key=lambda change: change.at):
            self._flush_due(before=at)
            self._catch_up(at)
            updates = [_update(c, rules[c.finding.rule], customers.get(c.finding.customer))
                       for c in batch]
            self.groups, changed = ingest(self.groups, updates, self.tree, self.send_resolved,
                                          at)
            self.news |= changed
            self._flush(at, changed)
        self._flush_due(before=until + 1)
        return self.queued

    def _flush_due(self, before: int) -> None:
        while self.groups:
            due = min(self._next_flush(ident) for ident in self.groups)
            if due >= before:
                return
            self._flush(due, frozenset())

    def _next_flush(self, ident: GroupId) -> int:
        group, record = self.groups[ident], self.sent.get(ident)
        due = math.ceil(group.due_at)
        if group.flushed_at is not None:  # a zero group_interval must still move time on
            due = max(due, group.flushed_at + 1)
        firing = any(entry.alert.status == "firing" for entry in group.entries)
        # With silences, any tick may unmute an alert: no skipping then.
        if ident in self.news or record is None or not firing or self.silences:
            return due
        repeat_at = record.sent_at + group.repeat_interval
        if repeat_at <= due or group.group_interval <= 0:
            return max(due, math.ceil(repeat_at))
        ticks = math.ceil((repeat_at - due) / group.group_interval)
        return math.ceil(due + ticks * group.group_interval)

    def _catch_up(self, at: int) -> None:
        """Moves each quiet group's timer to its last ``group_interval`` tick before ``at``:
        the daemon's flushes at those ticks (skipped here) changed nothing else."""
        for ident, group in self.groups.items():
            if ident in self.news or group.flushed_at is None or group.group_interval <= 0:
                continue
            ticks = math.ceil((at - group.flushed_at) / group.group_interval) - 1
            if ticks > 0:
                flushed_at = group.flushed_at + math.ceil(ticks * group.group_interval)
                self.groups[ident] = replace(group, flushed_at=flushed_at)

    def _flush(self, at: int, changed: Collection[GroupId]) -> None:
        """Flushes the groups due at ``at`` (the others would only be held back)."""
        context = FlushContext(at, self.silences)
        due = {ident: group for ident, group in self.groups.items() if is_due(group, context)}
        result = flush_groups(due, self.sent, context, [i for i in changed if i in due])
        for group in result.groups:
            self.groups[group.ident] = group
            if group.flushed_at == at:
                self.news.discard(group.ident)
        for ident in result.dropped:
            self.groups.pop(ident, None)
            self.news.discard(ident)
        self.sent.update((record.ident, record) for record in result.sent)
        self.queued += [SentNotification(at, d.notification, d.reason)
                        for d in result.decisions if d.notification is not None]


def _update(change: Change, rule: Rule, customer: Customer | None) -> Update:
    """What the lifecycle files for a change: the alert of a firing episode, or its end."""
    transition = change.transition
    if transition.kind == "resolved":
        return ResolvedUpdate(transition.instance, transition.at)
    alert = build_alert(change.finding, change.state, rule, customer)
    receivers = tuple(rule.receivers) if rule.receivers is not None else None
    return FiringUpdate(transition.instance, change.state.announced_rank, alert, receivers)


__all__ = [
    "Change",
    "Firing",
    "HistorySeries",
    "NoProgress",
    "NotificationReplay",
    "Progress",
    "ReplayWindow",
    "Replayed",
    "RuleFrame",
    "SentNotification",
    "SeriesStates",
    "evaluations",
    "findings_at",
    "firings_of",
    "history_need",
    "instants",
    "judge",
    "judged_granularity",
    "monotone",
    "replay",
    "replay_all",
    "replay_changes",
    "select_rules",
    "warm_start",
    "within_data",
]

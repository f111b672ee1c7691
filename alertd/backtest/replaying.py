"""Replay: each rule, for each of its customers, from the warm-up to ``until``, through the
daemon's alert lifecycle into the notifying changes it would have made (:func:`replay_all`)
and the firings a backtest reports (:func:`firings_of`). Pure apart from the progress it
reports and the failures it logs; its changes feed
:class:`~alertd.backtest.notifications.NotificationReplay`.

One (rule, customer) whose replay raises (a bug, or a rule that slipped past validation) is
logged with ``rule=`` and ``customer=`` and left out; the others are replayed as usual.

With ``accounts:`` each Stripe account is replayed on its own (``account``): its findings'
keys carry the account's name before the lifecycle sees them, as the daemon's engine stamps
them (:func:`alertd.accounts.with_account`), so fingerprints, episodes and the ``account``
label are the daemon's.

Between evaluations (:func:`~alertd.backtest.evaluating.evaluations`), while any series is
pending or firing, the lifecycle alone is stepped every ``every`` on the same findings, so
``for`` and ``keep_firing_for`` play out as in the daemon (only the ticks where something can
happen are visited: :func:`_tick_through`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal, Protocol

from alertd.alerts import AlertState, Transition
from alertd.backtest.batching import batched, evaluations_together
from alertd.backtest.evaluating import Evaluation, evaluations
from alertd.backtest.history import History, RuleFrame, history_of
from alertd.backtest.steps import SeriesStates
from alertd.backtest.window import ReplayWindow
from alertd.model import Customer, Dimensions, Finding, UsageRow
from alertd.rules.schema import Rule

log = logging.getLogger("alertd.backtest")

FiringKind = Literal["fired", "escalated"]
REPORTED: frozenset[str] = frozenset({"fired", "escalated"})


@dataclass(frozen=True, slots=True)
class Firing:
    """A series that would have started firing (``fired``) or climbed a level (``escalated``)
    at ``at``, the moment the daemon would have noticed, with the finding that did it."""

    at: int
    kind: FiringKind
    finding: Finding
    previous_level: str | None = None


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
    account: str = "",
) -> list[Change]:
    """Every notifying transition of ``rule`` for ``customer`` (of the Stripe ``account``)
    from the warm-up to ``until``, in time order. Pure.

    ``rows`` are the customer's hourly rows for the rule (see
    :func:`~alertd.backtest.window.history_need`); ``frame`` is
    :meth:`~alertd.backtest.history.RuleFrame.of` the rule, passed in when many customers
    share it. One customer judged one instant at a time: :func:`replay_all` judges a block of
    customers together (:mod:`~alertd.backtest.batching`) and comes to the same changes.
    """
    frame = frame or RuleFrame.of(rule, window)
    history = history_of(frame, customer, rows)
    return lifecycle_changes(rule, evaluations(history, customer, window), window, account)


def lifecycle_changes(
    rule: Rule,
    steps: Sequence[Evaluation],
    window: ReplayWindow,
    account: str = "",
) -> list[Change]:
    """Every notifying transition of ``rule``'s lifecycle stepped on one customer's
    ``steps`` (``(instant, findings)`` in time order, as
    :func:`~alertd.backtest.evaluating.evaluations` makes them), their keys stamped with the
    Stripe ``account``. Pure.

    Between evaluations, while a series is pending or firing, the lifecycle is stepped every
    ``every`` on the latest findings, as the daemon's passes would (:func:`_tick_through`)."""
    states = SeriesStates(rule)
    every = max(1, int(rule.every))
    changes: list[Change] = []

    def step(findings: list[Finding], instant: int) -> None:
        for transition, finding in states.apply(findings, instant):
            if transition.notifies:
                changes.append(Change(transition, finding, states.states[finding.key]))

    if account:
        steps = [(instant, [replace(f, key=replace(f.key, account=account)) for f in found])
                 for instant, found in steps]
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
class ReplayFailure:
    """A (rule, customer) whose replay raised: reported, so its silence is not read as
    "would never have fired"."""

    rule: str
    customer: str
    message: str
    #: The Stripe account of ``accounts:`` (``""``: the one of ``stripe.api_key``).
    account: str = ""


@dataclass(frozen=True, slots=True)
class Replayed:
    """What replaying every rule found: the firings to report (time order), every
    notifying change, warm-up included (time order), for
    :class:`~alertd.backtest.notifications.NotificationReplay`, and the (rule, customer)
    pairs that could not be replayed."""

    firings: tuple[Firing, ...]
    changes: tuple[Change, ...]
    failures: tuple[ReplayFailure, ...] = ()


def replay_all(
    rules: Sequence[Rule],
    customers: Mapping[str, Sequence[Customer]],
    histories: Mapping[tuple[str, str], Sequence[UsageRow]],
    window: ReplayWindow,
    progress: Progress | None = None,
    account: str = "",
) -> Replayed:
    """Every rule replayed for each of its ``customers`` (by rule name) on ``histories``
    (by rule name and customer id), all of the Stripe ``account``. Pure apart from
    ``progress``."""
    progress = progress or NoProgress()
    progress.start("replaying", sum(len(customers[rule.name]) for rule in rules))
    changes: list[Change] = []
    failures: list[ReplayFailure] = []
    for rule in rules:
        frame = RuleFrame.of(rule, window)
        members = customers[rule.name]
        for first in range(0, len(members), BLOCK):
            block = members[first:first + BLOCK]
            for customer, outcome in zip(block, _replay_block(rule, frame, block, histories,
                                                              window, account), strict=True):
                if isinstance(outcome, Exception):
                    log.error("replay failed rule=%s customer=%s account=%s; its firings are "
                              "left out", rule.name, customer.id, account, exc_info=outcome)
                    failures.append(ReplayFailure(rule.name, customer.id,
                                                  f"{type(outcome).__name__}: {outcome}",
                                                  account))
                else:
                    changes += outcome
                progress.advance()
    progress.finish()
    changes.sort(key=_change_order)
    return Replayed(tuple(firings_of(changes, window.since)), tuple(changes), tuple(failures))


#: How many customers of a rule are judged together. A block's findings are all held until
#: its lifecycles are stepped (an estimated megabyte per series for a month of hourly
#: findings), so the block bounds that memory; the anomaly detector's gain from a batch
#: levels off after a few dozen rows (40 customers: ~4,500 series-instants per CPU second,
#: against ~5,800 series/s for a pass's batches of 700, bench/README.md).
BLOCK = 64


def _replay_block(
    rule: Rule,
    frame: RuleFrame,
    block: Sequence[Customer],
    histories: Mapping[tuple[str, str], Sequence[UsageRow]],
    window: ReplayWindow,
    account: str,
) -> list[list[Change] | Exception]:
    """Each customer's changes, or the exception that stopped its replay (a bug, or a rule
    that slipped past validation): :func:`replay_changes` of each, but with a
    :func:`~alertd.backtest.batching.batched` rule's block judged together at each instant;
    each lifecycle is still stepped on its own, after its customer's evaluations, as
    :func:`replay_changes` steps it."""
    if not batched(rule):
        return [_replay_alone(rule, frame, customer, histories, window, account)
                for customer in block]
    built: list[History | Exception] = []
    for customer in block:
        try:
            built.append(history_of(frame, customer, histories[(rule.name, customer.id)]))
        except Exception as exc:  # a bug or a rule that slipped past validation
            built.append(exc)
    usable = [i for i, history in enumerate(built) if not isinstance(history, Exception)]
    judged = dict(zip(usable, evaluations_together(
        rule, frame.schedule, [h for h in built if not isinstance(h, Exception)],
        [block[i] for i in usable], window), strict=True))
    outcomes: list[list[Change] | Exception] = []
    for index, history in enumerate(built):
        found = history if isinstance(history, Exception) else judged[index]
        if isinstance(found, Exception):
            outcomes.append(found)
            continue
        try:
            outcomes.append(lifecycle_changes(rule, found, window, account))
        except Exception as exc:
            outcomes.append(exc)
    return outcomes


def _replay_alone(
    rule: Rule,
    frame: RuleFrame,
    customer: Customer,
    histories: Mapping[tuple[str, str], Sequence[UsageRow]],
    window: ReplayWindow,
    account: str,
) -> list[Change] | Exception:
    try:
        return replay_changes(rule, customer, histories[(rule.name, customer.id)], window,
                              frame, account)
    except Exception as exc:  # a bug or a rule that slipped past validation
        return exc


def _change_order(change: Change) -> tuple[int, str, str, Dimensions]:
    key = change.finding.key
    return (change.at, key.rule, key.customer, key.group)

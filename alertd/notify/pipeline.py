"""The notification pipeline: findings in, notifications in the outbox out.

Where it sits::

    Finding ─► alerts.apply ─► Firing/ResolvedUpdate ─► route + group (notify.grouping)
            ─► silence ─► dedup ─► wait (notify.stages) ─► outbox (store) ─► notify.outbox

Every decision is a pure function (:func:`lifecycle`, :func:`~alertd.notify.grouping.ingest`,
:func:`~alertd.notify.stages.flush_groups`). :class:`Pipeline` is the thin shell around them:
it loads what they need from the store, reads ``now`` once, and commits their result in ONE
transaction — new alert states, groups, notification log and outbox rows. A crash before the
commit loses nothing (the next pass redoes the transitions from the old state); after it, the
outbox holds every notification, under an id that does not change. A dry run computes the
same and writes nothing.

A flush loads only the groups it can affect — those its updates are filed into or hold their
episodes, and those due — not every open group (issue 13; see :class:`Pipeline`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from alertd.alerts import (
    META_POLICIES,
    AlertState,
    Policy,
    Transition,
    apply,
    build_alert,
    describe,
    instance_key,
)
from alertd.clock import Clock
from alertd.config.settings import Receiver
from alertd.model import Customer, Finding, Notification, Series, SeriesKey
from alertd.notify.grouping import FiringUpdate, ResolvedUpdate, Update, ingest, scope_of
from alertd.notify.routing import RouteTree
from alertd.notify.stages import Decision, FlushContext, flush_groups
from alertd.rules.schema import Rule
from alertd.store.base import Changes, FlushSet, LeaseLostError, Store
from alertd.tasks import Background, wait_first

log = logging.getLogger("alertd.notify")


@dataclass(frozen=True, slots=True)
class AlertContext:
    """What alerts show besides the finding: the customer, recent buckets, the meter's name."""

    customers: Mapping[str, Customer] = field(default_factory=dict)
    series: Mapping[SeriesKey, Series] = field(default_factory=dict)
    meter_names: Mapping[str, str] = field(default_factory=dict)
    recent_buckets: int = 12


@dataclass(frozen=True, slots=True)
class Lifecycle:
    """The lifecycle step of a batch of findings. ``states`` holds changed states only
    (``None``: forget the series); ``findings`` have their ``state`` filled in."""

    findings: tuple[Finding, ...]
    states: Mapping[SeriesKey, AlertState | None]
    transitions: tuple[Transition, ...]
    updates: tuple[Update, ...]


@dataclass(frozen=True, slots=True)
class Report:
    """What one evaluation or flush did (or, in a dry run, would do)."""

    findings: tuple[Finding, ...] = ()
    transitions: tuple[Transition, ...] = ()
    decisions: tuple[Decision, ...] = ()

    @property
    def notifications(self) -> tuple[Notification, ...]:
        """The notifications written to the outbox (would be, in a dry run)."""
        return tuple(d.notification for d in self.decisions if d.notification is not None)


def lifecycle(
    findings: Iterable[Finding],
    previous: Mapping[SeriesKey, AlertState],
    rules: Mapping[str, Rule],
    now: int,
    context: AlertContext | None = None,
) -> Lifecycle:
    """Applies each finding to its series' state; pure. Meta findings (``alertd-stale-data``,
    ``alertd-source-failure``) use :data:`~alertd.alerts.META_POLICIES`."""
    context = context or AlertContext()
    current = dict(previous)
    changed: dict[SeriesKey, AlertState | None] = {}
    shown: list[Finding] = []
    transitions: list[Transition] = []
    updates: list[Update] = []
    for finding in findings:
        rule = rules.get(finding.rule)
        policy = _policy(finding.rule, rule)
        before = current.get(finding.key)
        state, steps = apply(before, finding, policy, now)
        shown.append(replace(finding, state=describe(before, state, steps, finding)))
        transitions.extend(steps)
        if state != (before or AlertState()):
            current[finding.key] = state
            changed[finding.key] = None if state.blank else state
        updates.extend(ResolvedUpdate(t.instance, now) for t in steps if t.kind == "resolved")
        if state.announced:
            updates.append(_firing(finding, state, rule, context))
    return Lifecycle(tuple(shown), changed, tuple(transitions), tuple(updates))


def retirement(states: Mapping[SeriesKey, AlertState], now: int, reason: str) -> Lifecycle:
    """Forgets the series of rules that no longer exist; announced alerts among them resolve
    (so receivers hear that they are over and repeats stop). Pure."""
    transitions = tuple(
        Transition("resolved", key, now, reason, state.level, None, state.period_key,
                   instance_key(key, state.firing_since))
        for key, state in sorted(states.items(), key=lambda kv: kv[0].fingerprint)
        if state.announced
    )
    updates = tuple(ResolvedUpdate(t.instance, now) for t in transitions)
    return Lifecycle((), dict.fromkeys(states), transitions, updates)


def vanished_series(
    findings: Sequence[Finding], previous: Mapping[SeriesKey, AlertState]
) -> list[Finding]:
    """Inactive findings for group-by series that are alerting but absent from this pass.

    A grouped rule only sees the groups that have usage in the range; a group whose usage
    vanished (a model no longer used) yields no series, so without this its alert would never
    resolve. Only (rule, customer) pairs this pass read successfully count: a failed read
    says nothing about the groups it did not return. Pure.
    """
    judged = {(f.rule, f.customer): f for f in findings if f.state not in ("nodata", "error")}
    seen = {f.key for f in findings}
    vanished = []
    for key, state in previous.items():
        sibling = judged.get((key.rule, key.customer))
        if sibling is None or key in seen or not key.group or state.status == "inactive":
            continue
        vanished.append(replace(
            sibling, key=key, dimensions=key.group, value=0.0, active=False, level=None,
            state="inactive", message="no usage in this group any more",
        ))
    return vanished


def _policy(name: str, rule: Rule | None) -> Policy:
    if rule is not None:
        return Policy.of(rule)
    if name in META_POLICIES:
        return META_POLICIES[name]
    raise ValueError(f"a finding names rule {name!r}, which is not loaded")


def _firing(
    finding: Finding, state: AlertState, rule: Rule | None, context: AlertContext
) -> FiringUpdate:
    series = context.series.get(finding.key)
    alert = build_alert(
        finding, state, rule, context.customers.get(finding.customer),
        recent=series.buckets[-context.recent_buckets:] if series else (),
        meter_name=context.meter_names.get(finding.meter or ""),
        refreshed_at=series.refreshed_at if series else None,
    )
    receivers = tuple(rule.receivers) if rule is not None and rule.receivers is not None else None
    return FiringUpdate(instance_key(finding.key, state.firing_since), state.announced_rank,
                        alert, receivers)


class Pipeline:
    """Evaluations and timed flushes of one configuration, committed to ``store``.

    ``on_commit`` is called after a commit that wrote outbox rows (give it the outbox
    worker's ``wake``). One pipeline serialises its own evaluations and flushes; one daemon
    owns a state file (``check --dry-run`` only reads it).

    A flush loads only the groups it can affect (:func:`~alertd.notify.grouping.scope_of`,
    :meth:`Store.load_scope <alertd.store.base.Store.load_scope>`): what it writes and sends
    is what a flush of every group would write and send, and its decisions are those of the
    groups it loaded — the groups left out would each only add a "suppressed" decision with
    nothing sent. Dry runs and ``immediate`` flushes (``alertd check``, whose report lists
    every group's decision) and ``scoped=False`` (the bench's "before") load every group.
    """

    def __init__(
        self,
        store: Store,
        tree: RouteTree,
        receivers: Iterable[Receiver] = (),
        *,
        on_commit: Callable[[], None] | None = None,
        scoped: bool = True,
    ) -> None:
        self.store = store
        self.scoped = scoped
        self.tree = tree
        self.send_resolved = {r.name: r.send_resolved for r in receivers}
        self.on_commit = on_commit
        self._lock = asyncio.Lock()
        self._changed = asyncio.Event()
        self._timer = Background("alertd-groups")

    async def apply(
        self,
        findings: Sequence[Finding],
        rules: Mapping[str, Rule],
        now: int,
        *,
        context: AlertContext | None = None,
        dry_run: bool = False,
        immediate: bool = False,
    ) -> Report:
        """Applies a pass's findings, then flushes every due group.

        ``immediate`` flushes new groups without ``group_wait`` (a one-shot ``check``).
        """
        async with self._lock:
            previous = await self.store.load_states({f.rule for f in findings})
            findings = [*findings, *vanished_series(findings, previous)]
            step = lifecycle(findings, previous, rules, now, context)
            for transition in () if dry_run else step.transitions:
                _log_transition(transition)
            decisions = await self._flush(step.updates, step.states, now, dry_run, immediate)
        return Report(step.findings, step.transitions, decisions)

    async def record(self, step: Lifecycle, now: int) -> Report:
        """Commits a lifecycle step worked out beforehand and flushes every due group, in the
        one transaction :meth:`apply` uses (the daemon works a pass's step out batch by batch:
        :class:`alertd.service.recording.PassRecorder`)."""
        async with self._lock:
            for transition in step.transitions:
                _log_transition(transition)
            decisions = await self._flush(step.updates, step.states, now, False, False)
        return Report(step.findings, step.transitions, decisions)

    async def flush(self, now: int, *, dry_run: bool = False, immediate: bool = False) -> Report:
        """Flushes the groups that are due at ``now`` (the daemon's timer)."""
        async with self._lock:
            decisions = await self._flush((), {}, now, dry_run, immediate)
        return Report(decisions=decisions)

    async def retire_rules(
        self, rules: Sequence[str], now: int, *, note: str = "rule removed"
    ) -> Report:
        """Resolves and forgets the alerts of rules a reload removed (see :func:`retirement`)."""
        return await self.settle(lambda states: retirement(states, now, note), now, rules)

    async def settle(
        self, plan: Callable[[Mapping[SeriesKey, AlertState]], Lifecycle], now: int,
        rules: Iterable[str] | None = None,
    ) -> Report:
        """Commits the lifecycle step ``plan`` makes of the stored states (of ``rules``, or
        all) — a retirement, an adoption (:func:`alertd.accounts.adoption`) — with the
        notifications it causes, in one transaction, as a pass's step is."""
        async with self._lock:
            step = plan(await self.store.load_states(rules))
            for transition in step.transitions:
                _log_transition(transition)
            decisions = await self._flush(step.updates, step.states, now, False, False)
        return Report(step.findings, step.transitions, decisions)

    async def start(self, clock: Clock) -> None:
        """Runs :meth:`run` in the background until :meth:`stop`."""
        self._timer.start(lambda stop: self.run(stop, clock))

    async def stop(self) -> None:
        """Stops the timer after the flush in progress, if any."""
        await self._timer.stop()

    async def next_flush_at(self) -> float | None:
        return await self.store.next_group_due()

    async def run(self, stop: asyncio.Event, clock: Clock, *, idle: float = 60.0) -> None:
        """Flushes groups as they fall due until ``stop`` is set (the daemon's loop)."""
        while not stop.is_set():
            self._changed.clear()
            delay = idle
            try:
                await self.flush(int(clock.now()))
                due = await self.next_flush_at()
                if due is not None:
                    delay = min(idle, due - clock.now())
            except LeaseLostError as exc:  # a standby replica: the leader flushes
                log.debug("not flushing groups: %s", exc)
            except Exception:  # the timer must outlive one bad flush (a full disk, a bug)
                log.exception("flushing notification groups failed; retrying in %gs", idle)
            await wait_first(stop, self._changed, timeout=max(delay, 0.05), clock=clock)

    async def _flush(
        self, updates: Sequence[Update], states: Mapping[SeriesKey, AlertState | None],
        now: int, dry_run: bool, immediate: bool,
    ) -> tuple[Decision, ...]:
        loaded = await self._load(updates, now, whole=dry_run or immediate or not self.scoped)
        silences = await self.store.silences(now)
        grouped, changed = ingest(loaded.groups, updates, self.tree, self.send_resolved, now)
        result = flush_groups(grouped, loaded.sent,
                              FlushContext(now, tuple(silences), immediate), changed)
        changes = Changes(states=states, groups=result.groups, dropped_groups=result.dropped,
                          sent=result.sent, outbox=result.notifications)
        if dry_run:
            return result.decisions
        if changes != Changes():
            await self.store.commit_transitions(changes)
        for decision in result.decisions:
            _log_decision(decision)
        if result.notifications and self.on_commit is not None:
            self.on_commit()
        if updates:
            self._changed.set()
        return result.decisions

    async def _load(self, updates: Sequence[Update], now: int, *, whole: bool) -> FlushSet:
        """The groups and log a flush works on: those it can affect, or every one."""
        if whole:
            return FlushSet(await self.store.load_groups(), await self.store.load_sent())
        return await self.store.load_scope(scope_of(updates, self.tree, now))


def _log_transition(transition: Transition) -> None:
    level = logging.DEBUG if transition.kind in ("pending", "cancelled") else logging.INFO
    log.log(level, "alert %s rule=%s customer=%s level=%s reason=%s", transition.kind,
            transition.key.rule, transition.key.customer, transition.level, transition.reason)


def _log_decision(decision: Decision) -> None:
    if decision.notification is not None:
        log.info("notification queued receiver=%s group=%s status=%s alerts=%d id=%s reason=%s",
                 decision.receiver, decision.group_key, decision.status,
                 len(decision.fingerprints), decision.notification.id, decision.reason)
    else:
        log.debug("notification suppressed receiver=%s group=%s by=%s reason=%s",
                  decision.receiver, decision.group_key, decision.suppressed_by, decision.reason)

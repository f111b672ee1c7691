"""The alert lifecycle: a pure state machine from findings to transitions.

Where it sits in the data flow::

    evaluate.<type> ─► Finding ─► alerts.apply(previous, finding, rule, now)
                                   ─► (AlertState, transitions) ─► notify.pipeline

There is one :class:`AlertState` per alert series (:class:`~alertd.model.SeriesKey`: rule name,
customer id, group values — never object identity), kept by the store, so pending timers,
firing episodes and levels survive restarts and reloads. Everything here is pure: ``now`` comes
in as an argument and nothing does I/O.

Semantics (after Prometheus ``rules/alerting.go``, plus billing periods):

* inactive → pending when the condition starts holding and ``for`` > 0; pending → firing once
  it has held for ``for``; pending → inactive (``cancelled``) if it stops holding first.
* firing → inactive (``resolved``) once the condition has not held for ``keep_firing_for``.
* Levels (``warning`` < ``critical`` …): crossing a higher level than any announced in the
  episode ``escalated`` and notifies; falling back is ``deescalated`` and does not; climbing
  back to a level already announced does not notify again.
* Period rules (``threshold``, ``forecast``: a verdict on one calendar period's usage) fire
  once per series, per period, per level: ``period_rank`` remembers the highest level announced
  in ``period_key``. When the period changes, a firing alert of the old period resolves and the
  new period starts clean. Firing again within the same period at a level already announced is
  *quiet*: the state says firing, nothing is routed.
* ``nodata`` and ``error`` findings leave the state untouched: missing data never fires nor
  resolves a usage alert. They surface as their own meta alerts (:func:`meta_finding`).

``repeat_interval`` is not decided here: it belongs to a route, so different receivers repeat
at different paces; the pipeline's dedup stage decides it from the notification log.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

from alertd.conditions import kind_of
from alertd.model import Alert, Bucket, Customer, Finding, FindingState, Period, SeriesKey
from alertd.rules.schema import Rule

LifecycleStatus = Literal["inactive", "pending", "firing"]
TransitionKind = Literal["pending", "cancelled", "fired", "escalated", "deescalated", "resolved"]
NOTIFYING: frozenset[str] = frozenset({"fired", "escalated", "resolved"})

#: Names of the meta alerts (also their ``alertname`` label); they use the normal pipeline.
STALE_DATA = "alertd-stale-data"
SOURCE_FAILURE = "alertd-source-failure"


@dataclass(frozen=True, slots=True)
class Policy:
    """The part of a rule the lifecycle needs: timings, the level order, period semantics."""

    for_: float = 0.0
    keep_firing_for: float = 0.0
    #: Level names from least to most severe.
    levels: tuple[str, ...] = ("warning",)
    per_period: bool = False

    @classmethod
    def of(cls, rule: Rule) -> Policy:
        kind = kind_of(rule)
        return cls(rule.for_, rule.keep_firing_for, kind.levels(rule), kind.per_period)

    def rank(self, level: str | None) -> int:
        """0 for the least severe level; an unknown or missing level counts as the least."""
        return self.levels.index(level) if level in self.levels else 0


#: Meta alerts fire at once and resolve at once; their one level is their severity.
META_POLICIES: Mapping[str, Policy] = {
    STALE_DATA: Policy(levels=("warning",)),
    SOURCE_FAILURE: Policy(levels=("critical",)),
}


@dataclass(frozen=True, slots=True)
class AlertState:
    """The lifecycle state of one alert series. The default instance is "never seen"."""

    status: LifecycleStatus = "inactive"
    level: str | None = None
    rank: int = -1
    pending_since: int | None = None
    firing_since: int | None = None
    last_active_at: int | None = None
    resolved_at: int | None = None
    #: The period the state belongs to (period rules only).
    period_key: str = ""
    #: The highest level rank announced in ``period_key`` (period rules only); -1: none.
    period_rank: int = -1
    #: The highest level rank announced in the current firing episode; -1: none (quiet).
    announced_rank: int = -1

    @property
    def announced(self) -> bool:
        """Firing and notified: the alert belongs in its receivers' groups."""
        return self.status == "firing" and self.announced_rank >= 0

    @property
    def blank(self) -> bool:
        """Carries nothing worth storing (equivalent to a series never seen)."""
        return self.status == "inactive" and self.period_rank < 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> AlertState:
        """Reverses :meth:`to_dict`; keys a newer alertd added are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})


@dataclass(frozen=True, slots=True)
class Transition:
    """What one evaluation changed for one series, with a one-line reason for logs."""

    kind: TransitionKind
    key: SeriesKey
    at: int
    reason: str
    level: str | None = None
    previous_level: str | None = None
    period_key: str = ""
    #: The firing episode concerned (:func:`instance_key`); empty before firing.
    instance: str = ""

    @property
    def notifies(self) -> bool:
        return self.kind in NOTIFYING


def instance_key(key: SeriesKey, firing_since: int | None) -> str:
    """One firing episode of a series: what routing, dedup and notification ids are about."""
    return f"{key.fingerprint}@{firing_since}"


def policy_for(rule: Rule | Policy) -> Policy:
    return rule if isinstance(rule, Policy) else Policy.of(rule)


def apply(
    previous: AlertState | None, finding: Finding, rule: Rule | Policy, now: int
) -> tuple[AlertState, tuple[Transition, ...]]:
    """The next state of a series after ``finding``, and what changed (possibly nothing).

    Usually zero or one transition; two when a period ends with the alert firing and the new
    period's first finding is already pending or firing.
    """
    state = previous or AlertState()
    if finding.state in ("nodata", "error"):
        return state, ()
    policy = policy_for(rule)
    ended: tuple[Transition, ...] = ()
    if policy.per_period and state.period_key != finding.period_key:
        ended = _period_ended(state, finding.key, finding.period_key, now)
        state = AlertState(period_key=finding.period_key)
    if finding.active:
        state, step = _active(state, finding, policy, now)
    else:
        state, step = _inactive(state, finding.key, policy, now)
    return state, ended + step


def describe(
    previous: AlertState | None, state: AlertState, transitions: Sequence[Transition],
    finding: Finding,
) -> FindingState:
    """The finding's ``state`` given the step :func:`apply` took for it."""
    if finding.state in ("nodata", "error"):
        return finding.state
    if state.status != "inactive":
        return state.status
    was_firing = previous is not None and previous.status == "firing"
    if was_firing or any(t.kind == "resolved" for t in transitions):
        return "resolved"
    return "inactive"


def _period_ended(
    state: AlertState, key: SeriesKey, new_period: str, now: int
) -> tuple[Transition, ...]:
    if not state.period_key:
        return ()
    reason = f"period {state.period_key} ended (now {new_period})"
    if state.announced:
        return (_transition("resolved", key, state, now, reason),)
    if state.status == "pending":
        return (_transition("cancelled", key, state, now, reason),)
    return ()


def _active(
    state: AlertState, finding: Finding, policy: Policy, now: int
) -> tuple[AlertState, tuple[Transition, ...]]:
    rank = policy.rank(finding.level)
    if state.status == "firing":
        return _level_change(state, finding, policy, rank, now)
    current = replace(state, last_active_at=now, level=finding.level, rank=rank)
    if state.status == "inactive":
        current = replace(current, pending_since=now, resolved_at=None)
        if policy.for_ > 0:
            reason = f"condition holds; fires after for={policy.for_:g}s"
            return replace(current, status="pending"), (
                _transition("pending", finding.key, current, now, reason),
            )
        return _fire(current, finding.key, policy, now, "condition holds (no 'for')")
    held = now - (state.pending_since if state.pending_since is not None else now)
    if held >= policy.for_:
        return _fire(current, finding.key, policy, now, f"condition held for {held}s")
    return current, ()


def _fire(
    state: AlertState, key: SeriesKey, policy: Policy, now: int, reason: str
) -> tuple[AlertState, tuple[Transition, ...]]:
    firing = replace(state, status="firing", firing_since=now, announced_rank=-1)
    ceiling = state.period_rank if policy.per_period else -1
    if state.rank <= ceiling:
        # Once per period per level: already announced this period, so the episode is quiet.
        return firing, ()
    firing = _announce(firing, policy)
    return firing, (_transition("fired", key, firing, now, reason),)


def _announce(state: AlertState, policy: Policy) -> AlertState:
    period_rank = max(state.period_rank, state.rank) if policy.per_period else -1
    return replace(state, announced_rank=state.rank, period_rank=period_rank)


def _level_change(
    state: AlertState, finding: Finding, policy: Policy, rank: int, now: int
) -> tuple[AlertState, tuple[Transition, ...]]:
    current = replace(state, last_active_at=now, level=finding.level, rank=rank)
    ceiling = max(state.announced_rank, state.period_rank if policy.per_period else -1)
    if rank > ceiling:
        kind: TransitionKind = "escalated" if state.announced_rank >= 0 else "fired"
        current = _announce(current, policy)
        reason = f"level {state.level} → {finding.level}"
        return current, (_transition(kind, finding.key, current, now, reason, state.level),)
    if rank < state.rank:
        reason = f"level {state.level} → {finding.level} (not re-sent)"
        return current, (
            _transition("deescalated", finding.key, current, now, reason, state.level),
        )
    return current, ()


def _inactive(
    state: AlertState, key: SeriesKey, policy: Policy, now: int
) -> tuple[AlertState, tuple[Transition, ...]]:
    if state.status == "pending":
        reason = "condition stopped holding before 'for' elapsed"
        cancelled = replace(state, status="inactive", pending_since=None, level=None, rank=-1)
        return cancelled, (_transition("cancelled", key, state, now, reason),)
    if state.status != "firing":
        return state, ()
    quiet_for = now - (state.last_active_at if state.last_active_at is not None else now)
    if quiet_for < policy.keep_firing_for:
        return state, ()  # keep_firing_for: hold against flapping
    resolved = replace(
        state, status="inactive", level=None, rank=-1, pending_since=None, firing_since=None,
        resolved_at=now, announced_rank=-1,
    )
    if not state.announced:
        return resolved, ()
    reason = f"condition has not held for {quiet_for}s"
    return resolved, (_transition("resolved", key, state, now, reason),)


def _transition(
    kind: TransitionKind, key: SeriesKey, state: AlertState, now: int, reason: str,
    previous_level: str | None = None,
) -> Transition:
    instance = instance_key(key, state.firing_since) if state.firing_since is not None else ""
    return Transition(kind, key, now, reason, state.level, previous_level, state.period_key,
                      instance)


# --------------------------------------------------------------------------- alerts


def alert_labels(
    rule_labels: Mapping[str, str], key: SeriesKey, severity: str, meter: str | None,
    dimensions: Sequence[tuple[str, str]],
) -> dict[str, str]:
    """Routing, grouping and silence labels: the rule's labels, the series' dimensions, then
    ``alertname``/``rule``, ``customer``, ``severity``, ``meter`` and (with ``accounts:``)
    ``account``, which win on a clash. In name order, as they read back from the store
    (the outbox hands the notifications it wrote over undecoded, :mod:`alertd.store.written`)."""
    labels = {**rule_labels, **dict(dimensions)}
    labels.update(alertname=key.rule, rule=key.rule, severity=severity)
    if key.customer:
        labels["customer"] = key.customer
    if meter:
        labels["meter"] = meter
    if key.account:
        labels["account"] = key.account
    return dict(sorted(labels.items()))


def build_alert(
    finding: Finding,
    state: AlertState,
    rule: Rule | None,
    customer: Customer | None = None,
    *,
    recent: Sequence[Bucket] = (),
    meter_name: str | None = None,
    refreshed_at: int | None = None,
) -> Alert:
    """The firing :class:`~alertd.model.Alert` for a series whose state is firing.

    ``rule`` is ``None`` for meta alerts. Annotations are the rule's, unrendered (templates
    render them). ``recent`` is the series' last buckets for the inline table in emails;
    ``refreshed_at`` the source's freshness for the series.
    """
    severity = finding.level or (rule.severity if rule else "warning")
    labels = alert_labels(rule.labels if rule else {}, finding.key, severity, finding.meter,
                          finding.dimensions)
    starts_at = state.firing_since if state.firing_since is not None else finding.window.starts_at
    return Alert(
        fingerprint=finding.key.fingerprint,
        status="firing",
        rule=finding.rule,
        severity=severity,
        customer=customer or Customer(finding.customer),
        meter=finding.meter,
        dimensions=finding.dimensions,
        window=finding.window,
        value=finding.value,
        labels=labels,
        annotations=dict(rule.annotations) if rule else {"summary": finding.message},
        starts_at=starts_at,
        ends_at=None,
        refreshed_at=refreshed_at,
        message=finding.message,
        meter_name=meter_name,
        threshold=finding.threshold,
        baseline=finding.baseline,
        projected=finding.projected,
        details=finding.details,
        recent=tuple(recent),
        account=finding.key.account,
    )


def meta_finding(
    kind: str, *, active: bool, now: int, message: str, customer: str = "", account: str = ""
) -> Finding:
    """A finding for a meta alert (:data:`STALE_DATA`, :data:`SOURCE_FAILURE`).

    Feed it to the pipeline with the other findings; it is applied with
    :data:`META_POLICIES` and routed like any alert (labels ``alertname``, ``severity``).
    ``customer`` empty means the whole account; ``account`` names it (with ``accounts:``).
    """
    policy = META_POLICIES[kind]
    return Finding(
        key=SeriesKey(kind, customer, account=account),
        meter=None,
        dimensions=(),
        window=Period(now, now),
        complete=True,
        value=None,
        active=active,
        level=policy.levels[0] if active else None,
        state="inactive",
        message=message,
    )

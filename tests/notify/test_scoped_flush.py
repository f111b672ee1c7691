"""A flush over the groups it can affect equals a flush over every group (pure, hypothesis).

The stored groups and notification log are made the way the daemon makes them: a history of
random flushes (firing, escalating, re-firing and resolving episodes, reloads that re-route
them, silences, ``send_resolved`` off, time passing past ``group_wait``, ``group_interval`` and
``repeat_interval``) run through :func:`ingest` and :func:`flush_groups` over every group.
Then one more flush runs twice: over every group, and over :func:`scope_of`'s groups only
(:func:`~alertd.store.base.select_scope` of the same data, as the store selects them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alertd.config.settings import RootRoute
from alertd.model import Alert, Customer, Period
from alertd.notify.grouping import FiringUpdate, ResolvedUpdate, Update, ingest, scope_of
from alertd.notify.routing import RouteTree
from alertd.notify.stages import FlushContext, FlushResult, flush_groups
from alertd.silences import Silence, parse_matcher
from alertd.store.base import GroupId, NotificationGroup, SentRecord, select_scope

NOW = 1_735_689_600
RULES = ("quota", "spend")
CUSTOMERS = ("cus_a", "cus_b", "cus_c", "cus_d")
SEVERITIES = ("warning", "critical")


def tree(group_by: list[str], pager_continue: bool, timing: tuple[int, int, int]) -> RouteTree:
    wait, interval, repeat = timing
    return RouteTree(RootRoute.model_validate({
        "receiver": "ops", "group_by": group_by, "group_wait": wait,
        "group_interval": interval, "repeat_interval": repeat,
        "routes": [{"match": {"severity": "critical"}, "receiver": "pager",
                    "continue": pager_continue, "group_by": ["rule"]}],
    }))


TREES = st.builds(
    tree, st.sampled_from([["rule"], ["rule", "customer"], ["customer"], ["..."]]),
    st.booleans(), st.sampled_from([(0, 60, 600), (30, 300, 3600), (10, 120, 240)]))


def alert(rule: str, customer: str, severity: str, starts_at: int) -> Alert:
    return Alert(
        fingerprint=f"fp-{rule}-{customer}", status="firing", rule=rule, severity=severity,
        customer=Customer(customer, customer.upper(), None, {}), meter="mtr_1",
        dimensions=(), window=Period(NOW, NOW + 86400), value=150.0,
        labels={"alertname": rule, "rule": rule, "customer": customer, "severity": severity},
        annotations={}, starts_at=starts_at, ends_at=None, refreshed_at=None)


@st.composite
def updates(draw: st.DrawFn) -> list[Update]:
    """A commit's updates: episodes (two start times per series, so a series can hold an
    old and a new one) firing at a level, some with the rule's own receivers, and resolves
    (of episodes that may or may not be in a group)."""
    found: list[Update] = []
    for _ in range(draw(st.integers(0, 6))):
        rule, customer = draw(st.sampled_from(RULES)), draw(st.sampled_from(CUSTOMERS))
        starts_at = NOW + draw(st.sampled_from([0, 3600]))
        instance = f"fp-{rule}-{customer}@{starts_at}"
        if draw(st.integers(0, 3)) == 0:
            found.append(ResolvedUpdate(instance, NOW))  # the time is restamped per flush
            continue
        severity = draw(st.sampled_from(SEVERITIES))
        receivers = draw(st.sampled_from([None, None, None, ("mail",), ("ops", "mail")]))
        found.append(FiringUpdate(instance, SEVERITIES.index(severity),
                                  alert(rule, customer, severity, starts_at), receivers))
    return found


SILENCES = st.lists(st.builds(
    lambda customer, start, length: Silence(
        f"s-{customer}-{start}", (parse_matcher(f"customer={customer}"),), NOW + start,
        NOW + start + length, "test", None, NOW),
    st.sampled_from(CUSTOMERS), st.integers(0, 20_000), st.integers(60, 20_000)), max_size=2)


@dataclass(frozen=True)
class Flush:
    """One flush of the history (or the last one): when, how routed, what it files."""

    dt: int
    tree: RouteTree
    updates: list[Update]
    send_resolved: Mapping[str, bool] = field(default_factory=dict)


FLUSHES = st.builds(
    Flush, st.sampled_from([0, 5, 30, 59, 60, 61, 200, 301, 700, 3600, 4000]), TREES,
    updates(),
    st.fixed_dictionaries({"ops": st.booleans(), "pager": st.booleans(), "mail": st.booleans()}))


def at(step: Flush, now: int) -> list[Update]:
    return [ResolvedUpdate(u.instance, now) if isinstance(u, ResolvedUpdate) else u
            for u in step.updates]


def run(groups: Mapping[GroupId, NotificationGroup], sent: Mapping[GroupId, SentRecord],
        step: Flush, now: int, silences: tuple[Silence, ...]) -> tuple[FlushResult, Any]:
    grouped, changed = ingest(groups, at(step, now), step.tree, step.send_resolved, now)
    return flush_groups(grouped, sent, FlushContext(now, silences), changed), grouped


def committed(groups: dict[GroupId, NotificationGroup], sent: dict[GroupId, SentRecord],
              result: FlushResult) -> None:
    """What the store holds after committing ``result`` (``Store.commit_transitions``)."""
    for ident in result.dropped:
        groups.pop(ident, None)
        sent.pop(ident, None)
    for group in result.groups:
        groups[group.ident] = group
    sent.update((record.ident, record) for record in result.sent)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(FLUSHES, min_size=1, max_size=8), FLUSHES, SILENCES)
def test_a_scoped_flush_equals_the_flush_of_every_group(
    history: list[Flush], last: Flush, silences: list[Silence],
) -> None:
    groups: dict[GroupId, NotificationGroup] = {}
    sent: dict[GroupId, SentRecord] = {}
    now = NOW
    for step in history:
        now += step.dt
        result, _ = run(groups, sent, step, now, tuple(silences))
        committed(groups, sent, result)
    now += last.dt
    full, _ = run(groups, sent, last, now, tuple(silences))

    loaded = select_scope(groups, sent, scope_of(at(last, now), last.tree, now))
    scoped, grouped = run(loaded.groups, loaded.sent, last, now, tuple(silences))

    assert scoped.notifications == full.notifications  # ids included
    assert scoped.groups == full.groups and scoped.dropped == full.dropped
    assert scoped.sent == full.sent
    assert scoped.decisions == tuple(
        d for d in full.decisions if (d.receiver, d.group_key) in grouped)
    left_out = [d for d in full.decisions if (d.receiver, d.group_key) not in grouped]
    assert all(d.notification is None and d.suppressed_by is not None for d in left_out)


def test_the_scope_holds_the_touched_and_the_due_groups_only() -> None:
    """A worked example: of three groups, the one a resolve touches (by its episode), the
    one a firing update goes to (by routing's group key) and the one due are loaded; the
    fourth, flushed a moment ago, is not."""
    route = tree(["customer"], False, (30, 300, 3600))
    fired = [FiringUpdate(f"fp-quota-{c}@{NOW}", 0, alert("quota", c, "warning", NOW))
             for c in ("cus_a", "cus_b", "cus_c", "cus_d")]
    groups, _ = ingest({}, fired, route, {}, NOW)
    flushed = flush_groups(groups, {}, FlushContext(NOW + 30))
    stored = {g.ident: g for g in flushed.groups}
    sent = {r.ident: r for r in flushed.sent}
    key = {u.alert.customer.id: ("ops", route.destinations(u.alert.labels)[0].group_key(
        u.alert.labels)) for u in fired}
    assert len(stored) == 4 and all(g.due_at == NOW + 330 for g in stored.values())
    stored[key["cus_c"]] = replace(stored[key["cus_c"]], flushed_at=NOW - 300)  # due at NOW
    commit = [ResolvedUpdate(f"fp-quota-cus_a@{NOW}", NOW + 60), fired[1]]
    scope = scope_of(commit, route, NOW + 60)
    assert scope.idents == {key["cus_b"]}
    loaded = select_scope(stored, sent, scope)
    assert sorted(loaded.groups) == [key["cus_a"], key["cus_b"], key["cus_c"]]
    assert sorted(loaded.sent) == [key["cus_a"], key["cus_b"], key["cus_c"]]

"""Aggregation groups: alerts gathered per receiver and group labels, waiting to be flushed.

Where it sits: the lifecycle turns findings into :data:`Update` s (an announced episode is
firing, or it resolved); :func:`ingest` routes each through the
:class:`~alertd.notify.routing.RouteTree` and files it into its
:class:`~alertd.store.base.NotificationGroup` (one per receiver and group key). The pipeline
later flushes due groups through silence and dedup into the outbox. Groups and the notification
log (:class:`~alertd.store.base.SentRecord`) are records of the state store, defined in
:mod:`alertd.store.base` (the store does not depend on ``notify``), so ``group_wait`` timers and
"what was already sent" survive restarts.

:func:`scope_of` says which groups a flush can affect, so the pipeline loads only those
(issue 13: a commit of 50 alerts need not read 5,000 open groups).

Everything here is pure: ``now`` is an argument.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from alertd.model import Alert
from alertd.notify.routing import Destination, RouteTree
from alertd.store.base import GroupEntry, GroupId, GroupScope, NotificationGroup


@dataclass(frozen=True, slots=True)
class FiringUpdate:
    """An announced episode is (still) firing: file its latest snapshot in its groups.

    ``receivers`` is the rule's own receiver list (bypassing ``routes``), if it has one.
    """

    instance: str
    rank: int
    alert: Alert
    receivers: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class ResolvedUpdate:
    """An announced episode resolved at ``at``: mark it resolved in every group holding it."""

    instance: str
    at: int


Update = FiringUpdate | ResolvedUpdate


def ingest(
    groups: Mapping[GroupId, NotificationGroup],
    updates: Iterable[Update],
    tree: RouteTree,
    send_resolved: Mapping[str, bool],
    now: int,
) -> tuple[dict[GroupId, NotificationGroup], frozenset[GroupId]]:
    """The groups after filing ``updates``, and which groups changed.

    A firing episode goes to every destination the route tree gives; if a reload re-routed it,
    it leaves the groups it no longer belongs to (without a resolve: it is still firing).
    ``send_resolved`` maps receiver names to their setting (default ``True``).
    """
    working = _Working(groups)
    for update in updates:
        if isinstance(update, ResolvedUpdate):
            working.resolve(update)
        else:
            targets = {
                (d.receiver, d.group_key(update.alert.labels)): d
                for d in tree.destinations(update.alert.labels, update.receivers)
            }
            working.file(update, targets, send_resolved, now)
    return working.result()


def scope_of(updates: Iterable[Update], tree: RouteTree, now: int) -> GroupScope:
    """The groups a flush of ``updates`` at ``now`` can change or send from (see
    :class:`~alertd.store.base.GroupScope`): where :func:`ingest` files each firing update
    (routing's group ids, the same ``targets``), every group holding one of the updates'
    episodes, and the groups due at ``now``. :func:`ingest` and
    :func:`~alertd.notify.stages.flush_groups` over those groups compute the same groups, log
    records, notifications and decisions for them as over every group; the groups left out
    would pass unchanged, suppressed, with no notification."""
    idents: set[GroupId] = set()
    instances: set[str] = set()
    for update in updates:
        instances.add(update.instance)
        if isinstance(update, FiringUpdate):
            labels = update.alert.labels
            idents.update((d.receiver, d.group_key(labels))
                          for d in tree.destinations(labels, update.receivers))
    return GroupScope(now, frozenset(idents), frozenset(instances))


class _Working:
    """Mutable scratch space for :func:`ingest` (never escapes it)."""

    def __init__(self, groups: Mapping[GroupId, NotificationGroup]) -> None:
        self.meta = dict(groups)
        self.entries = {gid: {e.instance: e for e in g.entries} for gid, g in groups.items()}
        self.where: dict[str, set[GroupId]] = {}
        for gid, by_instance in self.entries.items():
            for instance in by_instance:
                self.where.setdefault(instance, set()).add(gid)
        self.changed: set[GroupId] = set()

    def resolve(self, update: ResolvedUpdate) -> None:
        for gid in self.where.get(update.instance, set()):
            entry = self.entries[gid][update.instance]
            resolved = replace(entry.alert, status="resolved", ends_at=update.at)
            self.entries[gid][update.instance] = replace(entry, alert=resolved)
            self.changed.add(gid)

    def file(
        self, update: FiringUpdate, targets: Mapping[GroupId, Destination],
        send_resolved: Mapping[str, bool], now: int,
    ) -> None:
        held = self.where.setdefault(update.instance, set())
        for gid in held - targets.keys():
            del self.entries[gid][update.instance]
            self.changed.add(gid)
        for gid, destination in targets.items():
            self.meta[gid] = _group_for(
                self.meta.get(gid), destination, update.alert, send_resolved, now
            )
            self.entries.setdefault(gid, {})[update.instance] = GroupEntry(
                update.instance, update.rank, update.alert
            )
            self.changed.add(gid)
        held.clear()
        held.update(targets)

    def result(self) -> tuple[dict[GroupId, NotificationGroup], frozenset[GroupId]]:
        groups = {
            gid: replace(group, entries=tuple(
                sorted(self.entries.get(gid, {}).values(), key=lambda e: e.instance)
            ))
            for gid, group in self.meta.items()
        }
        return groups, frozenset(self.changed)


def _group_for(
    existing: NotificationGroup | None, destination: Destination, alert: Alert,
    send_resolved: Mapping[str, bool], now: int,
) -> NotificationGroup:
    """The group's header, created at ``now`` or refreshed with the current route's timing."""
    timing = destination.timing
    resolved = send_resolved.get(destination.receiver, True)
    if existing is not None:
        return replace(
            existing, group_wait=timing.group_wait, group_interval=timing.group_interval,
            repeat_interval=timing.repeat_interval, send_resolved=resolved,
        )
    return NotificationGroup(
        receiver=destination.receiver,
        group_key=destination.group_key(alert.labels),
        group_labels=destination.group_labels(alert.labels),
        group_wait=timing.group_wait,
        group_interval=timing.group_interval,
        repeat_interval=timing.repeat_interval,
        send_resolved=resolved,
        created_at=now,
        flushed_at=None,
    )

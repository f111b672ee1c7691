"""What would have been sent: replayed changes through the notification pipeline's own pure
stages (routing, grouping, silences, dedup) on the daemon's timers. The last step of the data
flow in :mod:`alertd.backtest`, fed the changes of
:func:`~alertd.backtest.replaying.replay_all`.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import groupby

from alertd.alerts import build_alert
from alertd.backtest.replaying import Change
from alertd.config.settings import Receiver
from alertd.model import Customer, Notification
from alertd.notify.grouping import FiringUpdate, ResolvedUpdate, Update, ingest
from alertd.notify.routing import RouteTree
from alertd.notify.stages import FlushContext, flush_groups, is_due
from alertd.rules.schema import Rule
from alertd.silences import Silence
from alertd.store.base import GroupId, NotificationGroup, SentRecord


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
        self.groups: dict[GroupId, NotificationGroup] = {}
        self.sent: dict[GroupId, SentRecord] = {}
        self.news: set[GroupId] = set()
        self.queued: list[SentNotification] = []

    def run(self, changes: Iterable[Change], rules: Mapping[str, Rule],
            customers: Mapping[str, Customer], until: int) -> list[SentNotification]:
        """Every notification queued up to ``until``, in time order (``changes`` in time
        order, as :func:`~alertd.backtest.replaying.replay_all` gives them)."""
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

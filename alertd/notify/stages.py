"""The flush stages: from a due group to a notification, or to the reason there is none.

Where it sits (after Alertmanager's ``notify/notify.go``)::

    route ─► group (notify.grouping) ─► silence ─► dedup ─► wait ─► outbox
                                       └──────── these stages ────────┘

Each :class:`Stage` is a small pure function of a :class:`FlushContext` (``now`` read once per
flush and passed down, the active silences) and a :class:`Candidate` (one group on its way);
it either passes the candidate on or marks it suppressed with the contract's
``suppressed_by`` reason (``"silence"``, ``"dedup"``, ``"group"``) and a one-line explanation.
Dedup runs before the timing stage so that a group with nothing new is reported as ``dedup``;
``group`` means "something new is waiting for ``group_wait``/``group_interval``".

:func:`flush_groups` runs the stages over every group and returns the new groups, the
notification log entries and the notifications to write to the outbox — all as data, for the
pipeline to commit in one transaction (or only to show, in a dry run).

A group's decision depends on that group, its own log record, ``now`` and the silences only:
no stage looks across groups (there is no inhibition). That is what lets the pipeline flush
only the groups a commit can affect (:func:`~alertd.notify.grouping.scope_of`); a stage that
compared groups would have to load what it compares, or flush every group.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

from alertd.clock import iso
from alertd.model import Notification, NotificationStatus
from alertd.silences import Silence, silenced_by
from alertd.store.base import GroupEntry, GroupId, NotificationGroup, SentRecord

SuppressedBy = Literal["silence", "dedup", "group"]


@dataclass(frozen=True, slots=True)
class FlushContext:
    """What every stage of one flush shares. ``immediate`` skips ``group_wait`` (a one-shot
    ``check`` sees its whole batch at once, so there is nothing to wait for)."""

    now: int
    silences: tuple[Silence, ...] = ()
    immediate: bool = False


@dataclass(frozen=True, slots=True)
class Candidate:
    """One group on its way through the stages.

    ``firing`` and ``resolved`` are what the notification would carry; ``resolved`` holds only
    episodes whose firing was announced to this group (and only with ``send_resolved``).
    """

    group: NotificationGroup
    sent: SentRecord | None
    firing: tuple[GroupEntry, ...]
    resolved: tuple[GroupEntry, ...]
    silenced: tuple[GroupEntry, ...] = ()
    suppressed_by: SuppressedBy | None = None
    reason: str = ""


class Stage(Protocol):
    def __call__(self, context: FlushContext, candidate: Candidate) -> Candidate: ...


@dataclass(frozen=True, slots=True)
class Decision:
    """What became of one group's would-be notification (``notification`` when it is sent)."""

    receiver: str
    group_key: str
    status: NotificationStatus
    fingerprints: tuple[str, ...]
    suppressed_by: SuppressedBy | None
    reason: str
    notification: Notification | None = None
    #: The rules and customers of its alerts, for people reading ``check`` (not in the JSON).
    rules: tuple[str, ...] = ()
    customers: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The contract's ``notifications[]`` entry of ``check --format json``."""
        return {
            "receiver": self.receiver,
            "status": self.status,
            "fingerprints": list(self.fingerprints),
            "suppressed_by": self.suppressed_by,
        }


@dataclass(frozen=True, slots=True)
class FlushResult:
    """The data a flush produced; nothing is written yet."""

    decisions: tuple[Decision, ...] = ()
    notifications: tuple[Notification, ...] = ()
    groups: tuple[NotificationGroup, ...] = ()
    dropped: tuple[GroupId, ...] = ()
    sent: tuple[SentRecord, ...] = ()


# --------------------------------------------------------------------------- decisions


def dedup_decision(
    firing: Mapping[str, int],
    resolved: Collection[str],
    sent: SentRecord | None,
    now: int,
    repeat_interval: float,
    send_resolved: bool = True,
) -> tuple[bool, str]:
    """Whether a group's notification says something its receiver has not heard, and why.

    ``firing`` maps each unsilenced firing episode to its announced level rank, ``resolved``
    lists unsilenced resolved episodes, ``sent`` is the group's notification log.
    """
    previous: Mapping[str, int] = sent.firing if sent is not None else {}
    new = [i for i in firing if i not in previous]
    if new:
        return True, f"{len(new)} new firing alert(s)"
    if any(rank > previous[i] for i, rank in firing.items()):
        return True, "an alert escalated to a higher level"
    announced = [i for i in resolved if i in previous]
    if announced and send_resolved:
        return True, f"{len(announced)} alert(s) resolved"
    if firing and sent is not None and now - sent.sent_at >= repeat_interval:
        return True, f"still firing; repeat_interval {repeat_interval:g}s elapsed"
    if not firing:
        return False, "nothing firing" + (" (send_resolved: false)" if announced else "")
    assert sent is not None  # every firing episode is in the log, so there is a log
    # The log records what was handed to the outbox, not what the receiver acknowledged:
    # say so, rather than claim a delivery that may still be pending or may have failed.
    return False, f"already queued for delivery at {iso(sent.sent_at)}"


def notification_id(
    receiver: str, group_key: str, status: str, firing: Mapping[str, int],
    resolved: Collection[str], previous_id: str,
) -> str:
    """Stable id (the ``Idempotency-Key``) from what the notification says and which one it
    follows: redoing a flush gives the same id; a repeat of unchanged content gets a new one."""
    parts = [receiver, group_key, status, *sorted(f"{i}#{r}" for i, r in firing.items()),
             "|", *sorted(resolved), "|", previous_id]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def is_due(group: NotificationGroup, context: FlushContext) -> bool:
    if group.flushed_at is None and context.immediate:
        return True
    return context.now >= group.due_at


# --------------------------------------------------------------------------- stages


def silence_stage(context: FlushContext, candidate: Candidate) -> Candidate:
    """Mutes the alerts an active silence matches; all muted → suppressed by ``silence``."""
    def muted(entry: GroupEntry) -> bool:
        return silenced_by(entry.alert.labels, context.silences, context.now) is not None

    silenced = tuple(e for e in candidate.firing + candidate.resolved if muted(e))
    if not silenced:
        return candidate
    firing = tuple(e for e in candidate.firing if e not in silenced)
    resolved = tuple(e for e in candidate.resolved if e not in silenced)
    muted_all = not firing and not resolved
    return replace(
        candidate, firing=firing, resolved=resolved, silenced=silenced,
        suppressed_by="silence" if muted_all else None,
        reason=f"{len(silenced)} alert(s) silenced",
    )


def dedup_stage(context: FlushContext, candidate: Candidate) -> Candidate:
    """Suppresses by ``dedup`` what the receiver has already been told."""
    group = candidate.group
    send, reason = dedup_decision(
        {e.instance: e.rank for e in candidate.firing},
        [e.instance for e in candidate.resolved],
        candidate.sent, context.now, group.repeat_interval, group.send_resolved,
    )
    return replace(candidate, reason=reason, suppressed_by=None if send else "dedup")


def wait_stage(context: FlushContext, candidate: Candidate) -> Candidate:
    """Holds news back (``group``) until ``group_wait`` / ``group_interval`` has passed."""
    group = candidate.group
    if is_due(group, context):
        return candidate
    timer = "group_wait" if group.flushed_at is None else "group_interval"
    return replace(candidate, suppressed_by="group",
                   reason=f"{candidate.reason}; held for {timer} until {iso(group.due_at)}")


STAGES: tuple[Stage, ...] = (silence_stage, dedup_stage, wait_stage)


# --------------------------------------------------------------------------- flushing


def candidate_for(group: NotificationGroup, sent: SentRecord | None) -> Candidate:
    entries = newest_per_fingerprint(group.entries)
    firing = tuple(e for e in entries if e.alert.status == "firing")
    announced = sent.firing if sent is not None else {}
    resolved = tuple(
        e for e in entries
        if e.alert.status == "resolved" and e.instance in announced and group.send_resolved
    )
    return Candidate(group, sent, firing, resolved)


def newest_per_fingerprint(entries: Sequence[GroupEntry]) -> tuple[GroupEntry, ...]:
    """One entry per alert fingerprint: its newest episode.

    A series can hold two episodes in one group: an hourly alert that resolved at the end of
    one hour and fired again in the next. Receivers key alerts by fingerprint, so a message
    carrying both (firing and resolved) would let the resolve close the new firing; the
    newest episode (latest ``starts_at``; firing wins a tie) is the one that is true now.
    The older one needs no message of its own: the newer one supersedes it.
    """
    newest: dict[str, GroupEntry] = {}
    for entry in entries:
        kept = newest.get(entry.alert.fingerprint)
        if kept is None or _recency(entry) > _recency(kept):
            newest[entry.alert.fingerprint] = entry
    return tuple(e for e in entries if newest[e.alert.fingerprint] is e)


def _recency(entry: GroupEntry) -> tuple[int, bool, str]:
    return (entry.alert.starts_at, entry.alert.status == "firing", entry.instance)


def run_stages(
    context: FlushContext, candidate: Candidate, stages: Sequence[Stage] = STAGES
) -> Candidate:
    for stage in stages:
        candidate = stage(context, candidate)
        if candidate.suppressed_by is not None:
            break
    return candidate


def flush_groups(
    groups: Mapping[GroupId, NotificationGroup],
    sent: Mapping[GroupId, SentRecord],
    context: FlushContext,
    changed: Collection[GroupId] = (),
) -> FlushResult:
    """Flushes every group through the stages. ``changed`` lists groups that must be written
    even if the flush leaves them as they are (an ingest changed them)."""
    decisions: list[Decision] = []
    notifications: list[Notification] = []
    written: list[NotificationGroup] = []
    dropped: list[GroupId] = []
    records: list[SentRecord] = []
    for ident in sorted(groups):
        group = groups[ident]
        candidate = run_stages(context, candidate_for(group, sent.get(ident)))
        notification = None
        if candidate.suppressed_by is None and (candidate.firing or candidate.resolved):
            notification = build_notification(candidate, context.now)
            notifications.append(notification)
            records.append(_record(notification, candidate))
        decisions.extend(_decisions(candidate, notification))
        after = _after_flush(group, context) if is_due(group, context) else group
        if after is None:
            dropped.append(ident)
        elif after != group or ident in changed:
            written.append(after)
    return FlushResult(tuple(decisions), tuple(notifications), tuple(written), tuple(dropped),
                       tuple(records))


def _decisions(candidate: Candidate, notification: Notification | None) -> list[Decision]:
    """The candidate's decision, plus one listing its silenced alerts (shown in dry runs)."""
    found: list[Decision] = []
    muted = f"{len(candidate.silenced)} alert(s) silenced"
    if candidate.suppressed_by == "silence":
        return [_decision(candidate, candidate.silenced, "silence", muted)]
    if candidate.silenced:
        found.append(_decision(candidate, candidate.silenced, "silence", muted))
    entries = candidate.firing + candidate.resolved
    if entries:
        found.append(_decision(candidate, entries, candidate.suppressed_by, candidate.reason,
                               notification))
    return found


def _decision(
    candidate: Candidate, entries: Sequence[GroupEntry], suppressed_by: SuppressedBy | None,
    reason: str, notification: Notification | None = None,
) -> Decision:
    firing = any(e.alert.status == "firing" for e in entries)
    return Decision(
        receiver=candidate.group.receiver,
        group_key=candidate.group.group_key,
        status="firing" if firing else "resolved",
        fingerprints=tuple(e.alert.fingerprint for e in _ordered(entries)),
        suppressed_by=suppressed_by,
        reason=reason,
        notification=notification,
        rules=tuple(sorted({e.alert.rule for e in entries})),
        customers=tuple(sorted({e.alert.customer.id for e in entries})),
    )


def build_notification(candidate: Candidate, now: int) -> Notification:
    """The notification a passing candidate becomes: its firing and resolved alerts."""
    group = candidate.group
    firing = {e.instance: e.rank for e in candidate.firing}
    resolved = [e.instance for e in candidate.resolved]
    status: NotificationStatus = "firing" if firing else "resolved"
    previous = candidate.sent.notification_id if candidate.sent is not None else ""
    return Notification(
        id=notification_id(group.receiver, group.group_key, status, firing, resolved, previous),
        receiver=group.receiver,
        status=status,
        group_key=group.group_key,
        group_labels=dict(group.group_labels),
        alerts=tuple(e.alert for e in _ordered(candidate.firing + candidate.resolved)),
        created_at=now,
        opens_thread=status == "firing" and (candidate.sent is None or not candidate.sent.firing),
    )


def _ordered(entries: Sequence[GroupEntry]) -> list[GroupEntry]:
    """Firing first, then by rule, customer and series, so digests read in a stable order."""
    return sorted(entries, key=lambda e: (
        e.alert.status != "firing", e.alert.rule, e.alert.customer.id, e.alert.dimensions,
        e.instance,
    ))


def _record(notification: Notification, candidate: Candidate) -> SentRecord:
    return SentRecord(
        receiver=notification.receiver,
        group_key=notification.group_key,
        firing={e.instance: e.rank for e in candidate.firing},
        resolved=frozenset(e.instance for e in candidate.resolved),
        sent_at=notification.created_at,
        notification_id=notification.id,
    )


def _after_flush(group: NotificationGroup, context: FlushContext) -> NotificationGroup | None:
    """A flushed group forgets its resolved alerts; an empty group is dropped (``None``)."""
    remaining = tuple(e for e in group.entries if e.alert.status == "firing")
    if not remaining:
        return None
    return replace(group, entries=remaining, flushed_at=context.now)

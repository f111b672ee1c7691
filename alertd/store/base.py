"""The state store interface: what alertd keeps between runs, whatever the backend.

Where it sits: the imperative shell around the pure core. The pipeline loads alert states,
the groups a flush can affect (:class:`GroupScope`, :meth:`Store.load_scope`: not every open
group) and their notification log, computes what changed, and hands back one :class:`Changes`
that :meth:`Store.commit_transitions` writes in a single transaction — new alert states and
the outbox rows they cause commit together or not at all. The outbox worker then reads due
rows and records every attempt. Silences are kept here too.

:mod:`alertd.store.sqlite` (one file, the default) and :mod:`alertd.store.postgres` (one
database shared by replicas) implement it; :func:`alertd.store.open.open_store` picks one from
the settings. Leases (:class:`Lease`) say which replica leads a Stripe account.
Every method raises :class:`~alertd.errors.StoreError` when the store cannot be used.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from alertd.alerts import AlertState
from alertd.buckets import BucketEntry, BucketExtent
from alertd.errors import StoreError
from alertd.model import Alert, Notification, SeriesKey
from alertd.silences import Silence, SilenceStore

OutboxStatus = Literal["pending", "delivered", "failed", "undeliverable"]

#: ``(receiver, group_key)``
GroupId = tuple[str, str]
#: ``(created_at, id)`` of an outbox row: where the next page of the history starts.
OutboxCursor = tuple[float, str]


@dataclass(frozen=True, slots=True)
class GroupEntry:
    """One alert episode in a group: its latest snapshot and the highest level rank announced."""

    instance: str
    rank: int
    alert: Alert


@dataclass(frozen=True, slots=True)
class NotificationGroup:
    """An aggregation group (:mod:`alertd.notify.grouping` files alerts into it): the alerts
    one receiver gets together, with the timing of the route that made it."""

    receiver: str
    group_key: str
    group_labels: Mapping[str, str]
    group_wait: float
    group_interval: float
    repeat_interval: float
    send_resolved: bool
    created_at: int
    flushed_at: int | None
    entries: tuple[GroupEntry, ...] = ()

    @property
    def ident(self) -> GroupId:
        return (self.receiver, self.group_key)

    @property
    def due_at(self) -> float:
        """When the group is next flushed: ``group_wait`` after it formed, then every
        ``group_interval`` after the previous flush."""
        if self.flushed_at is None:
            return self.created_at + self.group_wait
        return self.flushed_at + self.group_interval


@dataclass(frozen=True, slots=True)
class SentRecord:
    """The notification log of one group: what its last notification said, and when."""

    receiver: str
    group_key: str
    #: instance → the level rank it was announced at.
    firing: Mapping[str, int]
    resolved: frozenset[str]
    sent_at: int
    notification_id: str

    @property
    def ident(self) -> GroupId:
        return (self.receiver, self.group_key)


@dataclass(frozen=True, slots=True)
class GroupScope:
    """The groups one flush at ``now`` can change or send from, as the store selects them.

    A flush files its updates into groups and flushes the groups that are due; every other
    group passes through it unchanged and sends nothing (its wait stage holds it back). So a
    flush needs only: the groups its updates go to (``idents``, routing's group ids, which
    may not exist yet), the groups holding one of its updates' episodes (``instances``: a
    resolve marks every group holding the episode, a re-routed one leaves its old groups)
    and the groups due at ``now`` (``due_at <= now``: first flushes, ``group_interval`` and
    ``repeat_interval`` re-sends). :meth:`covers` is that rule on one group; the backends
    answer it with indexed queries (:meth:`Store.load_scope`).
    """

    now: int
    idents: frozenset[GroupId] = frozenset()
    instances: frozenset[str] = frozenset()

    def covers(self, group: NotificationGroup) -> bool:
        return (group.ident in self.idents or group.due_at <= self.now
                or any(e.instance in self.instances for e in group.entries))


@dataclass(frozen=True, slots=True)
class FlushSet:
    """What a scoped flush loads: the groups a :class:`GroupScope` covers, with their entries,
    and the notification log of those groups and of the scope's ``idents``."""

    groups: dict[GroupId, NotificationGroup] = field(default_factory=dict)
    sent: dict[GroupId, SentRecord] = field(default_factory=dict)

    def rows(self) -> int:
        """Rows loaded: group headers, their entries and log records (for benches)."""
        return len(self.groups) + len(self.sent) + sum(
            len(g.entries) for g in self.groups.values())


def select_scope(groups: Mapping[GroupId, NotificationGroup],
                 sent: Mapping[GroupId, SentRecord], scope: GroupScope) -> FlushSet:
    """What :meth:`Store.load_scope` returns, chosen from every group and log record (pure;
    the reference the backends are tested against)."""
    chosen = {ident: g for ident, g in groups.items() if scope.covers(g)}
    wanted = chosen.keys() | scope.idents
    return FlushSet(chosen, {ident: r for ident, r in sent.items() if ident in wanted})


@dataclass(frozen=True, slots=True)
class Lease:
    """Who leads ``name`` (one Stripe account) until ``expires_at`` (unix seconds).

    ``generation`` grows by one each time the lease changes hands: a leader passes its lease
    as the fence of every write, and a write whose generation is no longer the stored one is
    refused (:class:`LeaseLostError`), so a leader that was paused past its lease and
    replaced cannot write after the fact."""

    name: str
    holder: str
    generation: int
    expires_at: float

    def held_by(self, holder: str, now: float) -> bool:
        return self.holder == holder and self.expires_at > now


def next_lease(current: Lease | None, name: str, holder: str, until: float,
               now: float) -> Lease | None:
    """The lease ``holder`` gets when it asks at ``now`` (``None``: ``current`` stands,
    another holds it). A renewal keeps the generation; taking a free or expired lease bumps
    it — even one that was ours, since another may have held it in between."""
    if current is None:
        return Lease(name, holder, 1, until)
    if current.holder != holder and current.expires_at > now:
        return None
    if current.held_by(holder, now):
        return Lease(name, holder, current.generation, until)
    return Lease(name, holder, current.generation + 1, until)


class LeaseLostError(StoreError):
    """A fenced write by a leader whose lease has passed to another holder."""


@dataclass(frozen=True, slots=True)
class Changes:
    """Everything one evaluation or flush changed, committed atomically.

    ``states`` maps a series to its new state (``None``: nothing worth keeping, forget it).
    ``groups`` are written whole (header and entries); ``dropped_groups`` are deleted with
    their notification log. ``outbox`` rows are inserted as ``pending``; a notification id
    already in the outbox is left as it is, so redoing a commit never duplicates a delivery.
    """

    states: Mapping[SeriesKey, AlertState | None] = field(default_factory=dict)
    groups: tuple[NotificationGroup, ...] = ()
    dropped_groups: tuple[GroupId, ...] = ()
    sent: tuple[SentRecord, ...] = ()
    outbox: tuple[Notification, ...] = ()


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One notification to one receiver and where its delivery stands (times: unix seconds)."""

    id: str
    receiver: str
    group_key: str
    notification: Notification
    status: OutboxStatus
    attempts: int
    next_attempt_at: float
    last_error: str | None
    created_at: float
    delivered_at: float | None


@dataclass(frozen=True, slots=True)
class Attempt:
    """The outcome of one delivery attempt, as the outbox worker records it.

    ``status`` ``pending`` means "retry at ``next_attempt_at``"; the others are final.
    """

    id: str
    status: OutboxStatus
    attempts: int
    at: float
    next_attempt_at: float | None = None
    error: str | None = None


class Store(SilenceStore, Protocol):
    """Alert series state, aggregation groups, the notification log, the outbox, silences."""

    async def close(self) -> None: ...

    async def load_states(self, rules: Iterable[str] | None = None) -> dict[SeriesKey, AlertState]:
        """Stored states of the series of ``rules`` (every rule when ``None``)."""
        ...

    async def load_groups(self) -> dict[GroupId, NotificationGroup]: ...

    async def load_sent(self) -> dict[GroupId, SentRecord]: ...

    async def load_scope(self, scope: GroupScope) -> FlushSet:
        """The groups ``scope`` covers and their notification log (:func:`select_scope` of
        :meth:`load_groups` and :meth:`load_sent`), read without loading the others."""
        ...

    async def next_group_due(self, account: str | None = None) -> float | None:
        """The earliest :attr:`NotificationGroup.due_at` of all groups (of the groups whose
        ``account`` label is ``account``, a missing label being ``""``, when one is given),
        ``None`` without such groups. Read by the database, not by loading the groups."""
        ...

    async def commit_transitions(self, changes: Changes, fence: Lease | None = None) -> None:
        """Writes all of ``changes`` in one transaction; with a ``fence``, only while that
        lease's generation is still the stored one (else :class:`LeaseLostError`, nothing
        written)."""
        ...

    async def acquire_lease(self, name: str, holder: str, ttl: float, now: float) -> Lease:
        """Takes or renews the lease ``name`` for ``holder`` until ``now + ttl`` when it is
        free, expired or already ``holder``'s; returns the lease as it now stands (another
        holder's when it is taken). Taking it over bumps the generation; renewing keeps it."""
        ...

    async def release_lease(self, lease: Lease) -> None:
        """Ends ``lease`` now (a clean stop) so a standby need not wait for it to expire."""
        ...

    async def leases(self) -> list[Lease]: ...

    async def drop_leases(self, prefix: str, expired_before: float) -> int:
        """Deletes the leases named ``prefix…`` that expired before ``expired_before`` (the
        presence rows of replicas gone for good); how many."""
        ...

    async def due_deliveries(
        self, now: float, receiver: str | None = None, limit: int = 200,
        *, exclude_groups: Collection[str] = (),
    ) -> list[OutboxRow]:
        """Pending rows whose next attempt is due, oldest first — except rows behind an
        earlier pending row of the same receiver and group that waits for its retry (a
        group's notifications are delivered in order: a resolve never overtakes its firing),
        and rows of the groups in ``exclude_groups`` (the caller's groups still in flight:
        the outbox claims its next round while the current one is being sent)."""
        ...

    async def next_attempt_at(self, receiver: str | None = None) -> float | None:
        """The earliest next attempt among the first pending row of each group, ``None`` when
        nothing is pending."""
        ...

    async def record_attempt(self, attempt: Attempt) -> None: ...

    async def record_attempts(self, attempts: Sequence[Attempt]) -> None:
        """Several attempts in one transaction (the outbox worker's batched bookkeeping)."""
        ...

    async def outbox(self, status: OutboxStatus | None = None) -> list[OutboxRow]:
        """Outbox rows (of one status), oldest first: for reports and ``check``."""
        ...

    async def pending_count(self) -> int: ...

    async def prune_outbox(self, before: float) -> int:
        """Deletes finished rows (delivered, failed, undeliverable) older than ``before``."""
        ...

    # The status page's queries (alertd.web); a backend answers each with one indexed query.

    async def outbox_page(
        self, *, status: OutboxStatus | None = None, receiver: str | None = None,
        before: OutboxCursor | None = None, limit: int = 50,
    ) -> list[OutboxRow]:
        """Up to ``limit`` (at most 500) rows, newest first (``created_at``, then ``id``,
        descending), of one status and receiver when given, strictly older than ``before``
        (the previous page's last ``(created_at, id)``): keyset paging, never an offset."""
        ...

    async def outbox_for_alert(self, fingerprint: str, *, scan: int = 5000) -> list[OutboxRow]:
        """Rows whose notification carries the alert ``fingerprint``, newest first, looked for
        among the newest ``scan`` rows."""
        ...

    async def outbox_row(self, row_id: str) -> OutboxRow | None: ...

    async def attempts(self, row_id: str, *, limit: int = 100) -> list[Attempt]:
        """The newest ``limit`` delivery attempts at one row (each as
        :meth:`record_attempt` recorded it), oldest first; deleted with the row by
        :meth:`prune_outbox`."""
        ...

    async def resend(self, row_id: str, now: float) -> OutboxRow | None:
        """Puts a ``failed`` or ``undeliverable`` row back to ``pending`` with its attempts
        reset, due at ``now`` (same id, so the same idempotency key). Returns the row as it
        is now; ``None`` when there is no such row. A row in another status is left as it is
        (the caller sees its status)."""
        ...


@runtime_checkable
class BucketStore(Protocol):
    """The bucket cache (:mod:`alertd.buckets`): complete usage buckets kept between polls, so
    a poll asks Stripe only for what may still change. A backend that keeps alert state
    implements these four too (:mod:`alertd.store.sqlite_buckets`,
    :mod:`alertd.store.pg_buckets`); the daemon runs without a cache on a store that does not
    (it reads everything every poll).

    An entry is one value per key, replaced whole: no method needs more than "the extents of
    these keys", "the entries of these keys", "replace these entries" and "drop entries nobody
    wrote since". A read that finds an entry it cannot decode leaves it out: a poll that
    planned from its extent reads that key in full and saves it again
    (:func:`~alertd.service.reads.load_entries`).
    """

    async def load_extents(self, keys: Iterable[str]) -> dict[str, BucketExtent]:
        """The stored extents of ``keys`` (those there are), without their rows: what a
        poll plans from."""
        ...

    async def load_buckets(self, keys: Iterable[str]) -> dict[str, BucketEntry]:
        """The stored entries of ``keys`` (those there are)."""
        ...

    async def save_buckets(self, entries: Iterable[BucketEntry], now: int) -> None:
        """Replaces the entries of the same keys, in one transaction, stamped ``now``."""
        ...

    async def prune_buckets(self, before: int) -> int:
        """Deletes entries last saved before ``before`` (keys no rule or customer uses any
        more); how many."""
        ...


def default_holder() -> str:
    """This replica's name in leases and claims: host and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


__all__ = [
    "Attempt",
    "BucketStore",
    "Changes",
    "FlushSet",
    "GroupScope",
    "Lease",
    "LeaseLostError",
    "OutboxCursor",
    "OutboxRow",
    "OutboxStatus",
    "Silence",
    "Store",
    "default_holder",
    "next_lease",
    "select_scope",
]

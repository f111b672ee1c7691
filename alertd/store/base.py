"""The state store interface: what alertd keeps between runs, whatever the backend.

Where it sits: the imperative shell around the pure core. The pipeline loads alert states,
groups and the notification log, computes what changed, and hands back one :class:`Changes`
that :meth:`Store.commit_transitions` writes in a single transaction — new alert states and
the outbox rows they cause commit together or not at all. The outbox worker then reads due
rows and records every attempt. Silences are kept here too.

:mod:`alertd.store.sqlite` is the implementation; another backend implements :class:`Store`.
Every method raises :class:`~alertd.errors.StoreError` when the store cannot be used.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

from alertd.alerts import AlertState
from alertd.model import Notification, SeriesKey
from alertd.notify.grouping import Group, GroupId, SentRecord
from alertd.silences import Silence, SilenceStore

OutboxStatus = Literal["pending", "delivered", "failed", "undeliverable"]


@dataclass(frozen=True, slots=True)
class Changes:
    """Everything one evaluation or flush changed, committed atomically.

    ``states`` maps a series to its new state (``None``: nothing worth keeping, forget it).
    ``groups`` are written whole (header and entries); ``dropped_groups`` are deleted with
    their notification log. ``outbox`` rows are inserted as ``pending``; a notification id
    already in the outbox is left as it is, so redoing a commit never duplicates a delivery.
    """

    states: Mapping[SeriesKey, AlertState | None] = field(default_factory=dict)
    groups: tuple[Group, ...] = ()
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

    async def load_groups(self) -> dict[GroupId, Group]: ...

    async def load_sent(self) -> dict[GroupId, SentRecord]: ...

    async def next_group_due(self) -> float | None:
        """The earliest :attr:`Group.due_at` of all groups, ``None`` without groups."""
        ...

    async def commit_transitions(self, changes: Changes) -> None:
        """Writes all of ``changes`` in one transaction."""
        ...

    async def due_deliveries(
        self, now: float, receiver: str | None = None, limit: int = 200
    ) -> list[OutboxRow]:
        """Pending rows whose next attempt is due, oldest first — except rows behind an
        earlier pending row of the same receiver and group that waits for its retry (a
        group's notifications are delivered in order: a resolve never overtakes its firing)."""
        ...

    async def next_attempt_at(self, receiver: str | None = None) -> float | None:
        """The earliest next attempt among the first pending row of each group, ``None`` when
        nothing is pending."""
        ...

    async def record_attempt(self, attempt: Attempt) -> None: ...

    async def outbox(self, status: OutboxStatus | None = None) -> list[OutboxRow]:
        """Outbox rows (of one status), oldest first: for reports and ``check``."""
        ...

    async def pending_count(self) -> int: ...

    async def prune_outbox(self, before: float) -> int:
        """Deletes finished rows (delivered, failed, undeliverable) older than ``before``."""
        ...


__all__ = [
    "Attempt",
    "Changes",
    "OutboxRow",
    "OutboxStatus",
    "Silence",
    "Store",
]

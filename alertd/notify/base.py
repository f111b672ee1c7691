"""The delivery interface: one :class:`Notifier` per receiver channel (email, webhook).

A notifier sends one :class:`~alertd.model.Notification` and either returns (delivered) or
raises :class:`~alertd.errors.TransientDeliveryError` (the outbox retries later with backoff)
or :class:`~alertd.errors.PermanentDeliveryError` (reported, not retried). Retries live in the
outbox worker, never inside a notifier. ``notification.id`` is the idempotency key: a notifier
must send it (``Idempotency-Key`` header, ``Message-ID``) so receivers can drop repeats.
"""

from __future__ import annotations

from typing import Protocol

from alertd.model import Notification


class Notifier(Protocol):
    """Delivers notifications to one receiver."""

    async def send(self, notification: Notification) -> None: ...

"""The delivery interface: one :class:`Notifier` per receiver channel (email, webhook).

A notifier sends one :class:`~alertd.model.Notification` and either returns (delivered) or
raises :class:`~alertd.errors.TransientDeliveryError` (the outbox retries later with backoff)
or :class:`~alertd.errors.PermanentDeliveryError` (reported, not retried). Retries live in the
outbox worker, never inside a notifier. ``notification.id`` is the idempotency key: a notifier
must send it (``Idempotency-Key`` header, ``Message-ID``) so receivers can drop repeats.

A notifier may also be :class:`Staged`: its CPU-bound part (templates, JSON, the body
bytes) apart from its I/O. The outbox then renders many rows in one worker-thread hop ahead
of the sends (:mod:`alertd.notify.ahead`) instead of one hop per notification, and calls
:meth:`Staged.deliver` with what :meth:`Staged.prepare` returned. ``send`` stays the one-call
form (``prepare`` off the loop, then ``deliver``).

A receiver template that cannot render is a permanent failure (:func:`template_failure`),
except one that ran out of wall time: that depends on the machine's load too, so it is
retried like a timeout.
"""

from __future__ import annotations

from typing import Protocol, TypeVar, runtime_checkable

from jinja2 import TemplateError

from alertd.errors import DeliveryError, PermanentDeliveryError, TransientDeliveryError
from alertd.model import Notification
from alertd.templating import TemplateTimeLimitError


class Notifier(Protocol):
    """Delivers notifications to one receiver."""

    async def send(self, notification: Notification) -> None: ...


P = TypeVar("P")


@runtime_checkable
class Staged(Protocol[P]):
    """A notifier in two steps: ``prepare`` (pure CPU, bounded by the template limits, run in
    a worker thread; raises what ``send`` would raise for a render failure) and ``deliver``
    (one attempt at the I/O with what ``prepare`` returned; the same bytes on every retry)."""

    async def send(self, notification: Notification) -> None: ...

    def prepare(self, notification: Notification) -> P: ...

    async def deliver(self, prepared: P) -> None: ...


def template_failure(what: str, exc: TemplateError, receiver: str) -> DeliveryError:
    """The delivery error for a ``what`` (``email``, ``webhook``) template that failed.

    Size and step overruns, syntax and runtime errors fail the same way on every attempt:
    permanent. The time limit (a big honest digest on a machine at load 10 can reach it)
    is transient, so the outbox retries it with backoff and reports each retry.
    """
    if isinstance(exc, TemplateTimeLimitError):
        return TransientDeliveryError(f"{what} template failed: {exc} (will retry)",
                                      receiver=receiver)
    return PermanentDeliveryError(f"{what} template failed: {exc}", receiver=receiver)

"""The soak's receivers: what the daemon delivers to, recorded with the answer each got.

* :class:`FlakyWebhookSink` wraps :class:`alertd.sinks.WebhookSink` (which always accepts) with
  an ``outage`` switch: while it is on, every POST is answered ``503`` and recorded as refused,
  so the soak can check that alertd retries and that nothing refused counts as delivered.
* Mail goes to :func:`alertd.sinks.mail_sink` unchanged (an SMTP server accepts or the
  connection fails; the soak does not break mail).

:func:`receipts` turns both into :class:`Receipt` rows keyed by the notification id: the
``Idempotency-Key`` header of a webhook, the id part of an email's ``Message-ID``
(``<ID.PART@domain>``, :func:`alertd.notify.email.message_id`).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from alertd.sinks import Delivery, WebhookSink, serve_posts


@dataclass(frozen=True, slots=True)
class Receipt:
    """One message a sink got: which notification, on which channel, whether it was accepted
    (2xx / SMTP 250), when (unix seconds), and the firing alerts it carried as
    ``(rule, customer)`` pairs (webhooks only: an email's alerts are not machine-readable)."""

    key: str
    channel: str
    accepted: bool
    at: float
    firing: frozenset[tuple[str, str]] = frozenset()
    #: What a receiver deduplicates on: the ``Idempotency-Key`` or the full ``Message-ID``.
    message: str = ""


class FlakyWebhookSink:
    """A webhook receiver that answers 503 while :attr:`outage` is on, 200 otherwise."""

    def __init__(self, secret: str | None = None) -> None:
        self.inner = WebhookSink(secret=secret)
        self.outage = False
        self.refused: list[tuple[float, str]] = []  # (when, Idempotency-Key)
        self.accepted_at: list[float] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        if self.outage:
            await request.read()
            self.refused.append((time.time(), request.headers.get("Idempotency-Key", "")))
            return web.json_response({"error": "soak: sink outage"}, status=503)
        response = await self.inner.handle(request)
        self.accepted_at.append(time.time())
        return response

    @property
    def received(self) -> list[Delivery]:
        return self.inner.received


@asynccontextmanager
async def flaky_webhook_sink(secret: str | None = None) -> AsyncIterator[FlakyWebhookSink]:
    """:class:`FlakyWebhookSink` on a free loopback port for the duration of the block."""
    sink = FlakyWebhookSink(secret)
    async with serve_posts(sink.handle) as url:
        sink.url = url
        yield sink


def webhook_firing(body: str) -> frozenset[tuple[str, str]]:
    """``(rule, customer)`` of each firing alert in an Alertmanager-shaped webhook body."""
    try:
        parsed: Any = json.loads(body)
    except ValueError:
        return frozenset()
    alerts = parsed.get("alerts", []) if isinstance(parsed, dict) else []
    return frozenset(
        (str(a["labels"].get("alertname", "")), str(a["labels"].get("customer", "")))
        for a in alerts
        if isinstance(a, dict) and a.get("status") == "firing" and isinstance(a.get("labels"),
                                                                              dict)
    )


def email_key(message_id: str) -> str:
    """The notification id inside an alertd ``Message-ID`` (``<ID.PART@domain>``)."""
    return message_id.strip().lstrip("<").split("@", 1)[0].split(".", 1)[0]


def receipts(
    hooks: FlakyWebhookSink, mails: Iterable[tuple[float, Delivery]]
) -> list[Receipt]:
    """Every message both sinks got, accepted or refused, as :class:`Receipt` rows
    (``mails``: each email with the time it arrived)."""
    rows = []
    for delivery, at in zip(hooks.received, hooks.accepted_at, strict=True):
        key = delivery.headers.get("Idempotency-Key", "")
        rows.append(Receipt(key, "webhook", True, at, webhook_firing(delivery.body), key))
    rows += [Receipt(key, "webhook", False, at, message=key) for at, key in hooks.refused]
    for at, mail in mails:
        message_id = mail.headers.get("Message-ID", "")
        rows.append(Receipt(email_key(message_id), "email", True, at, message=message_id))
    return rows

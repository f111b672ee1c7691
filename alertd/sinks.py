"""Local delivery sinks: an SMTP server and a webhook receiver that keep what they get.

``alertd demo`` prints every message they receive; tests and benchmarks read ``received`` to
check what was delivered. Both are real servers on loopback (aiosmtpd and aiohttp), so alertd
talks to them exactly as it talks to a mail relay or a webhook endpoint in production.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiohttp import web
from aiosmtpd.controller import Controller

from alertd.clock import Clock, SystemClock
from alertd.notify.signature import verify


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message a sink received."""

    channel: str  # "email" | "webhook"
    target: str  # recipients or URL path
    subject: str  # email subject, or a one-line summary of the JSON body
    body: str  # the text part, or the JSON body
    headers: dict[str, str] = field(default_factory=dict)
    signature_ok: bool | None = None


Listener = Callable[[Delivery], None]


@dataclass(frozen=True, slots=True)
class ReceivedMail:
    """One message as the SMTP server got it: envelope, parsed message, TLS and login."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    tls: bool
    login: bytes | None
    #: The message's bytes as they arrived (to parse again, e.g. with ``email.policy.strict``).
    raw: bytes = b""


@dataclass
class RecordingMailHandler:
    """The one aiosmtpd handler of alertd's sinks and tests: records every accepted message in
    ``messages`` (and calls ``on_message``), and answers scripted replies: ``rcpt_replies``
    refuses chosen recipients, each ``data_replies`` entry answers (and refuses) one message,
    which is then kept in ``rejected``."""

    on_message: Callable[[ReceivedMail], None] | None = None
    messages: list[ReceivedMail] = field(default_factory=list)
    rejected: list[ReceivedMail] = field(default_factory=list)
    data_replies: list[str] = field(default_factory=list)
    rcpt_replies: dict[str, str] = field(default_factory=dict)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        if address in self.rcpt_replies:
            return self.rcpt_replies[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        received = ReceivedMail(
            envelope.mail_from, list(envelope.rcpt_tos), message,
            server.transport.get_extra_info("ssl_object") is not None,
            getattr(session.auth_data, "login", None),
            bytes(envelope.content),
        )
        if self.data_replies:
            self.rejected.append(received)
            return self.data_replies.pop(0)
        self.messages.append(received)
        if self.on_message is not None:
            self.on_message(received)
        return "250 Message accepted for delivery"


def mail_delivery(received: ReceivedMail) -> Delivery:
    """How a sink lists a received message: recipients, subject and its text part."""
    message = received.message
    part = message.get_body(preferencelist=("plain", "html"))
    return Delivery(
        channel="email",
        target=", ".join(received.rcpt_tos),
        subject=str(message.get("Subject", "")),
        body=part.get_content() if part is not None else "",
        headers={k: str(v) for k, v in message.items()},
    )


class MailSink:
    """An SMTP server on 127.0.0.1 that accepts every message (no TLS, no auth)."""

    def __init__(self, listener: Listener | None = None) -> None:
        self.received: list[Delivery] = []
        self._listener = listener
        self.port = _free_port()
        handler = RecordingMailHandler(lambda received: self.add(mail_delivery(received)))
        self._controller = Controller(handler, hostname="127.0.0.1", port=self.port)

    def add(self, delivery: Delivery) -> None:
        self.received.append(delivery)
        if self._listener is not None:
            self._listener(delivery)

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@asynccontextmanager
async def mail_sink(listener: Listener | None = None) -> AsyncIterator[MailSink]:
    sink = MailSink(listener)
    await asyncio.to_thread(sink.start)
    try:
        yield sink
    finally:
        await asyncio.to_thread(sink.stop)


def summarise(body: Any) -> str:
    """A one-line summary of an alert webhook body (Alertmanager shape or anything else)."""
    if isinstance(body, dict) and "alerts" in body:
        alerts = body.get("alerts") or []
        names = sorted({str((a.get("labels") or {}).get("alertname", "?")) for a in alerts})
        return f"{body.get('status', '?')}: {len(alerts)} alert(s) {', '.join(names)}"
    return json.dumps(body)[:120]


class WebhookSink:
    """An HTTP receiver that accepts every POST; checks ``Alertd-Signature`` with ``secret``."""

    def __init__(
        self, listener: Listener | None = None, secret: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.received: list[Delivery] = []
        self.url = ""
        self._listener = listener
        self._secret = secret
        self._clock: Clock = clock or SystemClock()

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw.decode(errors="replace")
        header = request.headers.get("Alertd-Signature")
        signature_ok = None
        if self._secret is not None and header is not None:
            signature_ok = verify(self._secret, raw, header, now=self._clock.now())
        delivery = Delivery(
            channel="webhook",
            target=request.path,
            subject=summarise(body),
            body=raw.decode(errors="replace"),
            headers=dict(request.headers),
            signature_ok=signature_ok,
        )
        self.received.append(delivery)
        if self._listener is not None:
            self._listener(delivery)
        return web.json_response({"ok": True})


@asynccontextmanager
async def webhook_sink(
    listener: Listener | None = None, secret: str | None = None, clock: Clock | None = None
) -> AsyncIterator[WebhookSink]:
    """``clock`` is what the signature's timestamp is checked against (the sender's time)."""
    sink = WebhookSink(listener, secret, clock)
    async with serve_posts(sink.handle) as url:
        sink.url = url
        yield sink


@asynccontextmanager
async def serve_posts(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    *, shutdown_timeout: float = 60.0,
) -> AsyncIterator[str]:
    """Serve every POST with ``handler`` on a free loopback port; yield the base URL.

    The one loopback HTTP receiver of alertd: the demo's and benchmarks' webhook sinks and the
    tests' recording receivers all run on it. ``shutdown_timeout`` bounds how long leaving
    waits for a handler still answering (tests that hold requests open pass a short one).
    """
    app = web.Application()
    app.router.add_post("/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()

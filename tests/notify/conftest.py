"""Shared pieces for the notification channel tests, all offered as fixtures.

* ``make_alert`` / ``make_notification``: realistic values with overrides; ``customers``.
* ``smtp_server``: runs a real aiosmtpd SMTP server in the test's event loop on a free port;
  :class:`~alertd.sinks.RecordingMailHandler` records messages and answers scripted replies
  (``mail_sink``).
* ``hook``: a real aiohttp server; its :class:`HookSink` records each request's raw bytes
  and headers and answers scripted statuses (with optional delays).
* ``tls_files``: a self-signed certificate for 127.0.0.1, made with the ``openssl`` CLI.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiosmtpd.smtp import SMTP as SMTPServer

from alertd.model import Alert, Bucket, Customer, Notification, Period
from alertd.sinks import RecordingMailHandler, serve_posts

NOW = 1_735_920_000  # 2025-01-03T16:00:00Z
DAY_START = 1_735_880_400  # 2025-01-03T00:00:00-05:00 (America/New_York)

ACME = Customer("cus_acme", "Acme Analytics Inc.", "billing@acme.example", {"plan": "pro"})
GLOBEX = Customer("cus_globex", "Globex", "ap@globex.example", {})
INITECH = Customer("cus_initech", "Initech", None, {})


def make_alert(**overrides: Any) -> Alert:
    """A firing daily-threshold alert for Acme, with a week of recent daily buckets."""
    customer = overrides.pop("customer", ACME)
    history = [Bucket(DAY_START - (7 - i) * 86400, DAY_START - (6 - i) * 86400,
                      4_000_000 + i * 50_000, True) for i in range(7)]
    recent = (*history, Bucket(DAY_START, DAY_START + 86400, 5_900_000, False))
    values: dict[str, Any] = {
        "fingerprint": f"fp-{customer.id}",
        "status": "firing",
        "rule": "gpt4-daily-usage",
        "severity": "critical",
        "customer": customer,
        "meter": "mtr_tokens",
        "meter_name": "Tokens",
        "dimensions": (("model", "gpt-4"),),
        "window": Period(DAY_START, DAY_START + 86400, "America/New_York"),
        "value": 5_900_000.0,
        "threshold": 5_000_000.0,
        "labels": {"alertname": "gpt4-daily-usage", "rule": "gpt4-daily-usage",
                   "customer": customer.id, "severity": "critical", "model": "gpt-4",
                   "team": "ml"},
        "annotations": {"summary": f"{customer.name or customer.id} used 5,900,000 tokens"},
        "starts_at": NOW - 1200,
        "ends_at": None,
        "refreshed_at": NOW - 240,
        "message": "daily usage 5,900,000 > 5,000,000",
        "recent": recent,
    }
    values.update(overrides)
    if values["status"] == "resolved" and values["ends_at"] is None:
        values["ends_at"] = NOW
    return Alert(**values)


def make_notification(*alerts: Alert, **overrides: Any) -> Notification:
    alerts = alerts or (make_alert(),)
    values: dict[str, Any] = {
        "id": "n-0001",
        "receiver": "ops",
        "status": "firing" if any(a.status == "firing" for a in alerts) else "resolved",
        "group_key": '{}:{rule="gpt4-daily-usage"}',
        "group_labels": {"rule": "gpt4-daily-usage"},
        "alerts": tuple(alerts),
        "created_at": NOW,
    }
    values.update(overrides)
    return Notification(**values)


def resolved(alert: Alert) -> Alert:
    return dataclasses.replace(alert, status="resolved", ends_at=NOW + 600)


class Factories:
    """What the builder fixtures hand out: the functions and the sample customers."""

    now = NOW
    acme, globex, initech = ACME, GLOBEX, INITECH
    alert = staticmethod(make_alert)
    notification = staticmethod(make_notification)
    resolved = staticmethod(resolved)


@pytest.fixture
def build() -> type[Factories]:
    """``build.alert(...)``, ``build.notification(...)``, ``build.acme``, ``build.now``."""
    return Factories


# --------------------------------------------------------------------------- SMTP


@asynccontextmanager
async def smtp_server(handler: Any, *, ssl_context: ssl.SSLContext | None = None,
                      **smtp_options: Any) -> AsyncIterator[int]:
    """A real SMTP server on 127.0.0.1, a free port; yields the port."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTPServer(handler, hostname="localhost", loop=loop, **smtp_options),
        "127.0.0.1", 0, ssl=ssl_context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
def mail_sink() -> RecordingMailHandler:
    return RecordingMailHandler()


@pytest.fixture(name="smtp_server")
def smtp_server_fixture() -> Any:
    """The :func:`smtp_server` context manager: ``async with smtp_server(sink) as port``."""
    return smtp_server


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A self-signed certificate for 127.0.0.1/localhost, made with the openssl CLI."""
    openssl = shutil.which("openssl")
    assert openssl, "the TLS tests need the openssl command"
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True, timeout=30,
    )
    return TlsFiles(cert, key)


# --------------------------------------------------------------------------- HTTP


@dataclass
class Captured:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class HookSink:
    """Records every request; answers ``script`` entries (status, text, delay) then 200."""

    requests: list[Captured] = field(default_factory=list)
    script: list[tuple[int, str, float]] = field(default_factory=list)
    extra_headers: dict[str, str] = field(default_factory=dict)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append(Captured(request.path, dict(request.headers), body))
        status, text, delay = self.script.pop(0) if self.script else (200, "ok", 0.0)
        if delay:
            await asyncio.sleep(delay)
        return web.Response(status=status, text=text, headers=self.extra_headers)


@asynccontextmanager
async def hook_server(sink: HookSink) -> AsyncIterator[str]:
    """A real HTTP server on 127.0.0.1, a free port; yields its base URL."""
    async with serve_posts(sink.handle, shutdown_timeout=0.5) as base:
        yield base


@pytest.fixture
async def hook() -> AsyncIterator[tuple[HookSink, str]]:
    sink = HookSink()
    async with hook_server(sink) as base:
        yield sink, base

"""Secrets stay out of what alertd prints, and a receiver's answer cannot forge log fields.

* ``alertd render`` (the real command) prints webhook URLs through ``redact_url``: no
  user-info, query values or Slack/Discord path tokens; the receiver's own header values and
  PagerDuty's ``routing_key`` are masked.
* A real loopback receiver answers 500 with ESC bytes, newlines and ``key=value`` pairs; the
  real outbox logs the failure through the real formatters: one line, no control bytes, and
  the only ``receiver`` field is the real one.
"""

from __future__ import annotations

import io
import json
import logging
import random
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import yaml

from alertd.cli import main
from alertd.clock import FakeClock
from alertd.config.settings import DeliverySettings, Receiver, SmtpSettings
from alertd.logs import (
    MAX_FIELD,
    JsonFormatter,
    RedactingFilter,
    TextFormatter,
    field_value,
    redact,
    redact_url,
)
from alertd.model import Customer
from alertd.notify.email import EmailNotifier, smtp_client
from alertd.notify.outbox import Outbox
from alertd.notify.templates import Templates
from alertd.notify.webhook import WebhookNotifier
from alertd.store.base import Changes
from alertd.store.sqlite import SqliteStore
from tests.notify.conftest import (
    HookSink,
    RecordingMailHandler,
    hook_server,
    make_alert,
    make_notification,
    smtp_server,
)

ROOT = Path(__file__).resolve().parent.parent.parent
SLACK = "https://hooks.slack.com/services/T0A1B2C3D/B0A1B2C3D/abcdefghijklmnopqrstuvwx"


@pytest.mark.parametrize(("url", "shown"), [
    ("https://user:hunter2@hooks.example.com:8443/alertd?token=s3cr3t&team=ml",
     "https://…@hooks.example.com:8443/alertd?token=…&team=…"),
    (SLACK, "https://hooks.slack.com/services/…/…/…"),
    ("https://discord.com/api/webhooks/112233445566778899/AbC-dEf_GhI",
     "https://discord.com/api/webhooks/…/…"),
    ("https://events.example.com/v1/3f9a8c7d6e5b4a3f2e1d0c9b8a7f6e5d/ingest",
     "https://events.example.com/v1/…/ingest"),
    ("http://127.0.0.1:9464/alertd", "http://127.0.0.1:9464/alertd"),
    ("http://[::1", "<invalid url>"),
])
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.parametrize(("url", "shown"), [
    ("https://u:tok@hc-ping.com/", "https://…@hc-ping.com/"),
    ("https://hc-ping.com/0b8a2c4e-1d3f-4a5b-9c7d-2e6f8a0b1c3d", "https://hc-ping.com/…"),
    ("http://127.0.0.1:3001/api/push/Xk3q9?status=up", "http://127.0.0.1:3001/…/…/…?status=…"),
    (SLACK, "https://hooks.slack.com/…/…/…/…"),
])
def test_redact_url_with_a_secret_path(url: str, shown: str) -> None:
    """Heartbeats and delivery errors: every path segment may be the token."""
    assert redact_url(url, secret_path=True) == shown


def test_urls_in_log_text_are_redacted() -> None:
    text = f"cannot reach {SLACK}: ConnectError, see https://a:b@x.example.com/h?k=v."
    assert redact(text) == ("cannot reach https://hooks.slack.com/services/…/…/…: ConnectError, "
                            "see https://…@x.example.com/h?k=….")


def test_render_prints_no_webhook_secrets(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    receivers = [
        {"name": "hooks", "webhook": {
            "url": "https://ops:hunter2@hooks.example.com/alertd?token=s3cr3t-t0ken",
            "secret": "whsec-signing", "headers": {"X-Api-Key": "k3y-v4lue"}}},
        {"name": "chat", "webhook": {"url": SLACK, "preset": "slack"}},
        {"name": "pager", "webhook": {"url": "https://events.pagerduty.com/v2/enqueue",
                                      "preset": "pagerduty", "routing_key": "R0UT1NGK3Y"}},
    ]
    config = tmp_path / "alertd.yaml"
    config.write_text(yaml.safe_dump({
        "rule_files": [str(ROOT / "rules" / "*.yaml")], "state": {"path": str(tmp_path / "s.db")},
        "receivers": receivers, "route": {"receiver": "hooks"}}))
    out = ""
    for name in ("hooks", "chat", "pager"):
        assert main(["render", "-c", str(config), "--rule", "gpt4-daily-usage",
                     "--receiver", name]) == 0
        out += capsys.readouterr().out
    for secret in ("hunter2", "s3cr3t-t0ken", "k3y-v4lue", "abcdefghijklmnopqrstuvwx",
                   "R0UT1NGK3Y", "whsec-signing"):
        assert secret not in out
    assert "POST https://…@hooks.example.com/alertd?token=…" in out
    assert "POST https://hooks.slack.com/services/…/…/…" in out
    assert "X-Api-Key: …[redacted]" in out and '"routing_key": "…[redacted]"' in out
    assert "Idempotency-Key: " in out and "Alertd-Signature: t=" in out


# --------------------------------------------------------------------------- log fields


FORGED = ("\x1b[2J\x1b[31mserver on fire\r\n2025-01-01T00:00:00Z level=error logger=alertd "
          'delivered receiver=forged id="evil" ' + "A" * 5000)


@pytest.fixture
def captured() -> Iterator[tuple[io.StringIO, io.StringIO]]:
    """The alertd logger through the real filter and both real formatters."""
    text, document = io.StringIO(), io.StringIO()
    handlers = []
    for stream, formatter in ((text, TextFormatter()), (document, JsonFormatter())):
        handler = logging.StreamHandler(stream)
        handler.setFormatter(formatter)
        handler.addFilter(RedactingFilter())
        handlers.append(handler)
    logger = logging.getLogger("alertd")
    level = logger.level
    logger.setLevel(logging.INFO)
    for handler in handlers:
        logger.addHandler(handler)
    try:
        yield text, document
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    async with SqliteStore(tmp_path / "alertd.db") as opened:
        yield opened


#: ``key=value`` or ``key="quoted \" value"``, as a log reader splits a line.
PAIR = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')


async def test_a_receivers_error_body_cannot_forge_log_lines_or_fields(
    store: SqliteStore, captured: tuple[io.StringIO, io.StringIO],
) -> None:
    sink = HookSink(script=[(500, FORGED, 0.0), (400, FORGED, 0.0)])
    clock = FakeClock(1_735_920_000)
    await store.commit_transitions(Changes(outbox=(make_notification(receiver="hooks"),)))
    async with hook_server(sink) as base:
        receiver = Receiver.model_validate({"name": "hooks", "webhook": {"url": base}})
        async with WebhookNotifier(receiver, Templates(), clock=clock) as notifier:
            outbox = Outbox(store, {"hooks": notifier}, DeliverySettings(), clock,
                            rng=random.Random(1))
            await outbox.run_until_idle(timeout=3600)
    assert len(sink.requests) == 2  # 500: retried; 400: undeliverable

    text, document = captured
    lines = [line for line in text.getvalue().splitlines() if "receiver=" in line]
    assert len(lines) == 2
    for line, level in zip(lines, ("warning", "error"), strict=True):
        assert not re.search(r"[\x00-\x1f\x7f]", line)
        assert len(line) < 2 * MAX_FIELD
        assert [v for k, v in PAIR.findall(line) if k == "receiver"] == ["hooks"]
        assert [v for k, v in PAIR.findall(line) if k == "level"] == [level]
        assert [k for k, _ in PAIR.findall(line)].count("id") == 1
    assert "retrying" in lines[0] and "undeliverable" in lines[1]
    events = [json.loads(line) for line in document.getvalue().splitlines()]
    assert [e["receiver"] for e in events if "receiver" in e] == ["hooks", "hooks"]
    assert all("\\x1b[31mserver on fire" in e["error"] for e in events if "error" in e)


@pytest.mark.parametrize(("value", "shown"), [
    ("ops", "ops"),
    ("two words", '"two words"'),
    ("a=b", '"a=b"'),
    ('say "hi"', '"say \\"hi\\""'),
    ("bell\x07", "bell\\x07"),
    ("line\nbreak", '"line\\nbreak"'),
    ("x" * (MAX_FIELD + 5), "x" * MAX_FIELD + "…[+5]"),
])
def test_field_value(value: str, shown: str) -> None:
    assert field_value(value) == shown


def test_numbers_and_reprs_format_as_before() -> None:
    record = logging.LogRecord("alertd.t", logging.INFO, __file__, 1,
                               "retry in %.0fs attempt=%d what=%r who=%s", (2.6, 3, "a b", "x y"),
                               None)
    line = TextFormatter().format(record)
    # %r is a field like %s (of the repr's text): a bare 'a b' could carry a forged key=value.
    assert line.endswith("retry in 3s attempt=3 what=\"'a b'\" who=\"x y\"")


async def test_a_customer_name_in_a_repr_argument_cannot_forge_fields(
    captured: tuple[io.StringIO, io.StringIO],
) -> None:
    """``email undeliverable … reason=%r``: the reason names the customer, whose name comes
    from Stripe. Its ``receiver=forged`` stays inside the reason, in both formats."""
    nameless = Customer("cus_evil", "Evil receiver=forged level=debug", None, {})
    notification = make_notification(make_alert(), make_alert(customer=nameless,
                                                              fingerprint="fp-evil"))
    receiver = Receiver.model_validate(
        {"name": "ops", "email": {"to": ["ops@example.com"], "to_customer": True}})
    mail = RecordingMailHandler()
    async with smtp_server(mail) as port:
        smtp = SmtpSettings.model_validate({"host": "127.0.0.1", "port": port,
                                            "security": "none", "from": "alertd@example.com"})
        notifier = EmailNotifier(receiver, smtp, Templates(),
                                 smtp_factory=lambda s: smtp_client(s, local_hostname="localhost"))
        await notifier.send(notification)
    assert len(mail.messages) == 2  # ops and Acme; the nameless customer is logged

    text, document = captured
    (line,) = [line for line in text.getvalue().splitlines() if "undeliverable" in line]
    assert [v for k, v in PAIR.findall(line) if k == "receiver"] == ["ops"]
    assert [v for k, v in PAIR.findall(line) if k == "level"] == ["warning"]
    (event,) = [json.loads(e) for e in document.getvalue().splitlines()
                if "undeliverable" in e]
    assert event["receiver"] == "ops" and event["level"] == "warning"
    assert "receiver=forged" in event["reason"] and "cus_evil" in event["reason"]

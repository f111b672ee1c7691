"""How render failures reach delivery, and how often annotations render.

A receiver template over its *time* limit is transient: the same template renders in time on
a machine that is less busy (a 1,000-alert digest took up to 2.7 s of its 5 s at load 10), so
the outbox retries it with backoff and reports each retry. Over its size or step limit it is
permanent: it goes over on every attempt. And an email receiver with ``to_customer`` renders
each alert's annotations once per notification, not once per message.
"""

from __future__ import annotations

import functools
import logging
import random
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from alertd.clock import FakeClock
from alertd.config.settings import DeliverySettings, Receiver, SmtpSettings
from alertd.errors import PermanentDeliveryError, TransientDeliveryError
from alertd.model import Customer
from alertd.notify.email import EmailNotifier, smtp_client
from alertd.notify.outbox import Outbox
from alertd.notify.templates import Templates
from alertd.notify.webhook import WebhookNotifier
from alertd.store.base import Changes
from alertd.store.sqlite import SqliteStore
from alertd.templating import RenderLimits
from tests.notify.conftest import HookSink, hook_server, make_alert, make_notification

#: 10^10 iterations: stopped by whichever limit comes first.
LOOP = "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}"
#: The time limit comes first: steps are unlimited.
OUT_OF_TIME = RenderLimits(max_steps=10**12, seconds=0.05)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def email_notifier(templates: Templates, **email: object) -> EmailNotifier:
    receiver = Receiver.model_validate({"name": "ops", "email": email})
    smtp = SmtpSettings.model_validate({"host": "127.0.0.1", "port": closed_port(),
                                        "security": "none", "from": "alertd@alerts.example"})
    return EmailNotifier(receiver, smtp, templates,
                         smtp_factory=functools.partial(smtp_client, local_hostname="localhost"))


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    async with SqliteStore(tmp_path / "alertd.db") as opened:
        yield opened


# --------------------------------------------------------------------------- time vs size


async def test_an_email_template_out_of_time_is_transient_over_size_permanent() -> None:
    # The render fails before any SMTP connection (the port is closed either way).
    slow = email_notifier(Templates(limits=OUT_OF_TIME), to=["ops@example.com"],
                          subject=LOOP)
    with pytest.raises(TransientDeliveryError, match=r"longer than 0\.05s") as raised:
        await slow.send(make_notification())
    assert raised.value.receiver == "ops" and "email template failed" in str(raised.value)

    big = email_notifier(Templates(), to=["ops@example.com"], subject="{{ 'x' * 10**9 }}")
    with pytest.raises(PermanentDeliveryError, match="would exceed"):
        await big.send(make_notification())
    steps = email_notifier(Templates(limits=RenderLimits(max_steps=1000, seconds=60)),
                           to=["ops@example.com"], subject=LOOP)
    with pytest.raises(PermanentDeliveryError, match="exceeded 1000 steps"):
        await steps.send(make_notification())


async def test_a_webhook_template_out_of_time_is_retried_with_backoff(
    store: SqliteStore, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="alertd.outbox")
    sink = HookSink()
    clock = FakeClock(1_735_920_000)
    notification = make_notification(receiver="hooks")
    await store.commit_transitions(Changes(outbox=(notification,)))
    async with hook_server(sink) as base:
        receiver = Receiver.model_validate(
            {"name": "hooks", "webhook": {"url": base, "body": '{"t": "' + LOOP + '"}'}})
        async with WebhookNotifier(receiver, Templates(limits=OUT_OF_TIME),
                                   clock=clock) as notifier:
            outbox = Outbox(store, {"hooks": notifier}, DeliverySettings(), clock,
                            rng=random.Random(1))
            report = await outbox.run_until_idle(timeout=120)
    (row,) = await store.outbox()
    assert row.status == "pending" and row.attempts >= 2  # tried, retried, still queued
    assert row.last_error is not None and "longer than 0.05s" in row.last_error
    assert report.outcomes == {"pending": row.attempts}  # each attempt: retry, not give up
    retries = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
    assert len(retries) == row.attempts and "longer than 0.05s" in retries[0]  # reported
    assert len(clock.sleeps) >= 2 and clock.sleeps[1] > clock.sleeps[0]  # backing off
    assert sink.requests == []


# --------------------------------------------------------------------------- annotations


class RenderCounter:
    """A customer metadata value whose ``tick()`` an annotation calls: counts its renders."""

    def __init__(self) -> None:
        self.renders = 0

    def tick(self) -> str:
        self.renders += 1
        return "counted"


def test_annotations_render_once_per_notification_not_per_email() -> None:
    counter = RenderCounter()
    annotation = {"summary": "{{ customer.name }} {{ customer.metadata.counter.tick() }}"}
    alerts = [
        make_alert(customer=Customer(f"cus_{i}", f"Customer {i}", f"c{i}@example.com",
                                     {"counter": counter}),  # type: ignore[dict-item]
                   fingerprint=f"fp{i}", annotations=annotation)
        for i in range(3)
    ]
    notification = make_notification(*alerts)
    notifier = email_notifier(Templates(), to=["ops@example.com"], to_customer=True)
    messages = notifier.messages(notification, notifier.plan(notification))
    # One digest for ops, one mail per customer: four messages, three alerts.
    assert [m["To"] for m in messages] == ["ops@example.com", "c0@example.com",
                                           "c1@example.com", "c2@example.com"]
    assert counter.renders == 3
    digest = messages[0].get_body(("plain",)).get_content()
    assert all(f"Customer {i} counted" in digest for i in range(3))
    for i, message in enumerate(messages[1:]):
        text = message.get_body(("plain",)).get_content()
        assert f"Customer {i} counted" in text and "Customer 9" not in text

"""A firing mail and its resolve, as a mail client sees them: parsed with the strict policy,
the resolve a reply to the firing mail's own ``Message-ID``, one subject base."""

from __future__ import annotations

import dataclasses
import email
from email.policy import strict
from email.utils import parseaddr

from alertd.config.settings import Receiver, SmtpSettings
from alertd.notify.email import EmailNotifier
from alertd.notify.templates import Templates


def notifier(port: int) -> EmailNotifier:
    receiver = Receiver.model_validate({"name": "ops", "email": {"to": ["ops@example.com"]}})
    smtp = SmtpSettings.model_validate({"host": "127.0.0.1", "port": port, "security": "none",
                                        "from": "alertd@example.com"})
    return EmailNotifier(receiver, smtp, Templates(external_url="https://alertd.example.com"))


async def test_the_resolve_replies_to_the_firing_mail(smtp_server, mail_sink, build) -> None:
    alert = build.alert()
    firing = build.notification(alert, id="n-fire", opens_thread=True)
    repeat = build.notification(alert, id="n-repeat")
    resolve = build.notification(build.resolved(alert), id="n-resolve")
    later = dataclasses.replace(alert, starts_at=alert.starts_at + 86400)
    next_episode = build.notification(later, id="n-next", opens_thread=True)
    async with smtp_server(mail_sink) as port:
        sender = notifier(port)
        for notification in (firing, repeat, resolve, next_episode):
            await sender.send(notification)

    parsed = [email.message_from_bytes(r.message.as_bytes(), policy=strict)
              for r in mail_sink.messages]
    first, again, done, new = parsed
    root = first["Message-ID"]
    assert "In-Reply-To" not in first and "References" not in first
    for reply in (again, done):
        assert reply["In-Reply-To"] == root
        assert reply["References"] == root
        assert reply["Message-ID"] not in (root, None)
    assert new["Message-ID"] != root and "In-Reply-To" not in new
    assert first["Subject"].startswith("[FIRING") and done["Subject"].startswith("[RESOLVED]")
    base = first["Subject"].split("] ", 1)[1]
    assert done["Subject"].split("] ", 1)[1] == base == str(done["Thread-Topic"])
    assert parseaddr(str(first["From"]))[1] == "alertd@example.com"
    assert "https://alertd.example.com" in done.get_body(("plain",)).get_content()


async def test_a_retry_of_the_firing_mail_keeps_its_message_id(smtp_server, mail_sink,
                                                             build) -> None:
    firing = build.notification(build.alert(), id="n-fire", opens_thread=True)
    async with smtp_server(mail_sink) as port:
        await notifier(port).send(firing)
        await notifier(port).send(firing)
    one, two = (r.message for r in mail_sink.messages)
    assert one["Message-ID"] == two["Message-ID"]


def test_to_customer_names_alertds_own_alert_instead_of_a_blank_customer(build) -> None:
    from alertd.config.settings import EmailReceiver
    from alertd.model import Customer
    from alertd.notify.email import plan_mail

    stale = build.alert(customer=Customer("", "", None, {}), rule="alertd-stale-data")
    plan = plan_mail(build.notification(stale), EmailReceiver.model_validate(
        {"to_customer": True}))
    assert plan.envelopes == ()
    ((_customer, reason),) = plan.undeliverable
    assert "alertd-stale-data is alertd's own alert" in reason
    assert "customer  " not in reason

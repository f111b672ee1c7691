"""Email delivery against a real in-process aiosmtpd server (plain, STARTTLS, implicit TLS)."""

from __future__ import annotations

import asyncio
import functools
import logging
from datetime import UTC, datetime
from typing import Any

import pytest
from aiosmtpd.smtp import AuthResult

from alertd.config.settings import Receiver, SmtpSettings
from alertd.errors import PermanentDeliveryError, TransientDeliveryError
from alertd.notify.email import EmailNotifier, plan_mail, smtp_client
from alertd.notify.templates import Templates

TEMPLATES = Templates()


def smtp_settings(port: int, **overrides: Any) -> SmtpSettings:
    values: dict[str, Any] = {"host": "127.0.0.1", "port": port, "security": "none",
                              "from": "alertd@alerts.example", "timeout": 5}
    values.update(overrides)
    return SmtpSettings.model_validate(values)


def receiver(**email: Any) -> Receiver:
    return Receiver.model_validate({"name": "ops", "email": email or {"to": ["ops@example.com"]}})


def notifier(port: int, rcv: Receiver | None = None, **smtp: Any) -> EmailNotifier:
    factory = functools.partial(smtp_client, local_hostname="localhost")
    return EmailNotifier(rcv or receiver(), smtp_settings(port, **smtp), TEMPLATES,
                         smtp_factory=factory)


# --------------------------------------------------------------------------- the message


async def test_multipart_text_and_html_with_headers(smtp_server, mail_sink, build) -> None:
    notification = build.notification()
    async with smtp_server(mail_sink) as port:
        await notifier(port).send(notification)

    [received] = mail_sink.messages
    message = received.message
    assert received.mail_from == "alertd@alerts.example"
    assert received.rcpt_tos == ["ops@example.com"]
    assert message.get_content_type() == "multipart/alternative"
    parts = [part.get_content_type() for part in message.iter_parts()]
    assert parts == ["text/plain", "multipart/related"]  # the HTML with its chart
    assert message["Subject"] == "[FIRING critical] gpt4-daily-usage · Acme Analytics Inc."
    assert message["To"] == "ops@example.com"
    assert message["X-Alertd-Fingerprints"] == "fp-cus_acme"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Message-ID"] == "<n-0001.all@alerts.example>"
    assert message["Date"].datetime == datetime(2025, 1, 3, 16, 0, tzinfo=UTC)
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    for body in (text, html):
        assert "Acme Analytics Inc. used 5,900,000 tokens" in body
        assert "5,000,000" in body  # the threshold
        assert "model=gpt-4" in body  # the series
        assert "America/New_York" in body  # the window's zone
        assert "2025-01-03 00:00 EST" in body  # the window in the rule's zone
    assert "Fri 03 Jan" in text and "█" in text  # the recent-bucket bars
    assert "<table" in html and "#c5221f" in html  # table layout, critical colour


async def test_firing_and_resolve_thread_together(smtp_server, mail_sink, build) -> None:
    alert = build.alert()
    firing = build.notification(alert, id="n-fire")
    resolve = build.notification(build.resolved(alert), id="n-resolve")
    other_group = build.notification(alert, id="n-other", group_key='{}:{rule="other"}')
    async with smtp_server(mail_sink) as port:
        sender = notifier(port)
        for notification in (firing, resolve, other_group):
            await sender.send(notification)

    first, second, third = (r.message for r in mail_sink.messages)
    assert first["Message-ID"] != second["Message-ID"]
    assert second["References"] == second["In-Reply-To"]
    assert third["References"] != second["References"]
    assert second["Subject"].startswith("[RESOLVED]")
    assert "Resolved" in second.get_body(("plain",)).get_content()


async def test_annotation_templates_are_rendered_in_both_parts(smtp_server, mail_sink,
                                                                build) -> None:
    summary = "{{ customer.name }} passed {{ threshold | number }}"
    alert = build.alert(annotations={"summary": summary})
    async with smtp_server(mail_sink) as port:
        await notifier(port).send(build.notification(alert))
    message = mail_sink.messages[0].message
    for kind in ("plain", "html"):
        assert "Acme Analytics Inc. passed 5,000,000" in message.get_body((kind,)).get_content()


async def test_custom_subject_template(smtp_server, mail_sink, build) -> None:
    rcv = receiver(to=["ops@example.com"],
                   subject="{{ alerts | length }} × {{ status | upper }}\n{{ receiver }}")
    async with smtp_server(mail_sink) as port:
        await notifier(port, rcv).send(build.notification())
    assert mail_sink.messages[0].message["Subject"] == "1 × FIRING ops"


async def test_a_broken_template_is_permanent_and_sends_nothing(smtp_server, mail_sink,
                                                               build) -> None:
    rcv = receiver(to=["ops@example.com"], subject="{{ no_such_name }}")
    async with smtp_server(mail_sink) as port:
        with pytest.raises(PermanentDeliveryError, match="no_such_name"):
            await notifier(port, rcv).send(build.notification())
    assert mail_sink.messages == []


# --------------------------------------------------------------------------- addressing


async def test_to_customer_mails_each_customer_only_its_own_alerts(smtp_server, mail_sink,
                                                                   build, caplog) -> None:
    notification = build.notification(
        build.alert(customer=build.acme), build.alert(customer=build.globex),
        build.alert(customer=build.initech))  # Initech has no email address
    rcv = receiver(to=["ops@example.com"], cc=["audit@example.com"], to_customer=True)
    caplog.set_level(logging.WARNING, logger="alertd.notify.email")
    async with smtp_server(mail_sink) as port:
        await notifier(port, rcv).send(notification)

    by_to = {r.message["To"]: r for r in mail_sink.messages}
    assert set(by_to) == {"ops@example.com", "billing@acme.example", "ap@globex.example"}
    assert by_to["ops@example.com"].message["X-Alertd-Fingerprints"] == \
        "fp-cus_acme, fp-cus_globex, fp-cus_initech"
    acme = by_to["billing@acme.example"]
    assert acme.rcpt_tos == ["billing@acme.example", "audit@example.com"]
    assert acme.message["X-Alertd-Fingerprints"] == "fp-cus_acme"
    acme_html = acme.message.get_body(("html",)).get_content()
    assert "Acme" in acme_html and "Globex" not in acme_html and "Initech" not in acme_html
    ids = {r.message["Message-ID"] for r in mail_sink.messages}
    assert len(ids) == 3
    assert "customer cus_initech (Initech) has no email address" in caplog.text


async def test_to_customer_without_any_address_is_permanent(smtp_server, mail_sink,
                                                           build) -> None:
    rcv = receiver(to_customer=True)
    async with smtp_server(mail_sink) as port:
        with pytest.raises(PermanentDeliveryError, match=r"cus_initech \(Initech\)") as caught:
            await notifier(port, rcv).send(build.notification(
                build.alert(customer=build.initech)))
    assert caught.value.receiver == "ops"
    assert mail_sink.messages == []


def test_plan_lists_undeliverable_customers(build) -> None:
    rcv = receiver(to_customer=True)
    assert rcv.email is not None
    plan = plan_mail(build.notification(build.alert(customer=build.initech),
                                        build.alert(customer=build.acme)), rcv.email)
    assert [e.to for e in plan.envelopes] == [("billing@acme.example",)]
    assert plan.undeliverable == (("cus_initech",
                                   "customer cus_initech (Initech) has no email address"),)


# --------------------------------------------------------------------------- faults


async def test_451_is_transient_then_the_retry_delivers_the_same_message(smtp_server,
                                                                         mail_sink,
                                                                         build) -> None:
    mail_sink.data_replies.append("451 4.3.0 Mail server temporarily busy")
    notification = build.notification()
    async with smtp_server(mail_sink) as port:
        sender = notifier(port)
        with pytest.raises(TransientDeliveryError, match="451") as caught:
            await sender.send(notification)
        assert caught.value.retryable and caught.value.receiver == "ops"
        await sender.send(notification)

    [rejected], [accepted] = mail_sink.rejected, mail_sink.messages
    assert rejected.message["Message-ID"] == accepted.message["Message-ID"]


async def test_550_recipient_is_permanent(smtp_server, mail_sink, build) -> None:
    mail_sink.rcpt_replies["ops@example.com"] = "550 5.1.1 No such user"
    async with smtp_server(mail_sink) as port:
        with pytest.raises(PermanentDeliveryError, match="550"):
            await notifier(port).send(build.notification())


async def test_550_at_data_is_permanent(smtp_server, mail_sink, build) -> None:
    mail_sink.data_replies.append("554 5.7.1 Message rejected as spam")
    async with smtp_server(mail_sink) as port:
        with pytest.raises(PermanentDeliveryError, match="554"):
            await notifier(port).send(build.notification())


async def test_refused_connection_is_transient(build) -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    with pytest.raises(TransientDeliveryError, match="cannot reach"):
        await notifier(port).send(build.notification())


async def test_a_silent_server_times_out_as_transient(build) -> None:
    async def never_greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # holds the connection open without a 220 greeting
        writer.close()

    server = await asyncio.start_server(never_greet, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(TransientDeliveryError):
            await notifier(port, timeout=0.3).send(build.notification())
    finally:
        server.close()


# --------------------------------------------------------------------------- security


# The test server accepts AUTH without TLS on purpose; aiosmtpd warns about exactly that.
PLAIN_AUTH = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


def authenticator(server: Any, session: Any, envelope: Any, mechanism: str,
                  auth_data: Any) -> AuthResult:
    ok = auth_data.login == b"alertd" and auth_data.password == b"s3cret"
    return AuthResult(success=ok, handled=False, auth_data=auth_data)


@PLAIN_AUTH
async def test_auth_with_username_and_password(smtp_server, mail_sink, build) -> None:
    async with smtp_server(mail_sink, authenticator=authenticator, auth_require_tls=False,
                           auth_required=True) as port:
        await notifier(port, username="alertd", password="s3cret").send(build.notification())
    assert mail_sink.messages[0].login == b"alertd"


@PLAIN_AUTH
async def test_password_from_a_file(smtp_server, mail_sink, build, tmp_path) -> None:
    secret = tmp_path / "smtp_password"
    secret.write_text("s3cret\n")
    async with smtp_server(mail_sink, authenticator=authenticator, auth_require_tls=False,
                           auth_required=True) as port:
        await notifier(port, username="alertd", password_file=str(secret)).send(
            build.notification())
    assert len(mail_sink.messages) == 1


@PLAIN_AUTH
async def test_wrong_password_is_permanent(smtp_server, mail_sink, build) -> None:
    async with smtp_server(mail_sink, authenticator=authenticator, auth_require_tls=False,
                           auth_required=True) as port:
        with pytest.raises(PermanentDeliveryError, match="535"):
            await notifier(port, username="alertd", password="wrong").send(build.notification())


def tls_notifier(port: int, tls_files: Any, **smtp: Any) -> EmailNotifier:
    factory = functools.partial(smtp_client, tls_context=tls_files.client_context(),
                                local_hostname="localhost")
    return EmailNotifier(receiver(), smtp_settings(port, **smtp), TEMPLATES,
                         smtp_factory=factory)


async def test_starttls_then_auth(smtp_server, mail_sink, build, tls_files) -> None:
    async with smtp_server(mail_sink, tls_context=tls_files.server_context(),
                           require_starttls=True, authenticator=authenticator,
                           auth_required=True) as port:  # auth_require_tls defaults to True
        await tls_notifier(port, tls_files, security="starttls", username="alertd",
                           password="s3cret").send(build.notification())
    [received] = mail_sink.messages
    assert received.tls and received.login == b"alertd"


async def test_implicit_tls(smtp_server, mail_sink, build, tls_files) -> None:
    async with smtp_server(mail_sink, ssl_context=tls_files.server_context()) as port:
        await tls_notifier(port, tls_files, security="tls").send(build.notification())
    assert mail_sink.messages[0].tls


async def test_starttls_never_falls_back_to_plain_text(smtp_server, mail_sink, build,
                                                       tls_files) -> None:
    async with smtp_server(mail_sink) as port:  # offers no STARTTLS
        with pytest.raises(PermanentDeliveryError, match="STARTTLS"):
            await tls_notifier(port, tls_files, security="starttls").send(build.notification())
    assert mail_sink.messages == []


async def test_an_untrusted_certificate_is_permanent(smtp_server, mail_sink, build,
                                                     tls_files) -> None:
    async with smtp_server(mail_sink, ssl_context=tls_files.server_context()) as port:
        sender = notifier(port, security="tls")  # the system trust store: self-signed fails
        with pytest.raises(PermanentDeliveryError, match="certificate"):
            await sender.send(build.notification())
    assert mail_sink.messages == []

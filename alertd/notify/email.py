"""Email delivery over SMTP (aiosmtplib): multipart text + HTML from the templates.

Where it sits: the outbox worker calls :meth:`EmailNotifier.send` for each notification routed
to an email receiver; retries live there, not here.

Addressing (:func:`plan_mail`, pure):

* ``to`` addresses get one message carrying every alert of the notification.
* With ``to_customer: true`` each customer gets a message carrying only its own alerts — a
  digest never shows one customer another customer's usage.
* ``cc`` addresses are copied on every message the receiver sends.
* A customer without an email address cannot be served: if no message can be addressed at all,
  :class:`~alertd.errors.PermanentDeliveryError` names the customer(s) and nothing is sent;
  if other messages remain (``to``, other customers), those are sent and the skipped
  customer is logged as ``email undeliverable``.

Idempotency and threading: every message's ``Message-ID`` is stable across retries, so mail
systems drop a repeat. The mail that opens an episode (``Notification.opens_thread``: the
group's first firing) carries the thread's root id as its own ``Message-ID``; the root is
derived from the receiver, group key, recipient part and the episode's start (the earliest
``starts_at`` among the alerts), so every later mail of the episode — repeats, escalations,
the resolve — names that very message in ``In-Reply-To`` and ``References``: a reply to a mail
that was actually sent. Those later mails have their own ids from ``notification.id``. The
subject starts with a status tag (``[FIRING]``, ``[RESOLVED]``) and then the same base
(rule · customer), which ``Thread-Topic`` repeats, so clients that thread by subject keep
them together too. ``X-Alertd-Fingerprints`` lists the alerts a message carries.

Errors: SMTP 4xx replies, refused connections, disconnects and timeouts raise
:class:`~alertd.errors.TransientDeliveryError`; 5xx replies, TLS failures, a server without
STARTTLS when ``starttls`` is asked for, and template failures raise
:class:`~alertd.errors.PermanentDeliveryError` (a render out of time: transient, see
:func:`~alertd.notify.base.template_failure`). When a notification needs several messages and
one fails, a retry sends all of them again with the same ``Message-ID`` values.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

import aiosmtplib
from jinja2 import TemplateError

from alertd.config.settings import EmailReceiver, Receiver, SmtpSettings
from alertd.errors import DeliveryError, PermanentDeliveryError, TransientDeliveryError
from alertd.model import Alert, Notification
from alertd.notify.base import template_failure
from alertd.notify.chart import EmailChart, email_chart
from alertd.notify.templates import Templates, annotated
from alertd.templating import off_loop

log = logging.getLogger(__name__)

#: Builds an unconnected SMTP client for the settings; the notifier connects and quits it.
SmtpFactory = Callable[[SmtpSettings], aiosmtplib.SMTP]

_SAFE_TOKEN = re.compile(r"[A-Za-z0-9._-]{1,64}")
_MAX_SUBJECT = 250


def smtp_client(smtp: SmtpSettings, *, tls_context: ssl.SSLContext | None = None,
                local_hostname: str | None = None) -> aiosmtplib.SMTP:
    """The production SMTP client: ``security`` decides implicit TLS, required STARTTLS or
    plain; credentials are sent only when ``username`` is set."""
    password = smtp.resolved_password()
    return aiosmtplib.SMTP(
        hostname=smtp.host,
        port=smtp.port,
        username=smtp.username,
        password=password.get_secret_value() if password is not None else None,
        use_tls=smtp.security == "tls",
        # True, not None: never fall back to plain text when STARTTLS was asked for.
        start_tls=smtp.security == "starttls",
        timeout=smtp.timeout,
        tls_context=tls_context,
        local_hostname=local_hostname,
    )


# --------------------------------------------------------------------------- addressing


@dataclass(frozen=True, slots=True)
class Envelope:
    """One message: its recipients and the alerts it carries. ``part`` names it in ids."""

    part: str
    to: tuple[str, ...]
    cc: tuple[str, ...]
    alerts: tuple[Alert, ...]


@dataclass(frozen=True, slots=True)
class MailPlan:
    """The messages one notification becomes, and the customers that cannot be mailed."""

    envelopes: tuple[Envelope, ...]
    undeliverable: tuple[tuple[str, str], ...] = ()


def plan_mail(notification: Notification, email: EmailReceiver) -> MailPlan:
    """Who gets which alerts (see the module docstring). Pure."""
    envelopes: list[Envelope] = []
    if email.to:
        envelopes.append(Envelope("all", tuple(email.to), tuple(email.cc), notification.alerts))
    undeliverable: list[tuple[str, str]] = []
    if email.to_customer:
        by_customer: dict[str, list[Alert]] = {}
        for alert in notification.alerts:
            by_customer.setdefault(alert.customer.id, []).append(alert)
        for customer_id, alerts in by_customer.items():
            customer = alerts[0].customer
            if customer.email:
                envelopes.append(Envelope(customer_id, (customer.email,), tuple(email.cc),
                                          tuple(alerts)))
            elif not customer_id:
                # alertd's own alerts (stale data, source failure) concern the account.
                rules = ", ".join(sorted({a.rule for a in alerts}))
                undeliverable.append((customer_id, f"{rules} is alertd's own alert, about no "
                                      "single customer: to_customer has nobody to mail it to"))
            else:
                label = f"{customer_id} ({customer.name})" if customer.name else customer_id
                undeliverable.append((customer_id, f"customer {label} has no email address"))
    return MailPlan(tuple(envelopes), tuple(undeliverable))


# --------------------------------------------------------------------------- message


def _token(text: str) -> str:
    """``text`` if it is safe inside a Message-ID, else a digest of it."""
    if _SAFE_TOKEN.fullmatch(text):
        return text
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _domain(sender: str) -> str:
    domain = sender.rpartition("@")[2].strip(" >")
    return domain if re.fullmatch(r"[A-Za-z0-9.-]+", domain or "") else "alertd.invalid"


def message_id(notification: Notification, part: str, domain: str) -> str:
    """Stable across retries: the notification id and the message's part."""
    return f"<{_token(notification.id)}.{_token(part)}@{domain}>"


def thread_id(notification: Notification, envelope: Envelope, domain: str) -> str:
    """The ``Message-ID`` of the mail that opened this episode of the group, for one
    recipient: the same for its firing, repeats and resolve; a new episode gets a new one."""
    started = min((a.starts_at for a in envelope.alerts), default=notification.created_at)
    seed = "\x1f".join((notification.receiver, notification.group_key, envelope.part,
                        str(started)))
    return f"<thread.{hashlib.sha256(seed.encode()).hexdigest()[:32]}@{domain}>"


_STATUS_TAG = re.compile(r"^\[[^\]]*\]\s*")


def subject_base(subject: str) -> str:
    """The subject without its leading status tag: the same for every mail of a thread."""
    return _STATUS_TAG.sub("", subject)


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _MAX_SUBJECT else line[: _MAX_SUBJECT - 1] + "…"


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    text: str
    html: str
    #: The inline chart the HTML may show by ``cid:`` (attached only when it does).
    chart: EmailChart | None = None


def build_message(notification: Notification, envelope: Envelope, sender: str,
                  rendered: Rendered) -> EmailMessage:
    """The complete MIME message for one envelope. Pure."""
    domain = _domain(sender)
    thread = thread_id(notification, envelope, domain)
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(envelope.to)
    if envelope.cc:
        message["Cc"] = ", ".join(envelope.cc)
    message["Subject"] = rendered.subject
    message["Date"] = formatdate(notification.created_at, usegmt=True)
    if notification.opens_thread:
        message["Message-ID"] = thread
    else:
        message["Message-ID"] = message_id(notification, envelope.part, domain)
        message["In-Reply-To"] = thread
        message["References"] = thread
    message["Thread-Topic"] = subject_base(rendered.subject)
    message["X-Alertd-Fingerprints"] = ", ".join(a.fingerprint for a in envelope.alerts)
    message["X-Alertd-Status"] = notification.status
    message["X-Alertd-Receiver"] = notification.receiver
    # RFC 3834: keeps vacation responders and ticket systems from answering alerts.
    message["Auto-Submitted"] = "auto-generated"
    message["X-Auto-Response-Suppress"] = "All"
    message.set_content(rendered.text)
    message.add_alternative(rendered.html, subtype="html")
    chart = rendered.chart
    if chart is not None and f"cid:{chart.cid}" in rendered.html:
        # text/plain | multipart/related (text/html, image/png): the image belongs to the
        # HTML alternative, which refers to it by Content-ID.
        html_part = list(message.iter_parts())[1]
        assert isinstance(html_part, EmailMessage)  # parts of an EmailMessage are ones too
        html_part.add_related(chart.png, "image", "png", cid=f"<{chart.cid}>",
                              filename="recent-usage.png", disposition="inline")
    return message


# --------------------------------------------------------------------------- errors


def _response_error(code: int, text: str) -> DeliveryError:
    if 400 <= code < 500:
        return TransientDeliveryError(f"{text} (SMTP {code}, will retry)")
    return PermanentDeliveryError(f"{text} (SMTP {code})")


def _tls_failure(exc: BaseException | None) -> ssl.SSLError | None:
    """The TLS error behind ``exc``: aiosmtplib wraps a failed handshake in a connect error."""
    while exc is not None:
        if isinstance(exc, ssl.SSLError):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def classify_smtp_error(exc: Exception, where: str) -> DeliveryError:
    """Map an aiosmtplib/OS error to the delivery error tree (4xx and network: transient)."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        refused = exc.recipients
        detail = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in refused)
        code = min((r.code for r in refused), default=550)
        return _response_error(code, f"{where} refused every recipient: {detail}")
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return _response_error(exc.code, f"{where} answered {exc.message!r}")
    tls_failure = _tls_failure(exc)
    if tls_failure is not None:
        return PermanentDeliveryError(f"TLS with {where} failed: {tls_failure}; "
                                      "check smtp.security and the server certificate")
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected):
        # Connected, then dropped (mid-DATA, say): the server was reached.
        return TransientDeliveryError(f"{where} closed the connection: {exc} (will retry)")
    if isinstance(exc, aiosmtplib.SMTPTimeoutError | TimeoutError):
        return TransientDeliveryError(f"{where} did not answer in time: {exc} (will retry)")
    if isinstance(exc, aiosmtplib.SMTPConnectError | OSError):
        return TransientDeliveryError(f"cannot reach {where}: {exc}")
    return PermanentDeliveryError(f"{where}: {exc}; check the smtp settings")


# --------------------------------------------------------------------------- notifier


class EmailNotifier:
    """Sends notifications of one email receiver (see the module docstring for the rules)."""

    def __init__(self, receiver: Receiver, smtp: SmtpSettings, templates: Templates, *,
                 smtp_factory: SmtpFactory | None = None) -> None:
        if receiver.email is None:
            raise ValueError(f"receiver {receiver.name!r} has no email settings")
        self.receiver = receiver
        self.email = receiver.email
        self.smtp = smtp
        self.templates = templates
        self.smtp_factory: SmtpFactory = smtp_factory or smtp_client

    def plan(self, notification: Notification) -> MailPlan:
        return plan_mail(notification, self.email)

    async def send(self, notification: Notification) -> None:
        plan = self.plan(notification)
        if not plan.envelopes:
            reasons = "; ".join(r for _, r in plan.undeliverable) or "no recipients"
            raise PermanentDeliveryError(f"undeliverable: {reasons}",
                                         receiver=self.receiver.name)
        for customer_id, reason in plan.undeliverable:
            log.warning("email undeliverable receiver=%s notification=%s customer=%s reason=%r",
                        self.receiver.name, notification.id, customer_id, reason)
        # Rendering runs user templates: off the event loop, so that even a render that runs
        # to its time limit never stalls health checks, signals or other deliveries.
        messages = await off_loop(self.messages, notification, plan)
        await self._deliver(notification, messages)

    def messages(self, notification: Notification, plan: MailPlan) -> list[EmailMessage]:
        # Annotations render once here, not once per envelope (to_customer: one per customer);
        # the envelopes then carry the rendered alerts (the plan depends on customers only).
        shown = annotated(notification)
        rendered = {id(a): r for a, r in zip(notification.alerts, shown.alerts, strict=True)}
        return [self.message(shown, dataclasses.replace(
                    envelope, alerts=tuple(rendered[id(a)] for a in envelope.alerts)))
                for envelope in plan.envelopes]

    def message(self, notification: Notification, envelope: Envelope) -> EmailMessage:
        """The message for one envelope of an :func:`annotated` notification."""
        part = dataclasses.replace(
            notification, alerts=envelope.alerts,
            status="firing" if any(a.status == "firing" for a in envelope.alerts) else "resolved")
        return build_message(notification, envelope, self.smtp.from_,
                             self.render(part, annotate=False))

    def render(self, notification: Notification, *, annotate: bool = True) -> Rendered:
        """Subject, text and HTML; ``annotate=False`` when annotations are rendered already."""
        context: dict[str, Any] = self.templates.notification_context(notification,
                                                                       annotate=annotate)
        chart = email_chart(notification, _domain(self.smtp.from_))
        context["chart_cid"] = chart.cid if chart is not None else None
        try:
            if self.email.subject is not None:
                subject = self.templates.render_source(self.email.subject, context)
            else:
                subject = self.templates.render("email_subject.txt", context)
            text = self.templates.render("email.txt", context)
            html = self.templates.render("email.html", context)
        except TemplateError as exc:
            raise template_failure("email", exc, self.receiver.name) from exc
        return Rendered(_one_line(subject), text, html, chart)

    async def _deliver(self, notification: Notification, messages: list[EmailMessage]) -> None:
        where = f"SMTP server {self.smtp.host}:{self.smtp.port}"
        client = self.smtp_factory(self.smtp)
        try:
            async with client:
                for message in messages:
                    refused, _ = await client.send_message(message)
                    for address, response in refused.items():
                        log.warning("email recipient refused receiver=%s notification=%s "
                                    "recipient=%s code=%s", self.receiver.name,
                                    notification.id, address, response.code)
        except (aiosmtplib.SMTPException, OSError) as exc:
            error = classify_smtp_error(exc, where)
            error.receiver = self.receiver.name
            raise error from exc

"""Webhook delivery over HTTP (httpx): JSON bodies from a preset or a custom template.

Where it sits: the outbox worker calls :meth:`WebhookNotifier.send` for each notification
routed to a webhook receiver; retries live there, not here.

The body comes from the receiver's ``body`` (a Jinja2 template that must render JSON; it wins
over ``preset``) or from its ``preset`` (:mod:`alertd.notify.presets`; default: Alertmanager's
webhook format). Each request carries:

* ``Content-Type: application/json`` and ``User-Agent: alertd/<version>``;
* the receiver's own ``headers`` (they may replace the two above, not the ones below);
* ``Idempotency-Key: <notification.id>`` — the same on every retry (not for PagerDuty,
  whose ``dedup_key`` plays that part);
* with a ``secret``: ``Alertd-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``
  (see :mod:`alertd.notify.signature`). The body bytes are identical on every attempt; ``t``
  is the time of the attempt.

Outcomes: 2xx is delivered. 408, 425, 429, 5xx, timeouts and connection failures raise
:class:`~alertd.errors.TransientDeliveryError`; any other status, an invalid URL, a custom
body that is not JSON or whose template fails (over the size and step limits of
:mod:`alertd.templating` included; a render out of *time* is transient, see
:func:`~alertd.notify.base.template_failure`) and a missing PagerDuty ``routing_key`` raise
:class:`~alertd.errors.PermanentDeliveryError` with a snippet of the response. Messages show
URLs through :func:`~alertd.logs.redact_url`: webhook paths (Slack's, Discord's) are secrets.
"""

from __future__ import annotations

import json
from types import TracebackType
from typing import Any

import httpx
from jinja2 import TemplateError

from alertd import __version__
from alertd.clock import Clock, SystemClock
from alertd.config.settings import Receiver
from alertd.errors import DeliveryError, PermanentDeliveryError, TransientDeliveryError
from alertd.logs import escape_control, redact_url
from alertd.model import Notification
from alertd.notify.base import template_failure
from alertd.notify.presets import Payload, PresetContext, preset
from alertd.notify.signature import HEADER, sign
from alertd.notify.templates import Templates, annotated, json_default
from alertd.templating import off_loop

USER_AGENT = f"alertd/{__version__}"
RETRYABLE_STATUS = frozenset({408, 425, 429})
_SNIPPET = 300


def dumps(body: Any) -> bytes:
    """Compact UTF-8 JSON; deterministic for a given notification, so retries match."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False,
                      default=json_default).encode()


def _snippet(response: httpx.Response) -> str:
    """The start of a receiver's answer, on one line, without control characters (it ends up
    in logs, the state file and ``check``'s output)."""
    text = " ".join(response.text[:4 * _SNIPPET].split())
    text = text if len(text) <= _SNIPPET else text[:_SNIPPET] + "…"
    return escape_control(text)


def classify_response(response: httpx.Response, where: str) -> DeliveryError | None:
    """``None`` for 2xx, else the delivery error the status means."""
    status = response.status_code
    if 200 <= status < 300:
        return None
    message = f"{where} answered {status}: {_snippet(response) or response.reason_phrase}"
    if status in RETRYABLE_STATUS or status >= 500:
        return TransientDeliveryError(message + " (will retry)")
    if 300 <= status < 400:
        location = redact_url(response.headers.get("location", ""), secret_path=True)
        message += f" (a redirect to {location}: set the receiver's url to the final address)"
    return PermanentDeliveryError(message)


def classify_transport_error(exc: httpx.HTTPError, where: str) -> DeliveryError:
    """Timeouts and network failures are transient; a URL httpx cannot use is permanent."""
    if isinstance(exc, httpx.UnsupportedProtocol):
        return PermanentDeliveryError(f"{where}: unsupported URL scheme ({exc})")
    if isinstance(exc, httpx.TimeoutException):
        return TransientDeliveryError(f"{where} did not answer in time ({type(exc).__name__})")
    return TransientDeliveryError(f"cannot reach {where}: {type(exc).__name__}: {exc}")


class WebhookNotifier:
    """Sends notifications of one webhook receiver. An async context manager: it closes the
    HTTP client it created (a client passed in belongs to the caller)."""

    def __init__(self, receiver: Receiver, templates: Templates, *,
                 client: httpx.AsyncClient | None = None, clock: Clock | None = None) -> None:
        if receiver.webhook is None:
            raise ValueError(f"receiver {receiver.name!r} has no webhook settings")
        self.receiver = receiver
        self.webhook = receiver.webhook
        self.templates = templates
        self.clock: Clock = clock or SystemClock()
        self._owns_client = client is None
        self.client = client or httpx.AsyncClient(follow_redirects=False)
        secret = self.webhook.resolved_secret()
        self._secret = secret.get_secret_value() if secret is not None else None
        self.where = redact_url(self.webhook.url, secret_path=True)

    async def __aenter__(self) -> WebhookNotifier:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_client:
            await self.client.aclose()

    async def send(self, notification: Notification) -> None:
        # Templates render off the event loop (see EmailNotifier.send).
        for payload, body in await off_loop(self.requests, notification):
            await self._post(body, self.signed_headers(payload, body))

    def requests(self, notification: Notification) -> list[tuple[Payload, bytes]]:
        """Each request as (payload, exact body bytes). Failures are permanent
        but for a render out of time."""
        try:
            if self.webhook.body is not None:
                return [self._custom(notification)]
            shown = annotated(notification)
            payloads = preset(self.webhook.preset)(shown, self._preset_context(shown))
        except TemplateError as exc:
            raise template_failure("webhook", exc, self.receiver.name) from exc
        return [(p, dumps(p.body)) for p in payloads]

    def headers(self, payload: Payload) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
                   **self.webhook.headers}
        if payload.idempotency_key is not None:
            headers["Idempotency-Key"] = payload.idempotency_key
        return headers

    def _custom(self, notification: Notification) -> tuple[Payload, bytes]:
        assert self.webhook.body is not None
        context = self.templates.notification_context(notification)
        text = self.templates.render_source(self.webhook.body, context).strip()
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            raise self._permanent(f"the webhook body template did not render JSON: {exc} "
                                  f"(use the tojson filter for values)") from exc
        return Payload(parsed, notification.id), text.encode()

    def _preset_context(self, notification: Notification) -> PresetContext:
        """The title and settings presets need; ``notification`` is already annotated."""
        routing_key = self.webhook.routing_key
        if self.webhook.preset == "pagerduty" and routing_key is None:
            raise self._permanent("the pagerduty preset needs webhook.routing_key")
        context = self.templates.notification_context(notification, annotate=False)
        title = " ".join(self.templates.render("webhook_title.txt", context).split())
        return PresetContext(
            title=title, external_url=self.templates.external_url,
            routing_key=routing_key.get_secret_value() if routing_key is not None else None)

    def signed_headers(self, payload: Payload, body: bytes) -> dict[str, str]:
        """:meth:`headers` plus, with a secret, the signature of ``body`` made now."""
        headers = self.headers(payload)
        if self._secret is not None:
            headers[HEADER] = sign(self._secret, body, int(self.clock.now()))
        return headers

    async def _post(self, body: bytes, headers: dict[str, str]) -> None:
        try:
            response = await self.client.post(self.webhook.url, content=body, headers=headers,
                                              timeout=self.webhook.timeout)
        except httpx.HTTPError as exc:
            raise self._named(classify_transport_error(exc, self.where)) from exc
        except httpx.InvalidURL as exc:
            raise self._permanent(f"invalid webhook url: {exc}") from exc
        error = classify_response(response, self.where)
        if error is not None:
            raise self._named(error)

    def _named(self, error: DeliveryError) -> DeliveryError:
        error.receiver = self.receiver.name
        return error

    def _permanent(self, message: str) -> PermanentDeliveryError:
        return PermanentDeliveryError(message, receiver=self.receiver.name)

"""Webhook delivery over HTTP/1.1: JSON bodies from a preset or a custom template.

Where it sits: the outbox worker calls :meth:`WebhookNotifier.prepare` (in a worker thread,
many rows per hop) and :meth:`WebhookNotifier.deliver` for each notification routed to a
webhook receiver — or :meth:`~WebhookNotifier.send`, both in one; retries live there, not here.

The HTTP client: on the outbox's path the client's CPU per request was most of what held
end-to-end delivery under 2,000 notifications/s — httpx ~0.7 ms (its pure-Python HTTP/1.1
and anyio layers), aiohttp ~0.15–0.35 ms (load dependent). Direct requests now go through
:mod:`alertd.notify.http1` (a keep-alive pool that writes each prebuilt request at once and
parses the answer in its protocol: about a third of aiohttp's CPU); a receiver the
environment sends through a proxy (``HTTP_PROXY``/``HTTPS_PROXY``, ``NO_PROXY``; looked up
once per receiver, not per request) goes through aiohttp, which speaks to proxies. Both are
in the one :class:`WebhookSession` the webhook notifiers share (keep-alive connections, sized
to the outbox's concurrency), verifying TLS with the same CA bundle httpx used.

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
A receiver's answer is read up to :data:`MAX_ANSWER` bytes: enough for the snippet, bounded.
"""

from __future__ import annotations

import json
import urllib.request
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import httpx
from jinja2 import TemplateError

from alertd import __version__
from alertd.clock import Clock, SystemClock
from alertd.config.settings import Receiver
from alertd.errors import DeliveryError, PermanentDeliveryError, TransientDeliveryError
from alertd.logs import escape_control, redact_url
from alertd.model import Notification
from alertd.notify.base import template_failure
from alertd.notify.http1 import Answer, ConnectionPool, Target, request_head
from alertd.notify.presets import TITLED, Payload, PresetContext, preset
from alertd.notify.signature import HEADER, sign
from alertd.notify.templates import Templates, annotated, json_default
from alertd.templating import off_loop

USER_AGENT = f"alertd/{__version__}"
RETRYABLE_STATUS = frozenset({408, 425, 429})
_SNIPPET = 300
#: Bytes of a receiver's answer read at most (the rest is dropped with the connection).
MAX_ANSWER = 64 * 1024

#: One notification's requests: each payload with the exact body bytes sent for it.
Requests = list[tuple[Payload, bytes]]


def dumps(body: Any) -> bytes:
    """Compact UTF-8 JSON; deterministic for a given notification, so retries match."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False,
                      default=json_default).encode()


class WebhookSession:
    """The HTTP clients webhook notifiers share: a :class:`~alertd.notify.http1.ConnectionPool`
    (at most ``connections`` requests in flight, keep-alive) for direct requests, and, made
    on first use, an aiohttp session for receivers the environment sends through a proxy
    (:func:`env_proxy`). Certificates are checked against httpx's CA bundle (certifi, or
    ``SSL_CERT_FILE``/``SSL_CERT_DIR``). Make it inside the event loop; ``await close()``."""

    def __init__(self, connections: int = 100) -> None:
        self.connections = max(connections, 1)
        self.ssl_context = httpx.create_ssl_context(trust_env=True)
        self.pool = ConnectionPool(self.connections, self.ssl_context)
        self._proxied: aiohttp.ClientSession | None = None

    @property
    def closed(self) -> bool:
        return self.pool.closed

    def proxied(self) -> aiohttp.ClientSession:
        """The aiohttp session for proxied requests (``trust_env`` off: the proxy is given
        per request, looked up once per receiver)."""
        if self._proxied is None:
            connector = aiohttp.TCPConnector(limit=self.connections, ssl=self.ssl_context)
            self._proxied = aiohttp.ClientSession(connector=connector, trust_env=False)
        return self._proxied

    async def close(self) -> None:
        await self.pool.close()
        if self._proxied is not None:
            await self._proxied.close()


def webhook_session(connections: int = 100) -> WebhookSession:
    """The :class:`WebhookSession` for ``connections`` requests in flight."""
    return WebhookSession(connections)


def env_proxy(url: str) -> str | None:
    """The proxy the environment names for ``url`` (``HTTPS_PROXY`` for https, ...), or
    ``None`` when there is none or ``NO_PROXY`` exempts its host."""
    parts = urlsplit(url)
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return urllib.request.getproxies().get(parts.scheme)


async def read_bounded(stream: aiohttp.StreamReader, limit: int) -> bytes:
    """At most ``limit`` bytes of ``stream``: all of it when it is shorter."""
    parts: list[bytes] = []
    left = limit
    while left > 0:
        chunk = await stream.read(left)
        if not chunk:
            break
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def snippet(text: str) -> str:
    """The start of a receiver's answer, on one line, without control characters (it ends up
    in logs, the state file and ``check``'s output)."""
    text = " ".join(text[:4 * _SNIPPET].split())
    text = text if len(text) <= _SNIPPET else text[:_SNIPPET] + "…"
    return escape_control(text)


def classify_response(status: int, reason: str, answer: str, location: str,
                      where: str) -> DeliveryError | None:
    """``None`` for 2xx, else the delivery error the status means (``answer``: the start of
    the body, ``location``: the ``Location`` header, if any)."""
    if 200 <= status < 300:
        return None
    message = f"{where} answered {status}: {snippet(answer) or reason}"
    if status in RETRYABLE_STATUS or status >= 500:
        return TransientDeliveryError(message + " (will retry)")
    if 300 <= status < 400:
        shown = redact_url(location, secret_path=True)
        message += f" (a redirect to {shown}: set the receiver's url to the final address)"
    return PermanentDeliveryError(message)


def classify_transport_error(exc: BaseException, url: str, where: str) -> DeliveryError:
    """Timeouts and network failures are transient; a URL the client cannot use is permanent.
    The client's text may quote ``url``; it is shown as ``where`` (its path is a secret)."""
    text = str(exc).replace(url, where)
    if isinstance(exc, aiohttp.InvalidURL):
        return PermanentDeliveryError(f"{where}: invalid or unsupported webhook url "
                                      f"({type(exc).__name__})")
    if isinstance(exc, TimeoutError):
        return TransientDeliveryError(f"{where} did not answer in time ({type(exc).__name__})")
    return TransientDeliveryError(f"cannot reach {where}: {type(exc).__name__}: {text}")


def _target(url: str) -> Target | None:
    """Where POSTs to ``url`` go; ``None`` for a URL the client cannot use (each attempt then
    fails as an invalid url: permanent)."""
    try:
        return Target.post(url)
    except ValueError:
        return None


class WebhookNotifier:
    """Sends notifications of one webhook receiver. An async context manager: it closes the
    HTTP session it created (a session passed in belongs to the caller)."""

    def __init__(self, receiver: Receiver, templates: Templates, *,
                 session: WebhookSession | None = None,
                 clock: Clock | None = None) -> None:
        if receiver.webhook is None:
            raise ValueError(f"receiver {receiver.name!r} has no webhook settings")
        self.receiver = receiver
        self.webhook = receiver.webhook
        self.templates = templates
        self.clock: Clock = clock or SystemClock()
        self._session = session
        self._owns_session = session is None
        self._timeout = aiohttp.ClientTimeout(total=self.webhook.timeout)
        self._proxy = env_proxy(self.webhook.url)
        self._target = _target(self.webhook.url)
        secret = self.webhook.resolved_secret()
        self._secret = secret.get_secret_value() if secret is not None else None
        self.where = redact_url(self.webhook.url, secret_path=True)

    async def __aenter__(self) -> WebhookNotifier:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, notification: Notification) -> None:
        # Templates render off the event loop (see EmailNotifier.send).
        await self.deliver(await off_loop(self.prepare, notification))

    def prepare(self, notification: Notification) -> Requests:
        """:meth:`requests`: the CPU-bound step, for the outbox's worker thread."""
        return self.requests(notification)

    async def deliver(self, prepared: Requests) -> None:
        """One attempt at each request, in order; each signed now."""
        for payload, body in prepared:
            await self._post(body, self.signed_headers(payload, body))

    def requests(self, notification: Notification) -> Requests:
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
        title = ""
        if self.webhook.preset in TITLED:
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
        url = self.webhook.url
        try:
            if self._proxy is not None:
                answer = await self._post_proxied(body, headers)
            else:
                answer = await self._post_direct(body, headers)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise self._named(classify_transport_error(exc, url, self.where)) from exc
        error = classify_response(answer.status, answer.reason,
                                  answer.body.decode("utf-8", "replace"), answer.location,
                                  self.where)
        if error is not None:
            raise self._named(error)

    async def _post_direct(self, body: bytes, headers: dict[str, str]) -> Answer:
        """Through the shared :class:`~alertd.notify.http1.ConnectionPool`."""
        if self._target is None:
            raise aiohttp.InvalidURL(self.where)
        try:
            data = request_head(self._target, headers, len(body)) + body
        except ValueError as exc:
            raise self._permanent(f"{self.where}: a header cannot be sent: {exc}") from exc
        return await self._client().pool.post(self._target, data, MAX_ANSWER,
                                              self.webhook.timeout)

    async def _post_proxied(self, body: bytes, headers: dict[str, str]) -> Answer:
        """Through aiohttp, which speaks to proxies."""
        async with self._client().proxied().post(
                self.webhook.url, data=body, headers=headers, timeout=self._timeout,
                proxy=self._proxy, allow_redirects=False) as response:
            # Read to the end (bounded) so the connection can serve the next request.
            answer = await read_bounded(response.content, MAX_ANSWER)
            return Answer(response.status, response.reason or "",
                          response.headers.get("location", ""), answer)

    def _client(self) -> WebhookSession:
        """The session passed in, else one of this notifier's own, made on first use (inside
        the event loop)."""
        if self._session is None:
            self._session = webhook_session()
        return self._session

    def _named(self, error: DeliveryError) -> DeliveryError:
        error.receiver = self.receiver.name
        return error

    def _permanent(self, message: str) -> PermanentDeliveryError:
        return PermanentDeliveryError(message, receiver=self.receiver.name)

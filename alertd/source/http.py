"""The one HTTP client every Stripe call goes through: auth, pacing, retries, error mapping.

Where it sits: the sources (:mod:`~alertd.source.analytics`, :mod:`~alertd.source.summaries`)
and the :mod:`~alertd.source.directory` call :meth:`StripeHTTP.get`; it draws each attempt
from the named rate budget (and tells the budget when the request went out: httpcore's trace
of the request headers being written, see :mod:`alertd.source.ratelimit`), keeps as many
requests in flight as that budget's rate and measured latency need
(:mod:`alertd.source.inflight`, at most ``stripe.max_in_flight`` per budget), sends each over
the least busy of several small connection pools (:mod:`alertd.source.pool`: httpcore's cost
per request grows with the connections one pool holds), and is the only place that retries.

Retry policy (GET requests are always safe to repeat):

* retried: connection errors, timeouts, 5xx, 409, 429, and 2xx bodies that are not the JSON
  expected (a proxy's HTML page, a truncated body, fields missing or of the wrong type);
* ``Stripe-Should-Retry: true|false``, when sent, overrides that choice either way;
* the n-th retry (n = 0, 1, …) waits ``min(0.5 · 2ⁿ, 8)`` seconds times a random factor in
  ``[0.5, 1]``; retries stop after ``stripe.max_retries`` or when the next wait would end
  more than ``stripe.retry_max_elapsed`` seconds after the first attempt;
* a 429 also cuts its budget's rate (:meth:`RateBudget.penalize`), so every other request on
  that budget slows down too.

Bodies are streamed and never read whole past ``stripe.max_response_bytes`` (a
``Content-Length`` above it is refused before reading): a longer body raises
:class:`~alertd.errors.ResponseTooLargeError`, a bad answer retried like any other, and memory
stays bounded by the cap. ``stripe.timeout`` bounds the whole exchange, body included, so a
body that drips in slowly ends as :class:`~alertd.errors.StripeTimeoutError`.

Large answers are decoded (JSON, then the caller's ``parse``) in a child process, not on the
event loop (:mod:`alertd.source.decoder`): a 5,000-row usage answer takes ~17 ms of CPU to
decode and read, ~10 ms of it in one ``orjson.loads`` call that holds the GIL, and the budget's
slots are ~10 ms apart at 100/s. On the loop, several answers completing in one turn held every
send behind their sum; in a worker thread of this process (as before) the loop got the GIL back
only between those C calls, so its timers — the sends — still ran tens of ms late. The CPU
spent is about the same; only where it blocks changes. Bodies under :data:`OFFLOAD_BYTES` are
decoded in place: the hand-over would cost more than it saves. A :class:`QuickParser` reads the
body's bytes first and declines what it does not expect: usage answers go through msgspec to
columns (:mod:`alertd.source.answer_structs`) at about half the CPU of orjson and the careful
reader, and only odd answers reach those.

Each request's URL is built once from the path and params (:func:`request_url`), not by
httpx's ``build_request(path, params=...)``, which parses three URLs per request with a Python
loop over every character (~0.54 → ~0.42 ms of CPU for a usage request's ~430 characters).

Errors become the classes of :mod:`alertd.errors` with Stripe's ``code`` and ``param`` and the
``Request-Id`` header, and a message that says what to do. The API key is sent as a bearer
token and appears in no repr, log line or exception.

Why over 400 lines: one request's whole path (auth, pacing, retries, error mapping) is the one
place that retries, and reads as one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, NoReturn, Protocol, TypeVar

import httpx
import orjson
from pydantic import SecretStr

from alertd import __version__
from alertd.clock import Clock, SystemClock, backoff
from alertd.config.settings import StripeSettings
from alertd.errors import (
    AuthenticationError,
    ConflictError,
    InvalidRequestError,
    MalformedResponseError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ResponseTooLargeError,
    SourceError,
    StripeAPIError,
    StripeConnectionError,
    StripeServerError,
    StripeTimeoutError,
)
from alertd.source.decoder import Decoder
from alertd.source.inflight import Concurrency, ConcurrencyStats
from alertd.source.pool import ClientPool, ShardStats
from alertd.source.ratelimit import BUDGET_NAMES, BudgetName, Budgets, Start

log = logging.getLogger("alertd.source")

USER_AGENT = f"alertd/{__version__} python-httpx/{httpx.__version__}"
BACKOFF_BASE = 0.5
BACKOFF_CAP = 8.0

#: Endpoint names (the ``endpoint`` metric label) and what a restricted key needs for them.
PERMISSIONS = {
    "meter_usage": "read access to Billing meters (Meter Usage Analytics)",
    "event_summaries": "read access to Billing meters (meter event summaries)",
    "meters": "read access to Billing meters",
    "customers": "read access to Customers",
    "customer": "read access to Customers",
    "customers_search": "read access to Customers",
}
ANALYTICS_ENDPOINT = "meter_usage"
#: Bodies at least this long are decoded in the worker thread (~300 usage rows, ~0.6 ms).
OFFLOAD_BYTES = 64 * 1024


class RequestObserver(Protocol):
    """Told about every HTTP attempt; :class:`alertd.service.metrics.Metrics` is one.

    ``code`` is the HTTP status as text (``"200"``, ``"429"``), or ``"timeout"``,
    ``"connection_error"``, ``"too_large"`` (a body over the cap, not read) or ``"malformed"``
    (a 2xx whose body could not be read).
    """

    def on_response(self, endpoint: str, code: str, seconds: float) -> None: ...

    def on_rate_limited(self, budget: str) -> None: ...


T = TypeVar("T")
#: Reads a JSON object into what the caller needs; raises MalformedResponseError if it can't.
BodyParser = Callable[[dict[str, Any], str | None], T]


@dataclass(frozen=True, slots=True)
class Answer:
    """One HTTP answer with its body, read within the cap."""

    status: int
    headers: httpx.Headers
    content: bytes

    @property
    def request_id(self) -> str | None:
        value: str | None = self.headers.get("Request-Id")
        return value


@dataclass(frozen=True, slots=True)
class StripeResponse(Generic[T]):
    """A successful answer: its parsed body, its ``Request-Id`` and the attempts spent."""

    body: T
    request_id: str | None
    attempts: int


@dataclass(frozen=True, slots=True)
class QuickParser(Generic[T]):
    """A :data:`BodyParser` (``careful``) with a quick reader of the raw body tried first.

    ``quick(content)`` reads the bytes of a 2xx body straight to what ``careful`` would
    return, or returns ``None`` when it does not expect them; then the body is decoded and
    read by ``careful`` as any other. Its promise: whenever it answers, ``careful`` would
    have answered the same (the usage answers' :mod:`alertd.source.answer_structs`). Both must
    be module-level functions, so the parser pickles (:mod:`alertd.source.decoder`)."""

    careful: BodyParser[T]
    quick: Callable[[bytes, str | None], T | None]

    def __call__(self, body: dict[str, Any], request_id: str | None) -> T:
        return self.careful(body, request_id)


def as_is(body: dict[str, Any], request_id: str | None) -> dict[str, Any]:
    """The :data:`BodyParser` that keeps the JSON object as it is."""
    return body


def should_retry_header(response: Answer) -> bool | None:
    """``Stripe-Should-Retry`` as a bool, or ``None`` when Stripe did not say."""
    value: str | None = response.headers.get("Stripe-Should-Retry")
    if value is None:
        return None
    return value.strip().lower() == "true"


def parse_json_object(response: Answer, endpoint: str) -> dict[str, Any]:
    """The body of a 2xx answer as a JSON object, else :class:`MalformedResponseError`.

    Decoded with orjson: decoding was about half of the fetch client's CPU on large usage
    answers (``bench/fetch.py``), and orjson takes about half json's time. What orjson refuses
    but json reads (``NaN``/``Infinity`` literals, integers past 64 bits) is read by json, so
    such a body meets the same checks as before (a ``NaN`` value is named as one, not called
    invalid JSON)."""
    try:
        body = orjson.loads(response.content)
    except ValueError as exc:  # orjson.JSONDecodeError, and invalid UTF-8
        if "depth limit" in str(exc):  # nested past orjson's limit (1,024)
            raise _too_deep(response, endpoint) from None
        body = _stdlib_json(response, endpoint)
    if not isinstance(body, dict):
        raise MalformedResponseError(
            f"Stripe's answer from {endpoint} was JSON of type {type(body).__name__}, "
            "not an object; it was not used",
            status=response.status, request_id=response.request_id,
        )
    return body


def _stdlib_json(response: Answer, endpoint: str) -> Any:
    """The body as json reads it, for what orjson refuses; else the error it gets."""
    try:
        return json.loads(response.content)
    except RecursionError:
        raise _too_deep(response, endpoint) from None
    except (ValueError, UnicodeDecodeError):
        content_type = response.headers.get("Content-Type", "")
        kind = "an HTML page" if "html" in content_type.lower() else "invalid or truncated JSON"
        raise MalformedResponseError(
            f"Stripe's answer from {endpoint} was {kind}, not the JSON expected "
            "(a proxy or an outage in between?); it was not used",
            status=response.status, request_id=response.request_id,
        ) from None


def _too_deep(response: Answer, endpoint: str) -> MalformedResponseError:
    """No usage answer is nested so deep: one that is was not read."""
    return MalformedResponseError(
        f"Stripe's answer from {endpoint} was JSON nested too deeply to read; it was not used",
        status=response.status, request_id=response.request_id,
    )


def request_url(base_url: httpx.URL, path: str, params: Sequence[tuple[str, str]]) -> httpx.URL:
    """The URL httpx builds for ``build_request("GET", path, params=params)`` on a client of
    ``base_url``, parsed once. Given a path and params, httpx parses the path, the base joined
    with it, then that URL again with the encoded query, each time checking every character
    in Python: ~0.54 ms of CPU for a usage request's ~430 characters, against ~0.42 ms this
    way (the module doc)."""
    query = str(httpx.QueryParams(list(params)))
    base = str(base_url)
    # httpx's client ends its base path with "/"; a bare host prints without it.
    joined = f"{base}{'' if base.endswith('/') else '/'}{path.lstrip('/')}"
    return httpx.URL(f"{joined}?{query}" if query else joined)


def _error_fields(response: Answer) -> tuple[str | None, str | None, str | None]:
    """Stripe's error ``message``, ``code`` and ``param``, as far as the body has them."""
    try:
        error = json.loads(response.content).get("error")
    except (ValueError, UnicodeDecodeError, AttributeError):
        return None, None, None
    if not isinstance(error, dict):
        return None, None, None

    def text(key: str) -> str | None:
        value = error.get(key)
        return value if isinstance(value, str) else None

    return text("message"), text("code"), text("param")


def error_for(response: Answer, endpoint: str, budget: BudgetName) -> StripeAPIError:
    """The typed error for a non-2xx answer, with a message that says what to do."""
    stripe_message, code, param = _error_fields(response)
    status = response.status
    said = f": Stripe says {stripe_message!r}" if stripe_message else ""
    kind, message = _describe(status, endpoint, budget, param, response)
    error = kind(
        message + said,
        status=status,
        code=code,
        param=param,
        request_id=response.request_id,
    )
    decided = should_retry_header(response)
    if decided is not None:
        error.retryable = decided
    return error


def _describe(
    status: int, endpoint: str, budget: BudgetName, param: str | None, response: Answer
) -> tuple[type[StripeAPIError], str]:
    if status == 400:
        where = f"parameter {param!r}" if param else "a parameter"
        return InvalidRequestError, f"Stripe rejected {where} of the {endpoint} request"
    if status == 401:
        return AuthenticationError, (
            "Stripe rejected the API key (401): check STRIPE_API_KEY or stripe.api_key_file — "
            "the key may be mistyped, revoked, or belong to another account or mode"
        )
    if status == 403:
        needed = PERMISSIONS.get(endpoint, "read access to this resource")
        return PermissionDeniedError, (
            f"the restricted API key lacks a permission for {endpoint} (403): give it "
            f"{needed} in the Stripe Dashboard (Developers → API keys), or use another key"
        )
    if status == 404:
        return NotFoundError, _not_found(endpoint)
    if status == 409:
        return ConflictError, f"Stripe reported a conflict on {endpoint} (409); retried"
    if status == 429:
        reason = response.headers.get("Stripe-Rate-Limited-Reason", "rate limit")
        setting = "requests_per_second" if budget == "analytics" else "general_requests_per_second"
        return RateLimitError, (
            f"Stripe rate-limited the {budget} budget ({reason}) on {endpoint}: another job "
            f"may share the account; if this persists, lower stripe.{setting}"
        )
    if status >= 500:
        return StripeServerError, f"Stripe failed on {endpoint} (HTTP {status}); retried"
    return StripeAPIError, f"Stripe refused the {endpoint} request (HTTP {status})"


def _not_found(endpoint: str) -> str:
    if endpoint == ANALYTICS_ENDPOINT:
        return (
            "the Meter Usage Analytics API answered 404: this account is probably not enrolled "
            "in its preview (ask Stripe for access) or stripe.api_version is not a preview "
            "version; meanwhile set stripe.source: event_summaries"
        )
    if endpoint == "customer":
        return "no such Stripe customer: check the customer ids in the config and rules"
    if endpoint == "event_summaries":
        return ("no such Stripe meter: check the meter ids in the rules (`alertd check` names "
                "the account's meters when a rule's meter is missing; so does the Stripe "
                "Dashboard under Billing → Meters)")
    return f"Stripe answered 404 for {endpoint}"


@dataclass(frozen=True, slots=True)
class _Decoded(Generic[T]):
    body: T


@dataclass(frozen=True, slots=True)
class _NotJSON:
    """The body was not a JSON object (counted as ``malformed``)."""

    error: MalformedResponseError


@dataclass(frozen=True, slots=True)
class _Unreadable:
    """The body was JSON, but ``parse`` refused it (counted under its HTTP status)."""

    error: MalformedResponseError


#: The headers decoding reads (error messages): all a body sent to the decoder takes along.
_DECODING_HEADERS = ("Content-Type", "Request-Id")


def _portable(response: Answer) -> Answer:
    """``response`` with only the headers decoding reads, to send to the decoding process."""
    kept = {name: value for name in _DECODING_HEADERS
            if (value := response.headers.get(name)) is not None}
    return Answer(response.status, httpx.Headers(kept), response.content)


def _decode(response: Answer, endpoint: str, parse: BodyParser[T]
            ) -> _Decoded[T] | _NotJSON | _Unreadable:
    """Decode and read a 2xx body; pure, so it may run in the worker thread. Errors are
    returned, not raised, so the caller counts each under the right code. A
    :class:`QuickParser`'s quick reader is tried first."""
    if isinstance(parse, QuickParser):
        quick = parse.quick(response.content, response.request_id)
        if quick is not None:
            return _Decoded(quick)
    try:
        body = parse_json_object(response, endpoint)
    except MalformedResponseError as exc:
        return _NotJSON(exc)
    try:
        return _Decoded(parse(body, response.request_id))
    except MalformedResponseError as exc:
        return _Unreadable(exc)


class StripeHTTP:
    """An async context manager over ``httpx.AsyncClient`` for Stripe's API.

    ``requests`` counts every HTTP request sent (retries included). Collaborators come in
    through the constructor with production defaults: ``transport`` (tests pass an
    ``httpx.MockTransport``), ``clock`` (tests pass a ``FakeClock``, which makes backoff
    instant), ``budgets`` (share one :class:`Budgets` between clients of one account),
    ``observer`` (metrics) and ``rng`` (jitter). ``decode_in_process`` says whether large
    answers are decoded in a child process or a worker thread (:mod:`alertd.source.decoder`);
    ``None`` follows ``settings.decode_answers_in`` (``thread`` by default).
    """

    def __init__(
        self,
        settings: StripeSettings,
        api_key: SecretStr | None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock | None = None,
        budgets: Budgets | None = None,
        observer: RequestObserver | None = None,
        rng: random.Random | None = None,
        user_agent: str = USER_AGENT,
        decode_in_process: bool | None = None,
    ) -> None:
        self.settings = settings
        self.user_agent = user_agent
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.budgets = budgets if budgets is not None else Budgets.from_settings(
            settings, self.clock
        )
        self.requests = 0
        self._api_key = api_key
        self._transport = transport
        self._observer = observer
        self._rng = rng if rng is not None else random.Random()
        self._concurrency = {
            name: Concurrency(name, self.budgets.get(name).rate, settings.max_in_flight)
            for name in BUDGET_NAMES
        }
        self._client: ClientPool | None = None
        self._decoder: Decoder | None = None
        self._decode_in_process = (settings.decode_answers_in == "process"
                                   if decode_in_process is None else decode_in_process)

    def __repr__(self) -> str:
        return (
            f"StripeHTTP(api_base={self.settings.api_base!r}, "
            f"api_version={self.settings.api_version!r}, requests={self.requests})"
        )

    @property
    def closed(self) -> bool:
        """Whether no HTTP client is open (before ``async with``, or after it)."""
        return self._client is None

    async def __aenter__(self) -> StripeHTTP:
        headers = {
            "Stripe-Version": self.settings.api_version,
            "User-Agent": self.user_agent,
            "Accept": "application/json",
        }
        if self._api_key is not None:
            headers["Authorization"] = f"Bearer {self._api_key.get_secret_value()}"
        # A connection for every slot of every budget: a request that had its budget's turn
        # must not then queue for a connection, or its start would reach Stripe late and
        # bunched with later ones. Spread over small pools (alertd.source.pool): httpcore's
        # cost per request grows with the connections one pool holds.
        connections = self.settings.max_in_flight * len(BUDGET_NAMES)

        def make(transport: httpx.AsyncBaseTransport | None,
                 limits: httpx.Limits) -> httpx.AsyncClient:
            return httpx.AsyncClient(
                base_url=self.settings.api_base,
                headers=headers,
                timeout=httpx.Timeout(self.settings.timeout),
                limits=limits,
                transport=transport,
            )

        self._client = ClientPool(make, connections, transport=self._transport)
        self._decoder = Decoder(processes=self._decode_in_process)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        if self._decoder is not None:
            decoder, self._decoder = self._decoder, None
            await decoder.aclose()

    async def start_decoder(self) -> None:
        """Start the process that decodes large answers now rather than on the first one
        (which then waits for an interpreter to start); inside ``async with`` only."""
        if self._decoder is not None:
            await self._decoder.start()

    @property
    def decoder_pid(self) -> int | None:
        """The decoding process's id once started (its CPU is the client's too), else
        ``None``."""
        return self._decoder.pid if self._decoder is not None else None

    def shards(self) -> list[ShardStats]:
        """The HTTP client's pools (:mod:`alertd.source.pool`): in flight and connections."""
        return self._client.stats() if self._client is not None else []

    def concurrency(self, budget: BudgetName) -> ConcurrencyStats:
        """The in-flight limit of ``budget`` now, its measured latency and the most held."""
        return self._concurrency[budget].stats()

    async def get(
        self,
        path: str,
        params: list[tuple[str, str]],
        *,
        budget: BudgetName,
        endpoint: str,
    ) -> tuple[Any, str | None]:
        """The parsed JSON object and ``Request-Id`` of ``GET path?params``, after retries."""
        response = await self.request(path, params, budget=budget, endpoint=endpoint, parse=as_is)
        return response.body, response.request_id

    async def request(
        self,
        path: str,
        params: list[tuple[str, str]],
        *,
        budget: BudgetName,
        endpoint: str,
        parse: BodyParser[T],
    ) -> StripeResponse[T]:
        """Like :meth:`get`, with the body read by ``parse`` and the attempts counted.

        ``parse`` runs inside the retry loop, so a body of the wrong shape
        (:class:`MalformedResponseError` from ``parse``) is retried like an HTML page. Raises
        the :class:`~alertd.errors.SourceError` of the last attempt once retrying stops (see
        the module doc for when).
        """
        if self._api_key is None:
            raise AuthenticationError(
                "no Stripe API key: set STRIPE_API_KEY, stripe.api_key or stripe.api_key_file"
            )
        started = self.clock.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                began, response = await self._attempt(path, params, budget, endpoint)
                parsed = await self._decoded(response, endpoint, began, parse)
                return StripeResponse(parsed, response.request_id, attempt)
            except SourceError as exc:
                delay = self._retry_delay(exc, attempt, started)
                if delay is None:
                    raise
                log.warning(
                    "retrying Stripe request endpoint=%s status=%s code=%s request_id=%s "
                    "attempt=%d delay=%.2fs error=%s reason=%r",
                    endpoint, exc.status, exc.code, exc.request_id, attempt, delay,
                    type(exc).__name__, exc.message,
                )
                await self.clock.sleep(delay)

    def _retry_delay(self, exc: SourceError, attempt: int, started: float) -> float | None:
        """Seconds to wait before trying again after ``attempt`` failed, or ``None`` to stop."""
        if not exc.retryable or attempt > self.settings.max_retries:
            return None
        delay = backoff(attempt - 1, base=BACKOFF_BASE, cap=BACKOFF_CAP, rng=self._rng)
        elapsed = self.clock.monotonic() - started
        if elapsed + delay > self.settings.retry_max_elapsed:
            return None
        return delay

    async def _attempt(
        self, path: str, params: list[tuple[str, str]], budget: BudgetName, endpoint: str
    ) -> tuple[float, Answer]:
        """One exchange: the 2xx answer with the instant it began, else the typed error."""
        # The slot first, then the budget's turn: a request that had its turn is sent at once.
        concurrency = self._concurrency[budget]
        async with concurrency.slot():
            start = await self.budgets.get(budget).start()
            self.requests += 1
            began = self.clock.monotonic()
            try:
                response = await self._send(path, params, endpoint, began, start)
            except SourceError:
                concurrency.observe(self.clock.monotonic() - began)
                raise
            finally:
                # Not sent (an error before), or sent where no trace told (a mock transport):
                # count it as sent now, so the budget's log never waits for it.
                start.sent(self.clock.monotonic())
            concurrency.observe(self.clock.monotonic() - began)
        self._judge(response, endpoint, budget, began)
        return began, response

    def _tracer(self, start: Start) -> Callable[[str, dict[str, Any]], Awaitable[None]]:
        """httpcore's ``trace`` extension: marks ``start`` sent once the request headers (the
        request line among them) are written to the socket."""
        clock = self.clock

        async def trace(event: str, info: dict[str, Any]) -> None:
            if event.endswith("send_request_headers.complete"):
                start.sent(clock.monotonic())

        return trace

    async def _send(
        self, path: str, params: list[tuple[str, str]], endpoint: str, began: float,
        start: Start,
    ) -> Answer:
        if self._client is None:
            raise RuntimeError("StripeHTTP is used outside 'async with'")
        try:
            # httpx bounds each network operation; this bounds the whole exchange, body
            # included, so a body that drips in slowly cannot hold a poll for long.
            async with asyncio.timeout(self.settings.timeout), \
                    self._client.client() as client:
                request = client.build_request(
                    "GET", request_url(client.base_url, path, params),
                    extensions={"trace": self._tracer(start)})
                response = await client.send(request, stream=True)
                try:
                    content = await self._read_capped(response, endpoint, began)
                finally:
                    await response.aclose()
        except (httpx.TimeoutException, TimeoutError):
            self._observe(endpoint, "timeout", began)
            raise StripeTimeoutError(
                f"Stripe did not answer {endpoint} in full within {self.settings.timeout:g}s "
                "(stripe.timeout)"
            ) from None
        except httpx.TransportError as exc:
            self._observe(endpoint, "connection_error", began)
            raise StripeConnectionError(
                f"could not reach Stripe at {self.settings.api_base} for {endpoint}: "
                f"{type(exc).__name__} {exc}; check the network or stripe.api_base"
            ) from None
        return Answer(response.status_code, response.headers, content)

    async def _read_capped(self, response: httpx.Response, endpoint: str, began: float) -> bytes:
        """The (decoded) body, or :class:`ResponseTooLargeError` once it passes the cap."""
        cap = self.settings.max_response_bytes
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > cap:
            self._too_large(response, endpoint, began, f"{declared} bytes declared")
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > cap:
                self._too_large(response, endpoint, began, f"more than {cap} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def _too_large(
        self, response: httpx.Response, endpoint: str, began: float, seen: str
    ) -> NoReturn:
        request_id = response.headers.get("Request-Id")
        cap = self.settings.max_response_bytes
        self._observe(endpoint, "too_large", began)
        log.warning("Stripe answer too large, not read endpoint=%s status=%d request_id=%s "
                    "size=%r cap=%d", endpoint, response.status_code, request_id, seen, cap)
        raise ResponseTooLargeError(
            f"Stripe's answer from {endpoint} was larger than stripe.max_response_bytes "
            f"({seen}, cap {cap}); it was not read. Narrow the rule (fewer group values, a "
            "shorter history) or raise stripe.max_response_bytes",
            status=response.status_code, request_id=request_id,
        )

    def _judge(self, response: Answer, endpoint: str, budget: BudgetName, began: float) -> None:
        """Nothing for a 2xx answer (its body is decoded next); else the typed error."""
        status = response.status
        if 200 <= status < 300:
            return
        self._observe(endpoint, str(status), began, response)
        if status == 429:
            self.budgets.get(budget).penalize()
            if self._observer is not None:
                self._observer.on_rate_limited(budget)
        raise error_for(response, endpoint, budget)

    async def _decoded(self, response: Answer, endpoint: str, began: float,
                       parse: BodyParser[T]) -> T:
        """A 2xx body as JSON, then read by ``parse``: in the decoding process when it is at
        least :data:`OFFLOAD_BYTES` long (see the module doc), else here. The answer's
        time is taken before decoding: it is Stripe's, not the decoder queue's."""
        answered = self.clock.monotonic()
        if len(response.content) < OFFLOAD_BYTES or self._decoder is None:
            decoded = _decode(response, endpoint, parse)
        else:
            decoded = await self._decoder.run(_decode, _portable(response), endpoint, parse)
        if isinstance(decoded, _NotJSON):
            self._observe(endpoint, "malformed", began, response, answered)
            raise decoded.error
        self._observe(endpoint, str(response.status), began, response, answered)
        if isinstance(decoded, _Unreadable):
            raise decoded.error
        return decoded.body

    def _observe(
        self, endpoint: str, code: str, began: float, response: Answer | None = None,
        answered: float | None = None,
    ) -> None:
        seconds = (self.clock.monotonic() if answered is None else answered) - began
        log.debug(
            "stripe request endpoint=%s code=%s request_id=%s seconds=%.3f",
            endpoint, code, response.request_id if response else None, seconds,
        )
        if self._observer is not None:
            self._observer.on_response(endpoint, code, seconds)

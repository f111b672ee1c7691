"""The Stripe simulator: a real loopback HTTP server (aiohttp) in front of the usage generator.

Every request to ``/v1/…`` passes the same edge, in Stripe's order: authentication (401),
permission and preview enrolment (403/404), rate limit (429, analytics and general requests in
separate sliding 1-second windows), injected faults, then the endpoint; every response carries
a unique ``Request-Id`` and, if configured, a fixed extra latency. ``/__…`` endpoints are the
simulator's own controls (incidents, clock, faults, stats) and skip the edge.

Answers are built off the event loop. The edge stamps a request's arrival (the instant the rate
limit and ``/__stats`` count) when the loop first sees it; built on the loop, a large
``meter_usage`` answer (tens of milliseconds of generator and JSON work) held back every request
that arrived meanwhile, which were then stamped late and together — a client that kept its 100/s
budget to the millisecond saw 429s and "seconds over the limit" that it never sent. So
:meth:`Simulator.build` runs each answer in one dedicated builder thread (one: answers are built
in arrival order, as before, and the generator is never used by two threads at once), and the
loop only parses, stamps and writes. Python's GIL still shares one core between them; the
simulator's own process (:func:`run`) switches every millisecond instead of every five, so
arrivals are stamped within about that of their real instant.

==========================================================  ======================================
endpoint                                                    notes
==========================================================  ======================================
``GET /v1/billing/analytics/meter_usage``                   both response shapes and filter forms
                                                            by ``Stripe-Version``
``GET /v1/billing/meters[/{id}]``                           list (paged) and retrieve
``GET /v1/billing/meters/{id}/event_summaries``             hour/day UTC windows, paged, newest
                                                            first
``GET /v1/customers``, ``/v1/customers/{id}``,              list (newest first, paged), retrieve,
``/v1/customers/search``                                    search (``page``/``next_page``)
``GET /v1/subscriptions?customer=``, ``/v1/prices/{id}``      billing (:mod:`alertd.sim.billing`):
``GET|POST /v1/billing/credit_grants``,                     items with their own periods, prices
``GET /v1/billing/credit_balance_summary``                  (``expand[]=tiers``), grants, balances
``GET /__incidents?since=&until=&customer=&kind=&meter=``   the labelled incidents
``GET|POST /__now``                                         the server clock (``{"now": T}``,
                                                            ``{"advance": S}``, ``{"now": null}``)
``GET|POST|DELETE /__faults``                               list, add (a fault or a list), clear
``GET /__stats``, ``POST /__stats/reset``                   traffic statistics
==========================================================  ======================================

Why over 400 lines: Stripe's request edge in its order (auth, permission, rate limit, faults)
and the endpoints it guards; the generator, faults and request validation already live in their
own modules.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import dataclasses
import itertools
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web

from alertd.sim.billing_endpoints import add_routes
from alertd.sim.controls import Controls
from alertd.sim.endpoints import LIVEMODE, StripeEndpoints
from alertd.sim.faults import Fault, FaultAction, FaultPlan, break_body
from alertd.sim.generator import UsageGenerator
from alertd.sim.profiles import METERS
from alertd.sim.stripe_form import StripeRequestError
from alertd.sim.traffic import Budget, RateLimiter, TrafficStats

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
T = TypeVar("T")
_KEY_PREFIXES = ("sk_test_", "sk_live_", "rk_test_", "rk_live_")
_RATE_MESSAGE = (
    "Request rate limit exceeded. You can learn more about rate limits here "
    "https://stripe.com/docs/rate-limits."
)


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """How the simulated account behaves.

    ``lag``: ``refreshed_at`` is the server clock minus this many seconds. ``max_rows``: more
    analytics rows than this → the first ones and ``has_more: true``. ``analytics_rate`` /
    ``general_rate``: requests per sliding second (``None``: unlimited); ``endpoint_rate``: an
    extra per-endpoint limit on general requests. ``latency``: seconds added to every response.
    ``api_keys``: the accepted keys (``None``: any ``sk_test_``/``sk_live_``/``rk_…`` key);
    ``no_analytics_keys`` get 403 on analytics. ``analytics_preview=False``: analytics answers
    404, as for an account not enrolled in the preview. ``default_version``: the account's API
    version, used when a request sends no ``Stripe-Version``.
    """

    lag: float = 60.0
    max_rows: int = 5000
    analytics_rate: int | None = 100
    general_rate: int | None = 25
    endpoint_rate: int | None = None
    latency: float = 0.0
    api_keys: frozenset[str] | None = None
    no_analytics_keys: frozenset[str] = frozenset({"rk_test_no_analytics"})
    analytics_preview: bool = True
    default_version: str = "2025-09-30.preview"


class SimClock:
    """The server's wall clock: real time, or a frozen instant that tests move by hand."""

    def __init__(self, frozen: float | None = None) -> None:
        self.frozen = frozen

    def now(self) -> float:
        return time.time() if self.frozen is None else self.frozen

    def set(self, instant: float | None) -> None:
        self.frozen = instant

    def advance(self, seconds: float) -> None:
        self.frozen = self.now() + seconds


class _Limits:
    """One rate limiter per budget, plus optional per-endpoint limiters for general requests."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.budgets: dict[Budget, RateLimiter] = {
            "analytics": RateLimiter(config.analytics_rate),
            "general": RateLimiter(config.general_rate),
        }
        self.endpoint_rate = config.endpoint_rate
        self.endpoints: dict[str, RateLimiter] = {}

    def limit(self, budget: Budget) -> int | None:
        return self.budgets[budget].rate

    def check(self, budget: Budget, endpoint: str, now: float) -> None:
        if not self.budgets[budget].admit(now):
            raise _rate_limited("endpoint-rate" if budget == "analytics" else "global-rate")
        if budget == "general" and self.endpoint_rate is not None:
            limiter = self.endpoints.setdefault(endpoint, RateLimiter(self.endpoint_rate))
            if not limiter.admit(now):
                raise _rate_limited("endpoint-rate")


def _rate_limited(reason: str, should_retry: bool | None = None) -> StripeRequestError:
    headers = {"Stripe-Rate-Limited-Reason": reason}
    if should_retry is not None:
        headers["Stripe-Should-Retry"] = "true" if should_retry else "false"
    return StripeRequestError(429, _RATE_MESSAGE, code="rate_limit", headers=headers)


class Simulator:
    """The simulator as an async context manager::

        async with Simulator(UsageGenerator(customers=5, seed=1), port=0) as sim:
            httpx.get(f"{sim.url}/v1/customers", auth=("sk_test_x", ""))

    ``now``: freeze the server clock at this instant (default: real time; either way
    :meth:`set_now` and :meth:`advance` move it). Faults, clock and stats are also reachable
    over HTTP (``/__faults``, ``/__now``, ``/__stats``) for a simulator in another process.
    """

    def __init__(
        self,
        generator: UsageGenerator,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        config: SimulatorConfig | None = None,
        now: float | None = None,
    ) -> None:
        self.generator = generator
        self.host = host
        self.port = port
        self._config = config or SimulatorConfig()
        self.clock = SimClock(now)
        self.faults = FaultPlan()
        self.traffic = TrafficStats()
        self._limits = _Limits(self._config)
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._builder: concurrent.futures.ThreadPoolExecutor | None = None
        self.app = self._build_app()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        addresses = self._runner.addresses
        self.port = int(addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._builder is not None:
            self._builder.shutdown(wait=True)
            self._builder = None

    async def build(self, answer: Callable[[], T]) -> T:
        """``answer()`` run in the builder thread, the loop free meanwhile (see the module)."""
        if self._builder is None:
            self._builder = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="sim-builder")
        return await asyncio.get_running_loop().run_in_executor(self._builder, answer)

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # ------------------------------------------------------------------ controls

    @property
    def config(self) -> SimulatorConfig:
        return self._config

    def configure(self, **changes: Any) -> SimulatorConfig:
        """Change the configuration while running (rate limits start afresh)."""
        self._config = dataclasses.replace(self._config, **changes)
        self._limits = _Limits(self._config)
        return self._config

    def now(self) -> float:
        return self.clock.now()

    def set_now(self, instant: float | None) -> None:
        """Freeze the server clock at ``instant`` (``None``: back to real time)."""
        self.clock.set(instant)

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    def refreshed_at(self) -> int:
        return int(self.clock.now() - self._config.lag)

    def add_fault(self, fault: Fault) -> None:
        self.faults.add(fault)

    def clear_faults(self) -> None:
        self.faults.clear()

    def stats(self) -> dict[str, Any]:
        return self.traffic.to_json()

    def reset_stats(self) -> None:
        self.traffic.reset()

    # ------------------------------------------------------------------ application

    def _build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._edge])
        get, stripe = app.router.add_get, StripeEndpoints(self)
        get("/v1/billing/analytics/meter_usage", stripe.meter_usage, name="meter_usage")
        get("/v1/billing/meters", stripe.meters, name="meters.list")
        get("/v1/billing/meters/{meter}", stripe.meter, name="meters.retrieve")
        get("/v1/billing/meters/{meter}/event_summaries", stripe.summaries,
            name="event_summaries")
        get("/v1/customers", stripe.customers, name="customers.list")
        get("/v1/customers/search", stripe.search, name="customers.search")
        get("/v1/customers/{customer}", stripe.customer, name="customers.retrieve")
        self.billing = add_routes(app, self).billing
        controls = Controls(self)
        get("/__incidents", controls.incidents)
        get("/__now", controls.get_now)
        app.router.add_post("/__now", controls.set_now)
        get("/__stats", controls.stats)
        app.router.add_post("/__stats/reset", controls.reset_stats)
        get("/__faults", controls.faults)
        app.router.add_post("/__faults", controls.add_faults)
        app.router.add_delete("/__faults", controls.clear_faults)
        return app

    def _request_id(self) -> str:
        return f"req_sim{next(self._ids):07d}{os.urandom(4).hex()}"

    @web.middleware
    async def _edge(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        request_id = self._request_id()
        if request.path.startswith("/__"):
            response = await handler(request)
            response.headers["Request-Id"] = request_id
            return response
        endpoint = request.match_info.route.name or "unknown"
        budget: Budget = "analytics" if endpoint == "meter_usage" else "general"
        self.traffic.arrive(budget, endpoint, time.monotonic(),
                            request.headers.get("User-Agent", ""), self._limits.limit(budget))
        status = 500
        try:
            response, delay = await self._answer(request, handler, budget, endpoint, request_id)
            status = response.status
            response.headers["Request-Id"] = request_id
            if delay > 0:
                await asyncio.sleep(delay)
            return response
        finally:
            self.traffic.finish(status)

    async def _answer(
        self, request: web.Request, handler: Handler, budget: Budget, endpoint: str,
        request_id: str,
    ) -> tuple[web.Response, float]:
        delay = self._config.latency
        try:
            key = _api_key(request.headers.get("Authorization"), self._config)
            request[LIVEMODE] = "_live_" in key
            self._authorize(key, endpoint)
            self._limits.check(budget, endpoint, time.monotonic())
            action = self.faults.decide(request.path, request.query.get("customer"))
            delay += action.delay if action else 0.0
            if action is not None and action.fail:
                raise _fault_error(action)
            response = await handler(request)
            if not isinstance(response, web.Response):
                raise TypeError("simulator handlers return web.Response")
            return _maybe_broken(response, action), delay
        except StripeRequestError as error:
            return _error_response(error, request_id), delay
        except web.HTTPException as error:
            refusal = StripeRequestError(
                error.status,
                f"Unrecognized request URL ({request.method}: {request.path}). Please see "
                "https://stripe.com/docs or we can help at https://support.stripe.com/.",
            )
            return _error_response(refusal, request_id), delay

    def _authorize(self, key: str, endpoint: str) -> None:
        if endpoint != "meter_usage":
            return
        if key in self._config.no_analytics_keys:
            raise StripeRequestError(
                403,
                f"The provided key '{_redact(key)}' does not have the required permissions for "
                "this endpoint on account 'acct_sim'. Having the 'rak_billing_meter_usage_read' "
                "permission would allow this request to continue.",
            )
        if not self._config.analytics_preview:
            raise StripeRequestError(
                404,
                "Unrecognized request URL (GET: /v1/billing/analytics/meter_usage). This "
                "account is not enrolled in the Meter Usage Analytics preview.",
            )


def _api_key(header: str | None, config: SimulatorConfig) -> str:
    if not header:
        raise StripeRequestError(
            401,
            "You did not provide an API key. You need to provide your API key in the "
            "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
            "YOUR_SECRET_KEY').",
        )
    scheme, _, value = header.partition(" ")
    key = value.strip()
    if scheme.lower() == "basic":
        try:
            key = base64.b64decode(key, validate=True).decode().partition(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            key = ""
    elif scheme.lower() != "bearer":
        key = ""
    accepted = (
        key in config.api_keys if config.api_keys is not None
        else key.startswith(_KEY_PREFIXES) and len(key) > 8
    )
    if not accepted:
        raise StripeRequestError(401, f"Invalid API Key provided: {_redact(key)}")
    return key


def _redact(key: str) -> str:
    return f"{key[:8]}{'*' * 12}{key[-4:]}" if len(key) > 12 else "*" * len(key)


def _fault_error(action: FaultAction) -> StripeRequestError:
    fault = action.fault
    status = fault.effective_status
    headers = {}
    if fault.should_retry is not None:
        headers["Stripe-Should-Retry"] = "true" if fault.should_retry else "false"
    if status == 429:
        return _rate_limited("global-rate", fault.should_retry)
    if status == 409:
        return StripeRequestError(
            409,
            "This object cannot be accessed right now because another API request or Stripe "
            "process is currently accessing it. Please retry.",
            code="lock_timeout", headers=headers,
        )
    if status >= 500:
        message = (
            "Stripe is temporarily unavailable. Please try again." if status == 503
            else "An unknown error occurred. Please retry."
        )
        return StripeRequestError(status, message, type="api_error", headers=headers)
    return StripeRequestError(status, f"Injected error {status}.", headers=headers)


def _maybe_broken(response: web.Response, action: FaultAction | None) -> web.Response:
    if action is None or action.body is None or response.status != 200 or response.text is None:
        return response
    text, content_type = break_body(response.text, action.body)
    return web.Response(
        status=action.fault.effective_status, text=text, content_type=content_type,
        headers={k: v for k, v in response.headers.items() if k.lower().startswith("stripe-")},
    )


def _error_response(error: StripeRequestError, request_id: str) -> web.Response:
    return web.Response(
        status=error.status,
        text=json.dumps(error.body(request_id)),
        content_type="application/json",
        headers=error.headers,
    )


# ---------------------------------------------------------------------- blocking entry point


def run(
    port: int = 12111,
    customers: int = 50,
    seed: int = 1,
    days: int = 90,
    *,
    host: str = "127.0.0.1",
    start: int | None = None,
    now: float | None = None,
    incident_rate: float = 1.0,
    analytics_rate: int | None = 100,
    general_rate: int | None = 25,
    latency: float = 0.0,
    lag: float = 60.0,
    print_line: Callable[[str], None] | None = None,
) -> None:
    """Serve a simulator until Ctrl-C or SIGTERM (``alertd simulate``, ``python -m alertd.sim``).

    The first line printed is ``listening on URL``. ``now`` freezes the server clock (and ends
    the history there); by default the history ends at the real present and time runs.
    """
    generator = UsageGenerator(
        customers=customers, seed=seed, days=days, start=start, now=now,
        incident_rate=incident_rate,
    )
    config = SimulatorConfig(
        analytics_rate=analytics_rate, general_rate=general_rate, latency=latency, lag=lag
    )
    sim = Simulator(generator, host=host, port=port, config=config, now=now)
    # The builder thread hands the GIL back to the loop every switch interval (5 ms by
    # default); at 1 ms the loop stamps arrivals within about that of their real instant.
    sys.setswitchinterval(0.001)
    asyncio.run(_serve(sim, print_line or _say))


def _say(line: str) -> None:
    print(line, flush=True)


async def _serve(sim: Simulator, print_line: Callable[[str], None]) -> None:
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with sim:
        generator = sim.generator
        print_line(f"listening on {sim.url}")
        print_line(
            f"  {generator.customer_count} customers, seed {generator.seed}, history from "
            f"{time.strftime('%Y-%m-%d', time.gmtime(generator.history_start))}; meters "
            f"{', '.join(m.id for m in METERS)}"
        )
        print_line(
            "  any sk_test_… key works; GET /__incidents, /__stats, /__now; Ctrl-C stops"
        )
        await stop.wait()

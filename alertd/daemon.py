"""``alertd run``: the long-running daemon. Lifecycle only.

Everything the daemon decides is decided elsewhere (engine, lifecycle, pipeline); this module
owns the process: it loads a :class:`~alertd.runtime.World`, opens the state store, the Stripe
client, the notifiers and the metrics server, schedules one APScheduler job per poll group,
runs the notification timers and the outbox worker, and talks to systemd.

Signals only set events (style principle 9); the main loop acts on them:

* ``SIGHUP``: build and validate a complete new world. Valid: swap it in (new Stripe client and
  notifiers if their settings changed), reschedule, and resolve the alerts of rules that were
  removed. Invalid: keep the running world, log every problem, ``STATUS=reload failed: …``.
  Either way ``READY=1`` follows ``RELOADING=1``.
* ``SIGTERM``/``SIGINT``: stop scheduling polls, let running polls finish (bounded), let the
  outbox finish the deliveries in flight (what is not delivered stays in the outbox), exit 0.

Poll groups: rules with the same ``every`` are polled together, so one fetch serves every rule
that needs the same data (the planner merges their needs); APScheduler runs each group with
``max_instances=1`` and ``coalesce``, and a little jitter so groups do not start in lockstep.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections import defaultdict
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from alertd.alerts import STALE_DATA
from alertd.clock import Clock, SystemClock, iso
from alertd.engine import Engine, PassResult
from alertd.errors import EXIT_CONFIG, EXIT_OK, ConfigError, SourceError
from alertd.logs import configure
from alertd.metrics import Metrics
from alertd.notify.email import SmtpFactory
from alertd.notify.factory import notifiers
from alertd.notify.outbox import Outbox
from alertd.notify.pipeline import Pipeline
from alertd.notify.routing import RouteTree
from alertd.recording import meta_findings, poll_failed, record_pass
from alertd.runtime import StripeStack, World, load_world, stripe_stack
from alertd.server import Health, serve
from alertd.store.sqlite import SqliteStore
from alertd.systemd import SystemdNotifier

log = logging.getLogger("alertd.daemon")

#: How long a stop waits for running polls before leaving them.
STOP_GRACE = 20.0


class _Live:
    """The swappable part of the daemon: one world and the services built from it."""

    def __init__(self, world: World, stack: AsyncExitStack, stripe: StripeStack,
                 pipeline: Pipeline, outbox: Outbox) -> None:
        self.world = world
        self.stack = stack
        self.stripe = stripe
        self.pipeline = pipeline
        self.outbox = outbox
        self.engine = Engine(world.settings, world.rules, stripe.source, stripe.directory)


class Daemon:
    """One alertd process. Collaborators come in through the constructor (tests pass a fake
    clock's sibling, a notify socket, transports pointing at loopback servers)."""

    def __init__(
        self,
        config: str | Path | None,
        *,
        clock: Clock | None = None,
        systemd: SystemdNotifier | None = None,
        stripe_transport: httpx.AsyncBaseTransport | None = None,
        smtp_factory: SmtpFactory | None = None,
        every_override: float | None = None,
        on_delivered: Callable[[Any], None] | None = None,
    ) -> None:
        self.config = config
        self.clock: Clock = clock or SystemClock()
        self.systemd = systemd or SystemdNotifier()
        self.metrics = Metrics()
        self.health = Health()
        self.stop_event = asyncio.Event()
        self.reload_event = asyncio.Event()
        self._stripe_transport = stripe_transport
        self._smtp_factory = smtp_factory
        self._every_override = every_override
        self._on_delivered = on_delivered
        self._live: _Live | None = None
        self._scheduler: AsyncIOScheduler | None = None
        self._store: SqliteStore | None = None
        self._failures = 0
        self._last_poll: int | None = None
        self._polls: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> int:
        try:
            world = load_world(self.config)
        except ConfigError as exc:
            for problem in exc.problems:
                log.error("config problem %s", problem)
            return EXIT_CONFIG
        configure(world.settings.log_level, world.settings.log_format)
        self._install_signals()
        async with AsyncExitStack() as stack:
            self._store = await stack.enter_async_context(SqliteStore(world.settings.state_path()))
            await self._serve_metrics(stack, world)
            self._live = await self._build(world)
            stack.push_async_callback(self._close_live)
            self._start_scheduler()
            self.systemd.ready(self._status())
            log.info("started rules=%d config=%s", len(world.rules.rules), world.config_path)
            await self._main_loop()
            self.systemd.stopping("stopping")
            await self._shutdown()
        log.info("stopped")
        return EXIT_OK

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, self.reload_event.set)
        loop.add_signal_handler(signal.SIGTERM, self.stop_event.set)
        loop.add_signal_handler(signal.SIGINT, self.stop_event.set)

    async def _serve_metrics(self, stack: AsyncExitStack, world: World) -> None:
        listen = world.settings.server.listen
        if listen:
            url = await stack.enter_async_context(
                serve(listen, self.metrics, self.health, self.clock)
            )
            log.info("serving metrics url=%s/metrics", url)

    async def _main_loop(self) -> None:
        beat = self.systemd.watchdog_interval / 2 if self.systemd.watchdog_interval else 10.0
        self.health.beat_tolerance = max(3 * beat, 60.0)
        while not self.stop_event.is_set():
            self.health.last_beat = self.clock.now()
            self.systemd.watchdog()
            await self._wait_any(beat)
            if self.reload_event.is_set() and not self.stop_event.is_set():
                self.reload_event.clear()
                await self.reload()

    async def _wait_any(self, timeout: float) -> None:
        waiters = [asyncio.ensure_future(self.stop_event.wait()),
                   asyncio.ensure_future(self.reload_event.wait())]
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def _shutdown(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
        if self._polls:
            await asyncio.wait(self._polls, timeout=STOP_GRACE)
        if self._live is not None:
            await self._live.outbox.drain(timeout=STOP_GRACE)

    # ------------------------------------------------------------------ world

    async def _build(self, world: World) -> _Live:
        """Open the services of ``world``; on failure nothing stays open."""
        assert self._store is not None
        stack = AsyncExitStack()
        try:
            stripe = await stack.enter_async_context(stripe_stack(
                world.settings, clock=self.clock, metrics=self.metrics,
                transport=self._stripe_transport,
            ))
            built = await stack.enter_async_context(notifiers(
                world.settings, clock=self.clock, smtp_factory=self._smtp_factory,
            ))
            outbox = Outbox(self._store, built, world.settings.delivery, clock=self.clock,
                            metrics=self.metrics, on_delivered=self._on_delivered)
            pipeline = Pipeline(self._store, RouteTree.from_settings(world.settings),
                                world.settings.receivers, on_commit=outbox.wake)
            await outbox.start()
            stack.push_async_callback(outbox.stop)
            await pipeline.start(self.clock)
            stack.push_async_callback(pipeline.stop)
        except BaseException:
            await stack.aclose()
            raise
        return _Live(world, stack, stripe, pipeline, outbox)

    async def _close_live(self) -> None:
        if self._live is not None:
            await self._live.stack.aclose()

    async def reload(self) -> bool:
        """Swap in a freshly validated world; keep the old one when the new one is invalid."""
        self.systemd.reloading("reloading configuration")
        assert self._live is not None
        try:
            world = load_world(self._live.world.config_path or self.config)
            new = await self._build(world)
        except ConfigError as exc:
            for problem in exc.problems:
                log.error("reload refused problem=%s", problem)
            first = exc.problems[0] if exc.problems else "invalid configuration"
            self.systemd.ready(f"reload failed: {first}; still running the previous config")
            return False
        old, self._live = self._live, new
        removed = set(old.world.rules.names()) - set(world.rules.names())
        self._reschedule()
        await self._resolve_removed(removed)
        await old.stack.aclose()
        log.info("reloaded rules=%d removed=%d", len(world.rules.rules), len(removed))
        self.systemd.ready(self._status())
        return True

    async def _resolve_removed(self, removed: set[str]) -> None:
        if removed and self._live is not None:
            await self._live.pipeline.retire_rules(
                sorted(removed), int(self.clock.now()), note="rule removed from the configuration"
            )

    # ------------------------------------------------------------------ polling

    def poll_groups(self) -> dict[float, tuple[str, ...]]:
        """Rule names by evaluation interval (``every_override`` folds them into one group)."""
        assert self._live is not None
        groups: dict[float, list[str]] = defaultdict(list)
        for rule in self._live.world.rules:
            groups[self._every_override or rule.every].append(rule.name)
        return {every: tuple(names) for every, names in sorted(groups.items())}

    def _start_scheduler(self) -> None:
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        self._scheduler.start()
        self._reschedule()

    def _reschedule(self) -> None:
        assert self._scheduler is not None
        self._scheduler.remove_all_jobs()
        for every, names in self.poll_groups().items():
            self._scheduler.add_job(
                self._poll_job, "interval", seconds=every, args=[names],
                id=f"poll-{every:g}s", name=f"poll every {every:g}s ({len(names)} rules)",
                jitter=min(every * 0.05, 15.0), max_instances=1, coalesce=True,
                next_run_time=datetime.now(UTC), misfire_grace_time=int(every),
            )

    async def _poll_job(self, names: tuple[str, ...]) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._polls.add(task)
        try:
            if not self.stop_event.is_set():
                await self.poll(names)
        except Exception:
            log.exception("poll failed unexpectedly rules=%s", ",".join(names))
        finally:
            if task is not None:
                self._polls.discard(task)

    async def poll(self, names: tuple[str, ...]) -> PassResult | None:
        """One poll of ``names``: fetch, evaluate, record. Source failures are counted and
        raise the source-failure meta alert; they never turn into usage verdicts."""
        live = self._live
        assert live is not None
        now = int(self.clock.now())
        try:
            result = await live.engine.run_pass(now, rule_names=names)
            meters = await live.stripe.directory.meters()
        except SourceError as exc:
            log.error("poll failed rules=%d error=%s request_id=%s", len(names), exc,
                      exc.request_id)
            self._failures += 1
            self.health.stale_reason = f"Stripe failing: {exc}"
            return None
        self._failures = self._failures + 1 if poll_failed(result) else 0
        extra = meta_findings(result, live.world.settings, self._failures)
        await record_pass(live.pipeline, live.world.rules, result, meters, extra=extra)
        self._observe(result, extra)
        return result

    def _observe(self, result: PassResult, extra: list[Any]) -> None:
        self._last_poll = result.now
        self.health.first_poll_done = True
        stale = any(f.key.rule == STALE_DATA and f.active for f in extra)
        failing = self._failures >= (self._live.world.settings.stripe.failure_alert_after
                                     if self._live else 3)
        self.health.stale_reason = (
            "usage data is stale" if stale else "Stripe keeps failing" if failing else None
        )
        if result.refreshed_at is not None:
            self.metrics.stripe_refreshed.set(result.refreshed_at)
        for finding in result.findings:
            self.metrics.rule_evaluations.labels(rule=finding.rule, outcome=finding.state).inc()
            self.metrics.rule_last_evaluation.labels(rule=finding.rule).set(result.now)
        self.systemd.status(self._status())

    def _status(self) -> str:
        if self._live is None:
            return "starting"
        world = self._live.world
        last = iso(self._last_poll) or "not yet"
        return f"{len(world.rules.rules)} rules; last poll {last}"

    @property
    def states(self) -> Mapping[str, int]:
        """Alert counts by state, for the ``alertd_alerts`` gauge."""
        return {}

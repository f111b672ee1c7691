"""``alertd run``: the long-running daemon. Lifecycle only.

Everything the daemon decides is decided elsewhere (engine, lifecycle, pipeline; one poll is
:mod:`alertd.service.polling`, one configuration's services :mod:`alertd.service.open`). This
module owns the process: the state store, the metrics server, the heartbeat, the scheduler,
signals and systemd. Signals only set events (style principle 9); the main loop acts on them:

* ``SIGHUP``: ``RELOADING=1`` + ``MONOTONIC_USEC``; check the whole new configuration as
  ``alertd validate`` does and open its services. Valid: pause polling (running polls finish),
  stop the old notification timer and outbox (so no group is flushed and no row sent twice),
  swap in the new world, reschedule, resolve the alerts of removed rules. Alert state lives in
  the store by series identity, so it carries over; the Stripe client (one rate budget, warm
  customer cache) is kept when its settings did not change. Refused: everything keeps running,
  every problem is logged, ``STATUS=reload failed: …``. Either way ``READY=1`` follows.
* ``SIGTERM``/``SIGINT``: ``STOPPING=1``; no new polls; running polls, then deliveries in
  flight, get a bounded grace (together well within the unit's ``TimeoutStopSec=45s``); exit 0.
  What is not delivered stays in the outbox for the next start. A second signal ends the grace.

* Start-up refusals (the state file locked by another process, unwritable or damaged, the
  metrics address in use, a configuration problem) are one log line each and exit 2.
* The state store failing at run time (:class:`StoreWatch`): counted in
  ``alertd_store_errors_total{kind}``, ``/readyz`` 503 with the reason, and one error line
  per run of failures saying how to recover; a damaged file keeps alertd unready until it is
  restarted on a good file.

Poll groups: rules with the same ``every`` are one APScheduler job (``max_instances=1``,
``coalesce``, a little jitter so groups do not start in lockstep), so one fetch serves every
rule of a group that needs the same data. With ``schedule.deadlines`` (the default) a job runs
every ``schedule.tick`` and reads only the customers whose deadline has come
(:mod:`alertd.service.schedule`); a reload starts with no deadlines, so everyone is due. The
keep-alive (``WATCHDOG=1`` at half ``WATCHDOG_USEC``, ``/healthz``) runs on its own task so a
long reload never starves it.

A poll that takes its job's interval or longer (a large account read in full at ``every``, or
a tick whose reads came slower than the budget) is followed by the next one at once. The
scheduler skips the ticks that fall during a run (``max_instances=1``; its warning is hidden
with the rest of APScheduler's logging), so the next poll would start only at the next tick, up
to one whole interval after the slow one ended, and the data would go stale for up to twice
``every`` without a word. Instead the job's ``next_run_time`` becomes now (the interval goes on
from that run) and one INFO line says what to change (``poll overran its interval``). The job
is moved once APScheduler counts the run as ended (:meth:`Daemon._poll_again`, on its
``EVENT_JOB_EXECUTED``: moved from inside the run, the scheduler would skip the new run as one
instance too many), and only while it is the job that ran (:class:`PollSlot`): a stop or
reload that removed it, or a reload or takeover that replaced it, keeps its own schedule.

Replicas (``state.url``, PostgreSQL): the daemon takes or waits for the account's lease
(:mod:`alertd.service.leader`) before its world opens; poll jobs run only while it leads, the
world records through a store fenced by the lease, becoming leader settles what the start
could not (:mod:`alertd.service.settling`: alerts of accounts and rules the configuration
dropped) and reschedules the polls to run at once, and losing the lease cancels the polls in
flight. ``/readyz`` and ``STATUS=`` name the role; a stop releases the lease first, so the
standby takes over while this process finishes its deliveries. With a SQLite file the one
process holding its lock leads, without a lease.

Several Stripe accounts (``accounts:``, :mod:`alertd.accounts`): the world has one lane per
account (:class:`~alertd.service.open.Lane`: client, engine, pipeline on a store that shows
it only its own alerts), and the daemon one lease, poller and set of poll jobs per account.
The leases are spread over the replicas (:mod:`alertd.service.spread`); gaining an account's
lease reschedules that account's polls to run at once, losing it cancels that account's polls
in flight. ``/readyz`` and ``STATUS=`` name the accounts this replica leads. Adding or
removing an account takes a restart.

Why over 400 lines: it is the process's one lifecycle — store, lease, server, world, polls,
reload, signals — and each step's order matters against the others'.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import count
from pathlib import Path
from typing import Any, cast

import httpx
from apscheduler.events import EVENT_JOB_EXECUTED, JobExecutionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from alertd.accounts import Account, account_store, accounts_of
from alertd.alerts import META_POLICIES, AlertState
from alertd.clock import Clock, SystemClock, iso
from alertd.config.settings import Settings, find_config
from alertd.config.validate import validate_config
from alertd.errors import EXIT_CONFIG, EXIT_OK, ConfigError, StoreDamagedError, StoreError
from alertd.logs import configure
from alertd.model import Finding, SeriesKey
from alertd.notify.email import SmtpFactory
from alertd.service.heartbeat import Heartbeat
from alertd.service.http import Health, serve
from alertd.service.leader import FencedStore, Leadership
from alertd.service.metrics import Metrics
from alertd.service.open import (
    Collaborators,
    Handles,
    Services,
    StoreFor,
    open_world,
)
from alertd.service.polling import Poller, PollGroup, PollOutcome, poll_groups
from alertd.service.recording import judged_any
from alertd.service.schedule import DuePolls
from alertd.service.settling import Takeovers
from alertd.service.spread import Leads, describe_leads, merge_health, names_changed
from alertd.service.status import status_context
from alertd.service.systemd import SystemdNotifier
from alertd.service.world import World, load_world
from alertd.store.base import Lease, Store
from alertd.store.open import open_store, replica_name
from alertd.tasks import cancel, wait_first
from alertd.web.app import StatusContext
from alertd.web.board import Board

log = logging.getLogger("alertd.daemon")

#: Grace for running polls, then for deliveries in flight, when stopping (sum < 45 s).
POLL_GRACE = 10.0
DELIVERY_GRACE = 25.0
#: The same for the old world's polls and deliveries during a reload.
RELOAD_GRACE = 10.0


@dataclass(frozen=True, slots=True)
class PollSlot:
    """One scheduler job of a poll group, as :meth:`Daemon._reschedule` added it (its
    ``slot`` keyword): the job's id, the group's ``every``, the job's interval (``every``, or
    the tick with deadlines) and a serial that no later job under the same id shares, so a
    run can tell its own job from one a reload or a takeover put in its place."""

    job_id: str
    every: float
    interval: float
    serial: int


@dataclass(frozen=True, slots=True)
class Overrun:
    """What a poll job returns when it took its interval or longer: which job, how long."""

    slot: PollSlot
    seconds: float


class StoreWatch:
    """The daemon's :class:`~alertd.store.sqlite.StoreObserver`: counts every store failure
    (``alertd_store_errors_total{kind}``), turns ``/readyz`` to 503 with the reason while the
    store fails, and logs the first failure of a run of them, with how to recover. Damage is
    sticky: a later query that happens to avoid the broken pages does not make alertd ready."""

    def __init__(self, metrics: Metrics, health: Health) -> None:
        self.metrics = metrics
        self.health = health
        self._damaged = False

    def on_store_error(self, error: StoreError) -> None:
        damaged = isinstance(error, StoreDamagedError)
        self.metrics.store_errors.labels(kind="damaged" if damaged else "error").inc()
        if self.health.store_problem is None or (damaged and not self._damaged):
            log.error("state store failing, nothing is recorded or delivered until it works "
                      "error=%s", error)
        self._damaged = self._damaged or damaged
        self.health.store_problem = f"state store failing: {error}"

    def on_store_ok(self) -> None:
        if self.health.store_problem is not None and not self._damaged:
            log.info("state store works again")
            self.health.store_problem = None


def load_checked(config: str | Path | None) -> World:
    """The configuration checked as ``alertd validate`` checks it (templates included), then
    loaded; :class:`ConfigError` lists every problem."""
    path = find_config(str(config) if config is not None else None)
    problems = validate_config(path)
    if problems:
        raise ConfigError(problems)
    return load_world(path)


class Daemon:
    """One alertd process. Collaborators come in through the constructor (tests and the demo
    pass a clock, a notify socket, transports pointing at loopback servers)."""

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
        self.poller = Poller(self.metrics, self.health)
        self.schedule = DuePolls(self.metrics)  # deadlines per poll group (service.schedule)
        self.schedules: dict[str, DuePolls] = {"": self.schedule}  # by account
        self.stop_event = asyncio.Event()
        self.reload_event = asyncio.Event()
        self.server_url: str | None = None
        self.board = Board()  # what the polls found, for the status page (alertd.web)
        self.status: StatusContext | None = None
        self._abort = asyncio.Event()
        self._parts = Collaborators(self.clock, self.metrics, stripe_transport, smtp_factory,
                                    on_delivered)
        self._every_override = every_override
        self._live: Services | None = None
        self._stripe: Handles = {}
        self._store: Store | None = None
        self._store_for: StoreFor | None = None
        #: The watched accounts (fixed for the process), their leases and their pollers.
        self.accounts: tuple[Account, ...] = ()
        self.leaderships: dict[str, Leadership] = {}
        self.pollers: dict[str, Poller] = {"": self.poller}
        self._leads: Leads | None = None
        self._lease_stop = asyncio.Event()
        self._lease_task: asyncio.Task[None] | None = None
        self._heartbeat: Heartbeat | None = None
        self._scheduler: AsyncIOScheduler | None = None
        self._serials = count(1)  # of PollSlot
        self._polls: set[asyncio.Task[None]] = set()
        self._polling: dict[asyncio.Task[None], str] = {}  # each poll's account
        self._cut: set[asyncio.Task[None]] = set()  # polls _pause_polls is cancelling
        self._takeovers = Takeovers()  # what a new leader settles first (service.settling)

    @property
    def services(self) -> Services:
        assert self._live is not None, "the daemon is not running"
        return self._live

    @property
    def heartbeat(self) -> Heartbeat | None:
        """The heartbeat sender (``None`` until :meth:`running` has opened it)."""
        return self._heartbeat

    @property
    def world(self) -> World:
        return self.services.world

    @property
    def leadership(self) -> Leadership | None:
        """The first account's lease (the only one without ``accounts:``); ``None`` with a
        SQLite file."""
        return next(iter(self.leaderships.values()), None)

    def leads(self, account: str) -> bool:
        """Whether this process polls and records ``account`` now."""
        leadership = self.leaderships.get(account)
        return leadership is None or leadership.leading

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> int:
        """The whole process: 0 after a clean stop, 2 for an unusable configuration."""
        configure()  # start-up problems are logged in the default format
        try:
            world = load_checked(self.config)
        except ConfigError as exc:
            _log_problems("config problem", exc)
            return EXIT_CONFIG
        configure(world.settings.log_level, world.settings.log_format)
        self._install_signals()
        try:
            async with self.running(world):
                self._start_scheduler()
                self.systemd.ready(self._status())
                log.info("started rules=%d config=%s", len(world.rules), world.config_path)
                await self._main_loop()
                self.systemd.stopping("stopping")
                log.info("stopping polls_running=%d", len(self._polls))
                await self._shutdown()
        except ConfigError as exc:  # e.g. no API key, port in use: found only when opening
            _log_problems("config problem", exc)
            return EXIT_CONFIG
        except StoreError as exc:  # locked by another process, unwritable, damaged
            log.error("state problem %s", exc)
            return EXIT_CONFIG
        finally:
            self._remove_signals()
        log.info("stopped")
        return EXIT_OK

    @asynccontextmanager
    async def running(self, world: World) -> AsyncIterator[Daemon]:
        """Everything but the scheduler and signals: store, metrics server, heartbeat, the
        world's services (group timer, outbox worker), the keep-alive. Tests poll by hand
        inside it."""
        async with AsyncExitStack() as stack:
            store = await stack.enter_async_context(open_store(
                world.settings, "the daemon", observer=StoreWatch(self.metrics, self.health),
                claim_seconds=world.settings.state.claim))
            self._store = store
            self._store_for = await self._lead(stack, store, world.settings,
                                               accounts_of(world.settings))
            listen = world.settings.server.listen
            if listen:
                self.status = status_context(world.settings.server, self._store, self.board,
                                             self.clock, lambda: self._live)
                self.server_url = await stack.enter_async_context(
                    serve(listen, self.metrics, self.health, self.clock, self.status))
                log.info("serving metrics url=%s/metrics", self.server_url)
            self._heartbeat = await stack.enter_async_context(Heartbeat(self.clock))
            keepalive = asyncio.create_task(self._keepalive(), name="alertd-keepalive")
            stack.push_async_callback(cancel, keepalive)
            self._stripe, self._live = await open_world(world, store, self._parts,
                                                        store_for=self._store_for)
            for lane in self._live.lanes:
                self.schedules[lane.account.name].reset(lane.world, self._every_override)
            stack.push_async_callback(self._close_stripe)
            stack.push_async_callback(self._close_services)
            await self._live.start()
            stack.push_async_callback(self._takeovers.stop)
            for lane in self._live.lanes:  # stored alerts of gone accounts and rules
                if self.leads(lane.account.name):
                    await self._takeovers.settle(self._live, lane.account.name,
                                                 int(self.clock.now()))
            yield self

    async def _lead(self, stack: AsyncExitStack, store: Store, settings: Settings,
                    accounts: tuple[Account, ...]) -> StoreFor:
        """Takes (or waits for) each account's lease before anything polls; each account's
        pipeline records through a store fenced by its lease. One account renews its lease
        on its own; several are spread over the replicas (:mod:`alertd.service.spread`).
        Stopping releases the leases. A SQLite file has one process (its lock): that process
        leads every account, without a lease."""
        self.accounts = accounts
        if len(accounts) > 1:
            self.pollers = {a.name: Poller(self.metrics, Health(), census=self.poller.census,
                                           account=a.name) for a in accounts}
            self.poller = self.pollers[accounts[0].name]
            # Customer ids of two accounts may be alike: each account has its deadlines.
            self.schedules = {a.name: DuePolls(self.metrics, a.name) for a in accounts}
            self.schedule = self.schedules[accounts[0].name]
        else:
            self.poller.account = accounts[0].name
            self.schedule.account = accounts[0].name
            self.pollers = {accounts[0].name: self.poller}
            self.schedules = {accounts[0].name: self.schedule}
        for account in accounts:
            self.metrics.watch_account(account.name)
        if settings.state.url is None:
            for account in accounts:
                self.metrics.leader.labels(account.label).set(1)
            return lambda account: account_store(store, account.name)
        holder = replica_name(settings)
        for account in accounts:
            self.leaderships[account.name] = Leadership(
                store, account.lease, holder, settings.state.lease, self.clock,
                on_change=self._lease_watcher(account))
        self._lease_stop.clear()
        if len(accounts) == 1:
            only = self.leaderships[accounts[0].name]
            await only.renew()
            run = only.run(self._lease_stop)
        else:
            self._leads = Leads(store, {one.name: one for one in self.leaderships.values()},
                                holder, settings.state.lease, self.clock)
            await self._leads.round()
            run = self._leads.run(self._lease_stop)
        self._lease_task = asyncio.create_task(run, name="alertd-lease")
        stack.push_async_callback(self._end_lease)
        # FencedStore is the Store protocol by delegation (__getattr__), which mypy cannot see.
        return lambda account: account_store(
            cast(Store, FencedStore(store, self.leaderships[account.name])), account.name)

    async def _end_lease(self) -> None:
        self._lease_stop.set()
        if self._lease_task is not None:
            task, self._lease_task = self._lease_task, None
            try:
                await asyncio.wait_for(task, 10.0)
            except (TimeoutError, asyncio.CancelledError):
                await cancel(task)

    def _lease_watcher(self, account: Account) -> Callable[[bool, Lease | None], None]:
        return lambda leading, lease: self._on_lease(account, leading, lease)

    def _on_lease(self, account: Account, leading: bool, lease: Lease | None) -> None:
        self.metrics.leader.labels(account.label).set(1 if leading else 0)
        if lease is not None:
            self.metrics.lease_generation.labels(account.label).set(lease.generation)
            self.metrics.lease_expires.labels(account.label).set(lease.expires_at)
        self._show_role()
        leadership = self.leaderships.get(account.name)
        changed = leadership is not None and leadership.changed.is_set()
        if leadership is not None:
            leadership.changed.clear()
        if changed and not leading:
            # A lost lease ends the account's polls in flight: the next leader may poll from
            # now on, and Stripe must never be polled by both (the commit would be refused).
            for task, of in list(self._polling.items()):
                if of == account.name:
                    self._cut.add(task)  # our own cut: the job ends quietly (see _poll_job)
                    task.cancel()
        if changed and leading and self._live is not None:
            # A new leader settles what its start could not (service.settling), then polls
            # at once, not one interval later.
            self._takeovers.took_over(self._live, account.name, int(self.clock.now()),
                                      lambda: self._took_over(account.name))

    def _took_over(self, account: str) -> None:
        if not self.stop_event.is_set():  # stopping: no poll starts again
            self._reschedule(account)
            self.systemd.status(self._status())

    def _show_role(self) -> None:
        """``/readyz``'s role: leader or standby, and with several accounts which ones."""
        led = [one for one in self.leaderships.values() if one.leading]
        self.health.role = "leader" if led else "standby"
        if len(self.leaderships) == 1:
            (only,) = self.leaderships.values()
            self.health.leader = only.lease.holder if only.lease is not None else None
        else:
            labels = {a.lease: a.label for a in self.accounts}
            self.health.leads = describe_leads(
                {one.name: one for one in self.leaderships.values()}, labels)
            self._merge_health()

    def _merge_health(self) -> None:
        """With several accounts: ready once every account this replica leads has been
        polled and is fresh (each account's poller keeps its own facts)."""
        if len(self.pollers) > 1:
            merge_health(self.health, {a.label: self.pollers[a.name].health
                                       for a in self.accounts if self.leads(a.name)})

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, self.reload_event.set)
        loop.add_signal_handler(signal.SIGTERM, self._on_stop_signal)
        loop.add_signal_handler(signal.SIGINT, self._on_stop_signal)

    def _remove_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)

    def _on_stop_signal(self) -> None:
        if self.stop_event.is_set() and not self._abort.is_set():
            log.warning("second stop signal: exiting now, deliveries in flight stay queued")
            self._abort.set()
        self.stop_event.set()

    async def _keepalive(self) -> None:
        interval = self.systemd.watchdog_interval
        beat = interval / 2 if interval else 10.0
        self.health.beat_tolerance = max(3 * beat, 60.0)
        while True:
            self.health.last_beat = self.clock.now()
            self.systemd.watchdog()
            await asyncio.sleep(beat)

    async def _main_loop(self) -> None:
        while not self.stop_event.is_set():
            await wait_first(self.stop_event, self.reload_event)
            if self.reload_event.is_set() and not self.stop_event.is_set():
                self.reload_event.clear()
                try:
                    await self.reload()
                except Exception as exc:  # after the swap: a bug or the store failing
                    log.exception("reload failed after swapping configurations")
                    self.systemd.ready(f"reload failed: {exc}")

    async def _shutdown(self) -> None:
        await self._takeovers.stop()  # settling on a takeover would reschedule polls
        await self._pause_polls(POLL_GRACE, self._abort)
        await self._end_lease()  # the standby may take over while deliveries finish
        self._stop_scheduler()
        await self.services.stop(DELIVERY_GRACE, self._abort)

    # ------------------------------------------------------------------ world

    async def _close_stripe(self) -> None:
        for handle in self._stripe.values():
            await handle.close()

    async def _close_services(self) -> None:
        await self.services.stop(0.0)
        await self.services.close()

    async def reload(self) -> bool:
        """Swap in a freshly checked world; keep the running one when the new one is refused."""
        self.systemd.reloading("reloading configuration")
        old, old_stripe = self.services, self._stripe
        assert self._store is not None
        try:
            # Off the loop: reading a large rule set takes up to a second, and /healthz, the
            # watchdog and deliveries must not wait for it.
            world = await asyncio.to_thread(load_checked, old.world.config_path or self.config)
            accounts = [a.name for a in accounts_of(world.settings)]
            if names_changed([a.name for a in self.accounts], accounts):
                raise ConfigError("accounts: adding or removing an account takes a restart "
                                  "(each account's lease is taken at start)")
            stripe, new = await open_world(world, self._store, self._parts, old_stripe,
                                           store_for=self._store_for)
        except Exception as exc:  # whatever the cause, the running world stays
            self.systemd.ready(f"reload failed: {_refusal(exc)}; still running the previous "
                               "configuration")
            return False
        # A stop signal cuts these waits short: the polls are redone and the rows sent later.
        await self._pause_polls(RELOAD_GRACE, self.stop_event)
        await old.stop(RELOAD_GRACE, self.stop_event)
        self._live, self._stripe = new, stripe
        for lane in new.lanes:  # no knowledge: all due now
            self.schedules[lane.account.name].reset(lane.world, self._every_override)
        removed = sorted(set(old.world.rules.names()) - set(world.rules.names()))
        try:
            configure(world.settings.log_level, world.settings.log_format)
            await new.start()
            self._reschedule()
            if old.settling and self.leads(new.lanes[0].account.name):  # held resolves
                await self._takeovers.settle_accounts(new, int(self.clock.now()))
            for lane in new.lanes:
                name = lane.account.name
                gone = sorted(set(old.lane(name).world.rules.names())
                              - set(lane.world.rules.names()))
                self.pollers[name].forget(
                    gone, poll_groups(lane.world.rules, self._every_override).values())
                if self.leads(name):
                    await new.retire(gone, int(self.clock.now()),
                                     "rule removed from the configuration", account=name)
        finally:  # swapped out, the old world is never used again: close it even on failure
            await old.close()
            for name, handle in old_stripe.items():
                if handle is not stripe.get(name):
                    await handle.close()
        for what in restart_only_changes(old.world.settings, world.settings):
            log.warning("reload cannot change %s; restart alertd to apply it", what)
        kept = all(stripe[name] is old_stripe.get(name) for name in stripe)
        log.info("reloaded rules=%d removed=%d stripe_client=%s", len(world.rules),
                 len(removed), "kept" if kept else "new")
        self.systemd.ready(self._status())
        return True

    # ------------------------------------------------------------------ polling

    def _start_scheduler(self) -> None:
        """The scheduler of the poll jobs, started with every poll group's job due now."""
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        self._scheduler.add_listener(self._poll_again, EVENT_JOB_EXECUTED)
        self._scheduler.start()
        self._reschedule()

    def _stop_scheduler(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None

    def _reschedule(self, account: str | None = None) -> None:
        """One job per (account, poll group), starting now; only ``account``'s when given."""
        if self._scheduler is None:
            return
        for job in self._scheduler.get_jobs():
            if account is None or job.args[1] == account:
                job.remove()
        for lane in self.services.lanes:
            name = lane.account.name
            if account is not None and name != account:
                continue
            for every, names in poll_groups(lane.world.rules, self._every_override).items():
                interval = self.schedules[name].interval(every)  # a tick with deadlines
                suffix = f" for {lane.account.label}" if name else ""
                slot = PollSlot(f"poll-{name}-{every:g}s" if name else f"poll-{every:g}s",
                                every, interval, next(self._serials))
                self._scheduler.add_job(
                    self._poll_job, "interval", seconds=interval, args=[names, name],
                    kwargs={"slot": slot}, id=slot.job_id,
                    name=f"poll every {every:g}s ({len(names)} rules){suffix}",
                    jitter=min(interval * 0.05, 15.0), max_instances=1, coalesce=True,
                    next_run_time=datetime.now(UTC), misfire_grace_time=max(1, int(every)),
                )

    async def _pause_polls(self, grace: float, cut: asyncio.Event) -> None:
        """No new polls; running ones get ``grace`` seconds (less once ``cut`` is set), then
        are cancelled: a cancelled poll is simply redone by the next one."""
        if self._scheduler is not None:
            self._scheduler.remove_all_jobs()
        await asyncio.sleep(0)  # a job the scheduler has just started registers itself
        running = set(self._polls)
        if running:
            await wait_first(cut, timeout=grace, tasks=running)
            self._cut |= running
            try:
                await asyncio.gather(*(cancel(task) for task in running))
            finally:
                self._cut -= running

    async def _poll_job(self, names: PollGroup, account: str | None = None,
                        slot: PollSlot | None = None) -> Overrun | None:
        """One run of a poll group's job; an :class:`Overrun` when it ended (not cancelled)
        ``slot.interval`` or more after it started, for :meth:`_poll_again`."""
        task = asyncio.current_task()
        started = self.clock.now()  # wall time in production, as the scheduler's
        account = self.accounts[0].name if account is None else account
        if task is not None:
            self._polls.add(task)
            self._polling[task] = account
        try:
            if not self.leads(account):
                log.debug("standby: not polling rules=%s account=%s", ",".join(names),
                          account or "-")
            elif not self.stop_event.is_set():
                await self.poll_due(names, account)
        except asyncio.CancelledError:
            log.info("poll cancelled rules=%s", ",".join(names))
            # Our own reload, stop or lost lease cut the poll short on purpose (the next run,
            # or the next leader, redoes it):
            # the job ends quietly, or APScheduler would log it as a failure with a
            # traceback. Any other cancellation is the caller's and goes on up to it.
            if task is None or task not in self._cut:
                raise
            return None
        except StoreError as exc:  # StoreWatch has counted it, logged how to recover, gone unready
            log.warning("poll not recorded rules=%s error=%s", ",".join(names),
                        type(exc).__name__)
        except Exception:
            log.exception("poll failed unexpectedly rules=%s", ",".join(names))
        finally:
            if task is not None:
                self._polls.discard(task)
                self._polling.pop(task, None)
                self._cut.discard(task)
        seconds = self.clock.now() - started
        return Overrun(slot, seconds) if slot is not None and seconds >= slot.interval else None

    def _poll_again(self, event: JobExecutionEvent) -> None:
        """After a run that overran its interval: the job runs again now, not at its next
        tick (the ticks during the run were skipped). A listener of ``EVENT_JOB_EXECUTED``,
        which APScheduler sends once it no longer counts the run as running; the job is left
        alone when stopping, or when it is gone (polls paused) or was replaced under the same
        id (a reload, a takeover)."""
        overrun = event.retval
        if not isinstance(overrun, Overrun) or self._scheduler is None \
                or self.stop_event.is_set():
            return
        slot = overrun.slot
        job = self._scheduler.get_job(slot.job_id)
        if job is None or job.kwargs.get("slot") != slot:
            return
        job.modify(next_run_time=datetime.now(UTC))  # the trigger goes on from that run
        names, account = job.args[0], job.args[1]
        self.metrics.on_overrun(self.accounts[0].name if account is None else account)
        schedule = self.schedules.get(account)
        deadlines = schedule is not None and schedule.enabled
        # With deadlines a tick that outlasts the tick is routine under load (the lag gauge,
        # alertd_deadline_lag_seconds, says whether reads fall behind): said at DEBUG only.
        log.log(logging.DEBUG if deadlines else logging.INFO,
                "poll overran its interval rules=%s every=%gs interval=%gs seconds=%.1f "
                "account=%s (the next poll starts now; %s)", ",".join(names), slot.every,
                slot.interval, overrun.seconds, account or "-", _overrun_hint(deadlines))

    async def poll_due(self, names: PollGroup, account: str | None = None
                       ) -> PollOutcome | None:
        """A scheduled poll of ``account`` (default: the first): of the customers whose
        deadline has come (``None`` when none has), or of everyone when deadlines are off
        (:mod:`alertd.service.schedule`)."""
        lane = self.services.lane(self.accounts[0].name if account is None else account)
        schedule = self.schedules[lane.account.name]
        customers = await schedule.due(lane.engine, lane.world, names, self.clock.now())
        if customers is not None and not customers:
            return None
        return await self.poll(names, customers, account=lane.account.name)

    async def poll(self, names: PollGroup, customers: list[str] | None = None,
                   account: str | None = None) -> PollOutcome:
        """One poll of ``names`` of ``account`` (default: the first) in the running world,
        of all their customers or of ``customers`` (see :meth:`Poller.poll`); then the
        heartbeat (when the poll read Stripe) and ``STATUS=``."""
        live = self.services
        lane = live.lane(self.accounts[0].name if account is None else account)
        poller = self.pollers[lane.account.name]
        now = int(self.clock.now())
        reading = self.schedules[lane.account.name].reading(lane.world, names, now)
        staged = self.board.begin(now)  # the entries of each batch, as it is recorded
        try:
            outcome = await poller.poll(lane.engine, lane.recorder, lane.world, names, now,
                                        customers, observe=reading, recorded=staged)
        finally:
            self._merge_health()
        # A poll that recorded nothing (no fresher data) judged nothing: the board keeps what
        # the last recorded poll of its rules found (only the meta findings are news).
        polled = names if outcome.recorded else ()
        # The usage findings' entries were made batch by batch (staged); the meta ones' here.
        meta = [f for f in outcome.findings if f.rule in META_POLICIES]
        self.board.record({*polled, *(f.rule for f in meta)}, meta, now,
                          customers=outcome.result.customers, series=outcome.result.series,
                          states=await self._stored_states(lane.recorder.store, meta),
                          only=customers, account=lane.account.name,
                          staged=staged if outcome.recorded else None)
        # A dead man's switch is told "alive" only by a poll that read Stripe and judged
        # something: a daemon whose every finding is an error is not doing its job.
        if not outcome.failed and judged_any(outcome.result) and self._heartbeat is not None:
            self._heartbeat.after_poll(live.world.settings.heartbeat,
                                       self.poller.summary(len(live.world.rules)))
        self.systemd.status(self._status())
        return outcome

    async def _stored_states(self, store: Store, findings: Sequence[Finding]
                             ) -> Mapping[SeriesKey, AlertState]:
        """The stored states of the rules whose active series the board does not show yet
        (after a restart: each rule's, once), so the status page's ``since`` is when the
        series began firing or pending, not this process's first poll. A store failing here
        only costs that: ``since`` is then the poll's."""
        rules = self.board.unseen_rules(findings)
        if not rules:
            return {}
        try:
            return await store.load_states(rules)
        except StoreError as exc:
            log.warning("could not read alert states for the status page error=%s", exc)
            return {}

    def _status(self) -> str:
        line = self.poller.status(len(self.world.rules), self.world.settings)
        if len(self.pollers) > 1:
            line = f"{len(self.world.rules)} rules, {len(self.accounts)} accounts; " + "; ".join(
                f"{a.label}: last poll {iso(self.pollers[a.name].last_poll) or 'not yet'}"
                for a in self.accounts if self.leads(a.name))
            reason = self.health.stale_reason
            line = f"{line}; {reason}" if reason else line
        if self.health.role is None:
            return line
        who = replica_name(self.world.settings)
        if self.health.leads is not None:
            who = f"{who}; {self.health.leads}"
        return f"{self.health.role} ({who}); {line}"


def _log_problems(event: str, exc: ConfigError) -> None:
    for problem in exc.problems:
        log.error("%s %s", event, problem)


def _overrun_hint(deadlines: bool) -> str:
    """What shortens a poll that overran its interval, for the log line."""
    if deadlines:
        return ("the due customers' reads came slower than the budget: see "
                "alertd_stripe_request_duration_seconds and alertd_stripe_rate_limited_total; "
                "more budget (requests_per_second, if Stripe's limit allows) or a longer "
                "schedule.tick")
    return ("more budget (requests_per_second, if Stripe's limit allows), a longer every, or "
            "the deadline scheduler (schedule.deadlines: true), which reads only the customers "
            "whose deadline has come")


def _refusal(exc: Exception) -> str:
    """Logs why a reload was refused; returns the first reason, for ``STATUS=``."""
    if isinstance(exc, ConfigError):
        _log_problems("reload refused problem", exc)
        return str(exc.problems[0]) if exc.problems else "invalid configuration"
    log.exception("reload refused error=%s", exc)
    return str(exc) or type(exc).__name__


def restart_only_changes(old: Settings, new: Settings) -> list[str]:
    """Settings a reload keeps as they were (the state file and the metrics listener are
    opened once per process), named when the new config changes them."""
    changed = []
    if old.state.url != new.state.url:
        changed.append("state.url (the database in use stays in use)")
    if old.state_path() != new.state_path():
        changed.append(f"state.path ({old.state_path()} stays in use)")
    if old.server.listen != new.server.listen:
        changed.append(f"server.listen ({old.server.listen or 'disabled'} stays in use)")
    return changed

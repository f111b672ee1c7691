"""The daemon's swappable services: what one configuration (a :class:`~alertd.service.world.World`)
runs on, opened and closed as a unit so a reload can replace them whole.

Where it sits: :mod:`alertd.service.daemon` opens a :class:`StripeHandle` (HTTP client, rate
budgets, customer directory) and, on it, :class:`Services` — the engine, the notification
pipeline with its group timer, and the outbox worker with one notifier per receiver. A reload
opens the new world's services before touching the running ones, and keeps the Stripe handle
when the new world would build the same one (:func:`stripe_identity`), so the rate budgets stay
one budget and the customer cache stays warm across reloads.

Every command opens its services here. The daemon (``run``, and ``demo``, which runs one) keeps
them across reloads through :func:`open_world`; ``check`` and ``backtest`` open them for one
pass with :func:`open_services`, an async context manager. Both build them with
:func:`build_services`, so the engine, pipeline and outbox are wired in one place; what a
command leaves out is a parameter: no store (``backtest``: no pipeline, no outbox), no
delivery (``check --dry-run``: a pipeline that commits nothing and no outbox).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from alertd.accounts import Account, account_store, accounts_of, rules_for
from alertd.alerts import META_POLICIES
from alertd.buckets import CachePolicy
from alertd.clock import Clock
from alertd.config.settings import Settings
from alertd.errors import SourceError
from alertd.model import SeriesKey
from alertd.notify.email import SmtpFactory
from alertd.notify.factory import notifiers
from alertd.notify.outbox import Outbox
from alertd.notify.pipeline import Pipeline
from alertd.notify.routing import RouteTree
from alertd.service.engine import Engine
from alertd.service.leader import sole_leader
from alertd.service.metrics import Metrics
from alertd.service.reads import BucketCache
from alertd.service.world import StripeStack, World, stripe_stack, verify_meters
from alertd.store.base import BucketStore, Store
from alertd.store.lock import exclusive
from alertd.store.open import open_store, replica_name
from alertd.store.sqlite import SqliteStore

log = logging.getLogger("alertd.daemon")


def stripe_identity(settings: Settings) -> tuple[Any, ...]:
    """What a Stripe handle is built from; equal identities may share one handle. The key
    itself is part of it, so a rotated ``api_key_file`` takes effect on reload."""
    return (settings.stripe, settings.customers.refresh, settings.stripe.resolved_api_key())


@dataclass(frozen=True, slots=True)
class StripeHandle:
    """An open :class:`~alertd.service.world.StripeStack` and how to close it."""

    identity: tuple[Any, ...]
    stack: StripeStack
    closer: AsyncExitStack

    async def close(self) -> None:
        await self.closer.aclose()


async def open_stripe(
    settings: Settings, clock: Clock, metrics: Metrics | None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> StripeHandle:
    """The Stripe client for ``settings``; its requests feed ``metrics``."""
    identity = stripe_identity(settings)
    closer = AsyncExitStack()
    try:
        stack = await closer.enter_async_context(
            stripe_stack(settings, clock=clock, metrics=metrics, transport=transport)
        )
    except BaseException:
        await closer.aclose()
        raise
    return StripeHandle(identity, stack, closer)


def orphaned_rules(stored: Iterable[SeriesKey], world: World) -> list[str]:
    """Rules with alert state in the store that ``world`` no longer has (pure): removed while
    alertd was stopped, so their alerts are resolved at start."""
    known = {*world.rules.names(), *META_POLICIES}
    return sorted({key.rule for key in stored} - known)


@dataclass(frozen=True, slots=True)
class Lane:
    """One watched Stripe account's part of a world (:mod:`alertd.accounts`): the world as
    the account sees it (its ``stripe`` settings, the rules that watch it), its Stripe
    client, engine, and pipeline (``None`` when opened without a store) on a store that
    shows it only its own alerts and groups."""

    account: Account
    world: World
    stripe: StripeStack
    engine: Engine
    pipeline: Pipeline | None

    @property
    def recorder(self) -> Pipeline:
        """The pipeline, for services opened with a store (the daemon's always are)."""
        if self.pipeline is None:
            raise RuntimeError("these services were opened without a state store")
        return self.pipeline


class Services:
    """One world's lanes (one per Stripe account: client, engine, pipeline with its group
    timer) and its outbox worker, which delivers for every account.

    ``stripe``, ``engine`` and ``pipeline`` are the first lane's (the only one without
    ``accounts:``). ``pipeline`` is ``None`` when opened without a store, ``outbox`` when
    opened without delivery. Lifecycle: :func:`build_services` → :meth:`start` →
    :meth:`stop` → :meth:`close`. Two services never run their timers or worker at once on
    one store: a reload stops the old ones before starting the new ones, so no group is
    flushed and no row sent twice.
    """

    def __init__(
        self, world: World, lanes: Sequence[Lane], outbox: Outbox | None, clock: Clock,
        closer: AsyncExitStack,
    ) -> None:
        self.world = world
        self.lanes = tuple(lanes)
        self.outbox = outbox
        self.clock = clock
        self._closer = closer
        self.closed = False
        #: Pipelines of accounts no longer watched, flushing what settling them queued
        #: (:mod:`alertd.service.settling`); stopped with the lanes'.
        self.settling: list[Pipeline] = []

    @property
    def stripe(self) -> StripeStack:
        return self.lanes[0].stripe

    @property
    def engine(self) -> Engine:
        return self.lanes[0].engine

    @property
    def pipeline(self) -> Pipeline | None:
        return self.lanes[0].pipeline

    @property
    def recorder(self) -> Pipeline:
        """The first lane's pipeline (see :attr:`Lane.recorder`)."""
        return self.lanes[0].recorder

    def lane(self, account: str) -> Lane:
        """The lane of the account named ``account`` (``""``: the one of ``stripe.api_key``)."""
        return next(lane for lane in self.lanes if lane.account.name == account)

    async def start(self) -> None:
        """Starts the group timers and the outbox worker (pending rows are sent at once)."""
        for lane in self.lanes:
            if lane.pipeline is not None:
                await lane.pipeline.start(self.clock)
        if self.outbox is not None:
            await self.outbox.start()

    async def stop(self, grace: float, abort: asyncio.Event | None = None) -> None:
        """Stops the timers, then the worker: attempts in flight get ``grace`` seconds (less
        once ``abort`` is set); the rest are cancelled and their rows stay pending."""
        for pipeline in (*(lane.pipeline for lane in self.lanes), *self.settling):
            if pipeline is not None:
                await pipeline.stop()
        if self.outbox is not None and not await self.outbox.drain(grace, abort):
            log.warning("deliveries in flight left unfinished stay queued for the next start")

    async def close(self) -> None:
        """Closes the notifiers (their HTTP pool); call after :meth:`stop`."""
        await self._closer.aclose()
        self.closed = True

    async def retire(self, rules: Sequence[str], now: int, note: str, *,
                     account: str | None = None) -> None:
        """Resolves and forgets the alerts of ``rules`` (removed from the configuration), in
        the lane of ``account``, or in every lane."""
        for lane in self.lanes:
            if rules and account in (None, lane.account.name):
                report = await lane.recorder.retire_rules(rules, now, note=note)
                log.info("retired rules=%s resolved=%d account=%s note=%r", ",".join(rules),
                         len(report.transitions), lane.account.label, note)


@dataclass(frozen=True, slots=True)
class Collaborators:
    """What every world's services are built with: production defaults or test doubles."""

    clock: Clock
    metrics: Metrics | None = None
    stripe_transport: httpx.AsyncBaseTransport | None = None
    smtp_factory: SmtpFactory | None = None
    on_delivered: Callable[[Any], None] | None = None


#: The store each account's pipeline records through (its lease fences it, on PostgreSQL).
StoreFor = Callable[[Account], Store]
#: Open Stripe handles by account name.
Handles = dict[str, StripeHandle]


async def open_world(
    world: World, store: Store, parts: Collaborators, current: Mapping[str, StripeHandle] = {},
    store_for: StoreFor | None = None,
) -> tuple[Handles, Services]:
    """The services of ``world``, not started: one lane per account, each on its handle in
    ``current`` when ``world`` would build the same one, else on a new one. On failure
    nothing new stays open."""
    accounts = accounts_of(world.settings)
    handles: Handles = {}
    try:
        for account in accounts:
            kept = current.get(account.name)
            if kept is not None and kept.identity == stripe_identity(account.settings):
                handles[account.name] = kept
            else:
                handles[account.name] = await open_stripe(
                    account.settings, parts.clock, parts.metrics, parts.stripe_transport)
            await _check_meters(lane_world(world, account), handles[account.name])
        stacks = [(account, handles[account.name].stack) for account in accounts]
        return handles, await build_services(world, stacks, store, parts, store_for=store_for)
    except BaseException:
        for name, handle in handles.items():
            if handle is not current.get(name):
                await handle.close()
        raise


def lane_world(world: World, account: Account) -> World:
    """``world`` as ``account`` sees it: its settings, the rules that watch it."""
    if not account.name:
        return world
    return World(account.settings, rules_for(world.rules, account.name), world.config_path)


async def _check_meters(world: World, stripe: StripeHandle) -> None:
    """Refuse a world whose rules name meters the account lacks (one such meter would fail
    every request it shares). Stripe being unreachable is no reason to refuse: the polls will
    say so."""
    try:
        await verify_meters(world.rules, stripe.stack.directory)
    except SourceError as exc:
        log.warning("could not check the rules' meters error=%s request_id=%s", exc,
                    exc.request_id)


async def build_services(
    world: World, stripe: StripeStack | Sequence[tuple[Account, StripeStack]],
    store: Store | None, parts: Collaborators, *, deliver: bool = True,
    store_for: StoreFor | None = None,
) -> Services:
    """The services of ``world`` on ``stripe`` (one stack, or one per account) and
    ``store``, not started yet. ``store_for`` gives each account's pipeline its store
    (default: ``store`` showing that account's alerts only).

    Without ``store`` there is no pipeline and no outbox; without ``deliver`` no notifiers
    and no outbox (the pipeline's commits then wake nothing)."""
    closer = AsyncExitStack()
    settings = world.settings
    outbox: Outbox | None = None
    if store is not None and deliver:
        try:
            built = await closer.enter_async_context(
                notifiers(settings, clock=parts.clock, smtp_factory=parts.smtp_factory)
            )
        except BaseException:
            await closer.aclose()
            raise
        outbox = Outbox(store, built, settings.delivery, clock=parts.clock,
                        observer=parts.metrics, on_delivered=parts.on_delivered)
    stacks = [(accounts_of(settings)[0], stripe)] if isinstance(stripe, StripeStack) else stripe
    lanes = []
    for account, stack in stacks:
        lane_store = None if store is None else (
            store_for(account) if store_for is not None else account_store(store, account.name))
        lanes.append(build_lane(lane_world(world, account), account, stack, lane_store, outbox,
                                deliver=deliver))
    return Services(world, lanes, outbox, parts.clock, closer)


def build_lane(world: World, account: Account, stripe: StripeStack, store: Store | None,
               outbox: Outbox | None, *, deliver: bool) -> Lane:
    """One account's engine and pipeline (see :class:`Lane`)."""
    settings = world.settings
    pipeline = None if store is None else Pipeline(
        store, RouteTree.from_settings(settings), settings.receivers,
        on_commit=outbox.wake if outbox is not None else None,
    )
    engine = Engine(settings, world.rules, stripe.source, stripe.directory,
                    sent=lambda: stripe.http.requests,
                    cache=bucket_cache(settings, store, writable=deliver),
                    account=account.name)
    return Lane(account, world, stripe, engine, pipeline)


def bucket_cache(settings: Settings, store: Store | None, *, writable: bool
                 ) -> BucketCache | None:
    """The bucket cache on ``store`` (none when disabled or the store keeps none); read-only
    without delivery — ``check --dry-run`` may read the cache, never write it."""
    if store is None or not settings.stripe.bucket_cache or not isinstance(store, BucketStore):
        return None
    policy = CachePolicy(settings.stripe.settle_window, settings.stripe.full_reread_every)
    return BucketCache(store, policy, writable=writable)


@asynccontextmanager
async def open_services(
    world: World, parts: Collaborators, *, state: Path | str | None = None,
    deliver: bool = True, lock_holder: str | None = None,
) -> AsyncIterator[Services]:
    """The services of ``world`` for one command, not started, closed on exit in reverse.

    Opened in this order, so that a configuration Stripe refuses leaves nothing on disk: the
    Stripe client and directory, with the rules' meters checked (a missing meter is a
    :class:`~alertd.errors.ConfigError`, Stripe unreachable a
    :class:`~alertd.errors.SourceError`); then, with ``state`` (a path, or ``":memory:"``),
    the state store — behind its lock when ``lock_holder`` says who takes it — and the
    pipeline; with ``deliver`` too, the notifiers and the outbox.
    """
    async with AsyncExitStack() as stack:
        accounts = accounts_of(world.settings)
        stacks = []
        for account in accounts:
            stripe = await stack.enter_async_context(stripe_stack(
                account.settings, clock=parts.clock, metrics=parts.metrics,
                transport=parts.stripe_transport,
            ))
            await verify_meters(lane_world(world, account).rules, stripe.directory)
            stacks.append((account, stripe))
        store: Store | None = None
        store_for: StoreFor | None = None
        if state is not None and str(state) != ":memory:" and world.settings.state.url:
            # The shared PostgreSQL database: no file lock; a command that records takes
            # every account's lease instead (refused while a replica leads one).
            store = await stack.enter_async_context(open_store(world.settings))
            if lock_holder is not None:
                fenced = await stack.enter_async_context(sole_leader(
                    store, replica_name(world.settings), world.settings.state.lease,
                    parts.clock, lock_holder, names=[a.lease for a in accounts]))
                by_name = {a.name: s for a, s in zip(accounts, fenced, strict=True)}
                store_for = lambda a: account_store(by_name[a.name], a.name)  # noqa: E731
        elif state is not None:
            if lock_holder is not None:
                stack.enter_context(exclusive(Path(state), lock_holder))
            store = await stack.enter_async_context(SqliteStore(state))
        services = await build_services(world, stacks, store, parts, deliver=deliver,
                                        store_for=store_for)
        stack.push_async_callback(services.close)
        yield services

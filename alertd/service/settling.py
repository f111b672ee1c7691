"""Settling the stored alerts of Stripe accounts a configuration no longer watches, and of
rules it no longer has.

Where it sits: the daemon, whenever this replica comes to lead an account
(:class:`Takeovers`): at its start (:meth:`alertd.service.daemon.Daemon.running`, once the
services are started), and when it takes an account's lease over later, before that
account's polls are rescheduled. What becomes of each account no longer watched is decided
in :func:`alertd.accounts.settlement` (pure; the module docstring of :mod:`alertd.accounts`
gives the rules): the account of ``accounts:`` that was ``stripe.api_key`` adopts that key's
alerts, every other account's alerts resolve. Both go through a notification pipeline over
that account's alerts and groups (:func:`~alertd.accounts.account_view`), so the state change
and the resolve notifications are one transaction and reach the receivers through the
outbox, like a pass's. Then the account's alerts of rules removed from the configuration are
retired (resolved, forgotten).

Why at a takeover too: with two replicas, a configuration change is rolled out one replica at
a time. The replica restarted first with the new configuration starts as standby (the other
still leads), so its start settles nothing; when it later takes the lease over (the other
stops, dies, or hands the account over) it is the first leader with the new configuration,
and what its start skipped is still owed. Settling is decided from the stored rows each time
(:func:`settlement`, :func:`~alertd.service.open.orphaned_rules`), so a takeover with nothing
owed costs a few loads and writes nothing, and settling twice settles nothing twice. One
settling runs at a time (a takeover during the start waits for the start's), and it runs
before the new leader's first poll, as at start, so an adoption never races that account's
poll over the same series.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

from alertd.accounts import (
    SOLE_LEASE,
    Settlement,
    account_view,
    adoption,
    settlement,
    whole_store,
)
from alertd.alerts import AlertState
from alertd.model import SeriesKey
from alertd.notify.pipeline import Lifecycle, Pipeline
from alertd.notify.routing import RouteTree
from alertd.service.open import Services, orphaned_rules
from alertd.store.base import Store
from alertd.tasks import cancel

log = logging.getLogger("alertd.daemon")


class Takeovers:
    """Settles what the leader of an account owes (:func:`settle_lead`), one at a time: at
    the daemon's start, awaited; at a later takeover, in a task that reschedules the
    account's polls when it is done (settled or not)."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    async def settle(self, services: Services, account: str, now: int) -> None:
        async with self._lock:
            await settle_lead(services, account, now)

    async def settle_accounts(self, services: Services, now: int) -> None:
        """:func:`settle_accounts` after a reload, in turn with the settling of takeovers:
        a takeover's settling in flight may be adopting or resolving the same accounts'
        alerts, and two of them at once would each plan from what the other is changing."""
        async with self._lock:
            await settle_accounts(services, now)

    def took_over(self, services: Services, account: str, now: int,
                  then: Callable[[], None]) -> None:
        """This replica now leads ``account``: settle in the background, then ``then()``
        (the daemon reschedules the account's polls), settled or not — unless :meth:`stop`
        cancelled it."""
        task = asyncio.create_task(self._catch_up(services, account, now, then),
                                   name=f"alertd-settle-{account or 'stripe'}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _catch_up(self, services: Services, account: str, now: int,
                        then: Callable[[], None]) -> None:
        try:
            await self.settle(services, account, now)
        except Exception:  # the store failing, the lease lost meanwhile: owed rows stay
            log.exception("settling on takeover failed account=%s; what is owed stays stored "
                          "and is settled at the next takeover or start", account or SOLE_LEASE)
        then()  # not when cancelled: the daemon is stopping

    async def stop(self) -> None:
        """Cancels the settling in flight (what it did not commit is settled later)."""
        for task in list(self._tasks):
            await cancel(task)


async def settle_lead(services: Services, account: str, now: int) -> None:
    """Everything the leader of ``account`` owes before polling it: with the first lane's
    account, the accounts no longer watched (:func:`settle_accounts`); then ``account``'s
    alerts of rules the configuration no longer has."""
    if account == services.lanes[0].account.name:
        await settle_accounts(services, now)
    lane = services.lane(account)
    orphans = orphaned_rules(await lane.recorder.store.load_states(), lane.world)
    await services.retire(orphans, now, "rule no longer in the configuration",
                          account=account)


async def settle_accounts(services: Services, now: int) -> Settlement:
    """Adopts or resolves the stored alerts of the accounts ``services`` do not watch,
    each account's in one transaction with the notifications it causes, through the first
    lane's store (so, on PostgreSQL, fenced by the first account's lease: call it as that
    account's leader). Each settled account keeps a started pipeline
    (:attr:`Services.settling`) whose group timer flushes what was held back (a resolve due
    after ``group_interval``) until the services stop. Call after :meth:`Services.start`."""
    store = whole_store(services.lanes[0].recorder.store)
    # Groups too: a resolve held back by group_interval outlives the states it resolved.
    stored = {key.account for key in await store.load_states()} | {
        group.group_labels.get("account", "") for group in (await store.load_groups()).values()}
    plan = settlement(stored, services.world.settings)
    if plan.heir is not None:
        await _adopt(services, store, plan.heir, now)
    for orphan in plan.orphans:
        pipeline = await _pipeline(services, orphan, store)
        rules = sorted({key.rule for key in await pipeline.store.load_states()})
        report = await pipeline.retire_rules(
            rules, now, note=f"account {orphan or 'of stripe.api_key'} no longer watched")
        log.info("resolved the alerts of an account no longer configured account=%s "
                 "rules=%d resolved=%d", orphan or SOLE_LEASE, len(rules),
                 len(report.transitions))
    return plan


async def _adopt(services: Services, store: Store, heir: str, now: int) -> None:
    """``heir`` adopts the alerts of the account ``""`` (:func:`alertd.accounts.adoption`)."""
    taken = (await account_view(store, heir).load_states()).keys()
    counts: list[tuple[int, int]] = []  # (adopted, left to the heir's own state)

    def plan(states: Mapping[SeriesKey, AlertState]) -> Lifecycle:
        step = adoption(states, heir, taken, now)
        adopted = sum(1 for key in step.states if key.account == heir)
        counts.append((adopted, len(states) - adopted))
        return step

    report = await (await _pipeline(services, "", store)).settle(plan, now)
    log.info("adopted the alerts of the former stripe.api_key account=%s adopted=%d "
             "kept_own=%d resolved=%d", heir, *counts[0], len(report.transitions))


async def _pipeline(services: Services, account: str, store: Store) -> Pipeline:
    """A pipeline over ``account``'s alerts and groups in ``store``, its group timer started
    — but with only ``stripe.api_key``, whose lane sees (and flushes) every group already."""
    settings = services.world.settings
    outbox = services.outbox
    pipeline = Pipeline(account_view(store, account), RouteTree.from_settings(settings),
                        settings.receivers, on_commit=outbox.wake if outbox is not None else None)
    if settings.accounts:
        await pipeline.start(services.clock)
        services.settling.append(pipeline)
    return pipeline

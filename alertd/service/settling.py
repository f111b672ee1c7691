"""Settling the stored alerts of Stripe accounts a configuration no longer watches.

Where it sits: the daemon's start (:meth:`alertd.service.daemon.Daemon.running`), once the
services are started and before the removed rules are retired. What becomes of each such
account is decided in :func:`alertd.accounts.settlement` (pure; the module docstring of
:mod:`alertd.accounts` gives the rules): the account of ``accounts:`` that was
``stripe.api_key`` adopts that key's alerts, every other account's alerts resolve. Both go
through a notification pipeline over that account's alerts and groups
(:func:`~alertd.accounts.account_view`), so the state change and the resolve notifications
are one transaction and reach the receivers through the outbox, like a pass's.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

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
from alertd.service.open import Services
from alertd.store.base import Store

log = logging.getLogger("alertd.daemon")


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

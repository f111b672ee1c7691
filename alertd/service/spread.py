"""Several Stripe accounts over several replicas: one lease each, spread evenly.

Where it sits: the daemon (:mod:`alertd.service.daemon`) holds one
:class:`~alertd.service.leader.Leadership` per account of ``accounts:``; with one account it
runs that lease's own loop (:meth:`Leadership.run`), unchanged. With several, :class:`Leads`
runs them in one loop, every ``lease / 3`` seconds:

1. it renews this replica's *presence*, a lease row of its own (``replica:NAME``) that says
   "alive, and may lead"; it lasts :data:`PRESENCE_SHARE` of the lease, so a dead replica's
   presence is gone before its account leases expire;
2. it reads every lease row and works out, with :func:`plan_round` (pure), which accounts to
   ask for and which to hand over:

   * the *share* of a replica is ``ceil(accounts / live replicas)`` (live: a presence that has
     not expired, this replica's included);
   * a replica asks for (renews) the leases it holds and takes free or expired ones while it
     leads fewer than its share — so one that already leads its share leaves a free account
     to a replica with room, and the shares add up to at least the accounts, so some live
     replica always has room;
   * a replica that leads more than its share (another replica has just started) hands one
     over per round: it stops leading it first (its polls are cancelled), then releases the
     lease, and a replica with room takes it at its next round;
3. it asks for those leases (:meth:`Leadership.renew`, one atomic take-or-renew each) and,
   for the others, only notes who holds them (for ``/readyz`` and ``alertd_leader``).

A replica killed with its accounts: its presence runs out, the survivors' share grows to
cover its accounts, and they take each one as its lease expires — within the lease plus one
round. A clean stop releases every lease and the presence, so the others take over at their
next round.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from alertd.clock import Clock
from alertd.errors import StoreError
from alertd.service.http import Health
from alertd.service.leader import Leadership
from alertd.store.base import Lease, Store
from alertd.tasks import wait_first

log = logging.getLogger("alertd.leader")

#: The lease-name prefix of a replica's presence row.
PRESENCE = "replica:"
#: A presence lasts this share of the lease: gone before the account leases it renewed with.
PRESENCE_SHARE = 0.8
#: How long a departed replica's presence row is kept before it is deleted (seconds).
PRESENCE_KEPT = 86_400.0


def fair_share(accounts: int, replicas: int) -> int:
    """How many accounts one of ``replicas`` live replicas leads at most (pure)."""
    return math.ceil(accounts / max(1, replicas))


def live_replicas(leases: Sequence[Lease], me: str, now: float) -> frozenset[str]:
    """Replicas whose presence has not expired, ``me`` included (pure)."""
    return frozenset({lease.holder for lease in leases
                      if lease.name.startswith(PRESENCE) and lease.expires_at > now} | {me})


@dataclass(frozen=True, slots=True)
class Round:
    """What one round of :class:`Leads` does: the leases to ask for, the one to hand over."""

    ask: tuple[str, ...]
    hand_over: str | None
    share: int
    replicas: int


def plan_round(leases: Sequence[Lease], names: Sequence[str], me: str, now: float) -> Round:
    """Which account leases ``me`` asks for at ``now`` and which one it hands over (pure;
    see the module docstring)."""
    current = {lease.name: lease for lease in leases if lease.name in names}
    live = live_replicas(leases, me, now)
    share = fair_share(len(names), len(live))
    mine = [n for n in names if n in current and current[n].held_by(me, now)]
    free = [n for n in names if n not in current or current[n].expires_at <= now]
    hand_over = mine[-1] if len(mine) > share else None
    kept = [n for n in mine if n != hand_over]
    taken = free[:max(0, share - len(mine))]
    return Round(tuple(kept + taken), hand_over, share, len(live))


class Leads:
    """The account leases of one replica, kept in one loop (see the module docstring)."""

    def __init__(self, store: Store, leaderships: Mapping[str, Leadership], holder: str,
                 length: float, clock: Clock) -> None:
        self.store = store
        self.leaderships = dict(leaderships)  # by lease name
        self.holder = holder
        self.length = length
        self.clock = clock
        self.presence = f"{PRESENCE}{holder}"
        self.last_round: Round | None = None

    async def round(self) -> None:
        """One round: presence, the lease rows, then take, renew and hand over."""
        now = self.clock.now()
        try:
            await self.store.acquire_lease(self.presence, self.holder,
                                           self.length * PRESENCE_SHARE, now)
            leases = await self.store.leases()
        except StoreError as exc:  # the held leases run out on their own (Leadership.leading)
            log.warning("lease round failed replica=%s error=%s", self.holder, exc)
            for leadership in self.leaderships.values():
                leadership.observe(leadership.lease)
            return
        await self._forget_departed(leases, now)
        plan = plan_round(leases, list(self.leaderships), self.holder, now)
        if self.last_round is None or (plan.share, plan.replicas) != (
                self.last_round.share, self.last_round.replicas):
            log.info("lease share replica=%s replicas=%d share=%d accounts=%d", self.holder,
                     plan.replicas, plan.share, len(self.leaderships))
        self.last_round = plan
        seen = {lease.name: lease for lease in leases}
        for name, leadership in self.leaderships.items():
            if name == plan.hand_over:
                log.info("handing over lease=%s replica=%s share=%d", name, self.holder,
                         plan.share)
                await leadership.hand_over()
            elif name in plan.ask:
                await leadership.renew()
            else:
                leadership.observe(seen.get(name))

    async def _forget_departed(self, leases: Sequence[Lease], now: float) -> None:
        """Deletes presences gone for :data:`PRESENCE_KEPT` (a replica named by host and
        process id leaves one per start), so the lease table stays small."""
        if any(lease.name.startswith(PRESENCE) and lease.expires_at < now - PRESENCE_KEPT
               for lease in leases):
            try:
                await self.store.drop_leases(PRESENCE, now - PRESENCE_KEPT)
            except StoreError as exc:
                log.warning("old presences not dropped error=%s", exc)

    async def run(self, stop: asyncio.Event) -> None:
        """Rounds every ``length / 3`` seconds until ``stop``; then releases everything."""
        while not stop.is_set():
            await self.round()
            await wait_first(stop, timeout=self.length / 3, clock=self.clock)
        await self.release()

    async def release(self) -> None:
        for leadership in self.leaderships.values():
            await leadership.release()
        try:
            presence = await self.store.acquire_lease(self.presence, self.holder, 0.0,
                                                      self.clock.now())
            await self.store.release_lease(presence)
        except StoreError as exc:
            log.warning("presence not released replica=%s error=%s", self.holder, exc)

    def led(self) -> list[str]:
        """The leases this replica leads now."""
        return [name for name, one in self.leaderships.items() if one.leading]


def describe_leads(leaderships: Mapping[str, Leadership], labels: Mapping[str, str]
                   ) -> str:
    """``leads eu, us`` / ``leads eu; standby for us (leader b)``: for ``/readyz`` and
    ``STATUS=`` (pure but for reading each lease's state)."""
    led = [labels[n] for n, one in leaderships.items() if one.leading]
    others = [f"{labels[n]} (leader {one.lease.holder})"
              if one.lease is not None and one.lease.holder != one.holder
              and one.lease.expires_at > one.clock.now() else labels[n]
              for n, one in leaderships.items() if not one.leading]
    parts = [f"leads {', '.join(led)}" if led else "leads none"]
    if others:
        parts.append(f"standby for {', '.join(others)}")
    return "; ".join(parts)


def names_changed(old: Collection[str], new: Collection[str]) -> bool:
    """Whether a reload would add or remove an account (restart-only: leases are per
    process)."""
    return set(old) != set(new)


def merge_health(health: Health, led: Mapping[str, Health]) -> None:
    """``health`` (what ``/readyz`` reads) from the facts of each account this replica leads
    (``led``, by label): ready once every one has been polled and none is stale."""
    health.first_poll_done = all(one.first_poll_done for one in led.values())
    reasons = [f"{label}: {one.stale_reason}" for label, one in led.items() if one.stale_reason]
    health.stale_reason = "; ".join(reasons) if reasons else None

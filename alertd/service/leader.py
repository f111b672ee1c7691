"""One leader per Stripe account: the lease loop, and the store view that fences its writes.

Where it sits: the daemon runs one :class:`Leadership` per Stripe account (lease ``stripe``
for the one account of ``stripe.api_key``, ``stripe:NAME`` for each of ``accounts:``; several
are spread over the replicas by :mod:`alertd.service.spread`). Only the leader polls Stripe
and records (alert state, groups, outbox rows); every replica delivers (the outbox claims
rows itself). A standby holds no state of its own: every pass loads alert states and groups
from the shared database, so on takeover it continues exactly where the old leader's last
commit left off.

Contract:

* The lease is renewed every ``lease / 3`` seconds; a renewal that fails (database down)
  leaves this replica leader only until the lease it holds expires — then it stops polling
  and recording by itself, before a standby can take over.
* :meth:`Leadership.leading` is ``True`` only while the held lease has more than
  :data:`MARGIN` of its ``lease`` left, so a poll never starts on a lease about to end.
* :class:`FencedStore` passes the held lease as the fence of every
  ``commit_transitions``: a leader paused past its lease (SIGSTOP, a long GC, a VM migration)
  and replaced finds its late write refused in the same transaction
  (:class:`~alertd.store.base.LeaseLostError`), and a standby's writes (the group timer's
  flushes) are refused before they reach the database (:class:`NotLeaderError`).
* A clean stop releases the lease, so the standby takes over at its next renewal instead
  of after the lease expires.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, cast

from alertd.clock import Clock
from alertd.errors import StoreError
from alertd.store.base import Changes, Lease, LeaseLostError, Store
from alertd.tasks import wait_first

log = logging.getLogger("alertd.leader")

#: A lease with less than this share of its length left no longer counts as leading.
MARGIN = 0.2
#: The lease of the one Stripe account of ``stripe.api_key`` (:data:`alertd.accounts.SOLE_LEASE`).
LEASE_NAME = "stripe"


class NotLeaderError(LeaseLostError):
    """A write by a standby: only the account's leader records."""


def leading(lease: Lease | None, holder: str, now: float, length: float) -> bool:
    """Whether ``holder`` may poll and record at ``now`` under ``lease`` (pure)."""
    return lease is not None and lease.holder == holder and \
        lease.expires_at - now > MARGIN * length


class Leadership:
    """Keeps (or waits for) the lease ``name`` for ``holder``; tells ``on_change(leading)``."""

    def __init__(self, store: Store, name: str, holder: str, length: float, clock: Clock,
                 on_change: Callable[[bool, Lease | None], None] | None = None) -> None:
        self.store = store
        self.name = name
        self.holder = holder
        self.length = length
        self.clock = clock
        self.lease: Lease | None = None
        self._on_change = on_change
        self._was_leading = False
        self.changed = asyncio.Event()

    @property
    def leading(self) -> bool:
        return leading(self.lease, self.holder, self.clock.now(), self.length)

    @property
    def role(self) -> str:
        return "leader" if self.leading else "standby"

    async def renew(self) -> None:
        """One attempt to take or renew the lease; a failing store leaves the held lease to
        run out on its own."""
        try:
            self.lease = await self.store.acquire_lease(
                self.name, self.holder, self.length, self.clock.now())
        except StoreError as exc:
            log.warning("lease renewal failed lease=%s error=%s", self.name, exc)
        self._tell()

    def _tell(self) -> None:
        now_leading = self.leading
        if now_leading != self._was_leading:
            self._was_leading = now_leading
            generation = self.lease.generation if self.lease is not None else 0
            if now_leading:
                log.info("leader lease=%s replica=%s generation=%d", self.name, self.holder,
                         generation)
            else:
                holder = self.lease.holder if self.lease is not None else "nobody"
                log.warning("standby lease=%s replica=%s leader=%s", self.name, self.holder,
                            holder)
            self.changed.set()
        if self._on_change is not None:
            self._on_change(now_leading, self.lease)

    async def run(self, stop: asyncio.Event) -> None:
        """Renews every ``length / 3`` seconds until ``stop``; then releases the lease."""
        while not stop.is_set():
            await self.renew()
            await wait_first(stop, timeout=self.length / 3, clock=self.clock)
        await self.release()

    def observe(self, lease: Lease | None) -> None:
        """Notes who holds the lease, without asking for it (:mod:`alertd.service.spread`:
        a replica at its share leaves free accounts to others)."""
        self.lease = lease
        self._tell()

    async def hand_over(self) -> None:
        """Stops leading first (the polls in flight are cancelled), then frees the lease for
        a replica with room to take (:mod:`alertd.service.spread`)."""
        lease, self.lease = self.lease, None
        self._tell()
        if lease is not None and lease.holder == self.holder:
            try:
                await self.store.release_lease(lease)
                log.info("lease handed over lease=%s replica=%s", self.name, self.holder)
            except StoreError as exc:  # it runs out on its own
                log.warning("lease not released lease=%s error=%s", self.name, exc)

    async def release(self) -> None:
        lease, self.lease = self.lease, None
        if lease is not None and lease.holder == self.holder:
            try:
                await self.store.release_lease(lease)
                log.info("lease released lease=%s replica=%s", self.name, self.holder)
            except StoreError as exc:
                log.warning("lease not released lease=%s error=%s", self.name, exc)
        self._tell()


@asynccontextmanager
async def sole_leader(store: Store, holder: str, length: float, clock: Clock, who: str,
                      names: Sequence[str] = (LEASE_NAME,)) -> AsyncIterator[list[Store]]:
    """Every account's lease (``names``) for a one-off command that records (``alertd
    check``), renewed while it runs and released after; :class:`~alertd.errors.StoreError`
    naming the leader when a replica holds one. Yields ``store`` fenced by each lease, in
    the order of ``names``."""
    async with AsyncExitStack() as stack:
        fenced = []
        for name in names:
            leadership = Leadership(store, name, holder, length, clock)
            await leadership.renew()
            if not leadership.leading:
                current = leadership.lease.holder if leadership.lease is not None else \
                    "another process"
                raise StoreError(
                    f"the state database is led by replica {current} (lease {name}); {who} "
                    "records and needs the lease: use 'alertd check --dry-run', or stop the "
                    "replicas")
            stop = asyncio.Event()
            task = asyncio.create_task(leadership.run(stop), name=f"alertd-lease-{name}")
            stack.push_async_callback(_ended, stop, task)
            fenced.append(cast(Store, FencedStore(store, leadership)))
        yield fenced


async def _ended(stop: asyncio.Event, task: asyncio.Task[None]) -> None:
    stop.set()
    await task


class FencedStore:
    """``store`` whose ``commit_transitions`` are fenced by ``leadership``'s lease; every
    other call (loads, the outbox, silences) goes to ``store`` unchanged."""

    def __init__(self, store: Store, leadership: Leadership) -> None:
        self._store = store
        self._leadership = leadership

    async def commit_transitions(self, changes: Changes, fence: Lease | None = None) -> None:
        if not self._leadership.leading:
            raise NotLeaderError(
                f"replica {self._leadership.holder} is standby for {self._leadership.name}: "
                "only the leader records")
        await self._store.commit_transitions(changes, fence=fence or self._leadership.lease)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

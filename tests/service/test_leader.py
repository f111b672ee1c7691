"""Leadership on the real PostgreSQL server: who may poll and record, the standby's refused
writes, takeover after expiry, a paused leader fenced in the database, release on stop."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import cast

import pytest

from alertd.clock import FakeClock
from alertd.service.leader import MARGIN, FencedStore, Leadership, NotLeaderError, leading
from alertd.sim.faults import Fault
from alertd.store.base import Changes, Lease, LeaseLostError, Store
from alertd.store.postgres import PostgresStore
from tests.service.test_daemon import in_process, rule
from tests.store.test_sqlite import FIRING, KEY, NOW

LENGTH = 15.0


def test_leading_stops_a_margin_before_the_lease_ends() -> None:
    lease = Lease("stripe", "a", 1, NOW + LENGTH)
    assert leading(lease, "a", NOW, LENGTH)
    assert not leading(lease, "b", NOW, LENGTH)
    assert not leading(lease, "a", NOW + LENGTH * (1 - MARGIN), LENGTH)
    assert not leading(None, "a", NOW, LENGTH)


async def test_the_standby_records_nothing_until_it_takes_over(pg_url: str) -> None:
    clock_a, clock_b = FakeClock(NOW), FakeClock(NOW)
    async with PostgresStore(pg_url, holder="a") as db_a, \
            PostgresStore(pg_url, holder="b") as db_b:
        a = Leadership(db_a, "stripe", "a", LENGTH, clock_a)
        b = Leadership(db_b, "stripe", "b", LENGTH, clock_b)
        await a.renew()
        await b.renew()
        assert (a.role, b.role) == ("leader", "standby")
        fenced_a = cast(Store, FencedStore(db_a, a))
        fenced_b = cast(Store, FencedStore(db_b, b))
        await fenced_a.commit_transitions(Changes(states={KEY: FIRING}))
        with pytest.raises(NotLeaderError, match="standby"):
            await fenced_b.commit_transitions(Changes(states={KEY: None}))
        assert await fenced_b.load_states() == {KEY: FIRING}  # reads go through: warm

        # a is paused (its clock stands still, it still believes it leads); b's clock runs
        # past the lease and b takes over.
        clock_b.advance(LENGTH + 1)
        await b.renew()
        assert b.role == "leader" and b.lease is not None and b.lease.generation == 2
        assert a.leading  # by its own, stale, view
        with pytest.raises(LeaseLostError, match="no longer held by a"):
            await fenced_a.commit_transitions(Changes(states={KEY: None}))
        assert await db_b.load_states() == {KEY: FIRING}
        await a.renew()  # it wakes up and asks: standby now
        assert a.role == "standby"


async def test_a_stopping_leader_releases_its_lease(pg_url: str) -> None:
    clock = FakeClock(NOW)
    async with PostgresStore(pg_url, holder="a") as db:
        a = Leadership(db, "stripe", "a", LENGTH, clock)
        stop = asyncio.Event()
        task = asyncio.create_task(a.run(stop))
        while a.lease is None:
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(task, 5)
        b = Leadership(db, "stripe", "b", LENGTH, clock)
        await b.renew()  # at once, without waiting for the lease to expire
        assert b.role == "leader"


async def test_a_daemon_that_loses_its_lease_cancels_its_poll_and_stops_polling(
    tmp_path: Path, pg_url: str,
) -> None:
    async with in_process(tmp_path, [rule("tokens")],
                          state={"url": pg_url, "replica": "a", "lease": "15s"}) as s:
        leadership = s.daemon.leadership
        assert leadership is not None and leadership.role == "leader"
        assert s.daemon.health.role == "leader"
        # Every Stripe answer takes 5 s: the poll is in flight when the lease goes.
        s.sim.add_fault(Fault("slow", delay=5.0))
        poll = asyncio.create_task(s.daemon._poll_job(("tokens",)))
        await asyncio.sleep(0.3)
        s.advance(16)  # a paused past its lease; b takes it over
        async with PostgresStore(pg_url, holder="b") as other:
            await other.acquire_lease("stripe", "b", 15, s.clock.now())
        await leadership.renew()
        assert leadership.role == "standby" and s.daemon.health.role == "standby"
        await asyncio.wait_for(poll, 2)  # cancelled long before its answer
        assert s.daemon.poller.last_poll is None  # nothing recorded
        before = s.sim.stats()["requests"]
        await s.daemon._poll_job(("tokens",))  # the scheduler's next run: a standby skips it
        assert s.sim.stats()["requests"] == before

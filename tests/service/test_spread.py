"""Spreading several accounts' leases over replicas: the pure plan of one round, then rounds
of real :class:`Leads` on the PostgreSQL server with a fake clock (no waiting)."""

from __future__ import annotations

from pathlib import Path

import pytest

from alertd.clock import FakeClock
from alertd.service.leader import Leadership
from alertd.service.spread import (
    PRESENCE,
    PRESENCE_KEPT,
    Leads,
    describe_leads,
    fair_share,
    live_replicas,
    plan_round,
)
from alertd.store.base import Lease
from alertd.store.postgres import PostgresStore
from alertd.store.sqlite import SqliteStore

LENGTH = 15.0
NOW = 1_767_225_600.0
NAMES = ["stripe:eu", "stripe:us", "stripe:apac"]


@pytest.mark.parametrize(("accounts", "replicas", "share"), [
    (1, 1, 1), (2, 1, 2), (2, 2, 1), (3, 2, 2), (2, 3, 1), (5, 2, 3), (0, 2, 0), (3, 0, 3),
])
def test_fair_share(accounts: int, replicas: int, share: int) -> None:
    assert fair_share(accounts, replicas) == share


def held(name: str, holder: str, expires: float = NOW + 10) -> Lease:
    return Lease(name, holder, 1, expires)


def presence(holder: str, expires: float = NOW + 10) -> Lease:
    return Lease(f"{PRESENCE}{holder}", holder, 1, expires)


@pytest.mark.parametrize(("leases", "ask", "hand_over"), [
    # Alone: take everything.
    ([], NAMES, None),
    # Two live replicas, nothing held: take up to the share (2 of 3).
    ([presence("b")], NAMES[:2], None),
    # b holds one: I take the other two (share 2).
    ([presence("b"), held("stripe:eu", "b")], ["stripe:us", "stripe:apac"], None),
    # I hold all three and b has just started: keep two, hand one over.
    ([presence("b"), *(held(n, "a") for n in NAMES)], NAMES[:2], "stripe:apac"),
    # I hold my share: a free account is left to b, who has room.
    ([presence("b"), held("stripe:eu", "a"), held("stripe:us", "a")], NAMES[:2], None),
    # b is dead (its presence ran out) and its lease expired: take it.
    ([presence("b", NOW - 1), held("stripe:eu", "a"), held("stripe:us", "a"),
      held("stripe:apac", "b", NOW - 1)], NAMES, None),
    # b's lease expired but its presence is fresh (it renews soon): share 2, I hold 2.
    ([presence("b"), held("stripe:eu", "a"), held("stripe:us", "a"),
      held("stripe:apac", "b", NOW - 1)], NAMES[:2], None),
    # Held by a live b: not mine to take, whatever the share.
    ([presence("b"), presence("c"), *(held(n, "b") for n in NAMES)], [], None),
])
def test_plan_round(leases: list[Lease], ask: list[str], hand_over: str | None) -> None:
    plan = plan_round(leases, NAMES, "a", NOW)
    assert (list(plan.ask), plan.hand_over) == (ask, hand_over)


def test_live_replicas_count_fresh_presences_and_me() -> None:
    leases = [presence("b"), presence("c", NOW - 1), held("stripe:eu", "d")]
    assert live_replicas(leases, "a", NOW) == {"a", "b"}


def replica(db: PostgresStore, holder: str, clock: FakeClock, names: list[str]) -> Leads:
    return Leads(db, {n: Leadership(db, n, holder, LENGTH, clock) for n in names},
                 holder, LENGTH, clock)


async def test_two_replicas_end_up_leading_one_account_each_and_one_takes_over_both(
    pg_url: str,
) -> None:
    clock = FakeClock(NOW)
    names = NAMES[:2]
    async with PostgresStore(pg_url, holder="t") as db:
        a, b = replica(db, "a", clock, names), replica(db, "b", clock, names)
        await a.round()
        assert a.led() == names  # alone: both
        await b.round()  # b is present now; everything is held
        assert b.led() == []
        assert describe_leads(b.leaderships, {n: n for n in names}) == \
            "leads none; standby for stripe:eu (leader a), stripe:us (leader a)"
        clock.advance(LENGTH / 3)
        await a.round()  # share 1 each: a hands one over
        assert a.led() == ["stripe:eu"]
        await b.round()
        assert b.led() == ["stripe:us"]
        for _ in range(3):  # stable
            clock.advance(LENGTH / 3)
            await a.round()
            await b.round()
            assert (a.led(), b.led()) == (["stripe:eu"], ["stripe:us"])
        # b dies: it renews nothing more. a takes over its account as its lease expires.
        rounds = 0
        while "stripe:us" not in a.led() and rounds < 10:
            clock.advance(LENGTH / 3)
            await a.round()
            rounds += 1
        assert a.led() == names
        # Within the lease and one round of a.
        assert rounds * LENGTH / 3 <= LENGTH + LENGTH / 3
        (generation,) = [lease.generation for lease in await db.leases()
                         if lease.name == "stripe:us"]
        assert generation == 3  # a, then b, then a again


async def test_a_clean_stop_frees_every_lease_and_the_presence(pg_url: str) -> None:
    clock = FakeClock(NOW)
    async with PostgresStore(pg_url, holder="t") as db:
        a, b = replica(db, "a", clock, NAMES), replica(db, "b", clock, NAMES)
        await a.round()
        await b.round()
        await a.release()
        await b.round()  # at once, without waiting for anything to expire
        assert b.led() == NAMES
        live = live_replicas(await db.leases(), "b", clock.now())
        assert live == {"b"}


async def test_presences_of_replicas_long_gone_are_deleted(pg_url: str) -> None:
    clock = FakeClock(NOW)
    async with PostgresStore(pg_url, holder="t") as db:
        for gone in ("host:101", "host:102"):  # replicas named by host and pid, restarted
            await db.acquire_lease(f"{PRESENCE}{gone}", gone, 1.0, NOW - PRESENCE_KEPT - 10)
        await db.acquire_lease(f"{PRESENCE}recent", "recent", 1.0, NOW - 60)
        a = replica(db, "a", clock, NAMES[:2])
        await a.round()
        names = {lease.name for lease in await db.leases()}
    assert names == {f"{PRESENCE}a", f"{PRESENCE}recent", *NAMES[:2]}


async def test_sqlite_drops_only_old_leases_of_the_prefix(tmp_path: Path) -> None:
    async with SqliteStore(tmp_path / "alertd.db") as db:
        await db.acquire_lease(f"{PRESENCE}old", "old", 1.0, NOW - 100)
        await db.acquire_lease(f"{PRESENCE}new", "new", 1.0, NOW)
        await db.acquire_lease("stripe:eu", "old", 1.0, NOW - 100)
        assert await db.drop_leases(PRESENCE, NOW - 50) == 1
        assert {lease.name for lease in await db.leases()} == {f"{PRESENCE}new", "stripe:eu"}

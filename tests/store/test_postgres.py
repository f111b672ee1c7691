"""The PostgreSQL store against the real server: migrations, refusal, one transaction, and
outbox claims shared by replicas (``FOR UPDATE SKIP LOCKED`` and the claim lease)."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from alertd.errors import StoreError
from alertd.store.base import Attempt, Changes
from alertd.store.pg_schema import MIGRATIONS, SCHEMA_VERSION, redacted
from alertd.store.postgres import PostgresStore
from alertd.store.rows import outbox_params
from tests.store.test_sqlite import NOW, changes, group, notification

TABLES = {"alert_state", "notification_log", "outbox", "silences", "alert_groups",
          "group_alerts", "leases", "outbox_attempts", "usage_buckets", "alertd_schema"}


def tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = current_schema()")}


def outbox_indexes(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {r[0] for r in conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() "
            "AND tablename = 'outbox'")}


#: The outbox's indexes at the current version: outbox_due went in version 6.
OUTBOX_INDEXES = {"outbox_pkey", "outbox_group_order", "outbox_history",
                  "outbox_history_status"}


async def test_migrations_run_up_from_an_empty_database(pg_url: str) -> None:
    assert tables(pg_url) == set()
    async with PostgresStore(pg_url) as store:
        await store.commit_transitions(changes())
    assert tables(pg_url) == TABLES
    assert outbox_indexes(pg_url) == OUTBOX_INDEXES
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT version FROM alertd_schema").fetchall() == [
            (SCHEMA_VERSION,)]
    async with PostgresStore(pg_url) as store:  # a second start migrates nothing
        assert await store.load_groups() == {("ops", "g1"): group()}


async def test_an_older_database_is_migrated_keeping_its_rows(pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        for statement in MIGRATIONS[0]:
            conn.execute(statement.encode())
        conn.execute("CREATE TABLE alertd_schema (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO alertd_schema VALUES (1)")
        conn.execute("INSERT INTO silences VALUES ('s1', '[\"customer=cus_1\"]', %s, %s, "
                     "'old', NULL, %s, 0)", (NOW, NOW + 3600, NOW))
    async with PostgresStore(pg_url) as store:
        (kept,) = await store.silences(NOW)
        assert kept.comment == "old"
        lease = await store.acquire_lease("acct", "a", 15, NOW)  # version 2's table
        assert lease.generation == 1


async def test_a_version_5_database_loses_outbox_due_and_keeps_its_outbox(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        for statements in MIGRATIONS[:5]:
            for statement in statements:
                conn.execute(statement.encode())
        conn.execute("CREATE TABLE alertd_schema (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO alertd_schema VALUES (5)")
        conn.execute("INSERT INTO outbox (id, receiver, group_key, notification, status, "
                     "attempts, next_attempt_at, created_at) "
                     "VALUES (%s, %s, %s, %s, 'pending', 0, %s, %s)",
                     outbox_params(notification("n1")))
    assert outbox_indexes(pg_url) == OUTBOX_INDEXES | {"outbox_due"}
    async with PostgresStore(pg_url, holder="b") as store:
        assert outbox_indexes(pg_url) == OUTBOX_INDEXES
        (due,) = await store.due_deliveries(NOW + 1)  # the claim works without outbox_due
        assert due.id == "n1" and due.notification == notification("n1")
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT version FROM alertd_schema").fetchall() == [
            (SCHEMA_VERSION,)]


async def test_two_replicas_starting_together_migrate_once(pg_url: str) -> None:
    stores = [PostgresStore(pg_url, holder=f"r{i}") for i in range(3)]
    await asyncio.gather(*(s.open() for s in stores))
    for store in stores:
        await store.close()
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT version FROM alertd_schema").fetchall() == [
            (SCHEMA_VERSION,)]


async def test_a_database_from_a_newer_alertd_is_refused(pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        conn.execute("CREATE TABLE alertd_schema (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO alertd_schema VALUES (%s)", (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreError, match=r"newer alertd .*Upgrade alertd on every replica"):
        await PostgresStore(pg_url).open()


async def test_no_server_is_a_store_error_without_the_password() -> None:
    url = "postgresql://alertd:s3cret@127.0.0.1:1/alertd"
    with pytest.raises(StoreError, match="cannot connect") as caught:
        await PostgresStore(url).open()
    assert "s3cret" not in str(caught.value) and "***" in str(caught.value)
    assert redacted(url) == "postgresql://alertd:***@127.0.0.1:1/alertd"


async def test_a_failure_mid_commit_writes_neither_state_nor_outbox(pg_url: str) -> None:
    async with PostgresStore(pg_url) as store:
        with psycopg.connect(pg_url) as conn:  # a real server error on the outbox insert
            conn.execute("CREATE FUNCTION full_disk() RETURNS trigger LANGUAGE plpgsql AS "
                         "$$ BEGIN RAISE EXCEPTION 'could not extend file: disk full'; END $$")
            conn.execute("CREATE TRIGGER full_disk BEFORE INSERT ON outbox "
                         "FOR EACH ROW EXECUTE FUNCTION full_disk()")
        with pytest.raises(StoreError, match="disk full"):
            await store.commit_transitions(changes())
        assert await store.load_states() == {}
        assert await store.load_groups() == {} and await store.load_sent() == {}
        assert await store.outbox() == []


async def test_two_replicas_never_claim_the_same_row(pg_url: str) -> None:
    rows = tuple(notification(f"n{i}", group_key=f"g{i}", created_at=NOW + i)
                 for i in range(6))
    async with PostgresStore(pg_url, holder="a") as a, PostgresStore(pg_url, holder="b") as b:
        await a.commit_transitions(Changes(outbox=rows))
        got_a, got_b = await asyncio.gather(a.due_deliveries(NOW + 10, limit=3),
                                            b.due_deliveries(NOW + 10, limit=3))
        ids_a, ids_b = {r.id for r in got_a}, {r.id for r in got_b}
        assert not ids_a & ids_b and ids_a | ids_b == {r.id for r in rows}
        # Claimed rows are offered again to their claimant only, and wake no other replica
        # before the claims run out.
        assert await b.due_deliveries(NOW + 10) == got_b
        async with PostgresStore(pg_url, holder="c") as c:
            assert await c.due_deliveries(NOW + 11) == []
            assert await c.next_attempt_at() == NOW + 10 + a.claim_seconds


async def test_locked_rows_are_skipped_not_waited_for(pg_url: str) -> None:
    async with PostgresStore(pg_url, holder="b") as b:
        await b.commit_transitions(Changes(outbox=(
            notification("locked", group_key="g1"), notification("free", group_key="g2"))))
        with psycopg.connect(pg_url) as other:  # another replica mid-claim, holding the lock
            other.execute("SELECT * FROM outbox WHERE id = 'locked' FOR UPDATE")
            got = await asyncio.wait_for(b.due_deliveries(NOW + 1), timeout=5)
            other.rollback()
        assert [r.id for r in got] == ["free"]


async def test_a_group_is_claimed_whole_and_in_order(pg_url: str) -> None:
    async with PostgresStore(pg_url, holder="a") as a, PostgresStore(pg_url, holder="b") as b:
        await a.commit_transitions(Changes(outbox=(
            notification("fire", created_at=NOW), notification("resolve", created_at=NOW + 1))))
        assert [r.id for r in await a.due_deliveries(NOW + 5, limit=1)] == ["fire"]
        # "resolve" waits behind "fire", which replica a holds: b must not overtake it.
        assert await b.due_deliveries(NOW + 5) == []
        await a.record_attempts([Attempt("fire", "delivered", 1, NOW + 5)])
        assert [r.id for r in await b.due_deliveries(NOW + 6)] == ["resolve"]


async def test_a_dead_replicas_claim_expires_and_another_sends_the_same_row(
    pg_url: str,
) -> None:
    async with PostgresStore(pg_url, holder="a", claim_seconds=30) as a, \
            PostgresStore(pg_url, holder="b") as b:
        await a.commit_transitions(Changes(outbox=(notification("n1"),)))
        (claimed,) = await a.due_deliveries(NOW)
        await a.close()  # replica a dies mid-delivery: nothing recorded
        assert await b.due_deliveries(NOW + 29) == []
        (again,) = await b.due_deliveries(NOW + 30)
        assert again.id == claimed.id == "n1" and again.notification == claimed.notification
        await b.record_attempts([Attempt("n1", "delivered", 1, NOW + 31)])
        (row,) = await b.outbox("delivered")
        assert row.attempts == 1

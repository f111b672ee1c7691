"""The state store on both backends (real SQLite files, a real PostgreSQL schema): what is
written reads back, one transaction, idempotent outbox, queries; and the SQLite file format:
schema, migration, refusal."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from alertd.alerts import AlertState
from alertd.errors import StoreError
from alertd.model import Alert, Customer, Notification, Period, SeriesKey
from alertd.store.base import Attempt, Changes, GroupEntry, NotificationGroup, SentRecord
from alertd.store.schema import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION
from alertd.store.sqlite import SqliteStore
from tests.store.conftest import OpenStore

NOW = 1_735_689_600
KEY = SeriesKey("gpt4-daily", "cus_1", (("model", "gpt-4"), ("tier", "pro")))
FIRING = AlertState(status="firing", level="warning", rank=0, pending_since=NOW,
                    firing_since=NOW, last_active_at=NOW, period_key="2025-01-01",
                    period_rank=0, announced_rank=0)


def alert(customer: str = "cus_1") -> Alert:
    return Alert(
        fingerprint=KEY.fingerprint, status="firing", rule="gpt4-daily", severity="warning",
        customer=Customer(customer, "Acme", "ops@acme.example", {"plan": "pro"}),
        meter="mtr_1", dimensions=KEY.group, window=Period(NOW, NOW + 86400, "UTC"),
        value=120.0, labels={"rule": "gpt4-daily", "customer": customer}, annotations={},
        starts_at=NOW, ends_at=None, refreshed_at=NOW - 60, threshold=100.0,
    )


def notification(nid: str = "n1", receiver: str = "ops", group_key: str = "g1",
                 created_at: int = NOW) -> Notification:
    return Notification(nid, receiver, "firing", group_key, {"rule": "gpt4-daily"},
                        (alert(),), created_at)


def group(receiver: str = "ops", key: str = "g1") -> NotificationGroup:
    return NotificationGroup(receiver, key, {"rule": "gpt4-daily"}, 30.0, 300.0, 3600.0, True,
                             NOW, None, (GroupEntry(f"{KEY.fingerprint}@{NOW}", 0, alert()),))


def changes(**overrides: object) -> Changes:
    values: dict[str, object] = {
        "states": {KEY: FIRING},
        "groups": (group(),),
        "sent": (SentRecord("ops", "g1", {f"{KEY.fingerprint}@{NOW}": 0}, frozenset(), NOW,
                            "n1"),),
        "outbox": (notification(),),
    }
    values.update(overrides)
    return Changes(**values)  # type: ignore[arg-type]


async def test_new_file_gets_the_current_schema_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "state" / "alertd.db"
    async with SqliteStore(path):
        pass
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"alert_state", "notification_log", "outbox", "silences", "alert_groups",
            "group_alerts"} <= tables


async def test_everything_survives_a_reopen(make_store: OpenStore) -> None:
    async with make_store() as store:
        await store.commit_transitions(changes())
    async with make_store() as store:
        assert await store.load_states() == {KEY: FIRING}
        assert await store.load_states(["other-rule"]) == {}
        assert await store.load_groups() == {("ops", "g1"): group()}
        sent = (await store.load_sent())[("ops", "g1")]
        assert sent.notification_id == "n1" and sent.firing == {f"{KEY.fingerprint}@{NOW}": 0}
        (row,) = await store.outbox()
        assert (row.id, row.status, row.attempts, row.notification) == (
            "n1", "pending", 0, notification())
        assert await store.next_group_due() == NOW + 30


async def test_forgetting_states_and_dropping_groups(make_store: OpenStore) -> None:
    async with make_store() as store:
        await store.commit_transitions(changes())
        await store.commit_transitions(Changes(states={KEY: None},
                                               dropped_groups=(("ops", "g1"),)))
        assert await store.load_states() == {}
        assert await store.load_groups() == {} and await store.load_sent() == {}
        assert await store.next_group_due() is None


async def test_a_failure_mid_commit_writes_neither_state_nor_outbox(tmp_path: Path) -> None:
    path = tmp_path / "alertd.db"
    async with SqliteStore(path):
        pass
    # A real SQLite failure on the last statement of the transaction (the outbox insert).
    conn = sqlite3.connect(path)
    conn.execute("CREATE TRIGGER full_disk BEFORE INSERT ON outbox "
                 "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END")
    conn.commit()
    conn.close()
    async with SqliteStore(path) as store:
        with pytest.raises(StoreError, match="disk is full"):
            await store.commit_transitions(changes())
        assert await store.load_states() == {}
        assert await store.load_groups() == {}
        assert await store.load_sent() == {}
        assert await store.outbox() == []


async def test_outbox_insert_is_idempotent(make_store: OpenStore) -> None:
    async with make_store() as store:
        await store.commit_transitions(Changes(outbox=(notification(),)))
        await store.record_attempt(Attempt("n1", "delivered", 1, NOW + 5))
        await store.commit_transitions(Changes(outbox=(notification(),)))  # a redo
        (row,) = await store.outbox()
        assert (row.status, row.attempts, row.delivered_at) == ("delivered", 1, NOW + 5)


async def test_outbox_queries(make_store: OpenStore) -> None:
    async with make_store() as store:
        rows = (notification("late", created_at=NOW + 10), notification("early"),
                notification("other", receiver="hooks"))
        await store.commit_transitions(Changes(outbox=rows))
        assert [r.id for r in await store.due_deliveries(NOW + 10)] == ["early", "other",
                                                                         "late"]
        assert [r.id for r in await store.due_deliveries(NOW, "ops")] == ["early"]
        await store.record_attempt(Attempt("early", "pending", 1, NOW, NOW + 60, "HTTP 503"))
        # "late" is in the same group as "early": it waits behind it, in order.
        assert await store.due_deliveries(NOW + 10, "ops") == []
        assert await store.next_attempt_at("ops") == NOW + 60
        assert await store.next_attempt_at() == NOW  # "other" is another receiver's
        await store.record_attempt(Attempt("early", "undeliverable", 2, NOW + 60,
                                           error="HTTP 404"))
        assert await store.next_attempt_at("ops") == NOW + 10
        assert await store.pending_count() == 2
        (failed,) = await store.outbox("undeliverable")
        assert (failed.id, failed.last_error) == ("early", "HTTP 404")
        assert await store.prune_outbox(NOW + 1) == 1
        assert {r.id for r in await store.outbox()} == {"late", "other"}


async def test_migrates_a_file_from_an_older_version(tmp_path: Path) -> None:
    path = tmp_path / "alertd.db"
    conn = sqlite3.connect(path)
    for statement in MIGRATIONS[0]:
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute("INSERT INTO silences VALUES ('s1', '[\"customer=cus_1\"]', ?, ?, 'old', "
                 "NULL, ?, 0)", (NOW, NOW + 3600, NOW))
    conn.commit()
    conn.close()
    async with SqliteStore(path) as store:
        (kept,) = await store.silences(NOW)
        assert kept.id == "s1" and kept.comment == "old"
        await store.commit_transitions(changes())  # the new tables work
        assert await store.load_groups() == {("ops", "g1"): group()}
    migrated = sqlite3.connect(path)
    assert migrated.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    # Version 7 dropped outbox_due: outbox_history_status serves its queries.
    indexes = {r[1] for r in migrated.execute("PRAGMA index_list(outbox)")}
    assert "outbox_due" not in indexes and "outbox_history_status" in indexes


async def test_a_file_from_a_newer_alertd_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "alertd.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match=r"written by a newer alertd .*Upgrade alertd"):
        await SqliteStore(path).open()


async def test_a_corrupt_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "alertd.db"
    path.write_bytes(b"this is not SQLite at all" * 100)
    with pytest.raises(StoreError, match=r"not a usable alertd state file .*move it aside"):
        await SqliteStore(path).open()


async def test_another_applications_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE invoices (id TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="another application"):
        await SqliteStore(path).open()


async def test_using_a_closed_store_says_so(make_store: OpenStore) -> None:
    store = make_store()
    with pytest.raises(StoreError, match="not open"):
        await store.load_states()

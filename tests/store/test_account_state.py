"""Alert state keyed by Stripe account on both backends: a first-release database keeps its
rows and keys (account ``""``) through the migration, and two accounts' series of the same
rule, customer and group are two rows that never overwrite each other."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from pathlib import Path

import psycopg

from alertd.accounts import account_view
from alertd.store import pg_schema, schema
from alertd.store.base import Changes, NotificationGroup, Store
from alertd.store.postgres import PostgresStore
from alertd.store.rows import group_text
from alertd.store.sqlite import SqliteStore
from tests.store.conftest import OpenStore
from tests.store.test_sqlite import FIRING, KEY, NOW, group

EU, US = (dataclasses.replace(KEY, account=name) for name in ("eu", "us"))
OLD_ROW = (KEY.rule, KEY.customer, group_text(KEY), KEY.fingerprint,
           json.dumps(FIRING.to_dict()), NOW)


async def two_accounts_apart(store: Store) -> None:
    """What both backends must do once migrated."""
    (old,) = (await store.load_states()).items()
    assert old == (KEY, FIRING)  # the first release's row, its key unchanged
    resolved = dataclasses.replace(FIRING, status="inactive", resolved_at=NOW + 60)
    await store.commit_transitions(Changes(states={EU: FIRING, US: resolved}))
    assert await store.load_states() == {KEY: FIRING, EU: FIRING, US: resolved}
    await store.commit_transitions(Changes(states={EU: None}))  # forget eu's only
    assert await store.load_states() == {KEY: FIRING, US: resolved}
    assert len({KEY.fingerprint, EU.fingerprint, US.fingerprint}) == 3


async def test_a_first_release_sqlite_file_keeps_its_state(tmp_path: Path) -> None:
    path = tmp_path / "alertd.db"
    conn = sqlite3.connect(path)
    for statements in schema.MIGRATIONS[:5]:
        for statement in statements:
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 5")
    conn.execute(f"PRAGMA application_id = {schema.APPLICATION_ID}")
    conn.execute("INSERT INTO alert_state VALUES (?, ?, ?, ?, ?, ?)", OLD_ROW)
    conn.commit()
    conn.close()
    async with SqliteStore(path) as store:
        await two_accounts_apart(store)
    version = sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0]
    assert version == schema.SCHEMA_VERSION


async def test_a_first_release_postgres_database_keeps_its_state(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        for statements in pg_schema.MIGRATIONS[:3]:
            for statement in statements:
                conn.execute(statement.encode())
        conn.execute("CREATE TABLE alertd_schema (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO alertd_schema VALUES (3)")
        conn.execute("INSERT INTO alert_state VALUES (%s, %s, %s, %s, %s, %s)", OLD_ROW)
    async with PostgresStore(pg_url) as store:
        await two_accounts_apart(store)


async def test_the_next_due_group_of_one_account_is_read_by_the_database(
        make_store: OpenStore) -> None:
    """An account's timer asks for its own groups' earliest due time (a missing ``account``
    label is the account ``""``); the view of an account gives the same answer as loading
    its groups would, without loading them."""
    def labelled(key: str, created: int, **labels: str) -> NotificationGroup:
        return dataclasses.replace(group(key=key), group_labels={"rule": "r", **labels},
                                   created_at=created)

    async with make_store() as store:
        assert await store.next_group_due("eu") is None
        await store.commit_transitions(Changes(groups=(
            labelled("plain", NOW), labelled("eu-1", NOW + 100, account="eu"),
            labelled("eu-2", NOW + 50, account="eu"), labelled("us", NOW + 10, account="us"))))
        assert await store.next_group_due() == NOW + 30
        assert await store.next_group_due("") == NOW + 30
        assert await store.next_group_due("eu") == NOW + 80
        assert await store.next_group_due("us") == NOW + 40
        assert await store.next_group_due("ap") is None
        for name in ("", "eu", "us", "ap"):
            view = account_view(store, name)
            loaded = [g.due_at for g in (await view.load_groups()).values()]
            assert await view.next_group_due() == min(loaded, default=None)

"""``Store.load_scope`` on both backends (a real SQLite file, a real PostgreSQL schema): the
groups and log a scoped flush loads are :func:`~alertd.store.base.select_scope` of everything
stored; the queries use the indexes of SQLite's migration 8 and PostgreSQL's 7, which an
upgraded store gains too; and a daemon's pipeline flushing scoped writes, sends and keeps
exactly what one loading every group does, commit after commit."""

from __future__ import annotations

import random
import sqlite3
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
import pytest

from alertd.accounts import account_store
from alertd.conditions.base import Bound
from alertd.config.settings import Receiver, RootRoute
from alertd.model import Alert, Customer, Finding, Period, SeriesKey
from alertd.notify.pipeline import Pipeline
from alertd.notify.routing import RouteTree
from alertd.rules.schema import Rule
from alertd.store import pg_schema, schema
from alertd.store.base import (
    Changes,
    GroupEntry,
    GroupScope,
    NotificationGroup,
    SentRecord,
    Store,
    select_scope,
)
from alertd.store.postgres import SCOPE_IDS as PG_SCOPE_IDS
from alertd.store.postgres import PostgresStore
from alertd.store.sqlite import SCOPE_IDS, SqliteStore
from tests.conftest import schema_url
from tests.store.conftest import OpenStore

NOW = 1_735_689_600


def alert(instance: str) -> Alert:
    customer = instance.split("@")[0]
    return Alert(
        fingerprint=f"fp-{customer}", status="firing", rule="quota", severity="warning",
        customer=Customer(customer, customer, None, {}), meter="mtr_1", dimensions=(),
        window=Period(NOW, NOW + 86400), value=120.0,
        labels={"rule": "quota", "customer": customer}, annotations={}, starts_at=NOW,
        ends_at=None, refreshed_at=None)


def stored_groups(rng: random.Random, count: int = 60) -> tuple[list[NotificationGroup],
                                                                   list[SentRecord]]:
    """Groups of every timing (first flush pending or not, fractional waits), some sharing
    an episode (two receivers), with a log for most and a few log records of no group."""
    groups, records = [], []
    for index in range(count):
        receiver = rng.choice(["ops", "pager"])
        key = f'{{}}:{{customer="cus_{index:03}"}}'
        flushed = rng.choice([None, NOW + rng.randrange(-600, 600)])
        instances = {f"cus_{rng.randrange(count):03}@{NOW}" for _ in range(rng.randrange(1, 4))}
        groups.append(NotificationGroup(
            receiver, key, {"customer": f"cus_{index:03}"}, rng.choice([0.0, 30.0, 12.5]),
            rng.choice([60.0, 300.0]), 3600.0, rng.random() < 0.5,
            NOW + rng.randrange(-600, 600), flushed,
            tuple(GroupEntry(i, 0, alert(i)) for i in sorted(instances))))
        if rng.random() < 0.7 or index % 10 == 0:
            records.append(SentRecord(receiver, key if index % 10 else f"gone-{index}",
                                      {next(iter(instances)): 0}, frozenset(), NOW, f"n{index}"))
    return groups, records


def scopes(rng: random.Random, groups: list[NotificationGroup]) -> list[GroupScope]:
    """Scopes at due times and between them, naming stored and unknown groups and episodes."""
    dues = sorted({int(g.due_at) for g in groups})
    found = [GroupScope(NOW - 10_000), GroupScope(NOW + 10_000)]
    for _ in range(40):
        picked = rng.sample(groups, rng.randrange(0, 6))
        found.append(GroupScope(
            rng.choice(dues) + rng.choice([-1, 0, 0, 1]),
            frozenset({g.ident for g in picked} | {("ops", f"new-{rng.randrange(9)}"),
                                                   ("ops", "gone-10")}),
            frozenset({rng.choice(g.entries).instance for g in rng.sample(groups, 3)}
                      | {"nobody@0"})))
    return found


async def test_load_scope_is_select_scope_of_everything(make_store: OpenStore) -> None:
    rng = random.Random(13)
    groups, records = stored_groups(rng)
    async with make_store() as store:
        await store.commit_transitions(Changes(groups=tuple(groups), sent=tuple(records)))
        every, logged = await store.load_groups(), await store.load_sent()
        sizes = []
        for scope in scopes(rng, groups):
            loaded = await store.load_scope(scope)
            assert loaded == select_scope(every, logged, scope)
            sizes.append(len(loaded.groups))
    assert min(sizes) == 0 and max(sizes) == len(groups)  # nothing, everything, and between
    assert len({n for n in sizes if 0 < n < len(groups)}) > 10


def sqlite_plan(conn: sqlite3.Connection) -> str:
    return " ".join(r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN {SCOPE_IDS}",
                                               (NOW, "[]", "[]")))


async def test_the_sqlite_scope_query_searches_indexes(tmp_path: Path) -> None:
    async with SqliteStore(tmp_path / "alertd.db"):
        pass
    plan = sqlite_plan(sqlite3.connect(tmp_path / "alertd.db"))
    assert "SEARCH alert_groups USING INDEX alert_groups_due" in plan
    assert "SEARCH group_alerts USING INDEX group_alerts_instance" in plan
    assert "SCAN alert_groups" not in plan and "SCAN group_alerts" not in plan


async def test_a_version_7_file_gains_the_scope_indexes(tmp_path: Path) -> None:
    path = tmp_path / "alertd.db"
    conn = sqlite3.connect(path)
    for statements in schema.MIGRATIONS[:7]:
        for statement in statements:
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 7")
    conn.execute(f"PRAGMA application_id = {schema.APPLICATION_ID}")
    conn.commit()
    conn.close()
    groups, records = stored_groups(random.Random(7), 10)
    async with SqliteStore(path) as store:
        await store.commit_transitions(Changes(groups=tuple(groups), sent=tuple(records)))
        scope = GroupScope(NOW + 10_000)
        assert (await store.load_scope(scope)).groups == await store.load_groups()
    assert "SCAN" not in sqlite_plan(sqlite3.connect(path)).replace("SCAN json_each", "")


def pg_plan(url: str) -> str:
    with psycopg.connect(url) as conn:
        conn.execute("SET enable_seqscan = off")  # small tables: ask whether an index serves
        found = conn.execute(f"EXPLAIN {PG_SCOPE_IDS}".encode(),
                             (NOW, [], [], [])).fetchall()
    return " ".join(str(r[0]) for r in found)


async def test_the_postgres_scope_query_uses_the_indexes(pg_url: str) -> None:
    async with PostgresStore(pg_url):
        pass
    plan = pg_plan(pg_url)
    assert "alert_groups_due" in plan and "group_alerts_instance" in plan
    assert "Seq Scan" not in plan


async def test_a_version_6_database_gains_the_scope_indexes(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        for statements in pg_schema.MIGRATIONS[:6]:
            for statement in statements:
                conn.execute(statement.encode())
        conn.execute("CREATE TABLE alertd_schema (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO alertd_schema VALUES (6)")
    groups, records = stored_groups(random.Random(6), 10)
    async with PostgresStore(pg_url) as store:
        await store.commit_transitions(Changes(groups=tuple(groups), sent=tuple(records)))
        scope = GroupScope(NOW + 10_000)
        assert (await store.load_scope(scope)).groups == await store.load_groups()
    assert "alert_groups_due" in pg_plan(pg_url)


# ------------------------------------------------------------------ the pipeline, end to end

RULE = Rule.model_validate({
    "name": "quota", "meter": "mtr_1",
    "condition": {"type": "threshold", "levels": {"warning": 100, "critical": 200}},
})
ROUTE: dict[str, Any] = {
    "receiver": "ops", "group_by": ["rule", "customer"], "group_wait": "30s",
    "group_interval": "2m", "repeat_interval": "10m",
    "routes": [{"match": {"severity": "critical"}, "receiver": "pager", "continue": True,
                "group_by": ["rule"]}],
}
RECEIVERS = [Receiver.model_validate({"name": n, "webhook": {"url": f"http://x/{n}"},
                                      "send_resolved": n == "ops"}) for n in ("ops", "pager")]


def finding(customer: str, value: float) -> Finding:
    level = "critical" if value >= 200 else "warning" if value >= 100 else None
    return Finding(
        key=SeriesKey("quota", customer), meter="mtr_1", dimensions=(),
        window=Period(NOW, NOW + 86400), complete=False, value=value,
        active=level is not None, level=level, state="inactive", message="",
        figures=Bound(100.0), period_key="2025-01-01")


@pytest.fixture(params=["sqlite", "postgres"])
async def two_stores(request: pytest.FixtureRequest, tmp_path: Path
                     ) -> AsyncIterator[tuple[Store, Store]]:
    """Two empty stores of one backend: one for the scoped pipeline, one for the other."""
    pair: list[SqliteStore | PostgresStore]
    if request.param == "sqlite":
        pair = [SqliteStore(tmp_path / "scoped.db"), SqliteStore(tmp_path / "whole.db")]
    else:
        base: str = request.getfixturevalue("pg_server")
        other = f"t_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {other}".encode())
        request.addfinalizer(lambda: _drop(base, other))
        pair = [PostgresStore(request.getfixturevalue("pg_url"), holder="test"),
                PostgresStore(schema_url(other), holder="test")]
    async with AsyncExitStack() as stack:
        for store in pair:
            await stack.enter_async_context(store)
        yield pair[0], pair[1]


def _drop(base: str, name: str) -> None:
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {name} CASCADE".encode())


async def test_a_scoped_daemon_pipeline_does_what_a_whole_one_does(
    two_stores: tuple[Store, Store],
) -> None:
    """Forty customers crossing, escalating, resolving and firing again over an hour and a
    half of polls (each a commit of some customers, as the daemon's batches are) and timer
    flushes: every commit leaves the same groups, log and outbox on both stores."""
    scoped_store, whole_store = two_stores
    tree = RouteTree(RootRoute.model_validate(ROUTE))
    scoped = Pipeline(scoped_store, tree, RECEIVERS)
    whole = Pipeline(whole_store, tree, RECEIVERS, scoped=False)
    rng = random.Random(5)
    customers = [f"cus_{i:02}" for i in range(40)]
    now = NOW
    for _ in range(60):
        now += rng.choice([10, 30, 45, 90])
        batch = [finding(c, rng.choice([0.0, 50.0, 150.0, 150.0, 250.0]))
                 for c in rng.sample(customers, 8)]
        first = await scoped.apply(batch, {"quota": RULE}, now)
        second = await whole.apply(batch, {"quota": RULE}, now)
        assert first.notifications == second.notifications
        assert first.transitions == second.transitions
        timer = await scoped.flush(now + 5), await whole.flush(now + 5)
        assert timer[0].notifications == timer[1].notifications
        assert await scoped_store.load_groups() == await whole_store.load_groups()
        assert await scoped_store.load_sent() == await whole_store.load_sent()
        assert await scoped_store.load_states() == await whole_store.load_states()
    outbox = [(r.id, r.notification) for r in await scoped_store.outbox()]
    assert outbox == [(r.id, r.notification) for r in await whole_store.outbox()]
    assert len(outbox) > 30
    statuses = {(n.receiver, n.status) for _, n in outbox}
    assert {("ops", "firing"), ("ops", "resolved"), ("pager", "firing")} <= statuses


async def test_an_account_view_loads_its_own_groups_only(tmp_path: Path) -> None:
    """A named account's leader flushes its groups and no other's (alertd.accounts)."""
    groups, records = stored_groups(random.Random(3), 20)
    groups = [replace(g, group_labels={**g.group_labels, "account": "eu" if i % 2 else "us"})
              for i, g in enumerate(groups)]
    async with SqliteStore(tmp_path / "alertd.db") as store:
        await store.commit_transitions(Changes(groups=tuple(groups), sent=tuple(records)))
        view = account_store(store, "eu")
        every, logged = await view.load_groups(), await view.load_sent()
        assert 0 < len(every) < len(groups)
        for scope in scopes(random.Random(4), groups):
            assert await view.load_scope(scope) == select_scope(every, logged, scope)

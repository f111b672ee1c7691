"""Pipelined outbox rounds: the next round is claimed while the current one is sent.

The claim excludes the groups in flight, so two overlapping rounds never take the same row
(no repeated Idempotency-Key) and never reorder a group — checked on SQLite and PostgreSQL
with a real HTTP receiver, over groups cut across round boundaries; and at the store, the
exclusion itself and the set-based record of a batch of attempts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp import web
from batch_worker import notification  # a sibling file's notifications

from alertd.clock import FakeClock
from alertd.config.settings import Settings
from alertd.model import Notification
from alertd.notify.factory import notifiers
from alertd.notify.outbox import ROUND_ROWS, Outbox
from alertd.sinks import serve_posts
from alertd.store.base import Attempt, Changes
from alertd.store.postgres import PostgresStore
from alertd.store.sqlite import SqliteStore

#: Three rows per group: the 200-row round boundary cuts a group in two.
PER_GROUP = 3
COUNT = 3 * ROUND_ROWS + 7


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest,
                tmp_path: Path) -> AsyncIterator[SqliteStore | PostgresStore]:
    opened: SqliteStore | PostgresStore = (
        SqliteStore(tmp_path / "alertd.db") if request.param == "sqlite"
        else PostgresStore(request.getfixturevalue("pg_url"), holder="test-replica"))
    async with opened:
        yield opened


def grouped(count: int) -> tuple[Notification, ...]:
    return tuple(replace(notification(i), group_key=f"g{i // PER_GROUP}")
                 for i in range(count))


async def test_overlapping_rounds_never_repeat_a_row_nor_reorder_a_group(
    store: SqliteStore | PostgresStore,
) -> None:
    heard: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        heard.append(request.headers["Idempotency-Key"])
        return web.Response(status=200)

    rows = grouped(COUNT)
    await store.commit_transitions(Changes(outbox=rows))
    async with serve_posts(handle, shutdown_timeout=1.0) as url:
        config = Settings(receivers=[{"name": "ops", "webhook": {"url": f"{url}/ops"}}],
                          route={"receiver": "ops"}, rule_files=[])
        async with notifiers(config, clock=FakeClock(0)) as built:
            outbox = Outbox(store, built, config.delivery, FakeClock(1_735_689_600))
            report = await outbox.run_until_idle(600)
    assert len(heard) == len(set(heard)) == COUNT  # every row once: no row in two rounds
    position = {key: i for i, key in enumerate(heard)}
    for g in range(0, COUNT, PER_GROUP):
        ids = [n.id for n in rows[g:g + PER_GROUP]]
        assert sorted(ids, key=position.__getitem__) == ids, f"group g{g // PER_GROUP}"
    assert report.outcomes == {"delivered": COUNT}
    assert {r.status for r in await store.outbox()} == {"delivered"}


async def test_a_claim_skips_the_groups_in_flight(store: SqliteStore | PostgresStore) -> None:
    await store.commit_transitions(Changes(outbox=grouped(9)))  # g0, g1, g2
    now = 1_735_689_600 + 10
    got = await store.due_deliveries(now, "ops", exclude_groups={"g0", "g2"})
    assert [r.id for r in got] == ["n0003", "n0004", "n0005"]
    # Once g1 is the one in flight, the others are offered, still in order.
    got = await store.due_deliveries(now, "ops", exclude_groups={"g1"})
    assert [r.group_key for r in got] == ["g0"] * 3 + ["g2"] * 3


async def test_a_batch_of_attempts_is_recorded_whole_and_logged_in_order(
    store: SqliteStore | PostgresStore,
) -> None:
    await store.commit_transitions(Changes(outbox=grouped(2)))
    at = 1_735_689_600 + 5
    await store.record_attempts([
        Attempt("n0000", "pending", 1, at, next_attempt_at=at + 30, error="503"),
        Attempt("n0001", "delivered", 1, at),
        Attempt("n0000", "delivered", 2, at + 1),  # the row's last attempt decides
    ])
    rows = {r.id: r for r in await store.outbox()}
    assert (rows["n0000"].status, rows["n0000"].attempts) == ("delivered", 2)
    assert rows["n0001"].status == "delivered"
    assert [(a.attempts, a.status) for a in await store.attempts("n0000")] == [
        (1, "pending"), (2, "delivered")]

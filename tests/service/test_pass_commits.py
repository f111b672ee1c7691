"""A pass killed between its commits loses no notification and sends none twice
(:class:`alertd.service.recording.PassRecorder` commits a pass a few batches at a time).

The pass here commits after every batch (``commit_series=1``, one customer a batch) and dies
after batch ``k`` (its ``on_batch`` raises, as a crash between two commits would leave the
store); the next pass, at the same instant, redoes it. Against a pass that was never killed,
on another store: the same alert states, and every alert notified exactly once with the same
content. Real parts: the simulator, SQLite files, the PostgreSQL server.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from alertd.clock import SystemClock
from alertd.config.settings import RootRoute
from alertd.notify.pipeline import Pipeline
from alertd.notify.routing import RouteTree
from alertd.rules.loader import RuleSet
from alertd.service.engine import BatchFindings, Engine
from alertd.service.recording import PassRecorder
from alertd.service.world import stripe_stack
from alertd.sim.generator import UsageGenerator
from alertd.sim.server import Simulator
from alertd.sim.testing import TEST_NOW
from alertd.store.base import Store
from alertd.store.postgres import PostgresStore
from alertd.store.sqlite import SqliteStore
from tests.service.test_pass_recorder import NARROWED, RULES, settings_for

#: One group per (rule, customer), flushed at once: each commit writes its outbox rows.
ROUTE = RootRoute.model_validate({"receiver": "ops", "group_by": ["rule", "customer"],
                                  "group_wait": "0s", "group_interval": "5m",
                                  "repeat_interval": "1h"})
OpenStore = Callable[[str], "SqliteStore | PostgresStore"]


class Killed(Exception):
    """The pass dies here (between two commits)."""


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    generator = UsageGenerator(customers=14, seed=3, days=10, now=TEST_NOW)
    async with Simulator(generator, port=0, now=TEST_NOW) as running:
        yield running


@pytest.fixture(params=["sqlite", "postgres"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> OpenStore:
    """Opens one of two stores by name ("killed", "whole") on the backend of the test."""
    if request.param == "sqlite":
        return lambda name: SqliteStore(tmp_path / f"{name}.db")
    urls = {"killed": request.getfixturevalue("pg_url")}
    # A second schema for the pass that is never killed.
    server = request.getfixturevalue("pg_server")
    import uuid

    import psycopg

    from tests.conftest import schema_url

    schema = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}".encode())

    def drop() -> None:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE".encode())

    request.addfinalizer(drop)
    urls["whole"] = schema_url(schema)
    return lambda name: PostgresStore(urls[name], holder="test-replica")


async def one_pass(sim: Simulator, store: Store, rules: RuleSet, now: int,
                   kill_after: int | None = None) -> PassRecorder:
    """A pass at ``now`` committed after every batch; dies after ``kill_after`` batches."""
    settings = settings_for(sim)
    pipeline = Pipeline(store, RouteTree(ROUTE), settings.receivers)
    async with stripe_stack(settings, clock=SystemClock()) as stack:
        engine = Engine(settings, rules, stack.source, stack.directory, batch_customers=1)
        recorder = await PassRecorder.start(pipeline, rules, [r.name for r in rules.rules],
                                            now, engine.meters, commit_series=1)
        batches = 0

        async def on_batch(found: BatchFindings) -> None:
            nonlocal batches
            if kill_after is not None and batches >= kill_after:
                raise Killed(f"killed after batch {batches}")
            batches += 1
            await recorder.batch(found)

        await engine.run_pass(now, on_batch=on_batch)
        await recorder.finish(())
        return recorder


async def notified(store: Store) -> Counter[tuple[str, str, str]]:
    """(fingerprint, status, rule) of every alert in every outbox row, counted."""
    return Counter((a.fingerprint, a.status, a.rule) for row in await store.outbox()
                   for a in row.notification.alerts)


async def contents(store: Store) -> list[tuple[str, str, Any]]:
    """Each outbox row's receiver, group and alerts (without its id and time)."""
    found = [(row.receiver, row.group_key,
              sorted(row.notification.alerts, key=lambda a: (a.fingerprint, a.status)))
             for row in await store.outbox()]
    return sorted(found, key=lambda r: (r[0], r[1], [(a.fingerprint, a.status) for a in r[2]]))


@pytest.mark.parametrize("kill_after", [1, 4, 9])
async def test_a_pass_killed_between_commits_is_redone_without_loss_or_duplicate(
        sim: Simulator, open_store: OpenStore, kill_after: int) -> None:
    async with open_store("killed") as killed, open_store("whole") as whole:
        # Three instants: alerts fire (12:00), more fire and repeat (18:30), a reload narrows
        # a rule (18:40) and its vanished series resolve. Each redone pass starts from the
        # states the killed one committed.
        for step, (advance, rules) in enumerate(((0, RULES), (6 * 3600 + 1800, RULES),
                                                   (600, NARROWED))):
            sim.advance(advance)
            now = int(sim.now())
            before = await notified(killed)
            with pytest.raises(Killed):
                await one_pass(sim, killed, rules, now, kill_after)
            partly = await notified(killed)
            # What the killed pass committed is on disk, once; the rest is not there yet.
            assert all(n == 1 for n in (partly - before).values())
            redone = await one_pass(sim, killed, rules, now)
            await one_pass(sim, whole, rules, now)
            assert redone.commits >= 1
            assert await killed.load_states() == await whole.load_states()
            # Every alert notified exactly once, with the same content as the pass that
            # was never killed.
            assert await notified(killed) == await notified(whole)
            # (an alert still firing at the second instant is notified again: repeat_interval)
            assert all(n == 1 for n in (await notified(killed) - before).values())
            assert await contents(killed) == await contents(whole)
            # Preconditions, not results: the killed pass had committed something (but
            # after the first customer at 12:00) and left something to redo (but at 18:40,
            # where the first commit flushed the groups due, every one of them).
            assert partly - before != (await notified(killed)) - before or step == 2
            if kill_after > 1 or step > 0:
                assert partly - before
        states = await whole.load_states()
        assert {s.status for s in states.values()} >= {"firing", "inactive"}

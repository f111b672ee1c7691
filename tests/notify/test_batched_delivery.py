"""Batched delivery keeps the outbox's guarantees: rows rendered ahead in batches, outcomes
recorded in batches (one transaction per RECORD_BATCH), a shared HTTP session.

* a real process killed while a batch is sent but not yet recorded: the restart sends those
  rows again with the same Idempotency-Key and body, loses none, and never resends a row
  whose batch was recorded (SQLite and PostgreSQL);
* one failing or hung receiver in a batch never holds up another's deliveries or records;
* one row whose render fails fails alone; the others of its batch are delivered.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from batch_worker import notification  # the worker's notifications, a sibling file

from alertd.clock import FakeClock, SystemClock
from alertd.config.settings import Settings
from alertd.errors import PermanentDeliveryError
from alertd.model import Notification
from alertd.notify.ahead import RenderAhead, prepare_chunk
from alertd.notify.factory import notifiers
from alertd.notify.outbox import RECORD_BATCH, ROUND_ROWS, Outbox
from alertd.notify.presets import PRESETS, TITLED, PresetContext
from alertd.notify.templates import annotated
from alertd.sinks import serve_posts
from alertd.store.base import Changes, OutboxRow, Store
from alertd.store.postgres import PostgresStore
from alertd.store.sqlite import SqliteStore

WORKER = Path(__file__).with_name("batch_worker.py")
#: More than one round, so the first round is full and its outcomes span two record batches.
COUNT = ROUND_ROWS + 50


class Receiver:
    """A real HTTP receiver: records (path, Idempotency-Key, raw body) and answers 200, except
    that it holds request number ``hold_at`` (1-based) open until released, and answers
    ``status`` on every request to ``failing_path``."""

    def __init__(self, hold_at: int | None = None, failing_path: str | None = None,
                 status: int = 503, hang_path: str | None = None) -> None:
        self.hold_at = hold_at
        self.failing_path = failing_path
        self.hang_path = hang_path
        self.status = status
        self.requests: list[tuple[str, str, bytes]] = []
        self.held = asyncio.Event()
        self.release = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append((request.path, request.headers["Idempotency-Key"], body))
        if len(self.requests) == self.hold_at or request.path == self.hang_path:
            self.held.set()
            await self.release.wait()
        if request.path == self.failing_path:
            return web.Response(status=self.status, text="upstream down")
        return web.Response(status=200)

    def keys(self, path: str | None = None) -> list[str]:
        return [key for p, key, _ in self.requests if path is None or p == path]


@asynccontextmanager
async def serving(receiver: Receiver) -> AsyncIterator[str]:
    async with serve_posts(receiver.handle, shutdown_timeout=1.0) as url:
        try:
            yield url
        finally:
            receiver.release.set()


@pytest.fixture(params=["sqlite", "postgres"])
def state(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "alertd.db")
    url: str = request.getfixturevalue("pg_url")
    return url


def open_store(state: str) -> SqliteStore | PostgresStore:
    if state.startswith("postgresql://"):
        return PostgresStore(state, holder="test-reader")
    return SqliteStore(state)


async def statuses(state: str) -> dict[str, str]:
    async with open_store(state) as store:
        return {row.id: row.status for row in await store.outbox()}


async def run_worker(state: str, url: str, mode: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, str(WORKER), state, url, mode, str(COUNT))


async def until(condition: Any, steps: int = 3000, pause: float = 0.01) -> None:
    """Polls ``condition()`` up to ``steps`` times (a step bound, not a deadline)."""
    for _ in range(steps):
        if await condition() if asyncio.iscoroutinefunction(condition) else condition():
            return
        await asyncio.sleep(pause)
    raise AssertionError("condition never held")


# --------------------------------------------------------------------------- crash


async def test_killed_between_a_batched_delivery_and_its_record(state: str) -> None:
    # Request number ROUND_ROWS is held: by then every other row of the first round was sent
    # and RECORD_BATCH of their outcomes written; the rest of the round's are not, yet.
    receiver = Receiver(hold_at=ROUND_ROWS)
    async with serving(receiver) as url:
        worker = await run_worker(state, url, "deliver")
        await asyncio.wait_for(receiver.held.wait(), 120)

        async def first_batch_recorded() -> bool:
            return list((await statuses(state)).values()).count("delivered") >= RECORD_BATCH

        await until(first_batch_recorded)
        worker.send_signal(signal.SIGKILL)
        assert await worker.wait() == -signal.SIGKILL
        before = await statuses(state)
        sent = set(receiver.keys())
        unrecorded = {i for i in sent if before[i] == "pending"}
        recorded = {i for i in sent if before[i] == "delivered"}
        assert len(sent) == ROUND_ROWS and len(before) == COUNT
        # The second batch of the round (all but the held row's outcome) is not written
        # until it is full or the round ends: those rows were sent and are not recorded.
        assert len(recorded) == RECORD_BATCH and len(unrecorded) == ROUND_ROWS - RECORD_BATCH
        bodies = {key: body for _, key, body in receiver.requests}
        receiver.hold_at = None
        receiver.release.set()
        restarted = await run_worker(state, url, "resume")
        assert await asyncio.wait_for(restarted.wait(), 120) == 0
    after = await statuses(state)
    assert set(after.values()) == {"delivered"} and len(after) == COUNT
    keys = receiver.keys()
    assert set(keys) == set(after)  # none lost
    repeated = {k for k in keys if keys.count(k) > 1}
    assert repeated == unrecorded  # exactly the unrecorded ones, never a recorded one
    assert all(keys.count(k) == 2 for k in repeated)
    for _, key, body in receiver.requests:  # same key, same bytes on the repeat
        assert json.loads(body)["alertd"]["notification_id"] == key
        if key in bodies:
            assert body == bodies[key]


# --------------------------------------------------------------------------- isolation


def two_receivers(url: str, **down: Any) -> Settings:
    return Settings(
        receivers=[{"name": "down", "webhook": {"url": f"{url}/down", **down}},
                   {"name": "up", "webhook": {"url": f"{url}/up"}}],
        route={"receiver": "up"}, rule_files=[],
        delivery={"initial_backoff": "10s", "max_backoff": "10s", "max_age": "30s"})


def for_receiver(name: str, count: int) -> tuple[Notification, ...]:
    return tuple(Notification(n.id + name, name, n.status, n.group_key, n.group_labels,
                              n.alerts, n.created_at)
                 for n in (notification(i) for i in range(count)))


@pytest.fixture
async def store(state: str) -> AsyncIterator[Store]:
    async with open_store(state) as opened:
        yield opened


async def test_a_failing_receiver_in_the_batch_never_holds_up_another(store: Store) -> None:
    receiver = Receiver(failing_path="/down")
    async with serving(receiver) as url:
        config = two_receivers(url)
        await store.commit_transitions(
            Changes(outbox=for_receiver("down", 5) + for_receiver("up", COUNT)))
        async with notifiers(config, clock=FakeClock(0)) as built:
            clock = FakeClock(1_735_689_600)
            report = await Outbox(store, built, config.delivery, clock).run_until_idle(600)
    up = receiver.keys("/up")
    assert sorted(up) == sorted(n.id for n in for_receiver("up", COUNT))  # each once
    rows = {r.id: r for r in await store.outbox()}
    assert all(rows[k].status == "delivered" for k in up)
    assert {r.status for r in rows.values() if r.receiver == "down"} == {"failed"}
    assert report.outcomes["delivered"] == COUNT


async def test_a_hung_receiver_never_holds_up_another_batchs_records(store: Store) -> None:
    receiver = Receiver(hang_path="/down")
    async with serving(receiver) as url:
        config = two_receivers(url, timeout="120s")
        await store.commit_transitions(
            Changes(outbox=for_receiver("down", 3) + for_receiver("up", COUNT)))
        async with notifiers(config, clock=SystemClock()) as built:
            outbox = Outbox(store, built, config.delivery, SystemClock(), idle_poll=0.05)
            stop = asyncio.Event()
            running = asyncio.create_task(outbox.run(stop))

            async def all_up_recorded() -> bool:
                done = await store.outbox("delivered")
                return len([r for r in done if r.receiver == "up"]) == COUNT

            await until(all_up_recorded)  # while "down" still holds its requests
            assert receiver.held.is_set() and len(receiver.keys("/down")) == 3
            assert {r.receiver for r in await store.outbox("pending")} == {"down"}
            stop.set()
            receiver.release.set()
            await asyncio.wait_for(running, 60)
    assert len(receiver.keys("/up")) == COUNT


async def test_a_row_whose_render_fails_fails_alone(store: Store) -> None:
    receiver = Receiver()
    body = ('{% if alerts[0].customer.id == "cus_0007" %}{{ no_such_function() }}{% endif %}'
            '{"id": {{ notification_id | tojson }}}')
    async with serving(receiver) as url:
        config = Settings(receivers=[{"name": "ops", "webhook": {"url": url, "body": body}}],
                          route={"receiver": "ops"}, rule_files=[])
        await store.commit_transitions(
            Changes(outbox=tuple(notification(i) for i in range(20))))
        async with notifiers(config, clock=FakeClock(0)) as built:
            outbox = Outbox(store, built, config.delivery, FakeClock(1_735_689_600))
            report = await outbox.run_until_idle(60)
    rows = {r.id: r for r in await store.outbox()}
    assert rows["n0007"].status == "undeliverable"
    assert "template failed" in (rows["n0007"].last_error or "")
    assert sorted(receiver.keys()) == sorted(i for i in rows if i != "n0007")
    assert report.outcomes == {"delivered": 19, "undeliverable": 1}


# --------------------------------------------------------------------------- render ahead


class Counting:
    """A staged notifier whose ``prepare`` fails for the ids in ``bad``."""

    def __init__(self, *bad: str) -> None:
        self.bad = set(bad)
        self.prepared: list[str] = []
        self.delivered: list[str] = []

    async def send(self, notification: Notification) -> None:
        await self.deliver(self.prepare(notification))

    def prepare(self, notification: Notification) -> str:
        self.prepared.append(notification.id)
        if notification.id in self.bad:
            raise PermanentDeliveryError(f"cannot render {notification.id}")
        return notification.id.upper()

    async def deliver(self, prepared: str) -> None:
        self.delivered.append(prepared)


def rows_of(count: int) -> list[OutboxRow]:
    return [OutboxRow(n.id, n.receiver, n.group_key, n, "pending", 0, n.created_at, None,
                      n.created_at, None) for n in (notification(i) for i in range(count))]


def test_a_chunk_stops_at_its_row_or_cpu_bound_but_takes_one_row_at_least() -> None:
    notifier, rows = Counting("n0001"), rows_of(5)
    done = prepare_chunk(notifier, rows, max_rows=3, max_seconds=60)
    assert [ok for ok, _ in done] == [True, False, True]
    assert isinstance(done[1][1], PermanentDeliveryError)
    assert len(prepare_chunk(notifier, rows, max_rows=5, max_seconds=0.0)) == 1


async def test_render_ahead_gives_each_row_its_own_result() -> None:
    notifier, rows = Counting("n0003"), rows_of(120)  # more than one chunk
    async with RenderAhead(notifier, rows) as ahead:
        assert await ahead.get(rows[0]) == "N0000"
        with pytest.raises(PermanentDeliveryError, match="n0003"):
            await ahead.get(rows[3])
        assert await ahead.get(rows[119]) == "N0119"
    assert notifier.prepared == [r.id for r in rows]  # in order, each once


def test_only_titled_presets_read_the_title(build: Any) -> None:
    shown = annotated(build.notification(build.alert(), build.alert(customer=build.globex)))
    for name, preset in PRESETS.items():
        context = {"external_url": "https://alertd.example", "routing_key": "R"}
        one = preset(shown, PresetContext(title="one title", **context))
        other = preset(shown, PresetContext(title="another", **context))
        assert (one != other) == (name in TITLED), name

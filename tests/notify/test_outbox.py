"""The outbox worker: retries, give-up, permanent failures, isolation between receivers,
order within a group, metrics, and real crashes (SIGKILL of a real subprocess)."""

from __future__ import annotations

import asyncio
import random
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from aiohttp import web
from crash_worker import LoopbackWebhook  # the tests' tiny webhook notifier, a sibling file

from alertd.clock import FakeClock, SystemClock, backoff
from alertd.config.settings import DeliverySettings
from alertd.errors import PermanentDeliveryError, TransientDeliveryError
from alertd.model import Alert, Customer, Notification, Period
from alertd.notify.base import Notifier
from alertd.notify.outbox import Outbox
from alertd.service.metrics import Metrics
from alertd.sinks import serve_posts
from alertd.store.base import Changes, Store
from alertd.store.postgres import PostgresStore
from alertd.store.sqlite import SqliteStore

NOW = 1_735_689_600
WORKER = Path(__file__).with_name("crash_worker.py")
FAST = DeliverySettings(initial_backoff=5, max_backoff=600, max_age=86400)


def note(nid: str, receiver: str = "ops", group_key: str = "g1", created_at: int = NOW,
         status: str = "firing") -> Notification:
    alert = Alert(
        fingerprint="fp1", status="firing" if status == "firing" else "resolved",
        rule="quota", severity="warning", customer=Customer("cus_1"), meter="mtr_1",
        dimensions=(), window=Period(NOW, NOW + 86400), value=150.0,
        labels={"rule": "quota"}, annotations={}, starts_at=NOW, ends_at=None,
        refreshed_at=None,
    )
    return Notification(nid, receiver, alert.status, group_key, {"rule": "quota"}, (alert,),
                        created_at)


class ScriptedNotifier:
    """Raises the scripted errors in order (``None``: success), then succeeds; records ids."""

    def __init__(self, *script: Exception | None, gate: asyncio.Event | None = None) -> None:
        self.script = list(script)
        self.calls: list[str] = []
        self.gate = gate

    async def send(self, notification: Notification) -> None:
        self.calls.append(notification.id)
        if self.gate is not None:
            await self.gate.wait()
        if self.script:
            error = self.script.pop(0)
            if error is not None:
                raise error


class AlwaysDown(ScriptedNotifier):
    async def send(self, notification: Notification) -> None:
        self.calls.append(notification.id)
        raise TransientDeliveryError("HTTP 503 from hooks.example.com")


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """Each outbox test on both backends: same interface, same behaviour."""
    opened: Store
    if request.param == "sqlite":
        opened = SqliteStore(tmp_path / "alertd.db")
    else:
        opened = PostgresStore(request.getfixturevalue("pg_url"), holder="test-replica")
    async with opened:  # type: ignore[attr-defined]
        yield opened


async def queue(store: Store, *notifications: Notification) -> None:
    await store.commit_transitions(Changes(outbox=notifications))


def outbox(store: Store, notifiers: dict[str, Notifier], clock: FakeClock,
           settings: DeliverySettings = FAST, **kwargs: object) -> Outbox:
    return Outbox(store, notifiers, settings, clock, rng=random.Random(7), **kwargs)  # type: ignore[arg-type]


async def test_transient_failures_retry_with_jittered_backoff(store: Store) -> None:
    clock = FakeClock(NOW)
    flaky = ScriptedNotifier(*[TransientDeliveryError("HTTP 503")] * 3)
    await queue(store, note("n1"))
    report = await outbox(store, {"ops": flaky}, clock).run_until_idle(timeout=3600)
    assert flaky.calls == ["n1"] * 4
    assert report.outcomes == {"pending": 3, "delivered": 1} and report.pending == ()
    for attempt, slept in enumerate(clock.sleeps, start=1):
        base = 5 * 2 ** (attempt - 1)
        assert base / 2 <= slept <= base
    (row,) = await store.outbox()
    assert (row.status, row.attempts, row.last_error) == ("delivered", 4, "HTTP 503")


async def test_gives_up_after_max_age_and_reports(store: Store) -> None:
    clock = FakeClock(NOW)
    down = AlwaysDown()
    await queue(store, note("n1"))
    settings = DeliverySettings(initial_backoff=5, max_backoff=20, max_age=60)
    report = await outbox(store, {"ops": down}, clock, settings).run_until_idle(timeout=3600)
    ((row, attempt),) = report.gave_up
    assert row.id == "n1"
    assert attempt.status == "failed" and attempt.error is not None
    assert attempt.error.startswith(f"gave up after {len(down.calls)} attempts over 60s")
    assert clock.now() == NOW + 60  # the last attempt is made at the deadline, not after
    assert (await store.outbox())[0].status == "failed"


async def test_permanent_failure_is_undeliverable_without_retry(store: Store) -> None:
    clock = FakeClock(NOW)
    rejecting = ScriptedNotifier(PermanentDeliveryError("HTTP 404 from hooks.example.com"))
    await queue(store, note("n1"))
    report = await outbox(store, {"ops": rejecting}, clock).run_until_idle(timeout=3600)
    assert rejecting.calls == ["n1"] and clock.sleeps == []
    (row,) = await store.outbox()
    assert (row.status, row.last_error) == ("undeliverable", "HTTP 404 from hooks.example.com")
    assert report.outcomes == {"undeliverable": 1}


async def test_a_failing_receiver_never_repeats_another(store: Store) -> None:
    clock = FakeClock(NOW)
    down, healthy = AlwaysDown(), ScriptedNotifier()
    await queue(store, note("to-down", "down"), note("to-healthy", "healthy"))
    settings = DeliverySettings(initial_backoff=1, max_backoff=10, max_age=300)
    await outbox(store, {"down": down, "healthy": healthy}, clock, settings).run_until_idle(600)
    assert healthy.calls == ["to-healthy"] and len(down.calls) > 5
    assert {r.id: r.status for r in await store.outbox()} == {"to-down": "failed",
                                                              "to-healthy": "delivered"}


async def test_a_hung_receiver_never_delays_another(store: Store) -> None:
    gate = asyncio.Event()
    hung, healthy = ScriptedNotifier(gate=gate), ScriptedNotifier()
    worker = Outbox(store, {"hung": hung, "healthy": healthy}, FAST, SystemClock(),
                    idle_poll=0.05)
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    await queue(store, note("stuck", "hung"), note("quick", "healthy"))
    worker.wake()
    for _ in range(200):
        if healthy.calls and (await store.outbox("delivered")):
            break
        await asyncio.sleep(0.01)
    assert hung.calls == ["stuck"] and healthy.calls == ["quick"]
    assert [r.id for r in await store.outbox("pending")] == ["stuck"]
    stop.set()
    gate.set()
    await asyncio.wait_for(running, timeout=5)
    assert [r.id for r in await store.outbox("delivered")] == ["quick", "stuck"]


async def test_a_group_is_delivered_in_order(store: Store) -> None:
    clock = FakeClock(NOW)
    flaky = ScriptedNotifier(TransientDeliveryError("timeout"))
    other = ScriptedNotifier()
    await queue(store, note("fire", created_at=NOW), note("resolve", created_at=NOW + 1,
                                                          status="resolved"),
                note("elsewhere", receiver="other", group_key="g2"))
    clock.advance(1)
    await outbox(store, {"ops": flaky, "other": other}, clock).run_until_idle(timeout=3600)
    assert flaky.calls == ["fire", "fire", "resolve"]  # the resolve never overtakes
    assert other.calls == ["elsewhere"]


async def test_rows_of_an_unconfigured_receiver_are_undeliverable(store: Store) -> None:
    await queue(store, note("n1", "removed-in-reload"))
    report = await outbox(store, {"ops": ScriptedNotifier()}, FakeClock(NOW)).run_until_idle(5)
    (row,) = await store.outbox()
    assert row.status == "undeliverable" and "not configured" in (row.last_error or "")
    assert report.outcomes == {"undeliverable": 1}


async def test_metrics_count_outcomes_and_pending(store: Store) -> None:
    metrics = Metrics()
    flaky = ScriptedNotifier(TransientDeliveryError("HTTP 429"))
    await queue(store, note("n1"))
    await outbox(store, {"ops": flaky}, FakeClock(NOW),
                 observer=metrics).run_until_idle(timeout=600)
    sample = metrics.registry.get_sample_value
    labels = {"receiver": "ops"}
    assert sample("alertd_notifications_total", {**labels, "outcome": "retry"}) == 1
    assert sample("alertd_notifications_total", {**labels, "outcome": "delivered"}) == 1
    assert sample("alertd_outbox_pending", {}) == 0


@pytest.mark.parametrize("attempt", range(1, 10))
def test_backoff_doubles_up_to_the_cap_with_jitter(attempt: int) -> None:
    rng = random.Random(attempt)
    base = min(600, 5 * 2 ** (attempt - 1))
    delays = [backoff(attempt - 1, base=5, cap=600, rng=rng) for _ in range(50)]
    assert all(base / 2 <= d <= base for d in delays)
    assert len(set(delays)) > 1  # jittered


# --------------------------------------------------------------------------- real HTTP, crashes


class LoopbackReceiver:
    """A real HTTP receiver: records (path, Idempotency-Key, body id); answers scripted
    statuses (200 when the script is empty); can hold the first request open."""

    def __init__(self, *statuses: int, hold_first: bool = False) -> None:
        self.statuses = list(statuses)
        self.requests: list[tuple[str, str, str]] = []
        self.hold_first = hold_first
        self.arrived = asyncio.Event()
        self.release = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append((request.path, request.headers["Idempotency-Key"], body["id"]))
        if self.hold_first and len(self.requests) == 1:
            self.arrived.set()
            await self.release.wait()
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200)

    def keys(self) -> list[str]:
        return [key for _, key, _ in self.requests]


@asynccontextmanager
async def serving(receiver: LoopbackReceiver) -> AsyncIterator[str]:
    async with serve_posts(receiver.handle) as url:
        try:
            yield url
        finally:
            receiver.release.set()  # before the server waits for the held request


async def test_a_503_then_recovery_delivers_once_with_the_same_key(store: Store) -> None:
    receiver = LoopbackReceiver(503, 503)
    async with serving(receiver) as url, httpx.AsyncClient() as client:
        await queue(store, note("n1"))
        hook = LoopbackWebhook(client, f"{url}/ops")
        await outbox(store, {"ops": hook}, FakeClock(NOW)).run_until_idle(timeout=600)
    assert receiver.keys() == ["n1", "n1", "n1"]
    assert (await store.outbox())[0].status == "delivered"


async def run_worker(db: Path, url: str, mode: str, *extra: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(sys.executable, str(WORKER), str(db), url, mode,
                                                *extra)


async def wait_for_file(path: Path, seconds: float = 30) -> None:
    for _ in range(int(seconds / 0.02)):
        if path.exists():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{path} never appeared")


async def delivered_ids(db: Path) -> dict[str, str]:
    async with SqliteStore(db) as store:
        return {row.id: row.status for row in await store.outbox()}


async def test_killed_between_outbox_write_and_delivery(tmp_path: Path) -> None:
    db, marker = tmp_path / "alertd.db", tmp_path / "committed"
    receiver = LoopbackReceiver()
    async with serving(receiver) as url:
        worker = await run_worker(db, url, "commit-then-hang", str(marker))
        await wait_for_file(marker)
        worker.send_signal(signal.SIGKILL)
        assert await worker.wait() == -signal.SIGKILL
        assert receiver.requests == []
        queued = await delivered_ids(db)
        assert len(queued) == 6 and set(queued.values()) == {"pending"}
        restarted = await run_worker(db, url, "resume")
        assert await asyncio.wait_for(restarted.wait(), 60) == 0
    assert sorted(receiver.keys()) == sorted(queued)  # every one, exactly once
    assert all(key == body_id for _, key, body_id in receiver.requests)
    assert set((await delivered_ids(db)).values()) == {"delivered"}


async def test_killed_after_delivery_before_it_was_recorded(tmp_path: Path) -> None:
    db = tmp_path / "alertd.db"
    receiver = LoopbackReceiver(hold_first=True)
    async with serving(receiver) as url:
        worker = await run_worker(db, url, "deliver")
        await asyncio.wait_for(receiver.arrived.wait(), 60)
        worker.send_signal(signal.SIGKILL)  # the receiver has the request; no answer yet
        assert await worker.wait() == -signal.SIGKILL
        receiver.release.set()
        held = receiver.requests[0][1]
        assert (await delivered_ids(db))[held] == "pending"
        restarted = await run_worker(db, url, "resume")
        assert await asyncio.wait_for(restarted.wait(), 60) == 0
    final = await delivered_ids(db)
    assert len(final) == 6 and set(final.values()) == {"delivered"}
    assert set(receiver.keys()) == set(final)  # none lost
    assert receiver.keys().count(held) == 2  # the repeat carries the same Idempotency-Key
    assert all(key == body_id for _, key, body_id in receiver.requests)


async def test_background_worker_reports_deliveries_and_drains(store: Store) -> None:
    delivered: list[str] = []
    metrics = Metrics()
    worker = Outbox(store, {"ops": ScriptedNotifier()}, FAST, SystemClock(), observer=metrics,
                    on_delivered=lambda n: delivered.append(n.id), idle_poll=0.05)
    await worker.start()
    await queue(store, note("n1"))
    worker.wake()
    for _ in range(200):
        if delivered:
            break
        await asyncio.sleep(0.01)
    await worker.drain(timeout=5)
    assert delivered == ["n1"]
    sample = metrics.registry.get_sample_value
    assert sample("alertd_notifications_total", {"receiver": "ops", "outcome": "delivered"}) == 1


async def test_drain_cancels_a_hung_attempt_which_stays_pending(store: Store) -> None:
    hung = ScriptedNotifier(gate=asyncio.Event())
    worker = Outbox(store, {"ops": hung}, FAST, SystemClock(), idle_poll=0.05)
    await queue(store, note("n1"))
    await worker.start()
    for _ in range(200):
        if hung.calls:
            break
        await asyncio.sleep(0.01)
    await worker.drain(timeout=0.1)
    (row,) = await store.outbox()
    assert (row.status, row.attempts) == ("pending", 0)

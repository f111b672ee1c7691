"""The one background-task lifecycle and the one wait-first helper (alertd/tasks.py)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from alertd.clock import FakeClock
from alertd.tasks import Background, OwnedTasks, cancel, wait_first


async def test_a_loop_that_honours_stop_finishes_within_grace() -> None:
    rounds = 0

    async def loop(stop: asyncio.Event) -> None:
        nonlocal rounds
        while not stop.is_set():
            rounds += 1
            await wait_first(stop, timeout=0.01)

    worker = Background("test-loop")
    worker.start(loop)
    worker.start(loop)  # already running: nothing new
    await asyncio.sleep(0.03)
    assert worker.running
    assert await worker.stop(grace=5.0) is True
    assert not worker.running and rounds > 0
    assert await worker.stop(grace=5.0) is True  # stopping a stopped one does nothing


async def test_a_loop_past_its_grace_is_cancelled() -> None:
    cancelled = asyncio.Event()

    async def stubborn(stop: asyncio.Event) -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    worker = Background("test-stubborn")
    worker.start(stubborn)
    await asyncio.sleep(0)
    assert await worker.stop(grace=0.01) is False
    assert cancelled.is_set()


async def test_abort_cuts_the_grace_short() -> None:
    abort = asyncio.Event()
    abort.set()

    async def stubborn(stop: asyncio.Event) -> None:
        await asyncio.sleep(3600)

    worker = Background("test-abort")
    worker.start(stubborn)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await worker.stop(grace=60.0, abort=abort) is False
    assert loop.time() - started < 30.0  # half the grace: the abort, not the grace, ended it


async def test_cancel_waits_until_the_task_is_gone_and_drops_its_error() -> None:
    async def failing() -> None:
        await asyncio.sleep(0)
        raise RuntimeError("boom")

    task = asyncio.create_task(failing())
    await asyncio.sleep(0.01)
    await cancel(task)  # already failed: no exception surfaces
    sleeper = asyncio.create_task(asyncio.sleep(3600))
    await cancel(sleeper)
    assert sleeper.cancelled()


async def test_wait_first_returns_on_an_event_a_finished_task_or_the_timeout() -> None:
    event = asyncio.Event()
    asyncio.get_running_loop().call_later(0.01, event.set)
    await asyncio.wait_for(wait_first(event, timeout=60.0), 5.0)
    quick = asyncio.create_task(asyncio.sleep(0.01))
    await asyncio.wait_for(wait_first(asyncio.Event(), tasks=(quick,)), 5.0)
    await asyncio.wait_for(wait_first(asyncio.Event(), timeout=0.01), 5.0)
    await wait_first()  # nothing to wait for


async def test_wait_first_sleeps_on_the_given_clock() -> None:
    clock = FakeClock(1000.0)
    await asyncio.wait_for(wait_first(asyncio.Event(), timeout=600.0, clock=clock), 5.0)
    assert clock.sleeps == [600.0]


async def test_wait_first_with_only_a_timeout_sleeps_it() -> None:
    # nothing else to wait on: still the whole timeout, not an immediate return
    clock = FakeClock(1000.0)
    await asyncio.wait_for(wait_first(timeout=0.01, clock=clock), 5.0)
    assert clock.sleeps == [0.01]
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.wait_for(wait_first(timeout=0.05), 5.0)
    assert loop.time() - started >= 0.04


async def test_wait_first_lower_bounds() -> None:
    # each way out waits for its cause: an unset event and a running task hold it back
    loop = asyncio.get_running_loop()
    started = loop.time()
    await wait_first(asyncio.Event(), timeout=0.05)
    assert loop.time() - started >= 0.04
    started = loop.time()
    slow = asyncio.create_task(asyncio.sleep(0.05))
    await wait_first(asyncio.Event(), tasks=(slow,))
    assert slow.done() and loop.time() - started >= 0.04
    clock = FakeClock(1000.0)
    event = asyncio.Event()
    await wait_first(event, timeout=600.0, clock=clock)
    assert clock.sleeps == [600.0] and clock.now() == 1600.0


async def test_a_stop_cancelled_during_its_grace_still_cancels_the_loop() -> None:
    gone = asyncio.Event()

    async def stubborn(stop: asyncio.Event) -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            gone.set()

    worker = Background("test-orphan")
    worker.start(stubborn)
    await asyncio.sleep(0)
    stopping = asyncio.create_task(worker.stop(grace=60.0))
    await asyncio.sleep(0.01)  # now inside the grace
    stopping.cancel()
    await asyncio.gather(stopping, return_exceptions=True)
    assert stopping.cancelled()
    assert gone.is_set() and not worker.running


async def test_a_crashed_loop_is_not_running_is_logged_and_starts_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runs = 0

    async def crashing(stop: asyncio.Event) -> None:
        nonlocal runs
        runs += 1
        raise RuntimeError("loop broke")

    worker = Background("test-crash")
    with caplog.at_level(logging.ERROR, logger="alertd.tasks"):
        worker.start(crashing)
        await asyncio.sleep(0.01)
        assert not worker.running
        worker.start(crashing)
        await asyncio.sleep(0.01)
        assert runs == 2
        assert await worker.stop(grace=1.0) is True
    failures = [r for r in caplog.records if "test-crash failed" in r.getMessage()]
    assert len(failures) == 2 and "loop broke" in failures[0].getMessage()
    assert failures[0].exc_info is not None


async def test_cancel_logs_the_error_a_task_ended_with(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def failing() -> None:
        raise RuntimeError("boom")

    task = asyncio.create_task(failing(), name="test-failing")
    await asyncio.sleep(0.01)
    with caplog.at_level(logging.ERROR, logger="alertd.tasks"):
        await cancel(task)
        await cancel(asyncio.create_task(asyncio.sleep(3600)))  # a cancellation: no log
    assert [r.getMessage() for r in caplog.records] == [
        "background task test-failing failed: RuntimeError: boom"]


async def test_owned_tasks_are_forgotten_when_done_and_cancelled_on_close(
    caplog: pytest.LogCaptureFixture,
) -> None:
    owned = OwnedTasks()
    never = asyncio.Event()
    ran: list[str] = []

    async def quick() -> None:
        ran.append("quick")

    async def crashing() -> None:
        raise RuntimeError("boom")

    async def waiting() -> None:
        await never.wait()

    owned.start(quick(), "test-quick")
    owned.start(crashing(), "test-crash")
    await owned.join()
    assert len(owned) == 0 and ran == ["quick"]
    assert any("test-crash failed" in r.getMessage() for r in caplog.records)
    stuck = owned.start(waiting(), "test-stuck")
    await asyncio.sleep(0)
    assert len(owned) == 1
    await owned.aclose()
    assert stuck.cancelled() and len(owned) == 0

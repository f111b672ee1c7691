"""One timer for every attempt's send_timeout (alertd.notify.deadlines): a slow await comes
out as TimeoutError, any other cancellation stays one, and one timer serves them all."""

from __future__ import annotations

import asyncio

import pytest

from alertd.notify.deadlines import Deadlines


async def test_a_slow_await_times_out_and_the_task_is_not_left_cancelling() -> None:
    deadlines = Deadlines(0.02)
    never = asyncio.get_running_loop().create_future()
    with pytest.raises(TimeoutError):
        await deadlines.bound(never)
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0
    assert await deadlines.bound(asyncio.sleep(0, "answer")) == "answer"
    await asyncio.sleep(0)  # no cancellation left pending either


async def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    deadlines = Deadlines(60.0)
    started = asyncio.Event()

    async def attempt() -> None:
        started.set()
        await deadlines.bound(asyncio.get_running_loop().create_future())

    task = asyncio.create_task(attempt())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_one_timer_bounds_many_awaits_and_stops_when_none_is_left() -> None:
    deadlines = Deadlines(0.02)
    loop = asyncio.get_running_loop()

    async def attempt(slow: bool) -> str:
        try:
            await deadlines.bound(loop.create_future() if slow else asyncio.sleep(0))
        except TimeoutError:
            return "timed out"
        return "sent"

    outcomes = await asyncio.gather(*(attempt(i % 3 == 0) for i in range(30)))
    assert outcomes == ["timed out" if i % 3 == 0 else "sent" for i in range(30)]
    await asyncio.sleep(deadlines.tick * 2)
    assert not deadlines.watching

"""Background tasks and waits: the one lifecycle every loop of the daemon uses.

Where it sits: below the shell. The outbox worker (:mod:`alertd.notify.outbox`), the group timer
(:mod:`alertd.notify.pipeline`), the daemon's keepalive, polls and heartbeat
(:mod:`alertd.service.daemon`, :mod:`alertd.service.heartbeat`) and the demo's tickers start,
stop and abort their tasks here, and every "sleep until a timeout or an event" is
:func:`wait_first`.

Contracts:

* :class:`Background` runs one loop ``run(stop)`` that returns soon after its ``stop`` event
  is set. :meth:`Background.stop` sets it, gives the loop ``grace`` seconds (cut short once an
  ``abort`` event is set), then cancels what is left, and says whether the loop finished by
  itself. Starting a running one, or stopping a stopped one, does nothing. A loop that has
  finished (or crashed) no longer counts as running, so ``start`` starts it anew; a crash is
  logged with its traceback when it is noticed (by ``running``, ``start`` or ``stop``). A
  ``stop`` that is itself cancelled during the grace still cancels the loop before it goes.
* :class:`OwnedTasks` holds the one-shot tasks an object starts on its own (the directory's
  listings and refreshes): each is forgotten when it ends (a crash logged), and
  :meth:`OwnedTasks.aclose` cancels those still running and waits until they are gone
  (:meth:`OwnedTasks.join` waits for them to end by themselves).
* :func:`cancel` aborts a task and waits until it is gone; its exception, if any, is not
  raised but logged (a cancellation is not an exception).
* :func:`wait_first` returns when any event is set, every task is done, or the timeout
  passes, whichever comes first; it never raises for those reasons and leaves no waiter
  behind. With only a timeout it sleeps that long; with nothing at all it returns at once.
  With ``clock`` the timeout is slept on that clock (a fake clock in tests).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Coroutine
from typing import Any

from alertd.clock import Clock

Loop = Callable[[asyncio.Event], Coroutine[Any, Any, None]]

log = logging.getLogger("alertd.tasks")


class Background:
    """One named background loop with a stop event, a grace period and an abort."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        """Whether the loop's task is alive; one that has finished is forgotten (its crash
        logged), so that :meth:`start` can run it again."""
        task = self._task
        if task is not None and task.done():
            self._task = None
            _log_outcome(task)
        return self._task is not None

    def start(self, run: Loop) -> None:
        """Runs ``run(stop)`` as a task, unless one is already running."""
        if not self.running:
            self._stop.clear()
            self._task = asyncio.create_task(run(self._stop), name=self.name)

    async def stop(self, grace: float | None = None, abort: asyncio.Event | None = None
                   ) -> bool:
        """Asks the loop to stop and waits up to ``grace`` seconds (``None``: until it does)
        or until ``abort`` is set, then cancels it. ``True`` when it finished by itself."""
        task, self._task = self._task, None
        if task is None:
            return True
        self._stop.set()
        finished = False
        try:
            await wait_first(*(() if abort is None else (abort,)), timeout=grace, tasks=(task,))
            finished = task.done()
        finally:  # even when this stop is itself cancelled: never leave the loop running
            await cancel(task)
        return finished


class OwnedTasks:
    """One-shot tasks an owner starts and must not leave behind when it closes."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def start(self, work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """Runs ``work`` as a task, kept until it ends."""
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._ended)
        return task

    def _ended(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        _log_outcome(task)

    async def join(self) -> None:
        """Waits until every task running now, and any they start, has ended."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await asyncio.sleep(0)  # their done callbacks: forgotten

    async def aclose(self) -> None:
        """Cancels every task still running and waits until each is gone."""
        while self._tasks:
            running = list(self._tasks)
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            self._tasks.difference_update(running)


async def cancel(task: asyncio.Task[Any]) -> None:
    """Aborts ``task`` (a no-op when it is done) and waits until it has gone; an exception
    it ended with is logged, not raised."""
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    _log_outcome(task)


def _log_outcome(task: asyncio.Task[Any]) -> None:
    """Logs how a finished task failed, if it did (a cancellation is no failure)."""
    if task.cancelled():
        return
    error = task.exception()
    if error is not None:
        log.error("background task %s failed: %s: %s", task.get_name(),
                  type(error).__name__, error, exc_info=error)


async def wait_first(
    *events: asyncio.Event, timeout: float | None = None,
    tasks: Collection[asyncio.Task[Any]] = (), clock: Clock | None = None,
) -> None:
    """Waits until any of ``events`` is set, every one of ``tasks`` is done, or ``timeout``
    seconds pass (on ``clock`` when given, else on the event loop's time)."""
    waiters: list[asyncio.Future[Any]] = [asyncio.ensure_future(e.wait()) for e in events]
    if tasks:
        waiters.append(asyncio.ensure_future(asyncio.wait(tasks)))
    if timeout is not None and (clock is not None or not waiters):
        # on the given clock, or on the loop's when there is nothing else to wait for
        # (asyncio.wait refuses an empty set; the timeout must still be slept)
        waiters.append(asyncio.ensure_future(
            asyncio.sleep(max(0.0, timeout)) if clock is None else clock.sleep(timeout)))
        timeout = None
    if not waiters:
        return
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)

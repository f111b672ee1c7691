"""One timer for the outbox's ``send_timeout`` of every attempt in flight.

Where it sits: :meth:`alertd.notify.outbox.Outbox._attempt` awaits each send through
:meth:`Deadlines.bound` instead of an ``asyncio.timeout`` of its own. A timer per attempt (its
heap entry, its handle, its cancel) cost ~7 µs of the event loop per notification (issue 16);
here the attempts in flight are checked against their deadlines by one timer every
:attr:`Deadlines.tick` seconds while any is in flight, so a send times out up to a tick late
(a quarter of the timeout, at most one second).

Semantics as ``asyncio.timeout``: an attempt past its deadline has its task cancelled, and the
cancellation comes out of :meth:`Deadlines.bound` as :class:`TimeoutError`; a cancellation
from anywhere else (a drain, a shutdown) stays a :class:`asyncio.CancelledError`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

T = TypeVar("T")


class Deadlines:
    """Bounds awaits by ``timeout`` seconds each, with one timer for all of them."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.tick = min(1.0, max(timeout / 4, 0.001))
        #: The tasks awaiting through :meth:`bound`, with their deadlines (loop time).
        self._watched: dict[asyncio.Task[Any], float] = {}
        #: Those this class cancelled for their deadline.
        self._expired: set[asyncio.Task[Any]] = set()
        self._ticking: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def watching(self) -> bool:
        """Whether any await is bounded or the timer is still set."""
        return bool(self._watched) or self._ticking is not None

    async def bound(self, awaitable: Awaitable[T]) -> T:
        """``await awaitable``, or :class:`TimeoutError` once it took ``timeout`` seconds."""
        task = asyncio.current_task()
        if task is None or task in self._watched:
            raise RuntimeError("Deadlines.bound needs a task of its own per await")
        loop = asyncio.get_running_loop()
        self._watched[task] = loop.time() + self.timeout
        cancelling = task.cancelling()
        if self._ticking is None or self._loop is not loop:
            self._loop = loop
            self._ticking = loop.call_later(self.tick, self._watch)
        try:
            return await awaitable
        except asyncio.CancelledError:
            if task in self._expired:
                self._expired.discard(task)
                if task.uncancel() <= cancelling:
                    raise TimeoutError from None
            raise
        finally:
            del self._watched[task]
            if task in self._expired:  # expired, but the await ended another way
                self._expired.discard(task)
                task.uncancel()

    def _watch(self) -> None:
        self._ticking = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        for task, deadline in self._watched.items():
            if deadline <= now and task not in self._expired:
                self._expired.add(task)
                task.cancel()
        if self._watched:
            self._ticking = loop.call_later(self.tick, self._watch)

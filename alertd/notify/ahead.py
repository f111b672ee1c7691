"""Rendering ahead of the sends: one worker-thread hop for many outbox rows.

Where it sits: :class:`~alertd.notify.outbox.Outbox` takes a round of due rows of one receiver;
when the receiver's notifier is :class:`~alertd.notify.base.Staged`, :class:`RenderAhead`
prepares the rows (templates, JSON, body bytes) in order in a worker thread, a chunk per hop,
while the sends of rows already prepared go on in the event loop.

Why: one thread hop per notification (``asyncio.to_thread``) cost more CPU than rendering an
Alertmanager body, and every hop made the event loop and the render thread trade the GIL.
A chunk stops after :data:`CHUNK_ROWS` rows or :data:`CHUNK_SECONDS` of the thread's CPU,
whichever comes first, so the first send never waits for a whole round of slow templates;
each render keeps its own limits (:class:`~alertd.templating.RenderLimits`). Renders stay
off the loop, as before: a template can never hold up the daemon.

A failed render is that row's result (the error ``send`` would have raised), never the
round's: the other rows go on. Cancelling the round (a drain) stops the thread at its next
template step (:func:`~alertd.templating.off_loop`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from alertd.notify.base import Staged
from alertd.store.base import OutboxRow
from alertd.templating import off_loop

#: Rows prepared in one thread hop at most.
CHUNK_ROWS = 50
#: Thread CPU seconds after which a chunk ends (the row being rendered finishes first).
CHUNK_SECONDS = 0.02


def prepare_chunk(
    notifier: Staged[Any], rows: Sequence[OutboxRow], *,
    max_rows: int = CHUNK_ROWS, max_seconds: float = CHUNK_SECONDS,
) -> list[tuple[bool, Any]]:
    """``(True, prepared)`` or ``(False, error)`` for a prefix of ``rows`` (at least one row
    when there is any): what fits in ``max_rows`` and ``max_seconds`` of this thread's CPU."""
    started = time.thread_time()
    done: list[tuple[bool, Any]] = []
    for row in rows[:max_rows]:
        try:
            done.append((True, notifier.prepare(row.notification)))
        except Exception as exc:  # the row's failure, to raise where its send would
            done.append((False, exc))
        if time.thread_time() - started >= max_seconds:
            break
    return done


class RenderAhead:
    """Prepares ``rows`` in the background, in order; :meth:`get` waits for one row's.

    Use ``async with``: leaving stops the renders still to do."""

    def __init__(self, notifier: Staged[Any], rows: Sequence[OutboxRow]) -> None:
        self.notifier = notifier
        self.rows = list(rows)
        loop = asyncio.get_running_loop()
        self._results: dict[str, asyncio.Future[Any]] = {
            row.id: loop.create_future() for row in self.rows}
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> RenderAhead:
        self._task = asyncio.create_task(self._run(), name="alertd-render-ahead")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for future in self._results.values():
            if not future.done():
                future.cancel()
            elif not future.cancelled():
                future.exception()  # a row never attempted (its group waits): not an error

    async def get(self, row: OutboxRow) -> Any:
        """What ``prepare`` returned for ``row``; raises what it raised."""
        return await self._results[row.id]

    async def _run(self) -> None:
        start = 0
        try:
            while start < len(self.rows):
                done = await off_loop(prepare_chunk, self.notifier, self.rows[start:])
                for row, (ok, value) in zip(self.rows[start:], done, strict=False):
                    future = self._results[row.id]
                    if future.done():  # its waiter was cancelled
                        continue
                    if ok:
                        future.set_result(value)
                    else:
                        future.set_exception(value)
                start += len(done)
        except Exception as exc:  # a bug in the thread hop itself: every row left fails
            for row in self.rows[start:]:
                if not self._results[row.id].done():
                    self._results[row.id].set_exception(exc)

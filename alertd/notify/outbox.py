"""The outbox worker: delivers what the pipeline committed to the outbox, at least once.

Where it sits: ``pipeline ─► outbox rows (store) ─► Outbox ─► Notifier.send (email | webhook)``.

Contract:

* Every notification is in the store before its first attempt (the pipeline commits it with
  the state change that caused it), so a crash at any moment loses nothing: the next process
  picks up the pending rows.
* A row is marked delivered only after ``send`` returned. A crash in between means the row is
  sent again after the restart with the SAME id, which receivers see as the
  ``Idempotency-Key``: at least once, never silently lost.
* :class:`~alertd.errors.TransientDeliveryError` (and any unexpected error or a send that
  hangs past ``send_timeout``) is retried with jittered exponential backoff
  (``initial_backoff`` doubling up to ``max_backoff``) until ``max_age`` after the row was
  written, then marked ``failed`` and reported. :class:`~alertd.errors.PermanentDeliveryError`
  is marked ``undeliverable`` with its reason and never retried; so is a row whose receiver is
  no longer configured.
* Receivers are independent: each is served by its own task, so one failing or slow receiver
  never delays or repeats another's deliveries. Within a receiver, groups are delivered
  concurrently (bounded) and each group's notifications in order, so a firing is never
  overtaken by its own resolve.
* Retries live here and only here; notifiers make one attempt.
* Rounds are pipelined: while one round is sent, the previous round's outcomes are
  recorded and the next round is claimed, excluding the groups still in flight — the only
  rows sent and not yet recorded — so no row is in two rounds and a group stays in order.
* Bookkeeping is batched: the outcomes of a round are written together
  (:meth:`~alertd.store.base.Store.record_attempts`, one transaction per
  :data:`RECORD_BATCH` outcomes or per round, whichever comes first) — one transaction per
  attempt held SQLite to ~300 notifications/s. A crash before the batch is written leaves
  those rows pending: they are sent again under the same id, as above.
* A :class:`~alertd.notify.base.Staged` notifier (webhooks) has a round's rows rendered
  ahead of their sends, many per worker-thread hop (:mod:`alertd.notify.ahead`); a row whose
  render failed fails alone, as its ``send`` would have. ``send_timeout`` bounds the I/O
  (one timer for all attempts, :mod:`alertd.notify.deadlines`: up to a quarter of it, at
  most 1 s, late); the render has its own limits (:mod:`alertd.templating`).
* Several replicas on one PostgreSQL database may all run an outbox: the store hands each
  row to one replica at a time (its claim), see :mod:`alertd.store.postgres`.

Why over 400 lines: the worker's loops, the round pipeline and its bookkeeping share the
unrecorded-outcomes state and its one-flush-at-a-time lock; split, they would share privates.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Protocol

from alertd.clock import Clock, SystemClock, backoff
from alertd.config.settings import DeliverySettings
from alertd.errors import PermanentDeliveryError, StoreError
from alertd.model import Notification
from alertd.notify.ahead import RenderAhead
from alertd.notify.base import Notifier, Staged
from alertd.notify.deadlines import Deadlines
from alertd.store.base import Attempt, OutboxRow, Store
from alertd.tasks import Background, wait_first

log = logging.getLogger("alertd.outbox")

#: Outcomes written in one transaction at most (a round's are written at its end anyway).
RECORD_BATCH = 100
#: Groups of one receiver sent concurrently, by default.
CONCURRENCY = 8
#: Due rows one round of one receiver takes (and, on PostgreSQL, claims) at most.
ROUND_ROWS = 200
#: Seconds between pending-count reports while full rounds follow one another.
PENDING_EVERY = 5.0


class DeliveryObserver(Protocol):
    """Told about every attempt's outcome (``delivered``, ``retry``, ``failed``,
    ``undeliverable``) and the number of pending rows: the metrics hook
    (:class:`alertd.service.metrics.Metrics` is one)."""

    def on_delivery(self, receiver: str, outcome: str) -> None: ...

    def on_pending(self, count: int) -> None: ...


_RETRY_NOTE = re.compile(r" \(will retry\)|, will retry(?=\))")


def without_retry_note(reason: str) -> str:
    """A transient error's text without its "will retry", for when it will not be."""
    return _RETRY_NOTE.sub("", reason)


def next_step(
    row: OutboxRow, error: BaseException | None, now: float, settings: DeliverySettings,
    rng: random.Random,
) -> Attempt:
    """What to record after one attempt at ``row`` that raised ``error`` (``None``: sent)."""
    attempts = row.attempts + 1
    if error is None:
        return Attempt(row.id, "delivered", attempts, now)
    reason = str(error) or type(error).__name__
    if isinstance(error, PermanentDeliveryError):
        return Attempt(row.id, "undeliverable", attempts, now, error=reason)
    deadline = row.created_at + settings.max_age
    if now >= deadline:
        age = now - row.created_at
        return Attempt(row.id, "failed", attempts, now,
                       error=f"gave up after {attempts} attempts over {age:.0f}s: "
                             f"{without_retry_note(reason)}")
    retry_at = now + backoff(attempts - 1, base=settings.initial_backoff,
                             cap=settings.max_backoff, rng=rng)
    return Attempt(row.id, "pending", attempts, now, next_attempt_at=min(retry_at, deadline),
                   error=reason)


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """What :meth:`Outbox.run_until_idle` did: outcomes counted, rows that ended without
    delivery in this run, and rows still pending for the daemon."""

    outcomes: Mapping[str, int] = field(default_factory=dict)
    gave_up: tuple[tuple[OutboxRow, Attempt], ...] = ()
    pending: tuple[OutboxRow, ...] = ()


_Sink = list[tuple[OutboxRow, Attempt]]


class Outbox:
    """Delivers pending outbox rows through one :class:`Notifier` per receiver name.

    ``notifiers`` must hold every configured receiver: pending rows of any other receiver are
    marked undeliverable ("not configured any more"). ``concurrency`` bounds the groups one
    receiver is sent concurrently; ``idle_poll`` is how often an idle receiver looks for rows
    another process wrote; finished rows are pruned after ``retention`` seconds. ``observer``
    is told every outcome (the daemon's metrics); ``on_delivered`` is called with each
    notification once it is delivered (``alertd demo`` prints it).
    """

    def __init__(
        self,
        store: Store,
        notifiers: Mapping[str, Notifier],
        settings: DeliverySettings | None = None,
        clock: Clock | None = None,
        *,
        observer: DeliveryObserver | None = None,
        on_delivered: Callable[[Notification], None] | None = None,
        rng: random.Random | None = None,
        concurrency: int = CONCURRENCY,
        send_timeout: float = 120.0,
        idle_poll: float = 30.0,
        retention: float = 7 * 86400.0,
    ) -> None:
        self.store = store
        self.notifiers = dict(notifiers)
        self.settings = settings or DeliverySettings()
        self.clock = clock or SystemClock()
        self.observer = observer
        self.on_delivered = on_delivered
        self.rng = rng or random.Random()
        self.concurrency = concurrency
        self.send_timeout = send_timeout
        self._deadlines = Deadlines(send_timeout)
        self.idle_poll = idle_poll
        self.retention = retention
        self._wakes = {name: asyncio.Event() for name in self.notifiers}
        self._unrecorded: list[tuple[OutboxRow, Attempt, _Sink | None]] = []
        self._flushing = asyncio.Lock()
        self._worker = Background("alertd-outbox")

    def wake(self) -> None:
        """New rows were committed: deliver now instead of at the next poll."""
        for event in self._wakes.values():
            event.set()

    async def run_until_idle(self, timeout: float) -> DeliveryReport:
        """Delivers until nothing is pending or the next retry falls after ``timeout``
        seconds (``alertd check``); what is left stays pending for the daemon."""
        sink: _Sink = []
        await self.sweep_unconfigured(sink)
        deadline = self.clock.monotonic() + timeout
        work = _together([self._drain(name, deadline, sink) for name in self.notifiers])
        try:
            await asyncio.wait_for(work, timeout)
        except TimeoutError:
            log.warning("deliveries still in progress after %gs; they stay queued", timeout)
        await self._report_pending()
        outcomes: dict[str, int] = {}
        for _, attempt in sink:
            outcomes[attempt.status] = outcomes.get(attempt.status, 0) + 1
        gave_up = tuple(item for item in sink if item[1].status in ("failed", "undeliverable"))
        return DeliveryReport(outcomes, gave_up, tuple(await self.store.outbox("pending")))

    async def run(self, stop: asyncio.Event) -> None:
        """The daemon's delivery loop: one task per receiver until ``stop`` is set.

        Attempts in flight when ``stop`` is set are finished (each is bounded by
        ``send_timeout``); cancel the task to abandon them instead: their rows stay pending
        and the next start sends them again, under the same id."""
        await _together([
            self._housekeeping(stop),
            *(self._serve(name, stop) for name in self.notifiers),
        ])

    async def start(self) -> None:
        """Runs :meth:`run` in the background until :meth:`drain` or :meth:`stop`."""
        self._worker.start(self.run)

    async def drain(self, timeout: float, abort: asyncio.Event | None = None) -> bool:
        """Stops the background worker, letting attempts in flight finish for up to
        ``timeout`` seconds (less once ``abort`` is set); the rest are cancelled and stay
        pending for the next start. ``True`` when nothing was left unfinished."""
        return await self._worker.stop(timeout, abort)

    async def stop(self, grace: float = 10.0) -> None:
        await self.drain(grace)

    async def sweep_unconfigured(self, sink: _Sink | None = None) -> None:
        """Marks pending rows of receivers that are no longer configured undeliverable."""
        for row in await self.store.outbox("pending"):
            if row.receiver not in self.notifiers:
                error = PermanentDeliveryError(
                    f"receiver {row.receiver!r} is not configured any more",
                    receiver=row.receiver)
                await self._record(row, error, sink)
        await self._flush()

    # ----------------------------------------------------------------- internals

    async def _drain(self, receiver: str, deadline: float, sink: _Sink) -> None:
        while True:
            await self._rounds(receiver, sink)
            upcoming = await self.store.next_attempt_at(receiver)
            if upcoming is None:
                return
            wait = upcoming - self.clock.now()
            if wait > deadline - self.clock.monotonic():
                return
            if wait > 0:
                await self.clock.sleep(wait)

    async def _serve(self, receiver: str, stop: asyncio.Event) -> None:
        wake = self._wakes[receiver]
        while not stop.is_set():
            wake.clear()
            delay = self.idle_poll
            try:
                # Full rounds follow one another inside _rounds for up to PENDING_EVERY
                # seconds; when it returns full, more is due now: no need to ask when.
                full = await self._rounds(receiver, None, stop) >= ROUND_ROWS
                await self._report_pending()
                if full:
                    delay = 0.0
                else:
                    upcoming = await self.store.next_attempt_at(receiver)
                    if upcoming is not None:
                        delay = min(delay, upcoming - self.clock.now())
            except StoreError as exc:
                log.error("outbox unavailable receiver=%s error=%s", receiver, exc)
            except Exception:  # the worker must outlive a bug in one round
                log.exception("outbox round failed receiver=%s", receiver)
            await wait_first(stop, wake, timeout=max(delay, 0.0), clock=self.clock)

    async def _housekeeping(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.sweep_unconfigured()
                pruned = await self.store.prune_outbox(self.clock.now() - self.retention)
                if pruned:
                    log.info("outbox pruned rows=%d", pruned)
            except StoreError as exc:
                log.error("outbox housekeeping failed error=%s", exc)
            await wait_first(stop, timeout=3600.0, clock=self.clock)

    async def _rounds(
        self, receiver: str, sink: _Sink | None, stop: asyncio.Event | None = None
    ) -> int:
        """Rounds of due rows of ``receiver``, sent and recorded, back to back while they
        come full (for up to :data:`PENDING_EVERY` seconds, and not once ``stop`` is set);
        how many rows the last round had.

        Pipelined: while one round's rows are sent, the previous round's outcomes are
        recorded and then the next round is claimed, so those store round trips hide behind
        the sends. The claim excludes the groups of the round in flight — the only rows sent
        and not yet recorded — so no row is in two rounds and each group is still sent in
        order, one round at a time."""
        until = self.clock.monotonic() + PENDING_EVERY
        rows = await self._claim(receiver, ())
        try:
            while True:
                more = (len(rows) >= ROUND_ROWS and self.clock.monotonic() < until
                        and not (stop is not None and stop.is_set()))
                busy = {row.group_key for row in rows}
                sent, behind = await asyncio.gather(
                    self._send_round(receiver, rows, sink),
                    self._record_then_claim(receiver, busy if more else None),
                    return_exceptions=True)
                for result in (sent, behind):
                    if isinstance(result, BaseException):
                        raise result
                assert isinstance(behind, list)
                if not behind:
                    return len(rows)
                rows = behind
        finally:
            # Shielded: a drain that cancels the round still records what was sent.
            await asyncio.shield(self._flush())

    async def _claim(self, receiver: str, busy: Collection[str]) -> list[OutboxRow]:
        return await self.store.due_deliveries(self.clock.now(), receiver, ROUND_ROWS,
                                               exclude_groups=busy)

    async def _record_then_claim(
        self, receiver: str, busy: Collection[str] | None
    ) -> list[OutboxRow]:
        """The previous round's outcomes recorded, then (``busy``: the groups in flight,
        ``None``: no more rounds) the next round claimed."""
        await self._flush()
        return [] if busy is None else await self._claim(receiver, busy)

    async def _send_round(self, receiver: str, rows: Sequence[OutboxRow],
                          sink: _Sink | None) -> None:
        """One round's rows sent, groups concurrently (bounded), each group in order; the
        outcomes are left to :meth:`_flush` (at most :data:`RECORD_BATCH` wait)."""
        by_group: dict[str, list[OutboxRow]] = {}
        for row in rows:
            by_group.setdefault(row.group_key, []).append(row)
        limit = asyncio.Semaphore(self.concurrency)
        notifier = self.notifiers[receiver]
        async with AsyncExitStack() as stack:
            ahead = None
            if rows and isinstance(notifier, Staged):
                ahead = await stack.enter_async_context(RenderAhead(notifier, rows))
            await _together([self._chain(chain, limit, sink, ahead)
                             for chain in by_group.values()])

    async def _chain(
        self, rows: Sequence[OutboxRow], limit: asyncio.Semaphore, sink: _Sink | None,
        ahead: RenderAhead | None,
    ) -> None:
        """One group's due rows in order; stops at a row that must wait for a retry."""
        async with limit:
            for row in rows:
                attempt = await self._attempt(row, sink, ahead)
                if attempt.status == "pending":
                    return

    async def _attempt(
        self, row: OutboxRow, sink: _Sink | None, ahead: RenderAhead | None = None
    ) -> Attempt:
        error: BaseException | None = None
        try:
            if ahead is None:
                await self._deadlines.bound(self.notifiers[row.receiver].send(row.notification))
            else:
                prepared = await ahead.get(row)
                await self._deadlines.bound(ahead.notifier.deliver(prepared))
        except TimeoutError:
            error = TimeoutError(f"no answer within {self.send_timeout:g}s")
        except Exception as exc:  # a notifier bug must not stop delivery to the others
            error = exc
        return await self._record(row, error, sink)

    async def _record(
        self, row: OutboxRow, error: BaseException | None, sink: _Sink | None
    ) -> Attempt:
        attempt = next_step(row, error, self.clock.now(), self.settings, self.rng)
        self._unrecorded.append((row, attempt, sink))
        if len(self._unrecorded) >= RECORD_BATCH:
            await self._flush()
        return attempt

    async def _flush(self) -> None:
        """Writes the outcomes not yet recorded in one transaction, then tells about them.

        One flush at a time: when it returns, every outcome noted before the call is
        committed (or its batch failed), even one another flush had taken — the claim that
        follows relies on it."""
        async with self._flushing:
            batch, self._unrecorded = self._unrecorded, []
            if batch:
                await self.store.record_attempts([attempt for _, attempt, _ in batch])
                self._told(batch)

    def _told(self, batch: Sequence[tuple[OutboxRow, Attempt, _Sink | None]]) -> None:
        now = self.clock.now()
        for row, attempt, sink in batch:
            outcome = "retry" if attempt.status == "pending" else attempt.status
            if self.observer is not None:
                self.observer.on_delivery(row.receiver, outcome)
            if sink is not None:
                sink.append((row, attempt))
            if attempt.status == "delivered" and self.on_delivered is not None:
                self.on_delivered(row.notification)
            _log_attempt(row, attempt, now)

    async def _report_pending(self) -> None:
        if self.observer is not None:
            self.observer.on_pending(await self.store.pending_count())


async def _together(work: Sequence[Awaitable[None]]) -> None:
    """Runs coroutines concurrently; one failing never stops the others, and each failure is
    logged (``gather(..., return_exceptions=True)``)."""
    results = await asyncio.gather(*work, return_exceptions=True)
    for result in results:
        if isinstance(result, asyncio.CancelledError):
            raise result
        if isinstance(result, BaseException):
            log.error("delivery task failed: %r", result)


def _log_attempt(row: OutboxRow, attempt: Attempt, now: float) -> None:
    if attempt.status == "delivered":
        log.info("delivered receiver=%s id=%s attempts=%d", row.receiver, row.id,
                 attempt.attempts)
    elif attempt.status == "pending":
        retry_in = (attempt.next_attempt_at or now) - now
        log.warning("delivery failed, retrying in %.0fs receiver=%s id=%s attempt=%d error=%s",
                    retry_in, row.receiver, row.id, attempt.attempts, attempt.error)
    else:
        log.error("delivery %s receiver=%s id=%s attempts=%d error=%s", attempt.status,
                  row.receiver, row.id, attempt.attempts, attempt.error)

"""How many requests each budget keeps in flight: sized from the measured latency (Little's law).

Where it sits: :class:`~alertd.source.http.StripeHTTP` takes a slot of the request's budget
before it waits for the budget's turn (:mod:`alertd.source.ratelimit`) and gives it back once
the answer is read, and it tells the budget's :class:`Concurrency` how long each attempt took.

Why sized, not fixed: a budget of ``rate`` request starts per second whose requests each take
``latency`` seconds has ``rate × latency`` requests in flight on average (Little's law). With
fewer slots than that, the slots and not the budget set the pace: 32 slots against a 1-second
Stripe give 32 requests/s of a 100/s budget. So the limit follows the latency:
``⌈headroom · rate · latency⌉ + spare`` (:func:`in_flight_limit`), where ``latency`` is an
exponentially weighted moving average of the seconds each attempt held its slot
(:func:`ewma`), the headroom absorbs answers slower than the average and the spare keeps a few
requests queued at the budget, so its pace never waits for a slot. The limit never exceeds
``stripe.max_in_flight``, which bounds sockets and memory (each slot reads at most one body of
``stripe.max_response_bytes``); when the latency needs more than that, the budget cannot be
reached and the client logs it once, naming the setting.

More slots than needed cost nothing: the rate budget alone decides when a request starts, so
the limit never lets more than the budget through.

The same law sizes how far ahead a caller that works in batches must queue requests
(:func:`batches_ahead`): the engine fetches customers batch by batch, and while it awaits a
batch's last answers (one latency after its last request went out) the requests of the
batches after it must keep the budget busy — ``rate × latency`` of them.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

log = logging.getLogger("alertd.source")

#: Slots per request the latency and budget need on average.
HEADROOM = 1.5
#: Slots on top, so a few requests always wait at the budget.
SPARE = 8
#: The latency assumed until the first answer is timed.
INITIAL_LATENCY = 0.5
#: Weight of each new sample in the moving average (about the last 20 attempts count).
WEIGHT = 0.05


def in_flight_limit(rate: float, latency: float, *, cap: int, headroom: float = HEADROOM,
                    spare: int = SPARE) -> int:
    """Slots for ``rate`` starts per second of requests taking ``latency`` seconds: at least 1
    and at most ``cap``. Pure."""
    needed = math.ceil(headroom * rate * max(latency, 0.0)) + spare
    return max(1, min(cap, needed))


def ewma(average: float | None, sample: float, weight: float = WEIGHT) -> float:
    """The moving average after ``sample``; the first sample is the average. Pure."""
    if average is None:
        return sample
    return average + weight * (sample - average)


#: The most batches :func:`batches_ahead` queues beyond the awaited one (their answers are
#: held in memory until their turn to be judged).
MOST_AHEAD = 8


def batches_ahead(rate: float, latency: float | None, requests_per_batch: int, *,
                  least: int = 1, most: int = MOST_AHEAD, headroom: float = HEADROOM) -> int:
    """Batches to have under way beyond the one being awaited so that ``rate`` requests per
    second never wait for a batch to be planned: while the awaited batch's last answers take
    ``latency``, ``rate × latency`` requests must be queued behind them (Little's law), with
    the headroom the in-flight slots have (answers slower than the average, the awaited batch
    being judged); from ``least`` to ``most``. An unknown latency (no answer timed yet) or an
    empty batch asks for ``least``. Pure."""
    if latency is None or requests_per_batch <= 0:
        return least
    wanted = math.ceil(headroom * rate * max(latency, 0.0) / requests_per_batch)
    return max(least, min(most, wanted))


def reachable_rate(limit: int, latency: float) -> float:
    """The most starts per second ``limit`` slots allow when requests take ``latency``. Pure."""
    return math.inf if latency <= 0 else limit / latency


class Slots:
    """At most ``limit`` holders at once, first come first served; the limit can change.

    Lowering the limit takes no slot away: holders keep theirs, and no one else gets one
    until fewer than the new limit are held. A waiter cancelled while waiting gives up its
    place (or the slot it was just handed) without a trace.
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit!r}")
        self.limit = limit
        self.held = 0
        #: The most slots held at once so far.
        self.peak = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return sum(1 for waiter in self._waiters if not waiter.done())

    def resize(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit!r}")
        self.limit = limit
        self._hand_out()

    async def acquire(self) -> None:
        if self.held < self.limit and not self._waiters:
            self._take()
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed a slot, then cancelled before using it
            else:
                self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        if self.held <= 0:
            raise RuntimeError("Slots.release() without a slot held")
        self.held -= 1
        self._hand_out()

    def _take(self) -> None:
        self.held += 1
        self.peak = max(self.peak, self.held)

    def _hand_out(self) -> None:
        while self._waiters and self.held < self.limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._take()
                waiter.set_result(None)


@dataclass(frozen=True, slots=True)
class ConcurrencyStats:
    """What one budget's concurrency looks like now (for benchmarks, metrics and tests)."""

    name: str
    limit: int
    held: int
    peak: int
    latency: float | None
    capped: bool


class Concurrency:
    """The slots of one rate budget, sized from its rate and its measured latency.

    ``rate`` is the budget's configured rate, ``cap`` is ``stripe.max_in_flight``.
    """

    def __init__(self, name: str, rate: float, cap: int, *,
                 initial_latency: float = INITIAL_LATENCY) -> None:
        self.name = name
        self.rate = rate
        self.cap = cap
        self.latency: float | None = None
        self._slots = Slots(in_flight_limit(rate, initial_latency, cap=cap))
        self._capped = False

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one slot for the body of the ``async with``."""
        await self._slots.acquire()
        try:
            yield
        finally:
            self._slots.release()

    def observe(self, seconds: float) -> None:
        """An attempt held its slot for ``seconds``: update the average and the limit."""
        self.latency = ewma(self.latency, max(seconds, 0.0))
        wanted = in_flight_limit(self.rate, self.latency, cap=self.cap)
        self._slots.resize(wanted)
        capped = reachable_rate(wanted, self.latency) < self.rate
        if capped and not self._capped:
            log.warning(
                "Stripe answers in %.2fs on average: %d requests in flight (stripe.max_in_flight)"
                " allow about %.0f requests/s of the %s budget's %g; raise stripe.max_in_flight "
                "to use the whole budget", self.latency, wanted,
                reachable_rate(wanted, self.latency), self.name, self.rate)
        self._capped = capped

    def stats(self) -> ConcurrencyStats:
        return ConcurrencyStats(self.name, self._slots.limit, self._slots.held,
                                self._slots.peak, self.latency, self._capped)

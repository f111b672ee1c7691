"""Rate budgets: one per Stripe limit, shared by every request that draws on it.

Where it sits: :class:`~alertd.source.http.StripeHTTP` calls :meth:`RateBudget.start` right
before each HTTP attempt (retries included) and tells the :class:`Start` it gets when the
request actually went out, so every request — whoever makes it — is paced by the budget of the
limit Stripe counts it against. There are two such limits (the Meter Usage Analytics API's own
100 requests/s, and the account's general limit that customers, meters and event summaries
use), hence :class:`Budgets`.

The guarantee, by the instant each request was *sent* (written to the socket, as measured on
the budget's clock): at most ``⌊rate · (1 − margin)⌋`` in any sliding 1-second window, and at
most ``⌊rate⌋`` in any window of ``1 + guard`` seconds (``guard`` defaults to ``margin``
seconds: 30 ms). The second bound is the one Stripe needs: Stripe counts *arrivals*, and an
arrival is the send plus a delay that varies (the network, the receiver's own busy moments);
if that delay varies by less than ``guard``, no sliding second at the receiver holds more than
``rate``, however the sends bunched. Three mechanisms give it:

* **Pacing.** Starts are given slots spaced evenly at ``1 / (effective_rate · (1 − margin))``
  seconds, so there are no bursts. A slot missed because the event loop was busy (a large
  answer being parsed wakes the waiting caller late) is not lost: the schedule runs behind by
  up to :data:`MAX_LAG` intervals and catches up at three times the pace (starts at least
  :data:`CATCH_UP_SPACING` of an interval apart), so a loop busy half the time still gets the
  whole budget, and no two starts are closer together than a third of an interval (about as
  bunched as a late caller followed by an on-time one).
* **A sliding log** of the last ``⌊rate · (1 − margin)⌋`` starts: a start is also held until
  every request started before them has been sent, and the latest of those sends is a full
  second old. Pacing alone nearly satisfies this; the log makes the first bound hold by
  construction, whatever the pacing and the event loop did meanwhile.
* **A guard on the log**: the same over the last ``⌊rate⌋`` starts and ``1 + guard`` seconds.
  Steady pacing never meets it (``⌊rate⌋`` intervals are ``1 / (1 − margin)`` s, more than
  ``1 + margin``); it holds back a catch-up only. Without it, the first bound alone lets a
  catch-up put ``⌊rate⌋ + 1`` sends within ``1 s + 3 catch-up gaps`` (about 10 ms at 100/s),
  and a receiver busy for 10 ms then counts 101 in one of its seconds (the simulator did,
  once, with a client loop busy 71 % of the time).

No client can absorb a receiver that stalls for longer than the guard: a guard of ``g``
seconds caps the sustained rate at ``rate / (1 + g)``, so it can grow only with the margin. A
CPU-starved simulator (load 12 on 2 cores) has counted 21–23 arrivals in a second of a
20/s budget whose sends were at most 19 a second and 20 in 1.03 s; :attr:`RateStats.peak_sent`
and ``peak_sent_guarded`` are the budget's own counts, to tell the two apart. Such 429s are
then handled as any other (the rate is cut, and the request retried).

Why sends and not grants: between a start being granted and its bytes reaching the socket the
HTTP client yields to the event loop, and a busy loop (a large answer being read, a batch being
judged, a loaded machine) makes that gap vary from microseconds to tens of milliseconds. A log
of grant instants would then let ``rate`` grants per second through while the sends bunch —
Stripe counting 103 in a second of a 100/s budget. The log keeps each request's send instant
(``Start.sent``, from the HTTP client's trace of the request headers being written), and a
start waits for the request ``capacity`` starts before it to have been sent: so any
``capacity + 1`` sends span more than a second, whatever the gaps. :meth:`RateBudget.acquire`
counts the grant as the send, for callers that send at once.

Callers are served one at a time, first come first served: the caller at the head holds a lock
while it sleeps until its slot, and records the instant it was let through. So many
concurrent tasks cannot race past the log.

After a 429, :meth:`RateBudget.penalize` cuts the effective rate multiplicatively; it then
grows back linearly (additive increase) to the configured rate over ``recovery`` seconds — the
AIMD scheme that lets several clients of one account settle below its limit. Several 429s
within ``cooldown`` seconds (the answers to requests that were already in flight together)
count as one cut.

Why over 400 lines: the pacing, the two logs and the AIMD cut act on one schedule, and each
start must see all of them under one lock.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from alertd.clock import Clock
from alertd.config.settings import StripeSettings

BudgetName = Literal["analytics", "general"]
BUDGET_NAMES: tuple[BudgetName, ...] = ("analytics", "general")

#: The sliding window Stripe counts requests in.
WINDOW = 1.0
#: How far, in intervals, the schedule may run behind before missed slots are given up: a
#: caller woken this late by a busy event loop loses nothing (the next starts catch up).
MAX_LAG = 10
#: The fraction of the rate the pacing keeps unused by default (:class:`RateBudget`).
MARGIN = 0.03
#: While catching up, starts are at least this fraction of an interval apart: three times
#: the pace, never a burst (a run of back-to-back starts that Stripe's jitter could bunch
#: into one second). A simulated loop busy 60 % of the time in 10 ms blocks gets 95 of 97
#: starts a second so, and never more than 3 in 10 ms.
CATCH_UP_SPACING = 1 / 3


@dataclass(frozen=True, slots=True)
class RateStats:
    """What a budget has done so far (for metrics, benchmarks and tests)."""

    name: str
    rate: float
    effective_rate: float
    acquired: int
    waited: int
    wait_seconds: float
    penalties: int
    #: Seconds of schedule given up because callers were let through more than
    #: :data:`MAX_LAG` intervals late (a blocked event loop), summed.
    lost_seconds: float = 0.0
    #: The most requests sent in any 1-second window, and in any window of ``1 + guard``
    #: seconds, by their send instants (at most ``⌊rate · (1 − margin)⌋`` and ``⌊rate⌋``).
    peak_sent: int = 0
    peak_sent_guarded: int = 0
    #: Seconds the budget had a slot free and no caller asking for it (the client, not the
    #: budget, set the pace then), summed up to now: :meth:`RateBudget.idle_seconds`.
    idle_seconds: float = 0.0


def recovered_rate(
    rate: float, cut_to: float, since_cut: float, recovery: float
) -> float:
    """The effective rate ``since_cut`` seconds after it was cut to ``cut_to``.

    Pure. Grows linearly by ``rate / recovery`` per second, never above ``rate``.
    """
    if recovery <= 0:
        return rate
    return min(rate, cut_to + rate * max(0.0, since_cut) / recovery)


class PeakCounter:
    """The most instants counted in any window of ``span`` seconds so far: the sends a budget
    let through, as the receiver would count them if each arrived at once. Instants may come a
    little out of order (requests are written in whatever order the loop gets to them)."""

    def __init__(self, span: float) -> None:
        self.span = span
        self.peak = 0
        self._seen: deque[float] = deque()

    def add(self, at: float) -> None:
        if self._seen and at < self._seen[-1]:
            bisect.insort(self._seen, at)
        else:
            self._seen.append(at)
        while self._seen[0] + self.span <= self._seen[-1]:  # as the log adds: no rounding
            self._seen.popleft()
        self.peak = max(self.peak, len(self._seen))


class Start:
    """One granted start: when it was granted, and when its request was sent (once known).

    :meth:`sent` may be called any number of times: the first instant counts (never before the
    grant). A request that is never sent (an error before it went out) must still be marked,
    or the start ``capacity`` later waits for it; :class:`~alertd.source.http.StripeHTTP`
    marks every start when its attempt ends.
    """

    __slots__ = ("_on_sent", "_waiter", "granted_at", "sent_at")

    def __init__(self, granted_at: float,
                 on_sent: Callable[[float], None] | None = None) -> None:
        self.granted_at = granted_at
        self.sent_at: float | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._on_sent = on_sent

    def sent(self, at: float) -> None:
        if self.sent_at is not None:
            return
        self.sent_at = max(at, self.granted_at)
        if self._on_sent is not None:
            self._on_sent(self.sent_at)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def wait_sent(self) -> None:
        if self.sent_at is not None:
            return
        if self._waiter is None:
            self._waiter = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._waiter)


class RateBudget:
    """At most ``rate`` request starts in any sliding 1-second window; see the module doc.

    ``margin`` is the fraction of ``rate`` kept unused by the pacing (3 % by default),
    ``guard`` the seconds of arrival jitter the log absorbs (``margin`` seconds by default),
    ``decrease`` the factor a 429 multiplies the effective rate by, ``recovery`` the seconds a
    full recovery from zero would take, ``floor`` the lowest effective rate (default
    ``rate / 20``).
    """

    def __init__(
        self,
        rate: float,
        *,
        clock: Clock,
        margin: float = MARGIN,
        name: str,
        decrease: float = 0.5,
        recovery: float = 10.0,
        cooldown: float = 1.0,
        floor: float | None = None,
        guard: float | None = None,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate!r}")
        if not 0 <= margin < 1:
            raise ValueError(f"margin must be in [0, 1), got {margin!r}")
        if not 0 < decrease <= 1:
            raise ValueError(f"decrease must be in (0, 1], got {decrease!r}")
        if guard is not None and guard < 0:
            raise ValueError(f"guard must not be negative, got {guard!r}")
        self.name = name
        self.rate = float(rate)
        self.margin = margin
        self.decrease = decrease
        self.recovery = recovery
        self.cooldown = cooldown
        self.floor = floor if floor is not None else rate / 20
        self._clock = clock
        self._lock = asyncio.Lock()
        # The last ``capacity`` starts, oldest first, and the latest send among all older ones
        # (monotonic seconds). The log keeps the margin too: Stripe counts arrivals, which
        # network jitter can bunch.
        self._capacity = max(1, math.floor(self.rate * (1.0 - margin)))
        #: ``(starts, seconds)``: a start waits until the send ``starts`` before it (and
        #: every older one) is ``seconds`` old, so any ``starts + 1`` sends span more.
        self.guard = margin * WINDOW if guard is None else guard
        self._limits = ((self._capacity, WINDOW),
                        (max(1, math.floor(self.rate)), WINDOW + self.guard))
        self._keep = max(count for count, _ in self._limits)
        self._starts: deque[Start] = deque()
        self._sent_before = -math.inf
        self._peaks = (PeakCounter(WINDOW), PeakCounter(WINDOW + self.guard))
        # The schedule's last slot (it may lie behind the last start, see earliest_start) and
        # the instant of the last start.
        self._last_slot: float | None = None
        self._last_start = -math.inf
        self._lost = 0.0
        # Idle time (RateBudget.idle_seconds): summed up to the last start, the callers
        # inside start() and since when one of them has been waiting without a break.
        self._idle = 0.0
        self._callers = 0
        self._waiting_since = 0.0
        self._cut_to = self.rate
        self._cut_at: float | None = None
        self._acquired = 0
        self._waited = 0
        self._wait_seconds = 0.0
        self._penalties = 0

    def __repr__(self) -> str:
        return f"RateBudget(name={self.name!r}, rate={self.rate:g})"

    def effective_rate(self) -> float:
        """The rate the pacing aims at now (``rate`` unless a recent 429 cut it)."""
        if self._cut_at is None:
            return self.rate
        since = self._clock.monotonic() - self._cut_at
        return recovered_rate(self.rate, self._cut_to, since, self.recovery)

    def interval(self) -> float:
        """Seconds between paced starts at the current effective rate, less the margin."""
        return 1.0 / (self.effective_rate() * (1.0 - self.margin))

    def scheduled(self, head_at: float, arrived: float) -> float:
        """The schedule's next slot for a caller that arrived at ``arrived`` and reached the
        head of the queue at ``head_at``: an interval after the previous slot, never before
        the caller arrived (an idle budget banks nothing) and at most :data:`MAX_LAG`
        intervals before ``head_at`` (further behind, the missed slots are given up)."""
        if self._last_slot is None:
            return arrived
        interval = self.interval()
        return max(self._last_slot + interval, arrived, head_at - MAX_LAG * interval)

    def earliest_start(self, head_at: float, arrived: float) -> float:
        """When the next start may go, once the sends the log waits for are known: its
        scheduled slot (:meth:`scheduled`), but no sooner than :data:`CATCH_UP_SPACING` of an
        interval after the previous start, a full second after the send ``⌊rate · (1 −
        margin)⌋`` starts before it and ``1 + guard`` seconds after the send ``⌊rate⌋``
        starts before it (each together with every older send).

        Slots follow the previous *slot*, not the previous actual start, so a caller woken
        late (a busy event loop) does not push every later start back: the pace holds on
        average, the starts after a late one catching up at three times the pace. The sliding
        log bounds every window whatever the slots say.
        """
        slot = self.scheduled(head_at, arrived)
        if self._last_slot is not None:
            slot = max(slot, self._last_start + CATCH_UP_SPACING * self.interval())
        for count, span in self._limits:
            if len(self._starts) >= count:
                slot = max(slot, self._sent_by(len(self._starts) - count) + span)
        return slot

    def _sent_by(self, index: int) -> float:
        """The latest send among the logged starts up to ``index`` and every older one."""
        latest = self._sent_before
        for start in itertools.islice(self._starts, index + 1):
            assert start.sent_at is not None  # start() waits for it
            latest = max(latest, start.sent_at)
        return latest

    def _unsent(self) -> Start | None:
        """A logged start the next one must wait for (not sent yet), if any."""
        deepest = max((len(self._starts) - count for count, _ in self._limits), default=-1)
        for start in itertools.islice(self._starts, max(deepest + 1, 0)):
            if start.sent_at is None:
                return start
        return None

    async def acquire(self) -> None:
        """Wait until one more request may be sent now, and count it as sent at once."""
        start = await self.start()
        start.sent(start.granted_at)

    async def start(self) -> Start:
        """Wait until one more request may start now; the caller marks it :meth:`Start.sent`.

        Fair (first come, first served) and safe under any number of concurrent callers; a
        caller cancelled while waiting gives up its turn without counting a start.
        """
        arrived = self._clock.monotonic()
        self._callers += 1
        if self._callers == 1:
            self._waiting_since = arrived
        try:
            return await self._start(arrived)
        finally:
            self._callers -= 1
            # The callers still inside have waited since this start at least.
            self._waiting_since = self._clock.monotonic()

    async def _start(self, arrived: float) -> Start:
        async with self._lock:
            head_at = self._clock.monotonic()
            waited = 0.0
            while True:
                unsent = self._unsent()
                if unsent is not None:
                    # The starts the log counts from must have gone out before their time
                    # counts.
                    await unsent.wait_sent()
                    continue
                # Again after every sleep: a 429 meanwhile may have slowed the pace.
                slot = self.earliest_start(head_at, arrived)
                now = self._clock.monotonic()
                if slot <= now:
                    break
                waited += slot - now
                await self._clock.sleep(slot - now)
            self._note_slot(head_at, arrived, now)
            start = Start(now, self._count_send)
            if len(self._starts) == self._keep:
                oldest = self._starts.popleft()
                assert oldest.sent_at is not None
                self._sent_before = max(self._sent_before, oldest.sent_at)
            self._starts.append(start)
            self._acquired += 1
            if waited > 0:
                self._waited += 1
                self._wait_seconds += waited
        return start

    def reset_peaks(self) -> None:
        """Start :attr:`RateStats.peak_sent` and ``peak_sent_guarded`` over (a benchmark
        measuring one phase)."""
        self._peaks = (PeakCounter(WINDOW), PeakCounter(WINDOW + self.guard))

    def _count_send(self, at: float) -> None:
        for peak in self._peaks:
            peak.add(at)

    def _note_slot(self, head_at: float, arrived: float, now: float) -> None:
        """Advance the schedule by the start let through at ``now``: its scheduled slot, or
        ``now`` itself when it went later than the log or spacing allowed only (the schedule
        never runs ahead of the starts)."""
        scheduled = self.scheduled(head_at, arrived)
        if self._last_slot is not None:
            natural = max(self._last_slot + self.interval(), arrived)
            self._lost += max(0.0, scheduled - natural)
            self._idle += max(0.0, self._waiting_since - self._free_from())
        self._last_slot = min(scheduled, now)
        self._last_start = now

    def penalize(self) -> None:
        """Stripe answered 429 for this budget: cut the effective rate, then let it recover."""
        now = self._clock.monotonic()
        if self._cut_at is not None and now - self._cut_at < self.cooldown:
            return
        self._cut_to = max(self.floor, self.effective_rate() * self.decrease)
        self._cut_at = now
        self._penalties += 1

    def stats(self) -> RateStats:
        return RateStats(
            name=self.name,
            rate=self.rate,
            effective_rate=self.effective_rate(),
            acquired=self._acquired,
            waited=self._waited,
            wait_seconds=self._wait_seconds,
            penalties=self._penalties,
            lost_seconds=self._lost,
            peak_sent=self._peaks[0].peak,
            peak_sent_guarded=self._peaks[1].peak,
            idle_seconds=self.idle_seconds(),
        )

    def idle_seconds(self) -> float:
        """Seconds so far in which a slot of the schedule was free and no caller was asking
        for one: from each slot's time (an interval after the previous one) to when the next
        caller arrived, the stretch under way included. Zero while callers keep the budget
        busy; a poll's share (the difference over the poll) says how much of the budget the
        client left unused, where a poll slower than ``requests ÷ rate`` lost its time. A
        caller that gives up its turn counts as busy while it waited. Nondecreasing while the
        effective rate holds (a 429's cut moves the next slot, and the stretch under way, later)."""
        if self._last_slot is None:
            return self._idle
        until = self._waiting_since if self._callers else self._clock.monotonic()
        return self._idle + max(0.0, until - self._free_from())

    def _free_from(self) -> float:
        """When the next slot became free: an interval after the last slot, but not before
        the last start (catching up, the slots lie up to :data:`MAX_LAG` intervals behind
        the starts, and a caller let through then had been waiting)."""
        assert self._last_slot is not None
        return max(self._last_slot + self.interval(), self._last_start)


@dataclass(frozen=True, slots=True)
class Budgets:
    """The two budgets of one Stripe account, shared by every source and the directory."""

    analytics: RateBudget
    general: RateBudget

    @classmethod
    def from_settings(cls, settings: StripeSettings, clock: Clock) -> Budgets:
        """``stripe.requests_per_second`` and ``stripe.general_requests_per_second``."""
        return cls(
            analytics=RateBudget(settings.requests_per_second, clock=clock, name="analytics"),
            general=RateBudget(settings.general_requests_per_second, clock=clock, name="general"),
        )

    def get(self, name: BudgetName) -> RateBudget:
        return self.analytics if name == "analytics" else self.general

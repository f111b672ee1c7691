"""The deadline scheduler: which customers a poll group reads at this tick, earliest first.

Where it sits: with ``schedule.deadlines`` on (the default), the daemon runs each poll group
(rules sharing an ``every``) every ``schedule.tick`` seconds instead of every ``every``, and
each tick reads only the customers whose deadline has come (:class:`DeadlineBook`), through the
same :meth:`Poller.poll <alertd.service.polling.Poller.poll>` as a full poll. What a read
finds sets the customer's next deadline: the earliest of its series' deadlines
(:func:`alertd.deadlines.series_deadline`), so a customer near a limit and growing fast is read
soon, one far below it (or with no usage at all) at ``every``.

The budget: a tick takes at most ``requests_per_second × tick`` requests' worth of due
customers, earliest deadline first (requests per customer as measured by the group's last
reads), so when more is due than the budget serves, the series that could matter soonest go
first and the rest wait for the next tick in deadline order; the Stripe client's rate budget
(:mod:`alertd.source.ratelimit`) paces the requests themselves, so the rate limit holds
whatever this estimate says.

Safe after restart and reload: the book lives in memory only and a reload starts a new one, so
a series nothing is known of is due now, and the first ticks read everyone (in budget-sized
slices). A customer taken by a tick is booked for ``every`` until its read reports, so a poll
that fails or is cancelled leaves it due again at ``every``, never forgotten.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Mapping
from dataclasses import replace

from alertd.config.settings import Settings
from alertd.deadlines import Memory, Pacing, projectable, remember, series_deadline
from alertd.errors import SourceError
from alertd.model import Finding, SeriesKey
from alertd.rules.schema import Rule
from alertd.service.engine import BatchFindings, Engine, PassResult, selection_for
from alertd.service.metrics import Metrics, TickFigures
from alertd.service.polling import PollGroup, poll_groups
from alertd.service.world import World
from alertd.source.directory import selection_key


class DeadlineBook:
    """The next deadline of every customer of one poll group, and each series' memory.

    ``every`` is the group's interval (the longest a customer goes unread, see
    :mod:`alertd.deadlines`). Customers come in through :meth:`admit` (due at once when new)
    and go out through :meth:`take`; :meth:`observe` books the next deadline from a read.
    """

    def __init__(self, every: float, pacing: Pacing) -> None:
        self.every = every
        self.pacing = pacing
        self._due: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._current: set[str] = set()
        self._memory: dict[SeriesKey, Memory] = {}
        #: Requests per customer read, as the group's reads measured it (starts at 1).
        self.requests_per_customer = 1.0

    def __len__(self) -> int:
        return len(self._due)

    def admit(self, customers: Iterable[str]) -> None:
        """The group's customers now: new ones are due at once; gone ones are dropped."""
        current = set(customers)
        for customer in current - self._current:
            if customer not in self._due:
                self._book(customer, -math.inf)
        gone = self._current - current
        for customer in gone:
            self._due.pop(customer, None)
        if gone:
            self._memory = {k: m for k, m in self._memory.items() if k.customer in current}
        self._current = current
        if len(self._heap) > 4 * len(self._due) + 64:  # stale entries pile up: rebuild
            self._heap = [(due, c) for c, due in self._due.items()]
            heapq.heapify(self._heap)

    def figures(self, now: float) -> TickFigures:
        """How many customers are booked and due at ``now``, how far past its deadline the
        most overdue one (read before) is, and the earliest deadline (for metrics)."""
        due = [d for d in self._due.values() if d <= now]
        lag = max((now - d for d in due if math.isfinite(d)), default=0.0)
        return TickFigures(len(self._due), len(due), lag, self.next_due())

    def due_at(self, customer: str) -> float | None:
        """The customer's next deadline (``-inf``: due now, never read), if it is known."""
        return self._due.get(customer)

    def next_due(self) -> float | None:
        """The earliest deadline in the book."""
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def take(self, now: float, requests: float) -> list[str]:
        """The customers due at ``now``, earliest deadline first, as many as ``requests``
        requests read (at least one). Each is booked for ``every`` until its read reports."""
        limit = max(1, math.floor(requests / max(self.requests_per_customer, 1e-9)))
        taken: list[str] = []
        while self._heap and self._heap[0][0] <= now and len(taken) < limit:
            due, customer = heapq.heappop(self._heap)
            if self._due.get(customer) == due:  # else a stale entry
                taken.append(customer)
                self._book(customer, now + self.every)
        return taken

    def observe(
        self,
        rules: Mapping[str, Rule],
        customers: Iterable[str],
        findings: Iterable[Finding],
        now: float,
        refreshed_at: float | None,
        requests: int | None = None,
    ) -> None:
        """Books each read customer's next deadline from its findings (their series'
        deadlines; ``every`` for a customer without any). ``refreshed_at`` is the data's
        instant (``None``: as of ``now``); ``requests`` what the reads cost."""
        read = list(customers)
        at = now if refreshed_at is None else min(float(refreshed_at), now)
        deadlines: dict[str, float] = {}
        for finding in findings:
            rule = rules.get(finding.rule)
            if rule is None or finding.customer not in self._due:
                continue  # a meta finding, or a customer no longer in the group
            memory = None
            if projectable(rule, finding):  # no other deadline reads a memory: keep none
                memory = remember(self._memory.get(finding.key), finding, at, self.pacing)
            if memory is not None:
                self._memory[finding.key] = memory
            due = series_deadline(rule, finding, memory, now, self.pacing, every=self.every,
                                  data_delay=now - at)
            deadlines[finding.customer] = min(deadlines.get(finding.customer, math.inf), due)
        for customer in read:
            if customer in self._due:
                self._book(customer, deadlines.get(customer, now + self.every))
        if requests is not None and read:
            self.measure(requests, len(read))

    def measure(self, requests: int, customers: int) -> None:
        """Folds what reading ``customers`` cost into the requests per customer."""
        if customers:
            measured = requests / customers
            self.requests_per_customer = 0.5 * self.requests_per_customer + 0.5 * measured

    def _book(self, customer: str, due: float) -> None:
        if self._due.get(customer) == due:
            return  # booked already: one heap entry per deadline
        self._due[customer] = due
        heapq.heappush(self._heap, (due, customer))

    def _drop_stale(self) -> None:
        """Pops heap entries that are no longer a customer's deadline."""
        while self._heap and self._due.get(self._heap[0][1]) != self._heap[0][0]:
            heapq.heappop(self._heap)


def pacing_of(settings: Settings) -> Pacing:
    """The deadline arithmetic's parameters from the configuration."""
    schedule = settings.schedule
    return Pacing(safety=schedule.safety, min_interval=schedule.min_interval,
                  peak_half_life=schedule.peak_half_life,
                  freshness_lag=settings.stripe.freshness_lag)


class DuePolls:
    """The daemon's books, one per poll group of the running world; a reload starts anew.

    Disabled (``schedule.deadlines: false``), it asks for nothing: every poll reads every
    customer at ``every``, as before the scheduler existed.
    """

    def __init__(self, metrics: Metrics | None = None, account: str = "") -> None:
        """``metrics`` gets each tick's figures (:meth:`Metrics.on_tick`), for ``account``."""
        self._books: dict[PollGroup, DeadlineBook] = {}
        self._settings: Settings | None = None
        self.metrics = metrics
        self.account = account

    def reset(self, world: World, every_override: float | None = None) -> None:
        """Empty books for ``world``'s poll groups: everything is due at the next tick."""
        self._settings = world.settings
        pacing = pacing_of(world.settings)
        if self.metrics is not None:
            for book in self._books.values():
                self.metrics.forget_schedule(self.account, book.every)
        self._books = {names: DeadlineBook(every, pacing)
                       for every, names in poll_groups(world.rules, every_override).items()}

    @property
    def enabled(self) -> bool:
        return self._settings is not None and self._settings.schedule.deadlines

    def interval(self, every: float) -> float:
        """How often a poll group's job runs: every tick with deadlines, else ``every``."""
        if not self.enabled or self._settings is None:
            return every
        return min(every, self._settings.schedule.tick)

    def book(self, group: PollGroup) -> DeadlineBook | None:
        return self._books.get(group)

    async def due(self, engine: Engine, world: World, group: PollGroup, now: float
                  ) -> list[str] | None:
        """The customers of ``group`` to read at ``now`` (possibly none); ``None``: read
        everyone (deadlines off, or the group's customers could not be listed, so a full
        poll records that failure as one would)."""
        book = self._books.get(group)
        if not self.enabled or book is None:
            return None
        customers = await group_customers(engine, world, group)
        if customers is None:
            return None
        book.admit(customers)
        tick = world.settings.schedule.tick
        before = book.figures(now) if self.metrics is not None else None
        taken = book.take(now, world.settings.stripe.requests_per_second * tick)
        if self.metrics is not None and before is not None:
            earliest = book.next_due()
            # A customer never read is due now (its deadline is -inf).
            earliest = now if earliest is not None and earliest < now else earliest
            self.metrics.on_tick(self.account, book.every, replace(before, next_due=earliest))
        return taken

    def reading(self, world: World, group: PollGroup, now: int) -> BookReading | None:
        """What books the deadlines of a pass of ``group`` at ``now`` batch by batch, as
        its findings come (``None`` with deadlines off: nothing would read the book)."""
        book = self._books.get(group)
        if book is None or not self.enabled:
            return None
        names = set(group)
        return BookReading(book, {rule.name: rule for rule in world.rules if rule.name in names},
                           now)


class BookReading:
    """Books each batch's customers as a pass judges them (a
    :class:`~alertd.service.polling.PassObserver`): their deadlines from their findings, the
    data's instant the batch's oldest ``refreshed_at``; when the pass is done, what it cost
    per customer."""

    def __init__(self, book: DeadlineBook, rules: Mapping[str, Rule], now: int) -> None:
        self.book = book
        self.rules = rules
        self.now = now

    def batch(self, found: BatchFindings) -> None:
        if not len(self.book):
            self.book.admit(found.customers)  # a full poll (or one by hand) before any tick
        self.book.observe(self.rules, found.read, found.findings, self.now, found.refreshed_at)

    def done(self, result: PassResult) -> None:
        self.book.measure(result.requests, len(result.customers))


async def group_customers(engine: Engine, world: World, group: PollGroup) -> set[str] | None:
    """Every customer id the rules of ``group`` cover (the directory caches them), those
    Stripe lacks or could not look up included, so their ``error`` findings keep being
    recorded; ``None`` when a selection could not be read."""
    ids: set[str] = set()
    seen: set[tuple[str, ...]] = set()
    names = set(group)
    for rule in (r for r in world.rules if r.name in names):
        selection = selection_for(rule, world.settings.customers)
        key = selection_key(selection)
        if key in seen:
            continue
        seen.add(key)
        try:
            selected = await engine.directory.select(selection)
        except SourceError:
            return None
        ids.update(c.id for c in selected.customers)
        ids.update(m.customer_id for m in selected.missing)
        ids.update(customer for customer, _ in selected.failed)
    return ids

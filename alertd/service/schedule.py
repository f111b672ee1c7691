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

The book is packed into arrays (:class:`DeadlineBook` says how): ~325 bytes a customer with six
remembered series (32 MB at 100,000 customers), against ~1,600 for the dicts and heap before
(``bench/steady.py`` prints the book's bytes per customer of its run).

Why over 400 lines: the book, its per-rule memory columns and the daemon's side of it (which
customers a tick takes, how a pass books them) are one scheduler; the arithmetic of a
deadline is :mod:`alertd.deadlines`.
"""

from __future__ import annotations

import math
import sys
from array import array
from collections.abc import Iterable, Mapping
from dataclasses import replace

import numpy as np
import numpy.typing as npt

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

    Packed, because it holds every customer of the account (100,000 of them must fit beside
    the daemon's ~150 MB): each customer has a slot (its id once, in a dict to its slot), its
    deadline is one float in an array, and each series' :class:`~alertd.deadlines.Memory` is
    one entry in per-rule arrays (instant, value, peak rate, and the period key as an index
    into a table of the period keys seen), ``NaN`` where nothing is remembered. Before, a
    deadline was a dict entry plus a heap entry (a tuple and a float) and a memory a
    :class:`~alertd.model.SeriesKey` plus a ``Memory`` object: ~1,950 bytes a customer of the
    mixed rule set, ~195 MB at 100,000 customers. Series of ``group_by`` rules (one per group
    value, unbounded) keep a ``Memory`` by key, as before.

    Order: :meth:`take` picks the due customers by (deadline, customer id), smallest first,
    which is the order the heap of (deadline, id) pairs popped them in; the pick is a numpy
    partition over the deadline array (one tick's work, not one per booking), so there is no
    heap and no stale entry to drop.
    """

    def __init__(self, every: float, pacing: Pacing) -> None:
        self.every = every
        self.pacing = pacing
        self._slot: dict[str, int] = {}
        self._ids: list[str | None] = []
        self._free: list[int] = []
        self._due = array("d")  # by slot; NaN: a free slot
        self._columns: dict[str, _Column] = {}  # by rule: the memories of its series
        self._periods: list[str] = []
        self._period_codes: dict[str, int] = {}
        self._grouped: dict[SeriesKey, Memory] = {}
        #: Requests per customer read, as the group's reads measured it (starts at 1).
        self.requests_per_customer = 1.0

    def __len__(self) -> int:
        return len(self._slot)

    def admit(self, customers: Iterable[str]) -> None:
        """The group's customers now: new ones are due at once; gone ones are dropped."""
        current = set(customers)
        gone = [c for c in self._slot if c not in current]
        for customer in gone:
            self._release(self._slot.pop(customer))
        self.add(current)
        if gone:
            self._grouped = {k: m for k, m in self._grouped.items() if k.customer in current}

    def add(self, customers: Iterable[str]) -> None:
        """New customers of the group, due at once (none is dropped)."""
        for customer in customers:
            if customer not in self._slot:
                self._book(self._take_slot(customer), -math.inf)

    def figures(self, now: float) -> TickFigures:
        """How many customers are booked and due at ``now``, how far past its deadline the
        most overdue one (read before) is, and the earliest deadline (for metrics)."""
        due = self._deadlines()
        due = due[due <= now]  # NaN (free slots) compares false
        read = due[np.isfinite(due)]
        lag = float(now - read.min()) if read.size else 0.0
        return TickFigures(len(self._slot), int(due.size), lag, self.next_due())

    def due_at(self, customer: str) -> float | None:
        """The customer's next deadline (``-inf``: due now, never read), if it is known."""
        slot = self._slot.get(customer)
        return None if slot is None else self._due[slot]

    def next_due(self) -> float | None:
        """The earliest deadline in the book."""
        if not self._slot:
            return None
        return float(np.nanmin(self._deadlines()))

    def take(self, now: float, requests: float) -> list[str]:
        """The customers due at ``now``, earliest deadline first (ties: by id), as many as
        ``requests`` requests read (at least one). Each is booked for ``every`` until its
        read reports."""
        limit = max(1, math.floor(requests / max(self.requests_per_customer, 1e-9)))
        deadlines = self._deadlines()
        due = np.flatnonzero(deadlines <= now)
        if due.size > limit:
            # The limit-th smallest deadline: every slot before it is taken, and ties at it
            # go by id, as (deadline, id) pairs sort.
            cut = np.partition(deadlines[due], limit - 1)[limit - 1]
            sure = due[deadlines[due] < cut]
            tied = sorted(self._name(int(s)) for s in due[deadlines[due] == cut])
            picked = [(float(deadlines[s]), self._name(int(s))) for s in sure]
            picked += [(float(cut), name) for name in tied[:limit - len(picked)]]
        else:
            picked = [(float(deadlines[s]), self._name(int(s))) for s in due]
        picked.sort()
        taken = [name for _, name in picked]
        for name in taken:
            self._book(self._slot[name], now + self.every)
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
            if rule is None or finding.customer not in self._slot:
                continue  # a meta finding, or a customer no longer in the group
            memory = None
            if projectable(rule, finding):  # no other deadline reads a memory: keep none
                memory = remember(self._recall(finding.key), finding, at, self.pacing)
            if memory is not None:
                self._keep(finding.key, memory)
            due = series_deadline(rule, finding, memory, now, self.pacing, every=self.every,
                                  data_delay=now - at)
            deadlines[finding.customer] = min(deadlines.get(finding.customer, math.inf), due)
        for customer in read:
            slot = self._slot.get(customer)
            if slot is not None:
                self._book(slot, deadlines.get(customer, now + self.every))
        if requests is not None and read:
            self.measure(requests, len(read))

    def measure(self, requests: int, customers: int) -> None:
        """Folds what reading ``customers`` cost into the requests per customer."""
        if customers:
            measured = requests / customers
            self.requests_per_customer = 0.5 * self.requests_per_customer + 0.5 * measured

    def series(self) -> int:
        """How many series the book remembers."""
        return len(self._grouped) + sum(c.count() for c in self._columns.values())

    def memory(self, key: SeriesKey) -> Memory | None:
        """What the book remembers of a series (``None``: nothing)."""
        return self._recall(key)

    def held_bytes(self) -> int:
        """The bytes the book holds: its arrays and tables, the slot numbers, the customer
        ids (counted, though they are the directory's strings), the period keys and the
        grouped series' keys and memories (``sys.getsizeof`` of each object once)."""
        tables: list[object] = [self._slot, self._ids, self._free, self._due, self._periods,
                                self._period_codes, self._grouped, self._columns]
        size = sum(sys.getsizeof(t) for t in tables)
        size += sum(sys.getsizeof(c) + sys.getsizeof(v) for c, v in self._slot.items())
        size += sum(sys.getsizeof(p) for p in self._periods)
        size += sum(c.held_bytes() for c in self._columns.values())
        size += sum(sys.getsizeof(k) + sys.getsizeof(m) for k, m in self._grouped.items())
        return size

    # ------------------------------------------------------------------ slots

    def _deadlines(self) -> npt.NDArray[np.float64]:
        return np.frombuffer(self._due, dtype=np.float64) if self._due else np.empty(0)

    def _name(self, slot: int) -> str:
        name = self._ids[slot]
        assert name is not None
        return name

    def _take_slot(self, customer: str) -> int:
        if self._free:
            slot = self._free.pop()
            self._ids[slot] = customer
        else:
            slot = len(self._ids)
            self._ids.append(customer)
            self._due.append(math.nan)
            for column in self._columns.values():
                column.grow(slot + 1)
        self._slot[customer] = slot
        return slot

    def _release(self, slot: int) -> None:
        self._ids[slot] = None
        self._due[slot] = math.nan
        for column in self._columns.values():
            column.forget(slot)
        self._free.append(slot)

    def _book(self, slot: int, due: float) -> None:
        self._due[slot] = due

    # ------------------------------------------------------------------ memories

    def _recall(self, key: SeriesKey) -> Memory | None:
        if key.group:
            return self._grouped.get(key)
        column, slot = self._columns.get(key.rule), self._slot.get(key.customer)
        if column is None or slot is None:
            return None
        found = column.get(slot)
        return None if found is None else Memory(found[0], found[1], self._periods[found[3]],
                                                 found[2])

    def _keep(self, key: SeriesKey, memory: Memory) -> None:
        if key.group:
            self._grouped[key] = memory
            return
        slot = self._slot.get(key.customer)
        if slot is None:
            return
        column = self._columns.get(key.rule)
        if column is None:
            column = self._columns[key.rule] = _Column(len(self._ids))
        code = self._period_codes.get(memory.period_key)
        if code is None:
            code = self._period_codes[memory.period_key] = len(self._periods)
            self._periods.append(memory.period_key)
        column.put(slot, memory.at, memory.value, memory.peak_rate, code)


class _Column:
    """The memories of one rule's series (no ``group_by``), one entry per customer slot:
    the data instant (``NaN``: nothing remembered), value, peak rate and period code."""

    __slots__ = ("at", "period", "rate", "value")

    def __init__(self, size: int) -> None:
        self.at = array("d", [math.nan]) * size
        self.value = array("d", [0.0]) * size
        self.rate = array("d", [0.0]) * size
        self.period = array("l", [0]) * size

    def grow(self, size: int) -> None:
        while len(self.at) < size:
            self.at.append(math.nan)
            self.value.append(0.0)
            self.rate.append(0.0)
            self.period.append(0)

    def forget(self, slot: int) -> None:
        if slot < len(self.at):
            self.at[slot] = math.nan

    def get(self, slot: int) -> tuple[float, float, float, int] | None:
        at = self.at[slot]
        if math.isnan(at):
            return None
        return at, self.value[slot], self.rate[slot], self.period[slot]

    def put(self, slot: int, at: float, value: float, rate: float, period: int) -> None:
        self.at[slot], self.value[slot], self.rate[slot] = at, value, rate
        self.period[slot] = period

    def count(self) -> int:
        return sum(1 for at in self.at if not math.isnan(at))

    def held_bytes(self) -> int:
        return sum(sys.getsizeof(a) for a in (self.at, self.value, self.rate, self.period))


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
        #: Whether the pass books its customers in as it reads them: a full poll (or one by
        #: hand) before any tick, decided at its first batch.
        self.admitting: bool | None = None

    def batch(self, found: BatchFindings) -> None:
        if self.admitting is None:
            self.admitting = not len(self.book)
        if self.admitting:  # batch by batch: a first listing is still going on
            self.book.add(found.read)
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

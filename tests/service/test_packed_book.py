"""The packed deadline book (:class:`alertd.service.schedule.DeadlineBook`) books, orders and
remembers exactly as the heap-and-dicts book it replaced (kept here as the reference,
:class:`HeapBook`), over random sequences of admissions, ticks and reads (hypothesis)."""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Mapping

from hypothesis import given, settings
from hypothesis import strategies as st

from alertd.conditions.base import Bound
from alertd.deadlines import Memory, Pacing, projectable, remember, series_deadline
from alertd.model import Finding, Period, SeriesKey
from alertd.rules.schema import Rule
from alertd.service.metrics import TickFigures
from alertd.service.schedule import DeadlineBook
from alertd.sim.testing import TEST_NOW

HOUR = 3600
DAY = 86_400
MIDNIGHT = TEST_NOW - 12 * HOUR
PACING = Pacing(min_interval=60.0)
TOKENS = "mtr_sim_tokens"
CUSTOMERS = [f"cus_{i}" for i in range(12)]
RULES = {
    "quota": Rule.model_validate({
        "name": "quota", "meter": TOKENS, "window": "day", "every": HOUR,
        "condition": {"type": "threshold", "op": ">", "value": 1000.0}}),
    "per-model": Rule.model_validate({
        "name": "per-model", "meter": TOKENS, "window": "day", "every": HOUR,
        "group_by": ["model"], "condition": {"type": "threshold", "op": ">", "value": 500.0}}),
}


class HeapBook:
    """The book as it was before it was packed (a dict of deadlines, a heap of (deadline,
    id) pairs, a ``Memory`` per series key): the reference the packed one must agree with."""

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




def finding(rule: str, customer: str, value: float | None, model: str, day: int,
            state: str) -> Finding:
    group = (("model", model),) if rule == "per-model" else ()
    start = MIDNIGHT + day * DAY
    return Finding(SeriesKey(rule, customer, group), TOKENS, group, Period(start, start + DAY),
                   state == "firing", value, state == "firing", None, state,  # type: ignore[arg-type]
                   "", figures=Bound(RULES[rule].condition.value),  # type: ignore[union-attr]
                   period_key=f"day-{day}")


findings = st.builds(
    finding, st.sampled_from(sorted(RULES)), st.sampled_from(CUSTOMERS),
    st.one_of(st.none(), st.floats(0, 2000, allow_nan=False)),
    st.sampled_from(["a", "b"]), st.integers(0, 1), st.sampled_from(["inactive", "firing"]))
operations = st.one_of(
    st.tuples(st.just("admit"), st.sets(st.sampled_from(CUSTOMERS), max_size=12)),
    st.tuples(st.just("take"), st.floats(0.5, 20)),
    st.tuples(st.just("observe"), st.tuples(
        st.lists(st.sampled_from(CUSTOMERS), max_size=6), st.lists(findings, max_size=10),
        st.one_of(st.none(), st.integers(0, 900)), st.one_of(st.none(), st.integers(1, 9)))),
    st.tuples(st.just("wait"), st.sampled_from([0, 30, 600, 3600, 5400])),
)


def same(packed: DeadlineBook, heap: HeapBook, now: float) -> None:
    assert len(packed) == len(heap)
    for customer in CUSTOMERS:
        assert packed.due_at(customer) == heap.due_at(customer)
    assert packed.next_due() == heap.next_due()
    assert packed.figures(now) == heap.figures(now)
    for key, memory in heap._memory.items():
        assert packed.memory(key) == memory
    assert packed.series() == len(heap._memory)
    assert packed.requests_per_customer == heap.requests_per_customer


@settings(max_examples=300, deadline=None)
@given(st.lists(operations, max_size=40))
def test_the_packed_book_books_and_orders_as_the_heap_did(steps: list[tuple[str, object]]
                                                          ) -> None:
    packed, heap = DeadlineBook(HOUR, PACING), HeapBook(HOUR, PACING)
    now = float(TEST_NOW)
    for op, arg in steps:
        if op == "admit":
            packed.admit(arg)  # type: ignore[arg-type]
            heap.admit(arg)  # type: ignore[arg-type]
        elif op == "take":
            assert packed.take(now, arg) == heap.take(now, arg)  # type: ignore[arg-type]
        elif op == "observe":
            read, found, lag, requests = arg  # type: ignore[misc]
            refreshed = None if lag is None else now - lag
            packed.observe(RULES, read, found, now, refreshed, requests)
            heap.observe(RULES, read, found, now, refreshed, requests)
        else:
            now += arg  # type: ignore[operator]
        same(packed, heap, now)


def test_ties_are_taken_by_id_and_the_budget_cuts_through_them() -> None:
    packed, heap = DeadlineBook(HOUR, PACING), HeapBook(HOUR, PACING)
    names = [f"c{i:03d}" for i in range(300)][::-1]
    packed.admit(names)
    heap.admit(names)
    # 300 never read (-inf): a budget of 7 takes the 7 smallest ids, in order.
    assert packed.take(TEST_NOW, 7) == heap.take(TEST_NOW, 7) == sorted(names)[:7]
    assert packed.take(TEST_NOW, 1000) == heap.take(TEST_NOW, 1000) == sorted(names)[7:]

"""The deadline scheduler: the book's order and budget, and the real daemon against the
simulator (in-process, its clock moved by hand; nothing patched)."""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alertd.clock import OffsetClock
from alertd.conditions.base import Bound
from alertd.deadlines import Pacing
from alertd.model import Finding, MeterSpec, Period, SeriesKey, UsageQuery
from alertd.rules.schema import Rule
from alertd.service.daemon import Daemon, load_checked
from alertd.service.engine import BatchFindings
from alertd.service.schedule import BookReading, DeadlineBook
from alertd.service.systemd import SystemdNotifier
from alertd.sim.generator import UsageGenerator
from alertd.sim.testing import TEST_NOW, running_simulator
from tests.service.test_daemon import TOKENS, Setup, hooks_sink, in_process, write_config

HOUR = 3600
DAY = 86_400
MIDNIGHT = TEST_NOW - 12 * HOUR
PACING = Pacing(min_interval=60.0)


def _rule(every: float = HOUR) -> Rule:
    return Rule.model_validate({
        "name": "quota", "meter": TOKENS, "window": "day", "every": every,
        "condition": {"type": "threshold", "op": ">", "value": 1000.0}})


def _finding(customer: str, value: float) -> Finding:
    return Finding(SeriesKey("quota", customer), TOKENS, (), Period(MIDNIGHT, MIDNIGHT + DAY),
                   False, value, False, None, "inactive", "", figures=Bound(1000.0),
                   period_key="2025-03-10")


def test_new_customers_are_due_now_and_the_budget_takes_the_earliest_first() -> None:
    book = DeadlineBook(HOUR, PACING)
    book.admit(["a", "b", "c"])
    assert sorted(book.take(TEST_NOW, requests=10)) == ["a", "b", "c"]
    rules = {"quota": _rule()}
    # Two reads 10 min apart: "a" grows fast near its limit, "b" slowly far below it.
    book.observe(rules, ["a", "b", "c"], [_finding("a", 100.0), _finding("b", 10.0)],
                 TEST_NOW, TEST_NOW)
    later = TEST_NOW + 600
    book.admit(["a", "b", "c"])
    book.observe(rules, ["a", "b"], [_finding("a", 700.0), _finding("b", 11.0)], later, later)
    due_a, due_b, due_c = (book.due_at(c) for c in "abc")
    assert due_a is not None and due_b is not None and due_c is not None
    assert due_a < later + 600 < due_b == later + HOUR and due_c == TEST_NOW + HOUR
    assert book.take(later, requests=10) == []           # nobody due yet
    assert book.take(due_a, requests=10) == ["a"]
    # Everyone due: a budget of one request takes the earliest deadline only.
    assert book.take(TEST_NOW + 2 * HOUR, requests=1) == ["c"]


def test_a_customer_is_taken_once_per_deadline() -> None:
    # The read books the same deadline the tick booked provisionally (every): one entry.
    book = DeadlineBook(HOUR, PACING)
    book.admit(["a", "b"])
    assert sorted(book.take(TEST_NOW, requests=10)) == ["a", "b"]
    book.observe({"quota": _rule()}, ["a", "b"], [], TEST_NOW, TEST_NOW)
    assert book.due_at("a") == TEST_NOW + HOUR
    assert sorted(book.take(TEST_NOW + HOUR, requests=10)) == ["a", "b"]
    assert book.take(TEST_NOW + HOUR + 1, requests=10) == []


def test_a_taken_customer_stays_booked_when_its_read_never_reports() -> None:
    book = DeadlineBook(HOUR, PACING)
    book.admit(["a"])
    assert book.take(TEST_NOW, requests=5) == ["a"]
    assert book.due_at("a") == TEST_NOW + HOUR             # the poll failed: due at every
    assert book.take(TEST_NOW + HOUR, requests=5) == ["a"]


def test_customers_gone_from_the_selection_are_dropped() -> None:
    book = DeadlineBook(HOUR, PACING)
    book.admit(["a", "b"])
    book.admit(["b"])
    assert book.take(TEST_NOW, requests=5) == ["b"] and len(book) == 1


def test_requests_per_customer_shrink_what_a_tick_takes() -> None:
    book = DeadlineBook(HOUR, PACING)
    book.admit([f"c{i}" for i in range(10)])
    book.observe({"quota": _rule()}, ["c0"], [], TEST_NOW, TEST_NOW, requests=5)
    assert book.requests_per_customer == 3.0                # (1 + 5) / 2
    assert len(book.take(TEST_NOW, requests=9)) == 3


def test_a_full_poll_before_any_tick_books_every_batch_as_it_is_read() -> None:
    # A first listing grows while the pass goes on: each batch sees only the customers
    # taken so far, and each is booked as it is read, not just the first batch's.
    book = DeadlineBook(HOUR, PACING)
    reading = BookReading(book, {"quota": _rule()}, TEST_NOW)
    customers: dict[str, Any] = {}
    for batch in (["a", "b"], ["c"]):
        customers.update(dict.fromkeys(batch))
        reading.batch(BatchFindings((), {}, customers, frozenset(batch), TEST_NOW))
    assert len(book) == 3
    assert all(book.due_at(c) == TEST_NOW + HOUR for c in "abc")
    # Once booked, a pass (a tick's) adds nobody: its customers come from the book.
    later = BookReading(book, {"quota": _rule()}, TEST_NOW)
    later.batch(BatchFindings((), {}, {"d": None}, frozenset({"d"}), TEST_NOW))
    assert len(book) == 3


# --------------------------------------------------------------------------- the daemon


@asynccontextmanager
async def twenty_customers(tmp_path: Path, rules: list[dict[str, Any]], **overrides: Any
                           ) -> AsyncIterator[Setup]:
    """The daemon in-process against a simulator of 20 customers frozen at ``TEST_NOW``."""
    async with running_simulator(customers=20, days=40, now=TEST_NOW) as sim, \
            hooks_sink() as hooks:
        config = write_config(tmp_path, sim.url, hooks.url, rules, **overrides)
        clock = OffsetClock(TEST_NOW - time.time())
        daemon = Daemon(config, clock=clock, systemd=SystemdNotifier(""))
        async with daemon.running(load_checked(config)):
            yield Setup(daemon, sim, hooks, tmp_path, clock)

BOUND_PERCENT = 25.0


def quota_rule(every: str = "1h") -> dict[str, Any]:
    return {"name": "quota", "meter": TOKENS, "window": "day", "every": every,
            "condition": {"type": "threshold", "op": ">=",
                          "value_from": {"metadata": "daily_token_quota",
                                         "percent": BOUND_PERCENT}}}


def crossings(generator: UsageGenerator, start: int, end: int) -> dict[str, int | None]:
    """Per customer: when today's tokens, as the analytics store shows them, reach the bound
    (``None``: not by ``end``), from the generator itself."""
    found: dict[str, int | None] = {}
    for profile in generator.profiles():
        bound = int(profile.metadata["daily_token_quota"]) * BOUND_PERCENT / 100
        reached = generator.arrivals(profile.id, TOKENS, MIDNIGHT, MIDNIGHT + DAY).reaches(bound)
        found[profile.id] = None if reached is None or reached > end else max(reached, start)
    return found


async def test_far_below_is_read_at_every_while_a_fast_grower_is_caught(tmp_path: Path) -> None:
    """Twelve hours of ticks (one a minute) over the afternoon of the simulator's day: the
    customers far below a quarter of their quota are read about once an hour (``every``),
    those climbing towards it more often, and each crossing is detected well within the hour
    that reading everyone at ``every`` could take. Crossings come from the generator
(:meth:`~alertd.sim.generator.UsageGenerator.arrivals`), not from the daemon."""
    tick, hours = 60, 12
    async with twenty_customers(tmp_path, [quota_rule()], schedule={"tick": f"{tick}s"}) as s:
        generator = s.sim.generator
        truth = crossings(generator, TEST_NOW, TEST_NOW + hours * HOUR)
        reads: Counter[str] = Counter()
        detected: dict[str, int] = {}
        for step in range(hours * HOUR // tick):
            outcome = await s.daemon.poll_due(("quota",))
            if outcome is not None:
                assert outcome.result.requests <= len(outcome.result.customers) + 1
                reads.update(list(outcome.result.customers))
                for f in outcome.findings:
                    if f.active and f.customer not in detected and f.rule == "quota":
                        detected[f.customer] = outcome.result.now
            if step < hours * HOUR // tick - 1:
                s.advance(tick)
    crossed = {c: t for c, t in truth.items() if t is not None}
    # The seed gives both kinds (a precondition, not a result).
    far = [c for c, t in truth.items() if t is None and _share(generator, c) < 0.6]
    assert crossed and far
    assert set(detected) == set(crossed)
    lateness = {c: detected[c] - t for c, t in crossed.items()}
    # Reading everyone at every (1 h) could see a crossing up to an hour late; deadlines
    # bring the climbing customers' reads close to their crossings.
    assert min(lateness.values()) >= 0 and max(lateness.values()) <= 15 * 60, lateness
    assert max(reads[c] for c in far) <= hours + 2
    climbing = [c for c in crossed if truth[c] is not None and truth[c] > TEST_NOW + HOUR]
    assert climbing and min(reads[c] for c in climbing) > max(reads[c] for c in far)


def _share(generator: UsageGenerator, customer: str) -> float:
    """Today's tokens at the day's end as a share of the bound."""
    profile = generator.profile(customer)
    assert profile is not None
    query = UsageQuery(customer=customer, meters=(MeterSpec(TOKENS),), starts_at=MIDNIGHT,
                       ends_at=MIDNIGHT + DAY, window="day", timezone="UTC")
    total = sum(r.value for r in generator.usage_rows(query, as_of=MIDNIGHT + DAY))
    return total / (int(profile.metadata["daily_token_quota"]) * BOUND_PERCENT / 100)


async def test_with_deadlines_off_every_poll_reads_everyone(tmp_path: Path) -> None:
    async with in_process(tmp_path, [quota_rule()], schedule={"deadlines": False}) as s:
        first = await s.daemon.poll_due(("quota",))
        s.advance(60)
        second = await s.daemon.poll_due(("quota",))
        assert first is not None and second is not None
        assert len(first.result.customers) == len(second.result.customers) == 3
        assert not math.isnan(first.result.now)


async def test_a_reload_forgets_the_deadlines_so_everyone_is_due(tmp_path: Path) -> None:
    async with twenty_customers(tmp_path, [quota_rule()], schedule={"tick": "60s"}) as s:
        first = await s.daemon.poll_due(("quota",))
        assert first is not None and len(first.result.customers) == 20
        s.advance(60)
        soon = await s.daemon.poll_due(("quota",))  # at noon everyone is far below
        assert soon is None or len(soon.result.customers) < 20
        assert await s.daemon.reload()
        again = await s.daemon.poll_due(("quota",))
        assert again is not None and len(again.result.customers) == 20


async def test_a_tick_takes_no_more_than_its_share_of_the_budget(tmp_path: Path) -> None:
    # 2 requests/s × a 2 s tick: four customers a tick, the earliest deadlines (all new) first.
    stripe = {"requests_per_second": 2}
    async with twenty_customers(tmp_path, [quota_rule()], stripe=stripe,
                                schedule={"tick": "2s"}) as s:
        seen: set[str] = set()
        for _ in range(3):
            outcome = await s.daemon.poll_due(("quota",))
            assert outcome is not None
            assert len(outcome.result.customers) == 4 and outcome.result.requests <= 4
            assert not seen & set(outcome.result.customers)  # nobody twice before all are read
            seen |= set(outcome.result.customers)
            s.advance(2)

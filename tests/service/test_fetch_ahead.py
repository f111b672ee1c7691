"""The engine queues the next batches' requests while one batch's answers are awaited: the
budget never idles waiting for a batch's slowest answer (as many batches ahead as the
measured latency and the engine's own work per batch × the budget need), and a cancelled
pass leaves no fetch behind. Against the simulator with 1 s added to every answer; bound by
its request counts."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from alertd.buckets import CachePolicy
from alertd.clock import SystemClock
from alertd.config.settings import Settings
from alertd.rules.loader import RuleSet
from alertd.rules.schema import Rule
from alertd.service.engine import FETCH_AHEAD, Engine
from alertd.service.reads import BucketCache, HeldAhead
from alertd.service.world import stripe_stack
from alertd.sim.server import Simulator
from alertd.sim.testing import API_KEY, TEST_NOW, running_simulator
from alertd.source.inflight import MOST_AHEAD
from alertd.store.sqlite import SqliteStore

CUSTOMERS = 6
MONTH = Rule.model_validate({"name": "month", "meter": "mtr_sim_tokens", "window": "month",
                             "condition": {"type": "threshold", "op": ">=", "value": 0}})


def settings_for(sim: Simulator) -> Settings:
    return Settings.model_validate({
        "stripe": {"api_base": sim.url, "api_key": API_KEY, "max_retries": 0},
        "customers": {"all": True}})


async def one_pass(sim: Simulator, batch: int) -> Any:
    settings = settings_for(sim)
    async with stripe_stack(settings, clock=SystemClock()) as stack:
        engine = Engine(settings, RuleSet((MONTH,)), stack.source, stack.directory,
                        batch_customers=batch)
        return await engine.run_pass(TEST_NOW)


async def test_the_next_batch_is_fetched_while_one_is_awaited() -> None:
    async with running_simulator(customers=CUSTOMERS, days=10, latency=1.0) as sim:
        together = await one_pass(sim, batch=CUSTOMERS)  # one batch: one request a customer
        sim.reset_stats()
        batched = await one_pass(sim, batch=1)  # a batch per customer, one request each
        stats = sim.stats()
    assert stats["by_endpoint"]["meter_usage"] == CUSTOMERS
    # Before any answer is timed, 1 + FETCH_AHEAD batches are under way (two requests);
    # once the first answers say 1 s, one request a batch needs every batch left at once
    # (100 requests/s × 1 s, capped at MOST_AHEAD): the other four.
    assert FETCH_AHEAD == 1
    assert 4 <= stats["max_in_flight"] <= 1 + MOST_AHEAD
    key = lambda finding: (finding.rule, finding.customer)  # noqa: E731
    assert sorted(batched.findings, key=key) == sorted(together.findings, key=key)


async def test_a_cancelled_pass_leaves_no_fetch_running() -> None:
    async with running_simulator(customers=CUSTOMERS, days=10, latency=1.0) as sim:
        passing = asyncio.create_task(one_pass(sim, batch=1))
        while sim.stats()["by_endpoint"].get("meter_usage", 0) < 2:
            await asyncio.sleep(0.01)  # two batches under way
        passing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await passing
        left = [task for task in asyncio.all_tasks()
                if "_fetch_all" in getattr(task.get_coro(), "__qualname__", "")]
        assert left == []
        assert passing.cancelled()


async def bounded_passes(sim: Simulator, path: Path, ahead_rows: int
                         ) -> tuple[Any, HeldAhead]:
    """A warm-up pass, then a pass an hour later from the bucket cache it filled: each batch
    holds its customer's cached rows from its start."""
    settings = settings_for(sim)
    async with stripe_stack(settings, clock=SystemClock()) as stack, \
            SqliteStore(path) as store:
        engine = Engine(settings, RuleSet((MONTH,)), stack.source, stack.directory,
                        batch_customers=1, ahead_rows=ahead_rows,
                        cache=BucketCache(store, CachePolicy()))
        await engine.run_pass(TEST_NOW)
        sim.reset_stats()
        result = await engine.run_pass(TEST_NOW + 3600)
        return result, engine.held_ahead


async def test_the_rows_held_ahead_stay_at_the_bound_whatever_the_latency(
        tmp_path: Path) -> None:
    # One customer a batch, its cached days held from the batch's start. Unbounded, the
    # latency (1 s × 100 requests/s) queues every batch left at once, each holding its
    # customer's rows; bounded, a batch ahead starts only while less than the bound is held
    # ahead, and its request goes once the front batch is judged and its rows released.
    async with running_simulator(customers=CUSTOMERS, days=10, latency=1.0) as sim:
        free, unbounded = await bounded_passes(sim, tmp_path / "free.db", 10**9)
        free_stats = sim.stats()
        bound = 1  # a batch ahead starts only while nothing is held ahead
        held, bounded = await bounded_passes(sim, tmp_path / "bounded.db", bound)
        stats = sim.stats()
    assert stats["by_endpoint"]["meter_usage"] == CUSTOMERS
    assert unbounded.deferred == unbounded.waited == 0 and unbounded.peak > 0
    # Bounded: no batch or request ahead started while the bound was reached (what was held
    # ahead then stayed under it), some waited for the front's rows to be released, and fewer
    # requests were in flight at once.
    assert bounded.peak_at_start == 0 and bounded.deferred + bounded.waited > 0
    assert stats["max_in_flight"] < free_stats["max_in_flight"]
    key = lambda finding: (finding.rule, finding.customer)  # noqa: E731
    assert sorted(held.findings, key=key) == sorted(free.findings, key=key)


async def test_held_ahead_counts_rows_and_lets_a_batch_ahead_start_as_rows_are_released() -> None:
    held = HeldAhead(bound=100)
    held.hold(0, 500)  # the front batch: never counted, never waits
    await held.admit(0)
    await held.admit(1)
    held.hold(1, 120)  # batch 1 ahead: over the bound
    # Over it: no batch ahead starts a request (batch 1's next ones wait to be the front).
    assert held.held == 120 and not held.open(2) and not held.open(1) and held.open(0)
    waiting = asyncio.ensure_future(held.admit(2))
    await asyncio.sleep(0)
    assert not waiting.done() and held.waited == 1
    held.advance()  # batch 0 judged: batch 1 is the front, nothing is held ahead
    await asyncio.wait_for(waiting, 1)
    assert held.front == 1 and held.held == 0 and held.peak == 120
    held.hold(2, 30)
    assert held.held == 30 and held.open(3)
    # A request ahead reserves what an answer held on average until its own answer comes.
    held.answered(1, 40, 0)  # the front's: counted in the average, not ahead
    assert held.estimate() == 40 and held.held == 30
    reserved = await held.admit(3)
    assert reserved == 40 and held.held == 70 and held.peak == 120
    held.answered(3, 10, reserved)
    assert held.held == 40 and held.estimate() == 25
    reserved = await held.admit(3)
    assert held.held == 65 and await held.admit(2) == 25 and held.held == 90
    assert held.open(3)
    held.hold(3, 20)  # 110: over the bound, batch 3 waits for batch 2 to be the front
    assert not held.open(3)
    held.advance()  # batch 1 judged: batch 2 (30 rows, 25 reserved) is the front
    assert held.front == 2 and held.held == 55 and held.open(3)


async def test_the_engines_own_work_on_a_batch_queues_more_batches_ahead() -> None:
    # A batch holds the pass up for Stripe's latency and for the engine's work on it (judged,
    # saved, handed over: Engine.batch_work, measured batch by batch). Quick answers and a
    # slow engine: 1 s of work a batch at 100 requests/s wants every batch left under way
    # (capped at MOST_AHEAD), where the latency alone (a loopback) wants one or two.
    async with running_simulator(customers=CUSTOMERS, days=10) as sim:
        settings = settings_for(sim)
        async with stripe_stack(settings, clock=SystemClock()) as stack:
            engine = Engine(settings, RuleSet((MONTH,)), stack.source, stack.directory,
                            batch_customers=1)
            await engine.run_pass(TEST_NOW)
            measured = engine.batch_work
            engine.batch_work = 1.0  # as a pass of slow batches would leave it
            await engine.run_pass(TEST_NOW)
    assert measured is not None and 0 < measured < 1.0
    assert engine.most_under_way == min(CUSTOMERS, 1 + MOST_AHEAD)

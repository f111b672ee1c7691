"""The engine queues the next batches' requests while one batch's answers are awaited: the
budget never idles waiting for a batch's slowest answer (as many batches ahead as the
measured latency × the budget needs), and a cancelled pass leaves no fetch behind. Against
the simulator with 1 s added to every answer; bound by its request counts."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from alertd.clock import SystemClock
from alertd.config.settings import Settings
from alertd.rules.loader import RuleSet
from alertd.rules.schema import Rule
from alertd.service.engine import FETCH_AHEAD, Engine
from alertd.service.world import stripe_stack
from alertd.sim.server import Simulator
from alertd.sim.testing import API_KEY, TEST_NOW, running_simulator
from alertd.source.inflight import MOST_AHEAD

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

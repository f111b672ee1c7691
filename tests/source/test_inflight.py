"""In-flight slots: the sizing arithmetic (pure), the resizable limiter, and the client against a
slow simulator keeping its budget whatever the latency."""

from __future__ import annotations

import asyncio
import logging
import math

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from alertd.clock import SystemClock
from alertd.config.settings import StripeSettings
from alertd.model import MeterSpec, UsageQuery
from alertd.sim.testing import API_KEY, TEST_NOW, running_simulator
from alertd.source import build_source
from alertd.source.http import StripeHTTP
from alertd.source.inflight import (
    HEADROOM,
    SPARE,
    Concurrency,
    Slots,
    batches_ahead,
    ewma,
    in_flight_limit,
    reachable_rate,
)
from alertd.source.pool import SHARD_CONNECTIONS

# ---------------------------------------------------------------------- sizing (pure)


@pytest.mark.parametrize(("rate", "latency", "cap", "expected"), [
    (100, 0.02, 256, 11),    # 3 on average, plus the spare
    (100, 0.15, 256, 31),    # 22.5 → 23, plus 8
    (100, 1.0, 256, 158),    # 150 + 8
    (100, 2.0, 256, 256),    # needs 308: capped
    (100, 0.0, 256, SPARE),  # no latency measured yet: the spare alone
    (20, 1.0, 256, 38),      # the general budget
    (100, 1.0, 2, 2),        # a tiny cap wins
    (0.5, 0.1, 256, 9),      # a trickle still gets the spare
])
def test_limit_is_headroom_times_rate_times_latency_plus_spare(
    rate: float, latency: float, cap: int, expected: int
) -> None:
    assert in_flight_limit(rate, latency, cap=cap) == expected


@given(rate=st.floats(0.1, 1000), latency=st.floats(0, 60), cap=st.integers(1, 10_000))
def test_limit_allows_the_whole_budget_whenever_the_cap_does(
    rate: float, latency: float, cap: int
) -> None:
    limit = in_flight_limit(rate, latency, cap=cap)
    assert 1 <= limit <= cap
    # Little's law: rate × latency requests in flight on average.
    assert limit >= min(cap, math.ceil(HEADROOM * rate * latency))
    assert limit == cap or reachable_rate(limit, latency) >= rate


def test_reachable_rate_is_slots_over_latency() -> None:
    assert reachable_rate(32, 1.0) == 32.0
    assert reachable_rate(32, 0.0) == math.inf


def test_moving_average_starts_at_the_first_sample_and_follows() -> None:
    assert ewma(None, 0.3) == 0.3
    assert ewma(1.0, 2.0, weight=0.25) == 1.25
    average = None
    for _ in range(200):
        average = ewma(average, 1.0)
    assert average == pytest.approx(1.0)
    for _ in range(200):
        average = ewma(average, 0.1)
    assert average == pytest.approx(0.1, abs=1e-4)


def test_concurrency_grows_with_the_latency_and_warns_once_when_capped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="alertd.source")
    concurrency = Concurrency("analytics", 100, cap=256)
    for _ in range(100):
        concurrency.observe(1.0)
    assert concurrency.stats().limit == 158 and not concurrency.stats().capped
    for _ in range(200):
        concurrency.observe(4.0)  # 100/s × 4 s needs 400 slots
    stats = concurrency.stats()
    assert stats.limit == 256 and stats.capped
    assert stats.latency == pytest.approx(4.0, rel=0.01)
    [warning] = caplog.records
    assert "stripe.max_in_flight" in warning.getMessage()


# ---------------------------------------------------------------------- the limiter


async def test_slots_serve_first_come_first_served_and_grow_at_once() -> None:
    slots = Slots(2)
    order: list[int] = []

    async def holder(number: int, release: asyncio.Event) -> None:
        await slots.acquire()
        order.append(number)
        await release.wait()
        slots.release()

    release = asyncio.Event()
    tasks = [asyncio.create_task(holder(n, release)) for n in range(5)]
    await asyncio.sleep(0)
    assert order == [0, 1] and slots.waiting == 3
    slots.resize(4)  # two more are let in at once, in arrival order
    await asyncio.sleep(0)
    assert order == [0, 1, 2, 3] and slots.held == 4
    release.set()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4] and slots.held == 0 and slots.peak == 4


async def test_shrinking_takes_no_slot_away_but_lets_no_one_in() -> None:
    slots = Slots(3)
    for _ in range(3):
        await slots.acquire()
    slots.resize(1)
    waiter = asyncio.create_task(slots.acquire())
    slots.release()
    slots.release()  # 1 held: still not below the new limit
    await asyncio.sleep(0)
    assert not waiter.done()
    slots.release()
    await waiter
    assert slots.held == 1


async def test_a_cancelled_waiter_leaves_no_trace() -> None:
    slots = Slots(1)
    await slots.acquire()
    waiting = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert slots.waiting == 0
    # Handed the slot, then cancelled before it ran: the slot goes back.
    handed = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0)
    slots.release()
    handed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await handed
    assert slots.held == 0
    await slots.acquire()
    assert slots.held == 1


def test_slots_refuse_a_limit_below_one_and_a_release_without_a_slot() -> None:
    with pytest.raises(ValueError):
        Slots(0)
    with pytest.raises(RuntimeError):
        Slots(1).release()


# ---------------------------------------------------------------------- against the simulator

RATE = 10
LATENCY = 2.0
REQUESTS = 60


async def test_a_slow_stripe_gets_many_requests_in_flight_and_never_more_than_its_budget() -> None:
    """Against a simulator adding 2 s to every answer and enforcing 10 requests per sliding
    second: the client measures the latency and keeps ~20 requests in flight (Little's law),
    more than it started with, so the budget — not the slots — sets the pace; and the simulator
    never sees more than 10 in any 1-second window."""
    async with running_simulator(customers=3, days=3, analytics_rate=RATE,
                                 latency=LATENCY) as sim:
        settings = StripeSettings(api_base=sim.url, requests_per_second=RATE)
        async with StripeHTTP(settings, SecretStr(API_KEY), clock=SystemClock()) as http:
            initial = http.concurrency("analytics").limit
            source = build_source(http, settings)
            query = UsageQuery("cus_sim_000001", TEST_NOW - 86_400, TEST_NOW - TEST_NOW % 3600,
                               "day", "UTC", (MeterSpec("mtr_sim_tokens"),))
            await asyncio.gather(*(source.fetch(query) for _ in range(REQUESTS)))
            concurrency = http.concurrency("analytics")
            paced = http.budgets.analytics.stats()
        stats = sim.stats()
    assert initial < RATE * LATENCY  # the initial guess alone would not do
    assert concurrency.latency is not None and concurrency.latency >= LATENCY
    assert concurrency.limit >= RATE * concurrency.latency
    assert stats["max_in_flight"] > initial
    # The budget set the pace: nearly every start waited for its turn, not for a slot.
    assert paced.acquired == REQUESTS and paced.waited >= 0.8 * REQUESTS
    assert stats["requests"] == REQUESTS and stats["rate_limited"] == 0
    assert stats["peak_per_second"]["analytics"] <= RATE
    assert stats["seconds_over_limit"]["analytics"] == 0


# ------------------------------------------------------------------------- connection shards

WIDE_RATE = 1000
WIDE_REQUESTS = 96


async def test_many_slow_requests_spread_over_small_pools_so_no_pool_walks_them_all() -> None:
    """96 requests in flight at once against a simulator adding 1 s to each answer: httpcore
    walks every connection of a pool per request, so no pool may hold more than
    SHARD_CONNECTIONS of them — the requests are spread over several small pools (the least
    busy first), every one answered, none queued for a connection."""
    async with running_simulator(customers=3, days=3, analytics_rate=WIDE_RATE,
                                 latency=1.0) as sim:
        settings = StripeSettings(api_base=sim.url, requests_per_second=WIDE_RATE,
                                  max_in_flight=128)
        async with StripeHTTP(settings, SecretStr(API_KEY), clock=SystemClock()) as http:
            source = build_source(http, settings)
            query = UsageQuery("cus_sim_000001", TEST_NOW - 86_400, TEST_NOW - TEST_NOW % 3600,
                               "day", "UTC", (MeterSpec("mtr_sim_tokens"),))
            results = await asyncio.gather(*(source.fetch(query) for _ in range(WIDE_REQUESTS)))
            shards = http.shards()
        stats = sim.stats()
    assert len(results) == WIDE_REQUESTS and stats["requests"] == WIDE_REQUESTS
    in_flight_at_once = stats["max_in_flight"]
    assert in_flight_at_once > 2 * SHARD_CONNECTIONS  # the scenario: many requests at once
    assert max(s.peak_connections for s in shards) <= SHARD_CONNECTIONS
    assert max(s.peak_in_flight for s in shards) <= SHARD_CONNECTIONS
    # Enough pools were opened for every request in flight to have its own connection.
    assert len(shards) >= math.ceil(in_flight_at_once / SHARD_CONNECTIONS)
    assert sum(s.peak_connections for s in shards) >= in_flight_at_once
    assert all(s.in_flight == 0 for s in shards)


async def test_a_transport_given_is_used_by_one_client() -> None:
    """A transport passed in (here httpx.MockTransport) is the caller's: one client over it."""
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return httpx.Response(200, json={"object": "list", "data": []})

    settings = StripeSettings(api_base="https://api.example.test")
    async with StripeHTTP(settings, SecretStr("sk_test_x"), clock=SystemClock(),
                          transport=httpx.MockTransport(answer)) as http:
        await asyncio.gather(*(http.get("/v1/customers", [], budget="general",
                                        endpoint="customers") for _ in range(40)))
        shards = http.shards()
    assert len(seen) == 40
    assert len(shards) == 1 and shards[0].peak_in_flight >= 1 and shards[0].connections == 0
    assert http.shards() == []


@pytest.mark.parametrize(
    ("rate", "latency", "per_batch", "expected"),
    [
        (100, None, 60, 1),  # nothing timed yet: the default
        (100, 0.02, 60, 1),  # 2 requests in flight: the one batch queued covers them
        (100, 0.15, 60, 1),
        (100, 0.5, 60, 2),
        (100, 1.0, 60, 3),  # 100 in flight, 150 with the headroom: three batches of 60
        (100, 1.0, 10, 8),  # capped: the batches' answers wait in memory
        (100, 1.0, 0, 1),  # an empty batch (all cached) tells nothing
        (25, 1.0, 60, 1),
    ],
)
def test_batches_ahead_cover_the_requests_in_flight(
        rate: float, latency: float | None, per_batch: int, expected: int) -> None:
    assert batches_ahead(rate, latency, per_batch) == expected

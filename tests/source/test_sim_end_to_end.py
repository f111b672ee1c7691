"""The source layer against the simulator: a real loopback HTTP server that speaks Stripe."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import SecretStr

from alertd.clock import Clock, FakeClock, SystemClock
from alertd.config.settings import CustomerSelection, StripeSettings
from alertd.errors import (
    AuthenticationError,
    MalformedResponseError,
    NotFoundError,
    PermissionDeniedError,
    StripeServerError,
)
from alertd.model import MeterSpec, UsageQuery, UsageRow, make_filters
from alertd.sim.faults import Fault
from alertd.sim.server import Simulator
from alertd.sim.testing import API_KEY, TEST_NOW, running_simulator
from alertd.source import build_source
from alertd.source.directory import Directory
from alertd.source.http import StripeHTTP

DAY = 86400
TODAY = TEST_NOW // DAY * DAY
CUSTOMER = "cus_sim_000001"


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with running_simulator(customers=5, days=20) as simulator:
        yield simulator


def client(sim: Simulator, key: str = API_KEY, clock: Clock | None = None,
           **stripe: Any) -> StripeHTTP:
    settings = StripeSettings(api_base=sim.url, **stripe)
    return StripeHTTP(settings, SecretStr(key), clock=clock or SystemClock())


def usage_query(*specs: MeterSpec, days: int = 7, window: Any = "day",
                timezone: str = "UTC") -> UsageQuery:
    return UsageQuery(CUSTOMER, TODAY - days * DAY, TODAY, window, timezone, specs)


def by_bucket(rows: tuple[UsageRow, ...]) -> dict[tuple[Any, ...], float]:
    totals: dict[tuple[Any, ...], float] = defaultdict(float)
    for row in rows:
        totals[(row.starts_at, row.ends_at, row.meter, row.dimensions)] += row.value
    return dict(totals)


async def fetch(sim: Simulator, query: UsageQuery, **stripe: Any) -> Any:
    async with client(sim, **stripe) as http:
        return await build_source(http, http.settings).fetch(query)


async def test_plain_and_array_forms_and_every_shape_agree(sim: Simulator) -> None:
    query = usage_query(
        MeterSpec("mtr_sim_tokens", make_filters({"tier": "premium"}), group_by=("model",)),
        MeterSpec("mtr_sim_api_calls"),
    )
    results = [
        await fetch(sim, query, api_version=version)
        for version in ("2024-06-20", "2025-09-30.preview", "2025-11-17.preview",
                        "2026-09-30.preview")
    ]
    first = by_bucket(results[0].rows)
    assert len(first) == 7 * 3 + 7  # three models a day, plus the api_calls total
    for result in results:
        assert by_bucket(result.rows) == first
        assert result.refreshed_at == TEST_NOW - 60
        assert result.requests == 1


async def test_analytics_totals_equal_event_summaries(sim: Simulator) -> None:
    query = usage_query(MeterSpec("mtr_sim_tokens"))
    analytics = await fetch(sim, query)
    summaries = await fetch(sim, query, source="event_summaries")
    assert summaries.refreshed_at is None
    assert by_bucket(summaries.rows) == by_bucket(analytics.rows)
    assert len(summaries.rows) == 7


async def test_event_summaries_widen_a_range_that_ends_now(sim: Simulator) -> None:
    query = UsageQuery(CUSTOMER, TODAY - 2 * DAY, TEST_NOW, "day", "UTC",
                       (MeterSpec("mtr_sim_api_calls"),))
    analytics = await fetch(sim, query)
    summaries = await fetch(sim, query, source="event_summaries")
    assert {r.starts_at: r.value for r in summaries.rows} == {
        r.starts_at: r.value for r in analytics.rows
    }
    assert len(summaries.rows) == 3  # two whole days and today so far


async def test_has_more_from_the_simulator_is_split_away(sim: Simulator) -> None:
    query = usage_query(MeterSpec("mtr_sim_tokens", group_by=("model", "tier")), days=8)
    whole = await fetch(sim, query)
    sim.configure(max_rows=10)  # 6 groups a day: at most one day per answer
    split = await fetch(sim, query)
    assert by_bucket(split.rows) == by_bucket(whole.rows)
    assert len(split.rows) == len(whole.rows) == 8 * 6
    assert split.requests > 8


async def test_the_directory_against_the_simulator(sim: Simulator) -> None:
    async with client(sim) as http:
        directory = Directory(http, clock=SystemClock(), refresh=60)
        everyone = await directory.customers(CustomerSelection(all=True))
        assert sorted(c.id for c in everyone) == [f"cus_sim_00000{i}" for i in range(1, 6)]
        [plan] = {everyone[0].metadata["plan"]}
        searched = await directory.customers(
            CustomerSelection(search=f"metadata['plan']:'{plan}'")
        )
        assert searched and all(c.metadata["plan"] == plan for c in searched)
        [one] = await directory.customers(CustomerSelection(ids=[CUSTOMER]))
        assert one == next(c for c in everyone if c.id == CUSTOMER)
        meters = await directory.meters()
        assert meters["mtr_sim_tokens"].display_name == "AI tokens"
        assert await directory.check_meters(["mtr_sim_tokens", "mtr_missing"]) == ["mtr_missing"]
        with pytest.raises(NotFoundError, match="cus_sim_999999"):
            await directory.customer("cus_sim_999999")


async def test_faults_are_retried_until_they_pass(sim: Simulator) -> None:
    query = usage_query(MeterSpec("mtr_sim_tokens"))
    sim.add_fault(Fault("flap", path="/v1/billing/analytics"))
    sim.add_fault(Fault("malformed", body="html", count=1))
    sim.add_fault(Fault("status", status=429, count=1))
    clock = FakeClock()  # the server is real; only the client's backoff waits are skipped
    async with client(sim, clock=clock) as http:
        result = await build_source(http, http.settings).fetch(query)
        assert http.budgets.analytics.stats().penalties == 1
    # 503, html, 503, 429, 503, then the flap lets one through: five retries.
    assert result.requests == 6
    assert len(clock.sleeps) >= 5
    assert len(result.rows) == 7


@pytest.mark.parametrize("body", ["wrong_types", "missing_fields", "truncated"])
async def test_broken_bodies_become_malformed_errors(sim: Simulator, body: Any) -> None:
    sim.add_fault(Fault("malformed", body=body))
    with pytest.raises(MalformedResponseError) as caught:
        async with client(sim, clock=FakeClock(), max_retries=1) as http:
            await build_source(http, http.settings).fetch(usage_query(MeterSpec("mtr_sim_tokens")))
    assert caught.value.request_id is not None
    assert caught.value.request_id.startswith("req_sim")


async def test_stripe_should_retry_false_from_the_simulator_stops(sim: Simulator) -> None:
    sim.add_fault(Fault("status", status=503, should_retry=False))
    async with client(sim) as http:
        with pytest.raises(StripeServerError) as caught:
            await build_source(http, http.settings).fetch(usage_query(MeterSpec(None)))
        assert http.requests == 1
    assert caught.value.status == 503


async def test_access_errors(sim: Simulator) -> None:
    query = usage_query(MeterSpec("mtr_sim_tokens"))
    with pytest.raises(AuthenticationError, match="STRIPE_API_KEY"):
        await fetch_with_key(sim, query, "sk_test_")
    with pytest.raises(PermissionDeniedError, match="Billing meters"):
        await fetch_with_key(sim, query, "rk_test_no_analytics")
    sim.configure(analytics_preview=False)
    with pytest.raises(NotFoundError, match="event_summaries"):
        await fetch(sim, query)


async def fetch_with_key(sim: Simulator, query: UsageQuery, key: str) -> Any:
    async with client(sim, key=key) as http:
        return await build_source(http, http.settings).fetch(query)


async def test_the_budget_keeps_a_rate_limited_simulator_free_of_429s(sim: Simulator) -> None:
    sim.configure(analytics_rate=50)
    sim.reset_stats()
    query = usage_query(MeterSpec("mtr_sim_tokens"), days=1)
    # A budget a little under the account's limit, as a user sharing the account would set.
    async with client(sim, requests_per_second=45) as http:
        source = build_source(http, http.settings)
        began = time.monotonic()
        results = await asyncio.gather(*(source.fetch(query) for _ in range(60)))
        elapsed = time.monotonic() - began
    stats = sim.stats()
    assert stats["rate_limited"] == 0
    assert stats["peak_per_second"]["analytics"] <= 50
    assert sum(r.requests for r in results) == 60
    # Paced, not sent at once: 60 starts at under 45 per second span at least 59/45 s.
    # (A slow machine only makes this longer, so the bound cannot flake.)
    assert elapsed >= 59 / 45 * 0.97

"""``BillingSource`` over ``httpx.MockTransport``: what it asks, what it caches, what a bad
answer becomes."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx

from alertd.clock import FakeClock
from alertd.pricing import PricePlan, UnsupportedPrice
from alertd.source.billing import BillingSource
from tests.source.fakes import Recorder, make_http

NOW = 1_741_608_000
TIERED = {"id": "price_t", "object": "price", "currency": "usd", "billing_scheme": "tiered",
          "tiers_mode": "volume", "recurring": {"usage_type": "metered", "meter": "mtr_a"}}


def subscription(item_period: bool = True) -> dict[str, Any]:
    item: dict[str, Any] = {"id": "si_1", "price": TIERED}
    periods = {"current_period_start": NOW - 86400, "current_period_end": NOW + 86400 * 29}
    return {"id": "sub_1", **({} if item_period else periods),
            "items": {"data": [{**item, **(periods if item_period else {})}]}}


def stripe(request: httpx.Request) -> httpx.Response:
    path = request.url.path
    if path == "/v1/subscriptions":
        old = request.url.params.get("customer") == "cus_old"
        return httpx.Response(200, json={"data": [subscription(item_period=not old)],
                                         "has_more": False})
    if path == "/v1/prices/price_t":
        assert request.url.params.get_list("expand[]") == ["tiers"]
        return httpx.Response(200, json={**TIERED, "tiers": [
            {"up_to": 10, "unit_amount_decimal": "5"}, {"up_to": None, "unit_amount": 4}]})
    if path == "/v1/billing/credit_balance_summary":
        return httpx.Response(200, json={"balances": [{"available_balance": {
            "type": "monetary", "monetary": {"currency": "usd", "value": 1234}}}]})
    if path == "/v1/billing/credit_grants":
        grant = {"amount": {"monetary": {"currency": "usd", "value": 5000}}, "voided_at": None,
                 "expires_at": None, "effective_at": NOW - 10}
        return httpx.Response(200, json={"data": [
            grant, {**grant, "voided_at": NOW - 5}, {**grant, "expires_at": NOW - 1},
            {**grant, "effective_at": NOW + 100}], "has_more": False})
    return httpx.Response(404, json={"error": {"message": "no"}})


async def test_reads_items_tiers_and_credit_on_the_general_budget_and_caches_them() -> None:
    clock = FakeClock(start=NOW)
    recorder = Recorder(stripe)
    async with make_http(recorder, clock) as http:
        source = BillingSource(http, clock=clock, refresh=3600)
        billing = await source.billing("cus_1", credit=True, now=NOW)
        assert billing.problem is None
        (item,) = billing.items
        assert isinstance(item.price, PricePlan) and item.price.scheme == "volume"
        assert item.period.starts_at == NOW - 86400
        (credit,) = billing.credit
        assert credit.available == Decimal("12.34")
        assert credit.granted == Decimal("50.00")  # voided, expired and future grants left out
        assert http.budgets.get("general").stats().acquired == 4
        assert http.budgets.get("analytics").stats().acquired == 0
        again = await source.billing("cus_1", credit=True, now=NOW)
        assert again == billing
        assert len(recorder.requests) == 4  # cached
        await source.billing("cus_2", credit=False, now=NOW)
        assert len(recorder.requests) == 5  # the tiered price is shared by id
        clock.advance(3601)
        await source.billing("cus_1", credit=False, now=NOW)
        assert len(recorder.requests) == 7  # refreshed: subscriptions and the price again


async def test_subscription_level_periods_of_older_api_versions() -> None:
    clock = FakeClock(start=NOW)
    async with make_http(Recorder(stripe), clock) as http:
        billing = await BillingSource(http, clock=clock, refresh=60).billing(
            "cus_old", credit=False, now=NOW)
        assert billing.items[0].period.ends_at == NOW + 86400 * 29


async def test_a_bad_answer_is_a_problem_and_is_not_cached() -> None:
    clock = FakeClock(start=NOW)
    calls = []

    def broken(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if len(calls) <= 6:  # every retry of the first call sees a page without 'data'
            return httpx.Response(200, json={"object": "list"})
        return stripe(request)

    async with make_http(Recorder(broken), clock, max_retries=0) as http:
        source = BillingSource(http, clock=clock, refresh=3600)
        first = await source.billing("cus_1", credit=False, now=NOW)
        assert first.problem is not None and "could not read its prices" in first.problem
        assert not first.items
        calls.extend([""] * 6)
        second = await source.billing("cus_1", credit=False, now=NOW)
        assert second.problem is None and second.items


async def test_a_price_without_a_meter_is_kept_as_unsupported() -> None:
    licensed = {**TIERED, "id": "price_l", "billing_scheme": "per_unit",
                "recurring": {"usage_type": "licensed", "meter": None}}

    def app(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"data": [{"id": "sub", "items": {"data": [
            {"id": "si", "price": licensed, "current_period_start": NOW,
             "current_period_end": NOW + 10}]}}], "has_more": False})

    clock = FakeClock(start=NOW)
    async with make_http(Recorder(app), clock) as http:
        billing = await BillingSource(http, clock=clock, refresh=60).billing(
            "cus_1", credit=False, now=NOW)
        assert isinstance(billing.items[0].price, UnsupportedPrice)
        assert billing.items_for("mtr_a") == []

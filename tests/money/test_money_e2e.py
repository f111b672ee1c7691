"""Spend, invoice forecast and credit end to end: ``alertd check`` against the simulator as a
real loopback Stripe, the expected figures computed independently from the simulator's own
events (Meter Event Summaries by exact timestamp) and its price objects."""

from __future__ import annotations

import argparse
import json
from collections.abc import AsyncIterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from alertd.calendar import floor
from alertd.clock import FakeClock, iso
from alertd.commands.check import run_check
from alertd.pricing import PricePlan, cost, parse_price
from alertd.service.open import Collaborators, open_services
from alertd.service.world import World, load_world
from alertd.sim.billing import current_period, price_json
from alertd.sim.server import Simulator
from alertd.sim.testing import API_KEY, TEST_NOW, running_simulator

DAY = 86400
CUSTOMERS = 12
TOKENS = "mtr_sim_tokens"


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    # History runs 40 days past TEST_NOW, so a check --at TEST_NOW can be compared with what
    # really happened afterwards.
    async with running_simulator(customers=CUSTOMERS, seed=3, days=80,
                                 now=TEST_NOW + 40 * DAY) as running:
        yield running


def write_config(tmp_path: Path, sim: Simulator, rules: str) -> Path:
    (tmp_path / "rules.yaml").write_text(rules)
    path = tmp_path / "alertd.yaml"
    path.write_text("\n".join([
        f"stripe: {{api_base: '{sim.url}', api_key: sk_test_e2e, freshness_lag: 5m}}",
        f"rule_files: ['{tmp_path / 'rules.yaml'}']",
        "customers: {all: true}",
        "receivers: [{name: ops, webhook: {url: 'http://127.0.0.1:9/hook'}}]",
        "route: {receiver: ops}",
    ]) + "\n")
    return path


async def check(config: Path, at: int, capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    namespace = argparse.Namespace(at=iso(at), rule=None, customer=None, format="json",
                                   dry_run=True)
    assert await run_check(load_world(config), namespace) == 0
    findings: list[dict[str, Any]] = json.loads(capsys.readouterr().out)["findings"]
    return findings


def token_plan(sim: Simulator, customer: str) -> PricePlan:
    subscription = sim.billing.subscription(customer, TEST_NOW)
    price_id = subscription["items"]["data"][0]["price"]["id"]
    plan = parse_price(price_json(price_id, tiers=True))
    assert isinstance(plan, PricePlan)
    return plan


def spent(sim: Simulator, customer: str, start: int, end: int) -> Decimal:
    """What the customer's tokens cost from ``start`` to ``end``, from the raw events."""
    used = sim.generator.summaries(customer, TOKENS, start, end, None, end)
    return cost(token_plan(sim, customer), Decimal(sum(v for _, _, v in used)))


def period_of(customer: str, at: int) -> tuple[int, int]:
    return current_period(int(customer[-6:]) - 1, at)


SPEND = """
rules:
  - name: spend
    meter: mtr_sim_tokens
    window: billing_period
    condition: {type: threshold, measure: cost, value: "40.00 usd"}
"""


async def test_spend_fires_for_exactly_the_customers_whose_period_cost_crosses(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, sim, SPEND)
    at = TEST_NOW
    findings = await check(config, at, capsys)
    by_customer = {f["customer"]: f for f in findings}
    assert len(by_customer) == CUSTOMERS
    firing = {c for c, f in by_customer.items() if f["state"] == "firing"}
    expected = set()
    for customer, found in by_customer.items():
        if token_plan(sim, customer).currency != "usd":
            assert found["state"] == "error"
            assert "EUR" in found["message"] and customer in found["message"]
            assert "price_tokens_" in found["message"]
            continue
        start, _ = period_of(customer, at)
        truth = spent(sim, customer, start, floor(at, "hour", "UTC"))
        assert found["value"] == pytest.approx(float(truth), rel=0.02, abs=0.05)
        if truth > Decimal("40.00"):
            expected.add(customer)
    assert firing == expected
    assert 0 < len(firing) < CUSTOMERS


def forecast_rules(budgets: dict[str, Decimal]) -> str:
    lines = ["rules:"]
    for number, (customer, budget) in enumerate(budgets.items()):
        lines += [
            f"  - name: invoice-{number}",
            "    meter: mtr_sim_tokens",
            "    window: billing_period",
            f"    customers: [{customer}]",
            f'    condition: {{type: forecast, measure: cost, value: "{budget:.2f} usd", '
            "min_elapsed: 3d, rate_window: 7d}",
        ]
    return "\n".join(lines) + "\n"


async def test_forecast_names_the_crossing_day_within_one_day(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    at = TEST_NOW
    budgets: dict[str, Decimal] = {}
    actual: dict[str, str] = {}
    for index in range(CUSTOMERS):
        customer = f"cus_sim_{index + 1:06d}"
        start, end = period_of(customer, at)
        mid_period = at - start >= 4 * DAY and end - at >= 8 * DAY
        if not mid_period or token_plan(sim, customer).currency != "usd":
            continue
        # a budget the real usage crosses five days later: the day of that crossing is known
        crossing_day = floor(at + 5 * DAY, "day", "UTC") + DAY // 2
        budget = spent(sim, customer, start, crossing_day)
        if budget <= spent(sim, customer, start, at) + 1:
            continue
        budgets[customer] = budget.quantize(Decimal("0.01"))
        actual[customer] = iso(crossing_day)[:10]
    assert len(budgets) >= 3, "the seed should give several customers mid-period"
    findings = await check(write_config(tmp_path, sim, forecast_rules(budgets)), at, capsys)
    for found in findings:
        customer = found["customer"]
        named = found["message"].rsplit("crosses on ", 1)[-1][:10]
        gap = abs((date.fromisoformat(named) - date.fromisoformat(actual[customer])).days)
        assert gap <= 1, (customer, named, actual[customer], found["message"])
        assert found["state"] == "firing", found["message"]
        assert "projected $" in found["message"]


CREDIT = """
rules:
  - name: credit
    meter: mtr_sim_tokens
    condition: {type: credit, depletes_within: 7d, rate_window: 3d}
"""


async def test_credit_fires_before_depletion_and_resolves_on_a_top_up(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, sim, CREDIT)
    customer = "cus_sim_000007"  # index 6: every third customer has a credit grant
    start, end = period_of(customer, TEST_NOW)
    fired_at = None
    for at in range(start + DAY, end, DAY):
        sim.set_now(at)  # Stripe answers balances as of now: play each instant live
        found = next(f for f in await check(config, at, capsys) if f["customer"] == customer)
        if found["state"] == "firing":
            fired_at, balance = at, found["value"]
            break
    assert fired_at is not None, "the grant should run out within the period"
    assert balance > 0, "it fired before the credit ran out"
    runs_out = next(at for at in range(fired_at, end, 3600)
                    if sim.billing.available(customer, at)["usd"] / 100
                    < spent(sim, customer, start, at))
    assert runs_out > fired_at
    async with httpx.AsyncClient(base_url=sim.url, auth=(API_KEY, "")) as client:
        topped = await client.post("/v1/billing/credit_grants", data={
            "customer": customer, "amount[type]": "monetary",
            "amount[monetary][value]": "100000", "amount[monetary][currency]": "usd",
            "applicability_config[scope][price_type]": "metered", "category": "paid"})
        assert topped.status_code == 200
    after = next(f for f in await check(config, fired_at, capsys) if f["customer"] == customer)
    assert after["state"] == "inactive"
    assert after["value"] == pytest.approx(balance + 1000, abs=0.01)


def usage_rule() -> str:
    return """
rules:
  - name: tokens-hourly
    meter: mtr_sim_tokens
    window: hour
    timezone: UTC
    condition: {type: threshold, value: 1000000000}
"""


async def pass_requests(world: World, passes: int) -> list[int]:
    counts = []
    async with open_services(world, Collaborators(FakeClock(start=TEST_NOW))) as services:
        for _ in range(passes):
            result = await services.engine.run_pass(TEST_NOW)
            counts.append(result.requests)
    return counts


async def test_prices_cost_general_requests_only_at_refresh(
    sim: Simulator, tmp_path: Path
) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    priced = tmp_path / "priced"
    priced.mkdir()
    without = await pass_requests(load_world(write_config(plain, sim, usage_rule())), 3)
    sim.reset_stats()
    with_cost = await pass_requests(
        load_world(write_config(priced, sim, usage_rule() + SPEND.replace("rules:\n", ""))), 3)
    by_endpoint = sim.stats()["by_endpoint"]
    # Cost needs are UTC hour buckets, so they share the request of any hourly UTC rule of the
    # customer (the planner serves one group's needs with one request, whatever their ranges).
    # The first pass reads customers and meters (and, with cost rules, subscriptions and
    # tiered prices); after it, a pass is its usage requests only, the same with or without.
    assert with_cost[1:] == without[1:] == [CUSTOMERS, CUSTOMERS]
    assert with_cost[0] - without[0] == CUSTOMERS + 2  # subscriptions, the 2 tiered prices
    assert by_endpoint["subscriptions.list"] == CUSTOMERS
    assert by_endpoint["meter_usage"] == 3 * CUSTOMERS
    print(f"requests per pass without cost rules {without}, with {with_cost}")

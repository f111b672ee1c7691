"""A cost summed over each customer's meters, end to end: ``alertd check`` against the
simulator as a real loopback Stripe. Every simulated customer has two metered prices (tokens,
tiered or per unit; API calls, package pricing) and a licensed one (storage, not usage); the
expected sums are computed independently, from the simulator's raw events (Meter Event
Summaries by exact timestamp) and its price objects, each price on its own meter's total."""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import AsyncIterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from alertd.calendar import floor
from alertd.clock import FakeClock, iso
from alertd.commands.backtest import run_command
from alertd.commands.check import run_check
from alertd.pricing import PricePlan, cost, parse_price
from alertd.service.open import Collaborators, open_services
from alertd.service.world import World, load_world
from alertd.sim.billing import current_period, price_json
from alertd.sim.server import Simulator
from alertd.sim.testing import TEST_NOW, running_simulator

DAY = 86400
CUSTOMERS = 12


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
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


def metered_plans(sim: Simulator, customer: str) -> list[PricePlan]:
    """The customer's metered prices, read from the simulator's own subscription."""
    plans = []
    for item in sim.billing.subscription(customer, TEST_NOW)["items"]["data"]:
        plan = parse_price(price_json(item["price"]["id"], tiers=True))
        if isinstance(plan, PricePlan):
            plans.append(plan)
    return plans


def spent(sim: Simulator, customer: str, start: int, end: int) -> Decimal:
    """What all the customer's metered usage costs from ``start`` to ``end``: each price on
    its own meter's total, added up."""
    total = Decimal(0)
    for plan in metered_plans(sim, customer):
        used = sim.generator.summaries(customer, plan.meter, start, end, None, end)
        total += cost(plan, Decimal(sum(v for _, _, v in used)))
    return total


def period_of(customer: str, at: int) -> tuple[int, int]:
    return current_period(int(customer[-6:]) - 1, at)


SUMMED = """
rules:
  - name: customer-spend
    window: billing_period
    condition: {type: threshold, measure: cost, value: "60.00 usd"}
"""


async def test_a_summed_spend_rule_fires_for_exactly_the_customers_whose_sum_crosses(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    at = TEST_NOW
    findings = await check(write_config(tmp_path, sim, SUMMED), at, capsys)
    by_customer = {f["customer"]: f for f in findings}
    assert len(by_customer) == CUSTOMERS
    expected, one_meter_short = set(), 0
    for customer, found in by_customer.items():
        plans = metered_plans(sim, customer)
        assert len(plans) == 2, "every simulated customer has two metered prices"
        if plans[0].currency != "usd":
            assert found["state"] == "error"
            assert customer in found["message"] and "EUR" in found["message"]
            assert all(plan.id in found["message"] and plan.meter in found["message"]
                       for plan in plans)
            continue
        start, _ = period_of(customer, at)
        end = floor(at, "hour", "UTC")
        truth = spent(sim, customer, start, end)
        assert found["value"] == pytest.approx(float(truth), rel=0.02, abs=0.05), customer
        assert "(2 meters)" in found["message"]
        if truth > Decimal("60.00"):
            expected.add(customer)
            # the sum crosses where no meter alone does, for some customers
            one_meter_short += all(spent_one(sim, customer, plan, start, end) <= 60
                                   for plan in plans)
    firing = {c for c, f in by_customer.items() if f["state"] == "firing"}
    assert firing == expected
    assert 0 < len(firing) < CUSTOMERS
    assert one_meter_short > 0, "the seed should have a customer only the sum puts over"


def spent_one(sim: Simulator, customer: str, plan: PricePlan, start: int, end: int) -> Decimal:
    used = sim.generator.summaries(customer, plan.meter, start, end, None, end)
    return cost(plan, Decimal(sum(v for _, _, v in used)))


def forecast_rules(budgets: dict[str, Decimal]) -> str:
    lines = ["rules:"]
    for number, (customer, budget) in enumerate(budgets.items()):
        lines += [
            f"  - name: invoice-{number}",
            "    window: billing_period",
            f"    customers: [{customer}]",
            f'    condition: {{type: forecast, measure: cost, value: "{budget:.2f} usd", '
            "min_elapsed: 3d, rate_window: 7d}",
        ]
    return "\n".join(lines) + "\n"


async def test_a_summed_forecast_projects_the_invoice_and_names_the_crossing_day(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    at = TEST_NOW
    budgets: dict[str, Decimal] = {}
    actual: dict[str, str] = {}
    for index in range(CUSTOMERS):
        customer = f"cus_sim_{index + 1:06d}"
        start, end = period_of(customer, at)
        mid_period = at - start >= 4 * DAY and end - at >= 8 * DAY
        if not mid_period or metered_plans(sim, customer)[0].currency != "usd":
            continue
        # a budget the real summed usage crosses five days later: that day is known
        crossing_day = floor(at + 5 * DAY, "day", "UTC") + DAY // 2
        budget = spent(sim, customer, start, crossing_day)
        # API calls are billed in whole packages of 1,000 ($0.50 steps): a budget only a few
        # steps above the spend so far is crossed at one step, which a run rate places only
        # to within days; ten steps or more are what a forecast is for.
        if budget <= spent(sim, customer, start, at) + 5:
            continue
        budgets[customer] = budget.quantize(Decimal("0.01"))
        actual[customer] = iso(crossing_day)[:10]
    assert len(budgets) >= 3, "the seed should give several customers mid-period"
    findings = await check(write_config(tmp_path, sim, forecast_rules(budgets)), at, capsys)
    assert {f["customer"] for f in findings} == set(budgets)
    for found in findings:
        customer = found["customer"]
        named = found["message"].rsplit("crosses on ", 1)[-1][:10]
        gap = abs((date.fromisoformat(named) - date.fromisoformat(actual[customer])).days)
        assert gap <= 1, (customer, named, actual[customer], found["message"])
        assert found["state"] == "firing", found["message"]
        assert found["message"].startswith("projected $")
        assert found["projected"] > float(budgets[customer])


async def pass_requests(world: World, passes: int) -> list[int]:
    counts = []
    async with open_services(world, Collaborators(FakeClock(start=TEST_NOW))) as services:
        for _ in range(passes):
            counts.append((await services.engine.run_pass(TEST_NOW)).requests)
    return counts


HOURLY = """
rules:
  - name: tokens-hourly
    meter: mtr_sim_tokens
    window: hour
    condition: {type: threshold, value: 1000000000}
"""


async def test_a_summed_rule_reads_its_meters_in_the_customers_one_request(
    sim: Simulator, tmp_path: Path
) -> None:
    plain, priced = tmp_path / "plain", tmp_path / "priced"
    plain.mkdir()
    priced.mkdir()
    without = await pass_requests(load_world(write_config(plain, sim, HOURLY)), 3)
    sim.reset_stats()
    summed = HOURLY + SUMMED.replace("rules:\n", "")
    with_sum = await pass_requests(load_world(write_config(priced, sim, summed)), 3)
    by_endpoint = sim.stats()["by_endpoint"]
    # The summed rule's two meters ride in the customer's one hourly UTC request (a request
    # carries up to five meters); EUR customers are refused before anything is read.
    assert with_sum[1:] == without[1:] == [CUSTOMERS, CUSTOMERS]
    assert with_sum[0] - without[0] == CUSTOMERS + 2  # subscriptions, the 2 tiered prices
    assert by_endpoint["meter_usage"] == 3 * CUSTOMERS


TOKENS_ONLY = SUMMED.replace("window: billing_period", "meter: mtr_sim_tokens\n    window: "
                             "billing_period").replace("60.00 usd", "35.00 usd")


@pytest.mark.parametrize(("rules", "budget"), [(SUMMED, 60), (TOKENS_ONLY, 35)],
                         ids=["summed", "one-meter"])
async def test_backtest_fires_where_the_billing_periods_cost_crosses(
    sim: Simulator, tmp_path: Path, rules: str, budget: int
) -> None:
    """Also: a billing period ends mid-month and its total starts again from zero, so
    backtest's bisection of a calendar month must not span that turn (a customer over the
    budget in its previous period was once reported as still firing in the next)."""
    since, until = TEST_NOW - 3 * DAY, TEST_NOW
    world = load_world(write_config(tmp_path, sim, rules))
    out, err = io.StringIO(), io.StringIO()
    arguments = argparse.Namespace(since=iso(since), until=iso(until), rule=None,
                                   customer=None, format="json")
    code = await run_command(world, arguments, clock=FakeClock(TEST_NOW), stdout=out,
                             stderr=err)
    assert code == 0, err.getvalue()
    fired = {f["customer"] for f in json.loads(out.getvalue())["firings"]}

    def cost_to(customer: str, start: int, end: int) -> Decimal:
        if rules == SUMMED:
            return spent(sim, customer, start, end)
        plan = next(p for p in metered_plans(sim, customer) if p.meter == "mtr_sim_tokens")
        return spent_one(sim, customer, plan, start, end)

    expected, judged = set(), set()
    for index in range(CUSTOMERS):
        customer = f"cus_sim_{index + 1:06d}"
        start, _ = period_of(customer, until)
        if start > since - DAY or metered_plans(sim, customer)[0].currency != "usd":
            continue  # a period turning over in the window: not this test's question
        judged.add(customer)
        before = cost_to(customer, start, floor(since, "hour", "UTC") - 3600)
        after = cost_to(customer, start, floor(until, "hour", "UTC") - 3600)
        assert not (abs(before - budget) < 1 or abs(after - budget) < 1), "too close to call"
        if before <= budget < after:  # crossed inside the window: reported as a firing
            expected.add(customer)
    assert len(judged) >= 6 and expected, "the seed should give crossings in the window"
    assert fired & judged == expected

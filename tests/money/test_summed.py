"""A cost summed over a customer's meters, judged on hand-made series and billing (pure): each
price applied to its own meter's period total and the results added, as an invoice adds its
lines; and every case where one sum cannot be stated is an error naming what is wrong."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alertd import conditions
from alertd.billing import BillingItem, CustomerBilling
from alertd.commands.validate import priced_note
from alertd.conditions import kind_of
from alertd.conditions.money import meter_needs, summed_series, sums_meters
from alertd.config.validate import validate_report
from alertd.model import Bucket, Customer, Period, Series, SeriesKey
from alertd.pricing import PricePlan, Tier, UnsupportedPrice, cost
from alertd.rules.schema import Rule

HOUR = 3600
DAY = 86400
START = 1_740_787_200  # 2025-03-01 00:00 UTC
END = 1_743_465_600  # 2025-04-01 00:00 UTC
NOW = START + 10 * DAY

# 1¢ a unit; and graduated: the first 1,000 units free, then 2¢ each
PER_UNIT = PricePlan("price_u", "usd", "mtr_a", "per_unit", unit=Decimal("1"))
GRADUATED = PricePlan("price_g", "usd", "mtr_b", "graduated", tiers=(
    Tier(1000, Decimal(0), Decimal(0)), Tier(None, Decimal(2), Decimal(0))))
LICENSED = UnsupportedPrice("price_seat", None, "not a metered price with a billing meter")


def rule(condition: dict[str, Any], **fields: Any) -> Rule:
    return Rule.model_validate({"name": "r", "window": "billing_period",
                                "condition": condition, **fields})


def spend(value: str = "40.00 usd") -> Rule:
    return rule({"type": "threshold", "measure": "cost", "value": value})


def meter_series(meter: str, per_hour: float, end: int = NOW) -> Series:
    buckets = tuple(Bucket(t, t + HOUR, per_hour, complete=t + HOUR <= end - HOUR)
                    for t in range(START - 5 * DAY, end, HOUR))
    return Series(SeriesKey("r", "cus_1"), meter, (), "hour", "UTC", buckets, end)


def summed(**per_hour: float) -> Series:
    return summed_series(SeriesKey("r", "cus_1"),
                         {meter: meter_series(meter, rate) for meter, rate in per_hour.items()})


def customer(*prices: PricePlan | UnsupportedPrice,
             periods: tuple[Period, ...] = ()) -> Customer:
    items = tuple(BillingItem(f"si_{n}", price, periods[n] if periods else Period(START, END))
                  for n, price in enumerate(prices))
    return Customer("cus_1", billing=CustomerBilling(items=items))


def test_each_price_is_applied_to_its_own_meters_total_and_the_lines_added() -> None:
    # 10 days × 24 h in the period: mtr_a 2,400 units × 1¢ = $24.00; mtr_b 2,400 units, the
    # first 1,000 free, 1,400 × 2¢ = $28.00. Together $52.00.
    found = conditions.evaluate(spend(), summed(mtr_a=10, mtr_b=10),
                                customer(PER_UNIT, GRADUATED, LICENSED), NOW)
    assert found.active
    assert found.value == 52.0
    assert found.details["meters"] == {
        "mtr_a": {"price": "price_u", "quantity": 2400.0, "amount": "24.00"},
        "mtr_b": {"price": "price_g", "quantity": 2400.0, "amount": "28.00"}}
    assert found.message.startswith("$52.00 in the billing period 2025-03-01 to 2025-04-01 "
                                    "(2 meters) > $40.00")
    # Tiers on the combined total would be another (wrong) number: 4,800 units graduated.
    assert cost(GRADUATED, Decimal(4800)) != Decimal("52.00")
    # the licensed seat is not usage: left out, not an error
    assert "price_seat" not in found.message


@settings(max_examples=60, deadline=None, derandomize=True)
@given(rates=st.lists(st.integers(0, 400), min_size=1, max_size=5),
       units=st.lists(st.decimals("0", "5", places=3), min_size=5, max_size=5),
       free=st.integers(1, 5000))
def test_the_sum_equals_each_meter_priced_alone_added_up(
        rates: list[int], units: list[Decimal], free: int) -> None:
    """Against the one-meter path (tested on Stripe's worked examples): a summed rule's value
    is the one-meter rules' values added, whatever the meters, prices and usage."""
    plans: list[PricePlan] = []
    for n in range(len(rates)):
        meter = f"mtr_{n}"
        plans.append(replace(PER_UNIT, id=f"price_{n}", meter=meter, unit=units[n]) if n % 2
                     else replace(GRADUATED, id=f"price_{n}", meter=meter, tiers=(
                         Tier(free, Decimal(0), Decimal(0)), Tier(None, units[n], Decimal(7)))))
    who = customer(*plans)
    series = summed(**{plan.meter: rate for plan, rate in zip(plans, rates, strict=True)})
    total = conditions.evaluate(spend("1000000.00 usd"), series, who, NOW).value
    alone = [conditions.evaluate(
        rule({"type": "threshold", "measure": "cost", "value": "1000000.00 usd"},
             meter=plan.meter), meter_series(plan.meter, rate), who, NOW).value
        for plan, rate in zip(plans, rates, strict=True)]
    assert total is not None and None not in alone
    assert Decimal(repr(total)) == sum((Decimal(repr(v)) for v in alone if v is not None),
                                       Decimal(0))


def test_below_the_bound_on_the_sum_does_not_fire() -> None:
    found = conditions.evaluate(spend("60.00 usd"), summed(mtr_a=10, mtr_b=10),
                                customer(PER_UNIT, GRADUATED), NOW)
    assert not found.active and found.value == 52.0
    assert "fires when > $60.00" in found.message


def test_a_meter_without_usage_costs_nothing_and_the_sum_still_stands() -> None:
    found = conditions.evaluate(spend("20.00 usd"), summed(mtr_a=10, mtr_b=0),
                                customer(PER_UNIT, GRADUATED), NOW)
    assert found.active and found.value == 24.0


def test_prices_in_several_currencies_are_refused_naming_each() -> None:
    euro = replace(GRADUATED, id="price_g_eur", currency="eur")
    found = conditions.evaluate(spend(), summed(mtr_a=10, mtr_b=10),
                                customer(PER_UNIT, euro), NOW)
    assert found.state == "error" and found.value is None and not found.active
    for word in ("cus_1", "2 currencies", "mtr_a", "price_u", "USD", "mtr_b", "price_g_eur",
                 "EUR", "not converted"):
        assert word in found.message, word


def test_prices_in_another_currency_than_the_rules_are_refused() -> None:
    found = conditions.evaluate(spend("40.00 eur"), summed(mtr_a=10, mtr_b=10),
                                customer(PER_UNIT, GRADUATED), NOW)
    assert found.state == "error"
    assert "price_u" in found.message and "price_g" in found.message
    assert "in USD, the rule in EUR" in found.message


def test_an_unsupported_shape_on_any_meter_refuses_the_whole_sum() -> None:
    odd = UnsupportedPrice("price_odd", "mtr_b", "tiers_mode 'stairs' is not graduated or volume")
    found = conditions.evaluate(spend(), summed(mtr_a=10, mtr_b=10), customer(PER_UNIT, odd), NOW)
    assert found.state == "error" and found.value is None
    assert all(w in found.message for w in ("cus_1", "mtr_b", "price_odd", "stairs",
                                            "supported: per_unit"))


@pytest.mark.parametrize(("billing", "words"), [
    (CustomerBilling(items=(BillingItem("si_0", LICENSED, Period(START, END)),)),
     ["cus_1", "no active subscription item with a metered price"]),
    (CustomerBilling(problem="could not read its prices"), ["cus_1", "could not read"]),
    (CustomerBilling(items=(BillingItem("si_0", PER_UNIT, Period(START, END)),
                            BillingItem("si_1", replace(PER_UNIT, id="price_u2"),
                                        Period(START, END)))),
     ["2 prices for meter mtr_a", "price_u, price_u2"]),
    (CustomerBilling(items=(BillingItem("si_0", PER_UNIT, Period(START, END)),
                            BillingItem("si_1", GRADUATED, Period(START + 5 * DAY,
                                                                  END + 5 * DAY)))),
     ["different billing periods", "si_0 (price_u) from 2025-03-01",
      "si_1 (price_g) from 2025-03-06"]),
])
def test_no_sum_is_guessed(billing: CustomerBilling, words: list[str]) -> None:
    found = conditions.evaluate(spend(), summed(mtr_a=10, mtr_b=10),
                                Customer("cus_1", billing=billing), NOW)
    assert found.state == "error" and found.value is None and not found.active
    assert all(word in found.message for word in words), found.message


def test_a_series_without_each_meters_usage_is_not_priced() -> None:
    # e.g. all meters' usage summed by Stripe: the prices cannot be applied to it
    plain = meter_series("mtr_a", 10)
    found = conditions.evaluate(spend(), plain, customer(PER_UNIT, GRADUATED), NOW)
    assert found.state == "error" and "meter mtr_a" in found.message
    assert "usage was not read" in found.message


def test_the_forecast_projects_the_summed_invoice_and_the_crossing_day() -> None:
    forecast = rule({"type": "forecast", "measure": "cost", "value": "120.00 usd",
                     "rate_window": "3d"})
    found = conditions.evaluate(forecast, summed(mtr_a=10, mtr_b=10),
                                customer(PER_UNIT, GRADUATED), NOW)
    # 21 days left at 240 units a day on each meter: mtr_a 7,440 units = $74.40, mtr_b
    # 7,440 − 1,000 free = 6,440 × 2¢ = $128.80; the invoice $203.20. Per hour the sum grows
    # 10¢ + 20¢ = 30¢ from $52.00: $120.00 is passed after 68/0.30 = 226.7 h = 9.44 days,
    # on 2025-03-20.
    assert found.active
    assert found.figures.contract() == {"threshold": 120.0, "projected": 203.2}
    assert found.details["crosses_at"] == "2025-03-20"
    assert "projected $203.20 by 2025-04-01 ($52.00 so far" in found.message
    assert "crosses on 2025-03-20" in found.message
    high = rule({"type": "forecast", "measure": "cost", "value": "300.00 usd",
                 "rate_window": "3d"})
    quiet = conditions.evaluate(high, summed(mtr_a=10, mtr_b=10),
                                customer(PER_UNIT, GRADUATED), NOW)
    assert not quiet.active and quiet.details["crosses_at"] is None


def test_a_summed_rule_needs_one_hourly_read_per_priced_meter() -> None:
    summed_rule = spend()
    assert sums_meters(summed_rule) and not sums_meters(rule(
        {"type": "threshold", "measure": "cost", "value": "1.00 usd"}, meter="mtr_a"))
    needs = meter_needs(summed_rule, customer(GRADUATED, PER_UNIT, LICENSED), NOW)
    assert [need.spec.meter for need in needs] == ["mtr_a", "mtr_b"]
    single = conditions.needs(rule({"type": "threshold", "measure": "cost",
                                    "value": "1.00 usd"}, meter="mtr_a"), "cus_1", NOW)[0]
    assert needs[0] == single  # the very need a cost rule of that one meter has: shared
    # nothing is read for a customer whose sum cannot be stated
    assert meter_needs(spend("1.00 eur"), customer(PER_UNIT, GRADUATED), NOW) == ()
    assert meter_needs(summed_rule, Customer("cus_1"), NOW) == ()


def test_validate_takes_a_summed_cost_rule_and_says_what_it_cannot_do() -> None:
    assert kind_of(spend()).check(spend()) == []
    usage = rule({"type": "threshold", "value": 10})
    assert any("billing-period usage rule needs a meter" in issue.message
               for issue in kind_of(usage).check(usage))


def test_validate_says_a_summed_rule_sums_the_customers_prices(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(
        "rules:\n  - name: spend\n    window: billing_period\n"
        "    condition: {type: threshold, measure: cost, value: \"5.00 usd\"}\n"
        "  - name: tokens\n    meter: mtr_a\n    window: billing_period\n"
        "    condition: {type: threshold, measure: cost, value: \"5.00 usd\"}\n")
    config = tmp_path / "alertd.yaml"
    config.write_text(f"stripe: {{api_key: sk_test_x}}\nrule_files: ['{tmp_path}/rules.yaml']\n")
    report = validate_report(config)
    assert report.problems == [] and (report.priced, report.summed) == (2, 1)
    note = priced_note(report.priced, report.summed)
    assert "supported price shapes: per_unit" in note
    assert "1 of them sum every metered price of the customer" in note
    assert "several currencies" in note
    assert "sum every" not in priced_note(1, 0)

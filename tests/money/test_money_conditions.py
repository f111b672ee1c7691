"""Cost thresholds, cost forecasts and credit, judged on hand-made series and billing (pure)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from alertd import conditions
from alertd.billing import BillingItem, Credit, CustomerBilling, period_at
from alertd.conditions import kind_of
from alertd.model import Bucket, Customer, Period, Series, SeriesKey
from alertd.pricing import PricePlan, Tier, UnsupportedPrice
from alertd.rules.schema import Rule

HOUR = 3600
START = 1_740_787_200  # 2025-03-01 00:00 UTC
END = 1_743_465_600  # 2025-04-01 00:00 UTC
NOW = START + 10 * 86400
METER = "mtr_a"


def rule(condition: dict[str, Any], **fields: Any) -> Rule:
    return Rule.model_validate({"name": "r", "meter": METER, "window": "billing_period",
                                "condition": condition, **fields})


def series(per_hour: float, start: int = START - 5 * 86400, end: int = NOW) -> Series:
    buckets = tuple(Bucket(t, t + HOUR, per_hour, complete=t + HOUR <= end - HOUR)
                    for t in range(start, end, HOUR))
    return Series(SeriesKey("r", "cus_1"), METER, (), "hour", "UTC", buckets, end)


PER_UNIT = PricePlan("price_u", "usd", METER, "per_unit", unit=Decimal("1"))  # 1¢ a unit
GRADUATED = PricePlan("price_g", "usd", METER, "graduated", tiers=(
    Tier(1000, Decimal(0), Decimal(0)), Tier(None, Decimal(2), Decimal(0))))


def customer(price: PricePlan | UnsupportedPrice = PER_UNIT, *items: BillingItem,
             credit: tuple[Credit, ...] = ()) -> Customer:
    item = BillingItem("si_1", price, Period(START, END))
    return Customer("cus_1", billing=CustomerBilling(items=(item, *items), credit=credit))


def test_cost_threshold_prices_the_period_total_and_names_the_level() -> None:
    spend = rule({"type": "threshold", "measure": "cost",
                  "levels": {"warning": "20.00 usd", "critical": "30.00 usd"}})
    # 10 days × 24 h × 10 units = 2,400 units in the period = $24.00 (the 5 days before
    # the period are not counted)
    found = conditions.evaluate(spend, series(10), customer(), NOW)
    assert found.active and found.level == "warning"
    assert found.value == 24.0
    assert found.message.startswith("$24.00 in the billing period 2025-03-01 to 2025-04-01 > "
                                    "$20.00 [warning]")
    assert kind_of(spend).levels(spend) == ("warning", "critical")
    tiered = conditions.evaluate(spend, series(10), customer(GRADUATED), NOW)
    assert tiered.value == 28.0 and tiered.level == "warning"  # 1,400 paid units × 2¢


@pytest.mark.parametrize(("billing", "words"), [
    (CustomerBilling(), ["cus_1", "no active subscription item", METER]),
    (CustomerBilling(problem="could not read its prices"), ["cus_1", "could not read"]),
])
def test_no_price_is_an_error_never_a_guess(billing: CustomerBilling, words: list[str]) -> None:
    spend = rule({"type": "threshold", "measure": "cost", "value": "1.00 usd"})
    found = conditions.evaluate(spend, series(10), Customer("cus_1", billing=billing), NOW)
    assert found.state == "error" and found.value is None and not found.active
    assert all(word in found.message for word in words)


def test_other_currency_and_unsupported_shapes_are_errors_naming_the_price() -> None:
    spend = rule({"type": "threshold", "measure": "cost", "value": "1.00 eur"})
    found = conditions.evaluate(spend, series(10), customer(), NOW)
    assert found.state == "error"
    assert "price_u is in USD, the rule in EUR" in found.message
    odd = UnsupportedPrice("price_odd", METER, "tiers_mode 'stairs' is not graduated or volume")
    found = conditions.evaluate(rule({"type": "threshold", "measure": "cost",
                                      "value": "1.00 usd"}), series(10), customer(odd), NOW)
    assert found.state == "error"
    assert "cus_1" in found.message and METER in found.message and "price_odd" in found.message
    assert "supported: per_unit" in found.message


def test_two_prices_for_one_meter_are_an_error() -> None:
    second = BillingItem("si_2", PricePlan("price_v", "usd", METER, "per_unit"),
                         Period(START, END))
    found = conditions.evaluate(rule({"type": "threshold", "measure": "cost",
                                      "value": "1.00 usd"}), series(1), customer(PER_UNIT, second),
                                NOW)
    assert found.state == "error" and "price_u, price_v" in found.message


def test_cost_forecast_projects_the_invoice_and_the_crossing_day() -> None:
    forecast = rule({"type": "forecast", "measure": "cost", "value": "60.00 usd",
                     "rate_window": "3d"})
    found = conditions.evaluate(forecast, series(10), customer(), NOW)
    # $24 so far, 10 units an hour for the remaining 21 days: $24 + 21 × $2.40 = $74.40; $60 is
    # reached after 3,600 more units = 15 days (the data is fresh to NOW) = 2025-03-26.
    assert found.active
    assert found.figures.contract() == {"threshold": 60.0, "projected": 74.4}
    assert found.details["crosses_at"] == "2025-03-26"
    assert "projected $74.40 by 2025-04-01" in found.message


def test_billing_periods_follow_the_anchor_at_any_instant() -> None:
    period = Period(START, END)
    assert period_at(period, NOW) == period
    assert period_at(period, END + 5) == Period(END, 1_746_057_600)  # 2025-05-01
    assert period_at(period, START - 5) == Period(1_738_368_000, START)  # from 2025-02-01


def credit(available: str, granted: str) -> tuple[Credit, ...]:
    return (Credit("usd", Decimal(available), Decimal(granted)),)


def test_credit_below_and_below_percent_on_the_ongoing_balance() -> None:
    low = rule({"type": "credit", "below": "50.00 usd"}, window="day")
    who = customer(credit=credit("70.00", "100.00"))
    found = conditions.evaluate(low, series(10), who, NOW)
    assert found.active and found.value == 46.0  # $70 available − $24 not yet invoiced
    assert "ongoing credit $46.00 ($70.00 available − $24.00 not yet invoiced)" in found.message
    percent = rule({"type": "credit", "below_percent": 40}, window="day")
    assert not conditions.evaluate(percent, series(10), who, NOW).active  # 46 ≥ 40% of 100
    topped = customer(credit=credit("170.00", "200.00"))
    assert not conditions.evaluate(low, series(10), topped, NOW).active


def test_credit_depletes_within() -> None:
    soon = rule({"type": "credit", "depletes_within": "7d", "rate_window": "2d"}, window="day")
    # $40 available, $24 used, $2.40 a day: runs out in 6.67 days
    found = conditions.evaluate(soon, series(10), customer(credit=credit("40.00", "40.00")), NOW)
    assert found.active and found.details["depletes_at"] == "2025-03-17"
    later = conditions.evaluate(soon, series(10), customer(credit=credit("60.00", "60.00")), NOW)
    assert not later.active  # 15 days left


def test_no_credit_is_nodata() -> None:
    low = rule({"type": "credit", "below": "50.00 usd"}, window="day")
    assert conditions.evaluate(low, series(10), customer(), NOW).state == "nodata"


@pytest.mark.parametrize(("condition", "message"), [
    ({"type": "threshold", "measure": "cost", "value": 500}, "string"),
    ({"type": "threshold", "measure": "cost", "value": "500 dollars"}, "currency"),
    ({"type": "threshold", "measure": "cost",
      "levels": {"a": "1.00 usd", "b": "2.00 eur"}}, "one currency"),
    ({"type": "forecast", "measure": "cost", "value_from": {"metadata": "q"}}, "not value_from"),
    ({"type": "credit", "below": "5.00 usd", "below_percent": 5}, "exactly one"),
    ({"type": "credit", "below_percent": 150}, "100"),
])
def test_bad_money_conditions_are_refused(condition: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        rule(condition)


def test_cost_rules_are_checked_for_what_cannot_be_priced() -> None:
    calendar = Rule.model_validate({"name": "r", "meter": METER, "window": "month",
                                    "condition": {"type": "threshold", "measure": "cost",
                                                  "value": "1.00 usd"}})
    assert any("billing_period" in i.message for i in kind_of(calendar).check(calendar))
    grouped = rule({"type": "threshold", "measure": "cost", "value": "1.00 usd"},
                   group_by=["model"])
    assert any("group_by" in i.message for i in kind_of(grouped).check(grouped))

"""What Stripe may answer about prices and credit, and what alertd makes of the odd answers.

A price object alertd cannot read is an :class:`UnsupportedPrice` that says which field is
wrong (never an exception that would stop the other customers' rules); a customer whose billing
could not be read, or who has no credit in a currency, is a :class:`BillingProblem` naming the
customer. ``period_at`` moves a billing period of any length to the instant asked. These were
branches of ``pricing.py`` and ``billing.py`` no test reached (coverage, December 2026).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alertd.billing import (
    BillingProblem,
    Credit,
    CustomerBilling,
    NoCredit,
    credit_in,
    item_for,
    period_at,
)
from alertd.model import Period
from alertd.pricing import PricePlan, UnsupportedPrice, parse_price
from tests.money.test_pricing import DOC_TIERS, metered


@pytest.mark.parametrize(("raw", "reason"), [
    ("price_x", "the price is not an object"),
    (metered(currency="USD", billing_scheme="per_unit"), "currency is 'USD'"),
    (metered(currency=None, billing_scheme="per_unit"), "currency is None"),
    (metered(billing_scheme="flat"), "billing_scheme 'flat' is not per_unit or tiered"),
    (metered(billing_scheme="tiered", tiers_mode="volume", tiers=["700", {"up_to": None}]),
     "tiers[0] is not an object"),
    (metered(billing_scheme="tiered", tiers_mode="volume",
             tiers=[{"up_to": "inf"}, {"up_to": None}]),
     "tiers[0].up_to is inf but it is not the last tier"),
    (metered(billing_scheme="tiered", tiers_mode="volume",
             tiers=[{"up_to": True}, {"up_to": None}]), "tiers[0].up_to is True"),
    (metered(billing_scheme="per_unit", transform_quantity=10),
     "transform_quantity is not an object"),
    (metered(billing_scheme="per_unit", transform_quantity={"divide_by": 10, "round": "near"}),
     "transform_quantity.round is 'near', not up or down"),
    (metered(billing_scheme="per_unit", unit_amount=True), "unit_amount_decimal is True"),
    (metered(billing_scheme="per_unit", unit_amount=1.5), "not an integer"),
    (metered(billing_scheme="per_unit", unit_amount_decimal=["1"]), "not a decimal string"),
    (metered(billing_scheme="per_unit", unit_amount_decimal="1" * 41), "not a decimal string"),
    (metered(billing_scheme="per_unit", unit_amount_decimal="-5"), "zero or more"),
    (metered(billing_scheme="tiered", tiers_mode="graduated",
             tiers=[{"up_to": 5, "flat_amount": -1}, {"up_to": None}]),
     "tiers[0].flat_amount_decimal is -1"),
], ids=["string", "upper-case currency", "no currency", "unknown scheme", "tier not object",
        "inf first", "boolean up_to", "transform not object", "round sideways",
        "boolean amount", "float amount", "list decimal", "41 digits", "negative unit",
        "negative flat"])
def test_a_price_alertd_cannot_read_says_which_field(raw: Any, reason: str) -> None:
    parsed = parse_price(raw)
    assert isinstance(parsed, UnsupportedPrice), parsed
    assert reason in parsed.reason, parsed.reason


def test_the_supported_shapes_name_themselves() -> None:
    shapes = [parse_price(metered(**fields)) for fields in (
        {"billing_scheme": "per_unit", "unit_amount": 5},
        {"billing_scheme": "per_unit", "unit_amount": 5,
         "transform_quantity": {"divide_by": 100, "round": "down"}},
        {"billing_scheme": "tiered", "tiers_mode": "volume", "tiers": DOC_TIERS})]
    assert [p.shape() for p in shapes if isinstance(p, PricePlan)] == [
        "per_unit", "per_unit, packages of 100 rounded down", "tiered volume"]


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12)
FIELDS = st.fixed_dictionaries({}, optional={
    "billing_scheme": st.sampled_from(["per_unit", "tiered"]) | JSON,
    "tiers_mode": st.sampled_from(["graduated", "volume"]) | JSON,
    "tiers": st.lists(st.fixed_dictionaries({}, optional={
        "up_to": st.none() | st.integers(-2, 50) | JSON,
        "unit_amount_decimal": st.text("0123456789.-eE", max_size=6) | JSON,
        "flat_amount": st.integers(-3, 9) | JSON}), max_size=4) | JSON,
    "unit_amount_decimal": st.text("0123456789.-eEinfNa", max_size=8) | JSON,
    "unit_amount": st.integers(-3, 10**6) | JSON,
    "transform_quantity": st.fixed_dictionaries({"divide_by": st.integers(-1, 9) | JSON,
                                                 "round": st.sampled_from(["up", "x"])}) | JSON,
    "currency": st.sampled_from(["usd", "jpy", "EUR"]) | JSON,
    "custom_unit_amount": JSON,
})


@settings(max_examples=300, deadline=None)
@given(FIELDS)
def test_any_price_answer_is_a_plan_or_a_reason_never_an_exception(
    fields: dict[str, Any]
) -> None:
    parsed = parse_price(metered(**fields))
    if isinstance(parsed, UnsupportedPrice):
        assert parsed.reason and parsed.id == "price_x" and parsed.meter == "mtr_1"
    else:
        assert parsed.unit >= 0 and all(t.unit >= 0 and t.flat >= 0 for t in parsed.tiers)


@pytest.mark.parametrize(("billing", "words"), [
    (None, "customer cus_1: no billing data was read"),
    (CustomerBilling(problem="Stripe answered 500 for its subscriptions"),
     "customer cus_1: Stripe answered 500 for its subscriptions"),
], ids=["not read", "read failed"])
def test_billing_that_was_not_read_names_the_customer(
    billing: CustomerBilling | None, words: str
) -> None:
    for problem in (lambda: item_for(billing, "cus_1", "mtr_1"),
                    lambda: credit_in(billing, "cus_1", "usd")):
        with pytest.raises(BillingProblem) as raised:
            problem()
        assert str(raised.value) == words
        assert not isinstance(raised.value, NoCredit)  # an error finding, not "no data"


def test_a_cost_without_a_meter_says_it_needs_one() -> None:
    with pytest.raises(BillingProblem, match="a cost needs the rule's meter"):
        item_for(CustomerBilling(), "cus_1", None)


def test_credit_is_found_by_currency_or_is_no_credit() -> None:
    eur = Credit("eur", Decimal("40"), Decimal("100"))
    billing = CustomerBilling(credit=(eur,))
    assert credit_in(billing, "cus_1", "eur") is eur
    with pytest.raises(NoCredit, match="customer cus_1 has no credit in USD"):
        credit_in(billing, "cus_1", "usd")


DAY, WEEK = 86400, 7 * 86400
START = 1_767_225_600  # 2026-01-01T00:00:00Z, a Thursday


@pytest.mark.parametrize(("length", "now", "expected"), [
    (WEEK, START + 3 * DAY, (START, START + WEEK)),            # inside: itself
    (WEEK, START + WEEK, (START + WEEK, START + 2 * WEEK)),    # the end is the next one's start
    (WEEK, START + 5 * WEEK + 1, (START + 5 * WEEK, START + 6 * WEEK)),
    (WEEK, START - 1, (START - WEEK, START)),                  # before: moved back
    (DAY, START - 10 * DAY + 5, (START - 10 * DAY, START - 9 * DAY)),
    (365 * DAY, START + 400 * DAY, (START + 365 * DAY, START + 730 * DAY)),
], ids=["inside", "at the end", "five weeks on", "just before", "days back", "a year on"])
def test_a_period_of_whole_lengths_moves_by_whole_lengths(
    length: int, now: int, expected: tuple[int, int]
) -> None:
    moved = period_at(Period(START, START + length), now)
    assert (moved.starts_at, moved.ends_at) == expected
    assert moved.contains(now)

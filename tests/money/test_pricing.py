"""Price arithmetic against worked examples in the shape of Stripe's pricing docs, and a property
test against a brute-force tier calculator that prices one unit at a time."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alertd.pricing import (
    Money,
    PricePlan,
    UnsupportedPrice,
    cost,
    cost_minor,
    format_money,
    parse_money,
    parse_price,
)


def metered(**fields: object) -> dict[str, object]:
    return {"id": "price_x", "currency": "usd",
            "recurring": {"usage_type": "metered", "meter": "mtr_1"}, **fields}


def plan(**fields: object) -> PricePlan:
    parsed = parse_price(metered(**fields))
    assert isinstance(parsed, PricePlan), parsed
    return parsed


# Tiers of the docs' tiered-pricing example: units 1-5 at $7, 6-10 at $6.50, 11+ at $6.
DOC_TIERS = [
    {"up_to": 5, "unit_amount_decimal": "700"},
    {"up_to": 10, "unit_amount_decimal": "650"},
    {"up_to": None, "unit_amount_decimal": "600"},
]


def test_graduated_prices_each_tier_at_its_own_rate() -> None:
    graduated = plan(billing_scheme="tiered", tiers_mode="graduated", tiers=DOC_TIERS)
    # 8 units: 5 × $7 + 3 × $6.50
    assert cost(graduated, Decimal(8)) == Decimal("54.50")
    # 12 units: 5 × $7 + 5 × $6.50 + 2 × $6
    assert cost(graduated, Decimal(12)) == Decimal("79.50")


def test_volume_prices_every_unit_at_the_tier_the_total_reaches() -> None:
    volume = plan(billing_scheme="tiered", tiers_mode="volume", tiers=DOC_TIERS)
    assert cost(volume, Decimal(8)) == Decimal("52.00")
    assert cost(volume, Decimal(5)) == Decimal("35.00")  # up_to is inclusive
    assert cost(volume, Decimal(11)) == Decimal("66.00")


def test_flat_amounts_per_tier() -> None:
    tiers = [
        {"up_to": 100, "unit_amount_decimal": "0", "flat_amount_decimal": "1000"},
        {"up_to": "inf", "unit_amount_decimal": "5", "flat_amount": 500},
    ]
    graduated = plan(billing_scheme="tiered", tiers_mode="graduated", tiers=tiers)
    volume = plan(billing_scheme="tiered", tiers_mode="volume", tiers=tiers)
    assert cost(graduated, Decimal(50)) == Decimal("10.00")
    # 100 free units for a $10 flat fee, then 5¢ each plus the second tier's $5 flat fee
    assert cost(graduated, Decimal(300)) == Decimal("25.00")
    assert cost(volume, Decimal(300)) == Decimal("20.00")


def test_package_pricing_via_transform_quantity() -> None:
    # $5 per package of 1,000 units, partial packages charged (round up) or not (round down)
    up = plan(billing_scheme="per_unit", unit_amount=500,
              transform_quantity={"divide_by": 1000, "round": "up"})
    down = plan(billing_scheme="per_unit", unit_amount=500,
                transform_quantity={"divide_by": 1000, "round": "down"})
    assert cost(up, Decimal(1001)) == Decimal("10.00")
    assert cost(down, Decimal(1001)) == Decimal("5.00")
    assert cost(up, Decimal(1000)) == Decimal("5.00")
    assert cost(down, Decimal(999)) == Decimal("0.00")


def test_sub_cent_unit_amounts_round_the_total_once() -> None:
    # 0.25¢ a token: 1,234,567 tokens = 3086.4175¢ → $30.86
    per_token = plan(billing_scheme="per_unit", unit_amount_decimal="0.25")
    assert cost_minor(per_token, Decimal(1234567)) == Decimal("308641.75")
    assert cost(per_token, Decimal(1234567)) == Decimal("3086.42")
    tiny = plan(billing_scheme="per_unit", unit_amount_decimal="0.000000000001")
    assert cost(tiny, Decimal(10) ** 11) == Decimal("0.00")


def test_zero_decimal_currency() -> None:
    yen = plan(billing_scheme="per_unit", unit_amount_decimal="1.5", currency="jpy")
    assert cost(yen, Decimal(3)) == Decimal("5")  # 4.5 yen rounds half up
    assert format_money(cost(yen, Decimal(1000)), "jpy") == "¥1,500"


def test_negative_totals_cost_nothing() -> None:
    per_unit = plan(billing_scheme="per_unit", unit_amount=10)
    assert cost(per_unit, Decimal(-5)) == Decimal("0.00")


@pytest.mark.parametrize(("fields", "reason"), [
    ({"billing_scheme": "tiered", "tiers_mode": "graduated", "tiers": DOC_TIERS,
      "transform_quantity": {"divide_by": 10, "round": "up"}}, "transform_quantity with tiers"),
    ({"billing_scheme": "tiered", "tiers_mode": "graduated"}, "needs its tiers"),
    ({"billing_scheme": "tiered", "tiers_mode": "stairs", "tiers": DOC_TIERS}, "stairs"),
    ({"billing_scheme": "tiered", "tiers_mode": "volume",
      "tiers": [{"up_to": 10}, {"up_to": 5}, {"up_to": None}]}, "tiers must rise"),
    ({"billing_scheme": "tiered", "tiers_mode": "volume",
      "tiers": [{"up_to": 10}]}, "last tier's up_to must be inf"),
    ({"billing_scheme": "per_unit", "unit_amount_decimal": "NaN"}, "finite"),
    ({"billing_scheme": "per_unit", "unit_amount_decimal": "12abc"}, "not a decimal"),
    ({"billing_scheme": "per_unit", "custom_unit_amount": {"preset": 1}}, "custom_unit_amount"),
    ({"billing_scheme": "per_unit", "transform_quantity": {"divide_by": 0, "round": "up"}},
     "divide_by"),
    ({"billing_scheme": "per_unit", "recurring": {"usage_type": "licensed"}}, "not a metered"),
])
def test_unsupported_shapes_say_why(fields: dict[str, object], reason: str) -> None:
    parsed = parse_price(metered(**fields))
    assert isinstance(parsed, UnsupportedPrice)
    assert reason in parsed.reason
    assert parsed.id == "price_x"


def test_money_parsing_and_formatting() -> None:
    assert parse_money("500.00 usd") == Money(Decimal("500.00"), "usd")
    assert parse_money("1,250 EUR") == Money(Decimal("1250"), "eur")
    for bad in ("500", "usd 500", "5.001 usd", "1.5 jpy", "x" * 100):
        with pytest.raises(ValueError):
            parse_money(bad)
    assert format_money(Decimal("4812.5"), "usd") == "$4,812.50"
    assert format_money(Decimal("1234"), "eur") == "€1,234.00"
    assert format_money(Decimal("1234"), "cad") == "1,234.00 CAD"
    assert format_money(Decimal("-3.456"), "kwd") == "-3.456 KWD"


# ---------------------------------------------------------------- property test


def brute_force_minor(tiers: list[tuple[int | None, int, int]], mode: str, units: int) -> int:
    """Independent of alertd: walk the units one by one and find each unit's tier."""
    def tier_of(unit: int) -> int:
        for index, (up_to, _, _) in enumerate(tiers):
            if up_to is None or unit <= up_to:
                return index
        raise AssertionError("the last tier is unbounded")

    if units <= 0:
        return 0
    if mode == "volume":
        index = tier_of(units)
        return units * tiers[index][1] + tiers[index][2]
    total = 0
    seen: set[int] = set()
    for unit in range(1, units + 1):
        index = tier_of(unit)
        total += tiers[index][1]
        if index not in seen:
            seen.add(index)
            total += tiers[index][2]
    return total


@st.composite
def tier_tables(draw: st.DrawFn) -> list[tuple[int | None, int, int]]:
    bounds = sorted(draw(st.sets(st.integers(1, 300), max_size=4)))
    amounts = st.integers(0, 5000)
    rows: list[tuple[int | None, int, int]] = [(b, draw(amounts), draw(amounts)) for b in bounds]
    return [*rows, (None, draw(amounts), draw(amounts))]


@settings(max_examples=200, deadline=None)
@given(tiers=tier_tables(), mode=st.sampled_from(["graduated", "volume"]),
       units=st.integers(0, 600))
def test_tiers_agree_with_a_brute_force_calculator(
    tiers: list[tuple[int | None, int, int]], mode: str, units: int
) -> None:
    raw = [{"up_to": up_to, "unit_amount": unit, "flat_amount_decimal": str(flat)}
           for up_to, unit, flat in tiers]
    priced = plan(billing_scheme="tiered", tiers_mode=mode, tiers=raw)
    assert cost_minor(priced, Decimal(units)) == brute_force_minor(tiers, mode, units)
    assert cost(priced, Decimal(units)) == Decimal(brute_force_minor(tiers, mode, units)) / 100

"""Stripe prices as arithmetic: what a period's usage costs, in ``Decimal``, never float.

Where it sits: :mod:`alertd.source.billing` reads each customer's subscription items and hands
every item's price object to :func:`parse_price`; the cost and credit conditions call
:func:`cost` on a billing period's total and format the result with :func:`format_money`.
Everything here is pure. The facts it relies on, with their sources, are in ``docs/pricing.md``.

Amounts inside a :class:`PricePlan` are in the currency's *minor* unit (cents), as Stripe's
``unit_amount_decimal`` and ``flat_amount_decimal`` are; :func:`cost` returns major units
(dollars) rounded to the currency's minor unit. Supported shapes (:data:`SUPPORTED_SHAPES`):

* ``per_unit``: quantity × ``unit_amount_decimal``, the quantity optionally transformed first by
  ``transform_quantity`` (divide by ``divide_by``, round ``up`` or ``down`` to a whole number:
  package pricing).
* ``tiered`` with ``tiers_mode: graduated``: each tier prices the units that fall in it
  (``(previous up_to, up_to]``), plus its flat amount when any unit falls in it.
* ``tiered`` with ``tiers_mode: volume``: the tier the whole quantity falls in prices every
  unit, plus that tier's flat amount.

The last tier's ``up_to`` is ``inf`` (``null`` in API responses). Anything else (a tiered price
with ``transform_quantity``, which Stripe does not allow either; ``custom_unit_amount``; tiers out
of order; a licensed rather than metered price) is an :class:`UnsupportedPrice` that names why:
the conditions turn it into an ``error`` finding, never a guessed amount. A quantity of zero
costs nothing (no unit falls in any tier); this is what alertd assumes, not a documented fact.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Literal

SUPPORTED_SHAPES = (
    "per_unit (with or without transform_quantity: divide_by, round up|down)",
    "tiered graduated (up_to ... inf, unit and flat amounts)",
    "tiered volume (up_to ... inf, unit and flat amounts)",
)

#: Currencies whose minor unit is not a hundredth (Stripe's zero- and three-decimal lists).
MINOR_DIGITS: Mapping[str, int] = {
    **dict.fromkeys(("bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf",
                     "ugx", "vnd", "vuv", "xaf", "xof", "xpf"), 0),
    **dict.fromkeys(("bhd", "jod", "kwd", "omr", "tnd"), 3),
}
#: Symbols that name one currency unambiguously enough to print alone; every other currency
#: is printed with its code (``1,234.00 CAD``), since ``$`` alone would not say which dollar.
SYMBOLS: Mapping[str, str] = {"usd": "$", "eur": "€", "gbp": "£", "jpy": "¥", "inr": "₹"}
#: How a total in minor units becomes a whole number of them. Not documented by Stripe for
#: fractional per-unit amounts; half-up is alertd's assumption (docs/pricing.md).
ROUNDING = ROUND_HALF_UP
#: Stripe's decimal amounts have at most 12 decimal places; a string longer than this is not one.
MAX_DECIMAL_CHARS = 40

_MONEY = re.compile(r"^\s*(-?[0-9][0-9_,]*(?:\.[0-9]+)?)\s+([A-Za-z]{3})\s*$")


def minor_digits(currency: str) -> int:
    """Decimal places of ``currency``'s minor unit (2 unless Stripe lists it otherwise)."""
    return MINOR_DIGITS.get(currency.lower(), 2)


@dataclass(frozen=True, slots=True)
class Money:
    """An amount in a currency's major unit (``Decimal("500.00")``, ``"usd"``)."""

    amount: Decimal
    currency: str

    def __str__(self) -> str:
        return format_money(self.amount, self.currency)


def parse_money(text: str) -> Money:
    """``"500.00 usd"`` → ``Money(Decimal("500.00"), "usd")``; ``ValueError`` otherwise."""
    match = _MONEY.match(text) if len(text) <= MAX_DECIMAL_CHARS else None
    if match is None:
        raise ValueError(f"{text!r} is not an amount with a currency (e.g. \"500.00 usd\")")
    amount = Decimal(match.group(1).replace(",", "").replace("_", ""))
    currency = match.group(2).lower()
    if -amount.as_tuple().exponent > minor_digits(currency):  # type: ignore[operator]
        raise ValueError(f"{text!r} has more decimals than {currency.upper()} has "
                         f"({minor_digits(currency)})")
    return Money(amount, currency)


def format_money(amount: Decimal, currency: str) -> str:
    """``$4,812.50``, ``€1,234.00``, ``¥1,234``, ``1,234.00 CAD``: grouped thousands, the
    currency's minor digits, a symbol only where it names one currency."""
    digits = minor_digits(currency)
    quantum = Decimal(1).scaleb(-digits)
    rounded = amount.quantize(quantum, rounding=ROUNDING)
    sign = "-" if rounded < 0 else ""
    body = f"{abs(rounded):,.{digits}f}"
    symbol = SYMBOLS.get(currency.lower())
    if symbol is not None:
        return f"{sign}{symbol}{body}"
    return f"{sign}{body} {currency.upper()}"


@dataclass(frozen=True, slots=True)
class Tier:
    """One tier: units up to and including ``up_to`` (``None``: no upper bound), amounts in
    minor units."""

    up_to: int | None
    unit: Decimal
    flat: Decimal


@dataclass(frozen=True, slots=True)
class PricePlan:
    """One metered Stripe price, reduced to what :func:`cost` needs."""

    id: str
    currency: str
    meter: str
    scheme: Literal["per_unit", "graduated", "volume"]
    unit: Decimal = Decimal(0)
    tiers: tuple[Tier, ...] = ()
    divide_by: int | None = None
    round_up: bool = True

    def shape(self) -> str:
        if self.scheme == "per_unit" and self.divide_by is not None:
            direction = "up" if self.round_up else "down"
            return f"per_unit, packages of {self.divide_by} rounded {direction}"
        return "per_unit" if self.scheme == "per_unit" else f"tiered {self.scheme}"


@dataclass(frozen=True, slots=True)
class UnsupportedPrice:
    """A price alertd will not put a number on, and why."""

    id: str
    meter: str | None
    reason: str


def _decimal(raw: Any, integer: Any, what: str) -> Decimal:
    """``*_decimal`` (a string of minor units) if present, else the integer field, else 0."""
    if raw is not None:
        if not isinstance(raw, str | int) or len(str(raw)) > MAX_DECIMAL_CHARS:
            raise ValueError(f"{what} is {raw!r}, not a decimal string")
        try:
            value = Decimal(str(raw))
        except InvalidOperation:
            raise ValueError(f"{what} is {raw!r}, not a decimal string") from None
    elif integer is None:
        return Decimal(0)
    elif isinstance(integer, int) and not isinstance(integer, bool):
        value = Decimal(integer)
    else:
        raise ValueError(f"{what} is {integer!r}, not an integer")
    if not value.is_finite() or value < 0:
        raise ValueError(f"{what} is {raw if raw is not None else integer!r}: not a finite "
                         f"amount of zero or more")
    return value


def _tiers(raw: Any) -> tuple[Tier, ...]:
    if not isinstance(raw, list) or not raw:
        raise ValueError("a tiered price needs its tiers (expand data.items.data.price.tiers)")
    tiers: list[Tier] = []
    previous = 0
    for index, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise ValueError(f"tiers[{index}] is not an object")
        up_to = entry.get("up_to")
        last = index == len(raw) - 1
        if up_to in (None, "inf"):
            if not last:
                raise ValueError(f"tiers[{index}].up_to is inf but it is not the last tier")
            bound = None
        elif isinstance(up_to, int) and not isinstance(up_to, bool) and up_to > previous:
            if last:
                raise ValueError("the last tier's up_to must be inf")
            bound = previous = up_to
        else:
            raise ValueError(f"tiers[{index}].up_to is {up_to!r}: tiers must rise")
        tiers.append(Tier(
            bound,
            _decimal(entry.get("unit_amount_decimal"), entry.get("unit_amount"),
                     f"tiers[{index}].unit_amount_decimal"),
            _decimal(entry.get("flat_amount_decimal"), entry.get("flat_amount"),
                     f"tiers[{index}].flat_amount_decimal"),
        ))
    return tuple(tiers)


def _transform(raw: Any) -> tuple[int | None, bool]:
    if raw is None:
        return None, True
    if not isinstance(raw, dict):
        raise ValueError("transform_quantity is not an object")
    divide_by, direction = raw.get("divide_by"), raw.get("round")
    if not isinstance(divide_by, int) or isinstance(divide_by, bool) or divide_by < 1:
        raise ValueError(f"transform_quantity.divide_by is {divide_by!r}, not a whole number")
    if direction not in ("up", "down"):
        raise ValueError(f"transform_quantity.round is {direction!r}, not up or down")
    return divide_by, direction == "up"


def parse_price(raw: Any) -> PricePlan | UnsupportedPrice:
    """A Stripe price object as a :class:`PricePlan`, or why alertd cannot price it."""
    if not isinstance(raw, dict):
        return UnsupportedPrice("?", None, "the price is not an object")
    price_id = str(raw.get("id") or "?")[:100]
    recurring_raw = raw.get("recurring")
    recurring: dict[str, Any] = recurring_raw if isinstance(recurring_raw, dict) else {}
    meter = recurring.get("meter")
    meter = meter if isinstance(meter, str) and meter else None
    try:
        return _plan(raw, price_id, meter, recurring)
    except ValueError as exc:
        return UnsupportedPrice(price_id, meter, str(exc))


def _plan(raw: dict[str, Any], price_id: str, meter: str | None,
          recurring: Mapping[str, Any]) -> PricePlan:
    if meter is None or recurring.get("usage_type", "metered") != "metered":
        raise ValueError("not a metered price with a billing meter (recurring.meter)")
    currency = raw.get("currency")
    if not isinstance(currency, str) or not re.fullmatch(r"[a-z]{3}", currency):
        raise ValueError(f"currency is {currency!r}")
    if raw.get("custom_unit_amount") is not None:
        raise ValueError("custom_unit_amount (pay what you want) is not supported")
    divide_by, round_up = _transform(raw.get("transform_quantity"))
    scheme = raw.get("billing_scheme")
    if scheme == "per_unit":
        unit = _decimal(raw.get("unit_amount_decimal"), raw.get("unit_amount"),
                        "unit_amount_decimal")
        return PricePlan(price_id, currency, meter, "per_unit", unit=unit,
                         divide_by=divide_by, round_up=round_up)
    if scheme != "tiered":
        raise ValueError(f"billing_scheme {scheme!r} is not per_unit or tiered")
    if divide_by is not None:
        raise ValueError("transform_quantity with tiers (Stripe does not combine them)")
    mode = raw.get("tiers_mode")
    if mode not in ("graduated", "volume"):
        raise ValueError(f"tiers_mode {mode!r} is not graduated or volume")
    return PricePlan(price_id, currency, meter, mode, tiers=_tiers(raw.get("tiers")))


def cost_minor(plan: PricePlan, quantity: Decimal) -> Decimal:
    """What ``quantity`` units cost under ``plan``, in minor units, not yet rounded.

    Negative totals (corrections exceeding usage) cost nothing: Stripe does not invoice a
    negative usage line. """
    if quantity <= 0:
        return Decimal(0)
    if plan.scheme == "per_unit":
        if plan.divide_by is not None:
            rounding = ROUND_CEILING if plan.round_up else ROUND_FLOOR
            quantity = (quantity / plan.divide_by).to_integral_value(rounding=rounding)
        return quantity * plan.unit
    if plan.scheme == "volume":
        tier = next(t for t in plan.tiers if t.up_to is None or quantity <= t.up_to)
        return quantity * tier.unit + tier.flat
    return _graduated(plan.tiers, quantity)


def _graduated(tiers: Sequence[Tier], quantity: Decimal) -> Decimal:
    total = Decimal(0)
    floor = Decimal(0)
    for tier in tiers:
        ceiling = quantity if tier.up_to is None else min(quantity, Decimal(tier.up_to))
        if ceiling <= floor:
            break
        total += (ceiling - floor) * tier.unit + tier.flat
        floor = ceiling
    return total


def cost(plan: PricePlan, quantity: Decimal) -> Decimal:
    """What ``quantity`` costs in ``plan``'s major unit, rounded to the currency's minor unit
    (the total in minor units is rounded to a whole number of them, as invoices are)."""
    minor = cost_minor(plan, quantity).to_integral_value(rounding=ROUNDING)
    return minor.scaleb(-minor_digits(plan.currency))


def quantity_of(value: float) -> Decimal:
    """A meter total (a float from JSON) as a ``Decimal`` with exactly its printed digits."""
    return Decimal(repr(value))

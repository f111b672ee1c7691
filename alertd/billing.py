"""What alertd knows about a customer's billing: priced subscription items, their billing
periods, and credit — plus the pure arithmetic the money conditions share.

Where it sits: :mod:`alertd.source.billing` builds a :class:`CustomerBilling` per customer (on
the general budget, cached for ``stripe.prices_refresh``); the engine attaches it to the
:class:`~alertd.model.Customer` it hands to evaluators (``customer.billing``), so the cost and
credit conditions stay pure functions of (rule, series, customer, now).

A billing period is the subscription *item's* ``current_period_start``/``current_period_end``
(Stripe moved them from the subscription to its items in ``2025-03-31.basil``; alertd reads the
item's and falls back to the subscription's for older API versions).

A cost summed over a customer's meters (:func:`summed_items`, :func:`shared_period`) takes
every metered price of its active subscriptions, one per meter, in one currency and one
billing period, or says why not.

Credit: the credit balance summary's ``available_balance`` moves only when an invoice is
finalised, so the *ongoing* balance is ``available − priced usage of the current billing period``
(usage not yet invoiced), per currency. ``granted`` is the sum of the customer's credit grants
that are in effect (not voided, not expired), the base ``below_percent`` is measured against.
"""

from __future__ import annotations

import calendar
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from alertd.model import Bucket, Period
from alertd.pricing import (
    SUPPORTED_SHAPES,
    PricePlan,
    UnsupportedPrice,
    cost,
    format_money,
    quantity_of,
)


@dataclass(frozen=True, slots=True)
class BillingItem:
    """One subscription item with a metered price: its price and its current period."""

    item: str
    price: PricePlan | UnsupportedPrice
    period: Period

    @property
    def meter(self) -> str | None:
        return self.price.meter


@dataclass(frozen=True, slots=True)
class Credit:
    """A customer's credit in one currency, in major units."""

    currency: str
    available: Decimal
    granted: Decimal


@dataclass(frozen=True, slots=True)
class CustomerBilling:
    """A customer's priced items and credit; ``problem`` says why it could not be read."""

    items: tuple[BillingItem, ...] = ()
    credit: tuple[Credit, ...] = ()
    problem: str | None = None

    def items_for(self, meter: str) -> list[BillingItem]:
        return [item for item in self.items if item.meter == meter]


@dataclass(frozen=True, slots=True)
class Priced:
    """A meter's usage of its billing period so far, and what it costs."""

    item: BillingItem
    plan: PricePlan
    quantity: Decimal
    amount: Decimal


class BillingProblem(Exception):
    """Why a cost cannot be stated for a (customer, meter); becomes an ``error`` finding."""


class NoCredit(BillingProblem):
    """The customer has no credit in the price's currency: nothing to burn down, so the
    finding is ``nodata`` (neither fires nor resolves), not an error."""


def item_for(billing: CustomerBilling | None, customer: str, meter: str | None,
             currency: str | None = None) -> tuple[BillingItem, PricePlan]:
    """The one priced item of ``meter`` for ``customer``, or :class:`BillingProblem` naming
    customer, meter and price."""
    if billing is None:
        raise BillingProblem(f"customer {customer}: no billing data was read")
    if billing.problem is not None:
        raise BillingProblem(f"customer {customer}: {billing.problem}")
    if meter is None:
        raise BillingProblem("a cost needs the rule's meter (one price per meter)")
    items = billing.items_for(meter)
    if not items:
        raise BillingProblem(f"customer {customer} has no active subscription item with a "
                             f"price for meter {meter}: no amount is guessed")
    if len(items) > 1:
        ids = ", ".join(item.price.id for item in items)
        raise BillingProblem(f"customer {customer} has {len(items)} prices for meter {meter} "
                             f"({ids}): alertd prices a meter with one price")
    item = items[0]
    if isinstance(item.price, UnsupportedPrice):
        raise BillingProblem(f"customer {customer}, meter {meter}, price {item.price.id}: "
                             f"unsupported price shape: {item.price.reason} (supported: "
                             f"{'; '.join(SUPPORTED_SHAPES)})")
    if currency is not None and item.price.currency != currency:
        raise BillingProblem(
            f"customer {customer}, meter {meter}, price {item.price.id} is in "
            f"{item.price.currency.upper()}, the rule in {currency.upper()}: not converted")
    return item, item.price


#: How many of a customer's prices a summed cost's error message names before "and N more".
NAMED = 5


def _named(parts: Sequence[str]) -> str:
    shown = "; ".join(parts[:NAMED])
    return shown if len(parts) <= NAMED else f"{shown} and {len(parts) - NAMED} more"


def summed_items(billing: CustomerBilling | None, customer: str,
                 currency: str | None = None) -> list[tuple[BillingItem, PricePlan]]:
    """Every metered price of ``customer``'s active subscriptions (one per meter, sorted by
    meter), for a cost summed over the customer's meters; or :class:`BillingProblem` naming
    customer, meter and price when the sum cannot be stated: no metered price, a price shape
    alertd does not support, two prices for one meter, prices in several currencies or in
    another currency than the rule's. Items whose price is not metered (licensed fees) are
    not usage and are left out."""
    if billing is None:
        raise BillingProblem(f"customer {customer}: no billing data was read")
    if billing.problem is not None:
        raise BillingProblem(f"customer {customer}: {billing.problem}")
    metered = sorted((item for item in billing.items if item.meter is not None),
                     key=lambda item: (str(item.meter), item.price.id))
    if not metered:
        raise BillingProblem(f"customer {customer} has no active subscription item with a "
                             f"metered price: no amount is guessed")
    odd = [f"meter {item.meter}, price {item.price.id}: {item.price.reason}"
           for item in metered if isinstance(item.price, UnsupportedPrice)]
    if odd:
        raise BillingProblem(f"customer {customer}: unsupported price shape ({_named(odd)}); "
                             f"supported: {'; '.join(SUPPORTED_SHAPES)}")
    by_meter: dict[str, list[BillingItem]] = {}
    for item in metered:
        by_meter.setdefault(str(item.meter), []).append(item)
    for meter, items in by_meter.items():
        if len(items) > 1:
            ids = ", ".join(item.price.id for item in items)
            raise BillingProblem(f"customer {customer} has {len(items)} prices for meter "
                                 f"{meter} ({ids}): alertd prices a meter with one price")
    plans = [(item, item.price) for item in metered if isinstance(item.price, PricePlan)]
    currencies = sorted({plan.currency for _, plan in plans})
    if len(currencies) > 1:
        each = [f"meter {plan.meter}: price {plan.id} in {plan.currency.upper()}"
                for _, plan in plans]
        raise BillingProblem(f"customer {customer}'s metered prices are in "
                             f"{len(currencies)} currencies ({_named(each)}): one sum cannot be "
                             f"stated, amounts are not converted")
    if currency is not None and currencies[0] != currency:
        each = [f"meter {plan.meter}: price {plan.id}" for _, plan in plans]
        raise BillingProblem(f"customer {customer}'s metered prices are in "
                             f"{currencies[0].upper()}, the rule in {currency.upper()}: not "
                             f"converted ({_named(each)})")
    return plans


def shared_period(items: Sequence[BillingItem], customer: str, now: int) -> Period:
    """The one billing period containing ``now`` of all ``items``, or :class:`BillingProblem`
    when they are on different periods (subscriptions with different anchors: a summed cost
    of one period cannot be stated)."""
    periods = {period_at(item.period, now) for item in items}
    if len(periods) > 1:
        each = [f"{item.item} ({item.price.id}) from {_day(period_at(item.period, now))}"
                for item in items]
        raise BillingProblem(f"customer {customer}'s metered prices are on different billing "
                             f"periods ({_named(each)}): a summed cost needs one period")
    return periods.pop()


def _day(period: Period) -> str:
    return datetime.fromtimestamp(period.starts_at, UTC).strftime("%Y-%m-%d")


def _add_months(instant: int, months: int) -> int:
    at = datetime.fromtimestamp(instant, UTC)
    index = at.year * 12 + at.month - 1 + months
    year, month = divmod(index, 12)
    day = min(at.day, calendar.monthrange(year, month + 1)[1])
    return int(at.replace(year=year, month=month + 1, day=day).timestamp())


def period_at(period: Period, now: int) -> Period:
    """The billing period containing ``now``, from an item's current period: itself, or the
    same anchor moved by whole months (a period of 28–31 days) or whole lengths (any other),
    for ``--at``/backtest instants and for a renewal since the last refresh.

    Stripe clamps an anchor on the 29th–31st to a shorter month's last day and returns to the
    anchor day after; moving from a clamped period start keeps the clamped day (documented as
    an approximation in docs/pricing.md)."""
    if period.contains(now):
        return period
    length = period.ends_at - period.starts_at
    if 28 * 86400 <= length <= 31 * 86400:
        months = ((datetime.fromtimestamp(now, UTC).year * 12
                   + datetime.fromtimestamp(now, UTC).month)
                  - (datetime.fromtimestamp(period.starts_at, UTC).year * 12
                     + datetime.fromtimestamp(period.starts_at, UTC).month))
        for shift in (months - 1, months, months + 1):
            start, end = _add_months(period.starts_at, shift), _add_months(period.starts_at,
                                                                          shift + 1)
            if start <= now < end:
                return Period(start, end)
    steps = (now - period.starts_at) // length
    start = period.starts_at + steps * length
    return Period(start, start + length)


def period_total(buckets: Sequence[Bucket], period: Period) -> tuple[float, bool]:
    """The usage of the buckets that overlap ``period``, and whether all of them are complete.

    Usage is read in hour buckets, so a period that starts mid-hour counts its first hour
    whole (Stripe's own periods start at the subscription's anchor second)."""
    inside = [b for b in buckets
              if b.ends_at > period.starts_at and b.starts_at < period.ends_at]
    return sum(b.value for b in inside), all(b.complete for b in inside)


def priced(item: BillingItem, plan: PricePlan, quantity: float) -> Priced:
    amount_of = quantity_of(quantity)
    return Priced(item, plan, amount_of, cost(plan, amount_of))


def money(amount: Decimal, currency: str) -> str:
    return format_money(amount, currency)


def credit_in(billing: CustomerBilling | None, customer: str, currency: str) -> Credit:
    """The customer's credit in ``currency``, or :class:`BillingProblem`."""
    if billing is None or billing.problem is not None:
        why = "no billing data was read" if billing is None else billing.problem
        raise BillingProblem(f"customer {customer}: {why}")
    for credit in billing.credit:
        if credit.currency == currency:
            return credit
    raise NoCredit(f"customer {customer} has no credit in {currency.upper()} "
                         f"(no credit grant in that currency)")

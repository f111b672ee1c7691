"""Usage in money and over billing periods: what ``threshold`` and ``forecast`` do with
``measure: cost`` or ``window: billing_period``, and what ``credit`` shares with them.

Where it sits: the threshold and forecast kinds hand such rules here (``needs`` and
``evaluate``); the credit kind uses :func:`billing_need` and :func:`period_usage`. Everything is
pure: the customer's prices, periods and credit arrive on ``customer.billing``, attached by the
engine from :mod:`alertd.source.billing`.

* The judged period is the priced subscription item's own current period
  (``current_period_start``/``_end``), never a calendar month; tiers apply to the period's
  total, as the invoice will. Usage is read in UTC hour buckets over the last
  :data:`LOOKBACK` (the longest monthly period and a run-rate window), one request like any
  rule's, shared with other rules of the same meter by the planner.
* A cost ``value``/level is a string with a currency (``"500.00 usd"``); the price must be in
  that currency. No price for the meter, several prices, a price in another currency, an
  unsupported price shape, or billing that could not be read: an ``error`` finding naming the
  customer, meter and price, never a guessed amount.
* ``now`` outside the item's current period (``--at``, backtest, or a renewal since the last
  refresh): the period of the same anchor that contains ``now`` (:func:`~alertd.billing.period_at`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from alertd.billing import BillingItem, BillingProblem, item_for, period_at, period_total
from alertd.calendar import floor
from alertd.conditions.series import data_need, finding, local_date, number
from alertd.model import Customer, DataNeed, Finding, Period, Series
from alertd.pricing import Money, PricePlan, cost, format_money, parse_money, quantity_of

if TYPE_CHECKING:
    from alertd.rules.schema import Rule

#: How far back a billing-period rule reads: a 31-day period plus a week of run rate.
LOOKBACK = 38 * 86400


def split_money(data: Any, keys: tuple[str, ...] = ("value",)) -> Any:
    """For ``measure: cost``, move money strings out of the numeric fields into ``cost_*``
    fields (the numeric fields keep their float type for usage rules)."""
    if not isinstance(data, dict) or data.get("measure") != "cost":
        return data
    data = dict(data)
    for key in keys:
        if data.get(key) is not None:
            data[f"cost_{key}"] = parse_money(_money_text(data.pop(key), key))
    if isinstance(data.get("levels"), dict):
        data["cost_levels"] = {name: parse_money(_money_text(raw, f"levels.{name}"))
                               for name, raw in data.pop("levels").items()}
    return data


def _money_text(raw: Any, key: str) -> str:
    if not isinstance(raw, str):
        raise ValueError(f"{key}: with measure: cost give an amount and a currency as a "
                         f"string, e.g. \"500.00 usd\" (got {raw!r})")
    return raw


def one_currency(amounts: list[Money]) -> str:
    currencies = {money.currency for money in amounts}
    if len(currencies) != 1:
        raise ValueError("all amounts of a cost condition must be in one currency")
    return currencies.pop()


def wants_billing(rule: Rule) -> bool:
    """Whether ``rule`` is judged on billing data (the engine attaches it for these)."""
    return rule.billing_period or getattr(rule.condition, "measure", "usage") == "cost" \
        or rule.condition.type == "credit"


def billing_need(rule: Rule, customer: str, now: int) -> DataNeed:
    """Hour buckets (UTC) over the last :data:`LOOKBACK`: any billing period containing
    ``now`` and the run rate before it."""
    return data_need(rule, customer, now, floor(now - LOOKBACK, "hour", "UTC"), "hour")


@dataclass(frozen=True, slots=True)
class PeriodUsage:
    """A meter's usage in its billing period so far, and (with a plan) its cost."""

    item: BillingItem
    plan: PricePlan
    period: Period
    quantity: float
    complete: bool

    def amount(self, quantity: float | None = None) -> Decimal:
        return cost(self.plan, quantity_of(self.quantity if quantity is None else quantity))

    def money(self, amount: Decimal) -> str:
        return format_money(amount, self.plan.currency)

    def key(self) -> str:
        return f"billing:{self.period.starts_at}"

    def describe(self) -> str:
        return (f"in the billing period {local_date(self.period.starts_at, 'UTC')} to "
                f"{local_date(self.period.ends_at, 'UTC')}")

    def details(self) -> dict[str, Any]:
        return {"price": self.plan.id, "currency": self.plan.currency,
                "quantity": self.quantity, "period_start": self.period.starts_at,
                "period_end": self.period.ends_at, "subscription_item": self.item.item}


class NotJudged(Exception):
    """A finding that is not a verdict: ``error`` (billing problem) or ``nodata``."""

    def __init__(self, state: str, message: str) -> None:
        super().__init__(message)
        self.state = state
        self.message = message


def period_usage(rule: Rule, series: Series, customer: Customer, now: int,
                 currency: str | None = None) -> PeriodUsage:
    """The usage of ``series`` in the billing period of ``rule.meter``'s priced item."""
    try:
        item, plan = item_for(customer.billing, customer.id, rule.meter, currency)
    except BillingProblem as exc:
        raise NotJudged("error", str(exc)) from None
    period = period_at(item.period, now)
    quantity, complete = period_total(series.buckets, period)
    return PeriodUsage(item, plan, period, quantity, complete)


def not_judged(rule: Rule, series: Series, now: int, exc: NotJudged) -> Finding:
    window = Period(now, now + 1)
    return finding(rule, series, window, state=exc.state, message=exc.message,  # type: ignore[arg-type]
                   period_key="billing")


def rate(series: Series, now: int, window: float) -> float:
    """Usage per second over the complete hour buckets of the last ``window`` seconds."""
    recent = [b for b in series.buckets if b.complete and b.starts_at >= now - window]
    span = sum(b.ends_at - b.starts_at for b in recent)
    return sum(b.value for b in recent) / span if span else 0.0


def quantity_reaching(usage: PeriodUsage, amount: Decimal) -> float | None:
    """The smallest period total (to a unit) whose cost exceeds ``amount``; ``None`` when no
    total below a trillion units does. Cost never falls as usage grows, so bisection holds."""
    low, high = 0.0, 1e12
    if usage.amount(high) <= amount:
        return None
    for _ in range(60):
        middle = (low + high) / 2
        if usage.amount(middle) > amount:
            high = middle
        else:
            low = middle
        if high - low < 0.5:
            break
    return high


def named_bounds(levels: Mapping[str, Money] | None, value: Money | None,
                 severity: str) -> list[tuple[str, Money]]:
    """Cost bounds, least severe first."""
    if levels:
        return sorted(levels.items(), key=lambda kv: kv[1].amount)
    assert value is not None
    return [(severity, value)]


def amount_number(amount: Decimal) -> float:
    return float(amount)


__all__ = ["LOOKBACK", "NotJudged", "PeriodUsage", "billing_need", "named_bounds",
           "not_judged", "number", "period_usage", "quantity_reaching", "rate",
           "split_money", "wants_billing"]

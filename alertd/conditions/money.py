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
* A cost rule without a ``meter`` is summed over the customer's meters (:func:`sums_meters`):
  every metered price of its active subscriptions, each applied (tiers and all) to its own
  meter's period total, then added up, as the invoice adds its lines. The engine reads one
  need per priced meter (:func:`meter_needs`, folded by the planner into the customer's
  request) and hands the evaluator a :class:`SummedSeries` carrying each meter's buckets.
  Prices in several currencies, an unsupported shape on any of them, two prices for one
  meter, or items on different billing periods: an ``error`` finding naming them (no partial
  sum is ever stated).
* ``now`` outside the item's current period (``--at``, backtest, or a renewal since the last
  refresh): the period of the same anchor that contains ``now`` (:func:`~alertd.billing.period_at`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any, overload

from alertd.billing import (
    BillingItem,
    BillingProblem,
    item_for,
    period_at,
    period_total,
    shared_period,
    summed_items,
)
from alertd.calendar import floor
from alertd.conditions.series import data_need, finding, local_date, number
from alertd.model import Bucket, Customer, DataNeed, Finding, Period, Series, SeriesKey
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


def wants_credit(rule: Rule) -> bool:
    """Whether ``rule`` also needs the customer's credit balance and grants."""
    return rule.condition.type == "credit"


def billing_need(rule: Rule, customer: str, now: int) -> DataNeed:
    """Hour buckets (UTC) over the last :data:`LOOKBACK`: any billing period containing
    ``now`` and the run rate before it."""
    return data_need(rule, customer, now, floor(now - LOOKBACK, "hour", "UTC"), "hour")


@dataclass(frozen=True, slots=True)
class SummedSeries(Series):
    """The series of a cost summed over a customer's meters: ``buckets`` are the hourly usage of
    all of them added up (for charts and the recent-usage table), ``parts`` each meter's own
    buckets, which are what is priced (each price applies to its own meter's total)."""

    parts: Mapping[str, Sequence[Bucket]] = field(default_factory=dict)


class AddedBuckets(Sequence[Bucket]):
    """The buckets of several series over the same slots, added up slot by slot, each made
    only when read: a summed cost prices each meter's own buckets, so these (for charts and
    the recent-usage table) are mostly never read, and a backtest builds a series per instant."""

    def __init__(self, columns: Sequence[Sequence[Bucket]]) -> None:
        lengths = {len(column) for column in columns}
        if len(lengths) > 1:
            raise ValueError(f"series of different lengths cannot be added: {sorted(lengths)}")
        self._columns = columns
        self._length = lengths.pop() if lengths else 0

    def __len__(self) -> int:
        return self._length

    @overload
    def __getitem__(self, index: int) -> Bucket: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[Bucket, ...]: ...

    def __getitem__(self, index: int | slice) -> Bucket | tuple[Bucket, ...]:
        if isinstance(index, slice):
            return tuple(self[i] for i in range(*index.indices(self._length)))
        slot = [column[index] for column in self._columns]
        return Bucket(slot[0].starts_at, slot[0].ends_at, sum(b.value for b in slot),
                      all(b.complete for b in slot))


def summed_series(key: SeriesKey, parts: Mapping[str, Series]) -> SummedSeries:
    """One :class:`SummedSeries` from each meter's series (same slots: one need template)."""
    meters = sorted(parts)
    known = [at for at in (parts[m].refreshed_at for m in meters) if at is not None]
    first = parts[meters[0]] if meters else None
    return SummedSeries(
        key=key, meter=None, dimensions=(),
        granularity=first.granularity if first else "hour",
        timezone=first.timezone if first else "UTC",
        buckets=AddedBuckets([parts[m].buckets for m in meters]),
        refreshed_at=min(known) if known else None,
        parts={m: parts[m].buckets for m in meters})


def sums_meters(rule: Rule) -> bool:
    """Whether ``rule`` is a cost summed over each customer's metered prices (a cost rule
    without a ``meter``): the engine reads one need per priced meter (:func:`meter_needs`)."""
    return getattr(rule.condition, "measure", "usage") == "cost" and rule.meter is None


def rule_currency(rule: Rule) -> str | None:
    """The currency of a cost rule's amounts (``None`` for usage and credit rules)."""
    condition = rule.condition
    value = getattr(condition, "cost_value", None)
    if value is not None:
        return str(value.currency)
    levels = getattr(condition, "cost_levels", None)
    return str(next(iter(levels.values())).currency) if levels else None


def priced_meters(rule: Rule, customer: Customer) -> tuple[str, ...]:
    """The meters a summed cost rule reads for ``customer``: those it has a metered price
    for, sorted; none when the sum cannot be stated (a billing problem, which the evaluator
    reports without any usage being read)."""
    try:
        items = summed_items(customer.billing, customer.id, rule_currency(rule))
    except BillingProblem:
        return ()
    return tuple(plan.meter for _, plan in items)


def per_meter(need: DataNeed, meters: Sequence[str]) -> tuple[DataNeed, ...]:
    """``need`` once for each of ``meters`` (a summed rule's need has no meter of its own)."""
    return tuple(replace(need, spec=replace(need.spec, meter=meter)) for meter in meters)


def meter_needs(rule: Rule, customer: Customer, now: int) -> tuple[DataNeed, ...]:
    """A summed cost rule's needs for ``customer``: its hourly need once per priced meter
    (:func:`priced_meters`), each the very need a cost rule of that one meter has, so the
    planner folds them into the customer's request (up to five meters in one) and shares
    them with other rules of those meters."""
    return per_meter(billing_need(rule, customer.id, now), priced_meters(rule, customer))


@dataclass(frozen=True, slots=True)
class Line:
    """One priced meter of a period: its subscription item, price and usage so far, and the
    buckets its run rate is measured on."""

    item: BillingItem
    plan: PricePlan
    quantity: float
    buckets: Sequence[Bucket]


@dataclass(frozen=True, slots=True)
class PeriodUsage:
    """The usage of one meter, or of each of a customer's meters, in the billing period so far,
    and what it costs: each price applied to its own meter's period total, then added up."""

    lines: tuple[Line, ...]
    period: Period
    complete: bool

    @property
    def currency(self) -> str:
        return self.lines[0].plan.currency

    @property
    def quantity(self) -> float:
        return sum(line.quantity for line in self.lines)

    def amount(self, quantities: Sequence[float] | None = None) -> Decimal:
        """What the period costs at ``quantities`` (one per line; default: the usage so far)."""
        totals = [line.quantity for line in self.lines] if quantities is None else quantities
        return sum((cost(line.plan, quantity_of(total))
                    for line, total in zip(self.lines, totals, strict=True)), Decimal(0))

    def amount_at(self, rates: Sequence[float], seconds: float) -> Decimal:
        """The cost once each line has grown at its rate (units per second) for ``seconds``."""
        return self.amount([line.quantity + max(r, 0.0) * seconds
                            for line, r in zip(self.lines, rates, strict=True)])

    def rates(self, now: int, window: float) -> list[float]:
        """Each line's run rate over the complete hour buckets of the last ``window``."""
        return [rate_of(line.buckets, now, window) for line in self.lines]

    def money(self, amount: Decimal) -> str:
        return format_money(amount, self.currency)

    def key(self) -> str:
        return f"billing:{self.period.starts_at}"

    def describe(self) -> str:
        meters = f" ({len(self.lines)} meters)" if len(self.lines) > 1 else ""
        return (f"in the billing period {local_date(self.period.starts_at, 'UTC')} to "
                f"{local_date(self.period.ends_at, 'UTC')}{meters}")

    def details(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "price": ",".join(line.plan.id for line in self.lines), "currency": self.currency,
            "quantity": self.quantity, "period_start": self.period.starts_at,
            "period_end": self.period.ends_at,
            "subscription_item": ",".join(line.item.item for line in self.lines)}
        if len(self.lines) > 1:
            found["meters"] = {line.plan.meter: {"price": line.plan.id,
                                                 "quantity": line.quantity,
                                                 "amount": str(self.amount_of(line))}
                               for line in self.lines}
        return found

    def amount_of(self, line: Line) -> Decimal:
        return cost(line.plan, quantity_of(line.quantity))


class NotJudged(Exception):
    """A finding that is not a verdict: ``error`` (billing problem) or ``nodata``."""

    def __init__(self, state: str, message: str) -> None:
        super().__init__(message)
        self.state = state
        self.message = message


def period_usage(rule: Rule, series: Series, customer: Customer, now: int,
                 currency: str | None = None) -> PeriodUsage:
    """The usage of ``series`` in the billing period of ``rule.meter``'s priced item, or of
    every metered price of the customer for a summed cost (:func:`sums_meters`)."""
    try:
        if sums_meters(rule):
            return _summed_usage(series, customer, now, currency)
        item, plan = item_for(customer.billing, customer.id, rule.meter, currency)
    except BillingProblem as exc:
        raise NotJudged("error", str(exc)) from None
    period = period_at(item.period, now)
    quantity, complete = period_total(series.buckets, period)
    return PeriodUsage((Line(item, plan, quantity, series.buckets),), period, complete)


def _summed_usage(series: Series, customer: Customer, now: int,
                  currency: str | None) -> PeriodUsage:
    items = summed_items(customer.billing, customer.id, currency)
    period = shared_period([item for item, _ in items], customer.id, now)
    parts = series.parts if isinstance(series, SummedSeries) else {}
    lines, complete = [], True
    for item, plan in items:
        buckets = parts.get(plan.meter)
        if buckets is None:
            raise BillingProblem(f"customer {customer.id}, meter {plan.meter}, price "
                                 f"{plan.id}: the meter's usage was not read (a summed cost "
                                 f"needs each meter's own usage)")
        quantity, whole = period_total(buckets, period)
        lines.append(Line(item, plan, quantity, buckets))
        complete = complete and whole
    return PeriodUsage(tuple(lines), period, complete)


def billing_period_at(rule: Rule, customer: Customer, now: int) -> Period | None:
    """The billing period ``rule`` judges ``customer`` over at ``now`` (its meter's item's, or
    the one all its metered prices share for a summed cost); ``None`` when there is none to
    judge (a billing problem, which the evaluator reports)."""
    try:
        if sums_meters(rule):
            items = summed_items(customer.billing, customer.id, rule_currency(rule))
            return shared_period([item for item, _ in items], customer.id, now)
        item, _ = item_for(customer.billing, customer.id, rule.meter, rule_currency(rule))
    except BillingProblem:
        return None
    return period_at(item.period, now)


def not_judged(rule: Rule, series: Series, now: int, exc: NotJudged) -> Finding:
    window = Period(now, now + 1)
    return finding(rule, series, window, state=exc.state, message=exc.message,  # type: ignore[arg-type]
                   period_key="billing")


def rate(series: Series, now: int, window: float) -> float:
    """Usage per second over the complete hour buckets of the last ``window`` seconds."""
    return rate_of(series.buckets, now, window)


def rate_of(buckets: Sequence[Bucket], now: int, window: float) -> float:
    recent = [b for b in buckets if b.complete and b.starts_at >= now - window]
    span = sum(b.ends_at - b.starts_at for b in recent)
    return sum(b.value for b in recent) / span if span else 0.0


def reaching_at(usage: PeriodUsage, rates: Sequence[float], as_of: int,
                amount: Decimal) -> int | None:
    """The first second at which the period's cost exceeds ``amount`` with each line growing
    at its rate from ``as_of``: ``as_of`` when the usage so far already does, ``None`` when
    not before the period ends. Cost never falls as usage grows, so bisection holds."""
    if usage.amount() > amount:
        return as_of
    last = usage.period.ends_at - 1
    if last <= as_of or usage.amount_at(rates, last - as_of) <= amount:
        return None
    low, high = as_of, last  # amount_at(low) <= amount < amount_at(high)
    while high - low > 1:
        middle = (low + high) // 2
        if usage.amount_at(rates, middle - as_of) > amount:
            high = middle
        else:
            low = middle
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


__all__ = ["LOOKBACK", "Line", "NotJudged", "PeriodUsage", "SummedSeries", "billing_need",
           "billing_period_at",
           "meter_needs", "named_bounds", "not_judged", "number", "per_meter", "period_usage",
           "priced_meters", "rate", "reaching_at", "rule_currency", "split_money",
           "summed_series", "sums_meters", "wants_billing"]

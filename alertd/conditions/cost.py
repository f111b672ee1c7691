"""``threshold`` and ``forecast`` over a billing period: ``measure: cost`` (money) or usage with
``window: billing_period``.

Where it sits: :mod:`alertd.conditions.threshold` and :mod:`alertd.conditions.forecast` hand
rules that :func:`~alertd.conditions.money.wants_billing` here; the period, prices and their
problems come from :mod:`alertd.conditions.money`. Pure.

* threshold: the period-to-date total (priced as the invoice will price it, tiers on the
  total) against ``value`` or ``levels`` (the most severe level crossed names the finding's
  level). Upper bounds only (``>``, ``>=``): cost only grows within a period.
* forecast: ``projected = to_date + rate × remaining`` in units, where ``rate`` is the usage per
  second of the complete hour buckets of the last ``rate_window``, then priced; the finding's
  ``projected`` is the projected invoice amount, ``details["crosses_at"]`` the UTC-or-rule-zone
  date the budget is (or was) crossed. No verdict before ``min_elapsed`` of the period.

A cost rule without a ``meter`` is summed over the customer's metered prices
(:func:`~alertd.conditions.money.sums_meters`): the amount is the sum of each price on its own
meter's total, the forecast grows each meter at its own run rate and prices the lines again,
and the crossing day is the first second the sum passes the budget.

The finding's ``value`` is the amount in the currency's major unit (a float for the lifecycle
and templates; the exact ``Decimal`` is in ``details["amount"]`` as a string).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from alertd.conditions.base import UPPER_OPS, Bound, RuleIssue, Sample, ValueFrom
from alertd.conditions.money import (
    NotJudged,
    PeriodUsage,
    not_judged,
    period_usage,
    reaching_at,
    rule_currency,
)
from alertd.conditions.series import effective_refreshed_at, finding, local_date, number
from alertd.model import Customer, Figures, Finding, Series
from alertd.pricing import SUPPORTED_SHAPES, Money, format_money

if TYPE_CHECKING:
    from alertd.conditions.forecast import ForecastCondition
    from alertd.conditions.threshold import ThresholdCondition
    from alertd.rules.schema import Rule


def ordered(levels: Mapping[str, Money]) -> list[tuple[str, Money]]:
    return sorted(levels.items(), key=lambda kv: kv[1].amount)


def cost_bounds(value: Money | None, levels: Mapping[str, Money] | None,
                value_from: ValueFrom | None) -> None:
    """Schema check of a cost condition's amounts (``ValueError`` says what is wrong)."""
    if value_from is not None:
        raise ValueError("measure: cost takes 'value' or 'levels' amounts, not value_from")
    if (value is None) == (not levels):
        raise ValueError("measure: cost needs exactly one of 'value' or 'levels' "
                         "(amounts with a currency, e.g. \"500.00 usd\")")
    amounts = [value] if value is not None else list((levels or {}).values())
    if len({money.currency for money in amounts if money is not None}) != 1:
        raise ValueError("all amounts of a cost condition must be in one currency")


def _show(usage: PeriodUsage, amount: Decimal, measure: str) -> str:
    return usage.money(amount) if measure == "cost" else number(float(amount))


def _measured(usage: PeriodUsage, measure: str, rates: Sequence[float] = (),
              seconds: float = 0.0) -> Decimal:
    """The period's cost (or usage) so far, or after ``seconds`` more at ``rates``."""
    if measure == "cost":
        return usage.amount_at(rates, seconds) if rates else usage.amount()
    grown = usage.quantity + sum(max(r, 0.0) for r in rates) * seconds
    return Decimal(repr(grown))


def _usage_bounds(rule: Rule, condition: ThresholdCondition,
                  customer: Customer) -> list[tuple[str, Decimal]]:
    from alertd.conditions.threshold import QuotaProblem, bounds_for

    if condition.measure == "cost":
        if condition.cost_levels:
            return [(name, money.amount) for name, money in ordered(condition.cost_levels)]
        assert condition.cost_value is not None
        return [(rule.severity, condition.cost_value.amount)]
    found = bounds_for(condition, customer, rule.severity)
    if isinstance(found, QuotaProblem):
        raise NotJudged("error", found.message)
    return [(name, Decimal(repr(bound))) for name, bound in found]


def threshold(rule: Rule, condition: ThresholdCondition, series: Series,
              customer: Customer, now: int) -> Finding:
    """A cost (or billing-period usage) threshold's verdict on ``series``."""
    try:
        usage = period_usage(rule, series, customer, now, rule_currency(rule))
        bounds = _usage_bounds(rule, condition, customer)
    except NotJudged as exc:
        return not_judged(rule, series, now, exc)
    value = _measured(usage, condition.measure)
    strict = condition.op == ">"
    hits = [b for b in bounds if (value > b[1] if strict else value >= b[1])]
    hit = hits[-1] if hits else None
    shown = _show(usage, value, condition.measure)
    if hit is None:
        message = (f"{shown} {usage.describe()}; fires when {condition.op} "
                   f"{_show(usage, bounds[0][1], condition.measure)}")
    else:
        named = f" [{hit[0]}]" if len(bounds) > 1 else ""
        message = (f"{shown} {usage.describe()} {condition.op} "
                   f"{_show(usage, hit[1], condition.measure)}{named}")
    return finding(
        rule, series, usage.period, value=float(value), active=hit is not None,
        complete=usage.complete, level=hit[0] if hit else None,
        figures=Bound(float((hit or bounds[0])[1])), message=message,
        period_key=usage.key(), details={**usage.details(), "amount": str(value)},
    )


def forecast(rule: Rule, condition: ForecastCondition, series: Series, customer: Customer,
             now: int, figures: type[Figures]) -> Finding:
    """A cost (or billing-period usage) forecast's verdict; ``figures`` is the forecast
    kind's figures class (``threshold``, ``projected``)."""
    try:
        usage = period_usage(rule, series, customer, now, rule_currency(rule))
    except NotJudged as exc:
        return not_judged(rule, series, now, exc)
    measure = condition.measure
    budget = condition.cost_value.amount if condition.cost_value is not None \
        else Decimal(repr(condition.value))
    as_of = max(usage.period.starts_at, effective_refreshed_at(series.refreshed_at, now))
    rates = usage.rates(now, condition.rate_window)
    projected = _measured(usage, measure, rates, usage.period.ends_at - as_of)
    common: dict[str, Any] = {**usage.details(), "amount": str(_measured(usage, measure)),
                              "projected_amount": str(projected)}
    if now - usage.period.starts_at < condition.min_elapsed:
        return finding(rule, series, usage.period, value=float(_measured(usage, measure)),
                       figures=figures(float(budget), float(projected)),  # type: ignore[call-arg]
                       period_key=usage.key(), details={**common, "crosses_at": None},
                       message=f"too early {usage.describe()} to forecast")
    crosses = _crossing(rule, usage, measure, budget, rates, as_of)
    active = projected > budget
    message = (f"projected {_show(usage, projected, measure)} by "
               f"{local_date(usage.period.ends_at, rule.timezone)} "
               f"({_show(usage, _measured(usage, measure), measure)} so far "
               f"{usage.describe()}); budget {_show(usage, budget, measure)}")
    if crosses is not None:
        message += f", crossed on {crosses}" if _measured(usage, measure) > budget \
            else f", crosses on {crosses}"
    return finding(rule, series, usage.period, value=float(_measured(usage, measure)),
                   active=active, complete=usage.complete,
                   figures=figures(float(budget), float(projected)),  # type: ignore[call-arg]
                   period_key=usage.key(), details={**common, "crosses_at": crosses},
                   message=message)


def _crossing(rule: Rule, usage: PeriodUsage, measure: str, budget: Decimal,
              rates: Sequence[float], as_of: int) -> str | None:
    """The local date the budget is crossed at the run rates (or was, by the usage so far)."""
    if measure == "cost":
        at = reaching_at(usage, rates, as_of, budget)
        return None if at is None else local_date(at, rule.timezone)
    units = float(budget) if float(budget) >= 0 else None
    if units is None:
        return None
    if usage.quantity > units:
        return local_date(as_of, rule.timezone)
    per_second = sum(rates)
    if per_second <= 0:
        return None
    at_units = as_of + (units - usage.quantity) / per_second
    return local_date(int(at_units), rule.timezone) if at_units < usage.period.ends_at else None


def check(rule: Rule) -> list[RuleIssue]:
    """What a cost or billing-period rule cannot do."""
    condition = rule.condition
    measure = getattr(condition, "measure", "usage")
    issues: list[RuleIssue] = []
    if measure == "cost" and not rule.billing_period:
        issues.append(RuleIssue(("window",), "measure: cost needs window: billing_period "
                                "(tiers apply to an invoice's period, not a calendar window)"))
    if measure != "cost" and rule.billing_period and rule.meter is None:
        issues.append(RuleIssue(("meter",), "a billing-period usage rule needs a meter (usage "
                                "of different meters does not add up; measure: cost without "
                                "a meter sums the priced usage of all the customer's meters)",
                                at_value=False))
    if (measure == "cost" or rule.billing_period) and rule.group_by:
        issues.append(RuleIssue(("group_by",), "a cost is the whole meter's: prices apply to "
                                "the meter's total, so group_by cannot be priced"))
    if getattr(condition, "op", ">") not in UPPER_OPS and (measure == "cost"
                                                           or rule.billing_period):
        issues.append(RuleIssue(("condition", "op"), "billing-period thresholds are upper "
                                "bounds (> or >=)"))
    return issues


def supported_shapes() -> str:
    return "; ".join(SUPPORTED_SHAPES)


def sample(rule: Rule, value: Money | None, levels: Mapping[str, Money] | None) -> Sample:
    severity = None
    if levels:
        severity, bound = ordered(levels)[-1]
    else:
        assert value is not None
        bound = value
    amount = bound.amount * Decimal("1.18")
    text = (f"{format_money(amount, bound.currency)} in the billing period > "
            f"{format_money(bound.amount, bound.currency)}")
    return Sample(float(amount), text, Bound(float(bound.amount)), severity=severity,
                  details={"op": ">", "currency": bound.currency},
                  recent_level=float(bound.amount) * 0.8)

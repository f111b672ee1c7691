"""``credit`` conditions: the customer's prepaid credit burning down, judged live.

Stripe's credit balance summary moves only when an invoice is finalised, so alertd judges the
*ongoing* balance: ``available − priced usage of the current billing period`` of the rule's
meter (usage not yet invoiced; :mod:`alertd.billing`). Exactly one of:

* ``below: "50.00 usd"`` — fires while the ongoing balance is under that amount;
* ``below_percent: 20`` — under that percent of the credit granted (the grants in effect);
* ``depletes_within: 7d`` — the balance reaches zero within that time at the recent burn rate
  (the meter's usage per second over the complete hour buckets of the last ``rate_window``,
  priced as the period's tiers price the next units), or already has.

The finding's ``value`` is the ongoing balance in the currency's major unit; ``threshold`` the
amount it is judged against (0 for ``depletes_within``); ``details["depletes_at"]`` the local
date it runs out at the burn rate (``None``: not within the current billing
period). Not judged per period:
the alert lasts until the balance recovers, which a top-up (a new grant) does, and then it
resolves. No price, several prices, an unsupported price shape, no credit in the price's
currency, or billing that could not be read: an ``error`` finding naming customer, meter and
price.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from alertd.billing import BillingProblem, NoCredit, credit_in
from alertd.clock import readable_duration
from alertd.conditions.base import Bound, ConditionKind, ConditionModel, RuleIssue, Sample
from alertd.conditions.money import (
    NotJudged,
    PeriodUsage,
    billing_need,
    not_judged,
    period_usage,
    reaching_at,
)
from alertd.conditions.series import effective_refreshed_at, finding, local_date
from alertd.config.settings import PositiveDuration
from alertd.model import Customer, DataNeed, Finding, Granularity, Period, Series
from alertd.pricing import Money, format_money, parse_money

if TYPE_CHECKING:
    from alertd.rules.schema import Rule


class CreditCondition(ConditionModel):
    type: Literal["credit"]
    below: Money | None = None
    below_percent: Annotated[float, Field(gt=0, le=100)] | None = None
    depletes_within: PositiveDuration | None = None
    #: How far back the burn rate is measured.
    rate_window: PositiveDuration = 3 * 86400.0

    @field_validator("below", mode="before")
    @classmethod
    def _money(cls, raw: Any) -> Any:
        if isinstance(raw, str):
            return parse_money(raw)
        if raw is not None and not isinstance(raw, Money):
            raise ValueError("below: give an amount with a currency, e.g. \"50.00 usd\"")
        return raw

    @model_validator(mode="after")
    def _one(self) -> CreditCondition:
        given = [self.below is not None, self.below_percent is not None,
                 self.depletes_within is not None]
        if sum(given) != 1:
            raise ValueError("a credit condition needs exactly one of 'below', "
                             "'below_percent' or 'depletes_within'")
        return self


def _condition(rule: Rule) -> CreditCondition:
    if not isinstance(rule.condition, CreditCondition):
        raise TypeError(f"rule {rule.name} has no credit condition")
    return rule.condition


def _depletes_at(usage: PeriodUsage, available: Decimal, rates: list[float],
                 as_of: int) -> int | None:
    """When the period's priced usage exceeds ``available`` at the burn rate. Past the
    period's end the invoice is finalised and the tiers start afresh: the run rate of this
    period says nothing reliable about then, so ``None``."""
    return reaching_at(usage, rates, as_of, available)


class CreditKind(ConditionKind):
    """``credit``: the ongoing balance; one episode until the balance recovers."""

    type = "credit"
    model = CreditCondition
    per_period = False

    def needs(self, rule: Rule, customer: str, now: int) -> tuple[DataNeed, ...]:
        return (billing_need(rule, customer, now),)

    def evaluate(self, rule: Rule, series: Series, customer: Customer, now: int) -> Finding:
        condition = _condition(rule)
        currency = condition.below.currency if condition.below is not None else None
        try:
            usage = period_usage(rule, series, customer, now, currency)
            credit = credit_in(customer.billing, customer.id, usage.currency)
        except BillingProblem as exc:
            state = "nodata" if isinstance(exc, NoCredit) else "error"
            return not_judged(rule, series, now, NotJudged(state, str(exc)))
        except NotJudged as exc:
            return not_judged(rule, series, now, exc)
        unbilled = usage.amount()
        ongoing = credit.available - unbilled
        as_of = max(usage.period.starts_at, effective_refreshed_at(series.refreshed_at, now))
        depletes = _depletes_at(usage, credit.available, usage.rates(now, condition.rate_window),
                                as_of)
        if condition.below is not None:
            bound, active = condition.below.amount, ongoing < condition.below.amount
            said = f"below {format_money(bound, credit.currency)}"
        elif condition.below_percent is not None:
            bound = credit.granted * Decimal(repr(condition.below_percent)) / 100
            active = credit.granted > 0 and ongoing < bound
            said = (f"below {condition.below_percent:g}% of "
                    f"{format_money(credit.granted, credit.currency)} granted")
        else:
            assert condition.depletes_within is not None
            bound = Decimal(0)
            active = depletes is not None and depletes - now <= condition.depletes_within
            said = f"runs out within {readable_duration(condition.depletes_within)}"
        shown = format_money(ongoing, credit.currency)
        when = (f"; runs out on {local_date(depletes, rule.timezone)} at the recent rate"
                if depletes is not None else "")
        message = (f"ongoing credit {shown} ({format_money(credit.available, credit.currency)} "
                   f"available − {format_money(unbilled, credit.currency)} not yet invoiced)"
                   f"{when}; {'is' if active else 'fires when'} {said}")
        return finding(
            rule, series, Period(usage.period.starts_at, usage.period.ends_at),
            value=float(ongoing), active=active, complete=usage.complete,
            figures=Bound(float(bound)), message=message, period_key="credit",
            details={**usage.details(), "available": str(credit.available),
                     "granted": str(credit.granted), "unbilled": str(unbilled),
                     "balance": str(ongoing),
                     "depletes_at": None if depletes is None
                     else local_date(depletes, rule.timezone)},
        )

    def judged_at(self, rule: Rule) -> Granularity | None:
        return None

    def reads_running_period(self, rule: Rule) -> bool:
        return True

    def check(self, rule: Rule) -> list[RuleIssue]:
        issues = []
        if rule.meter is None:
            issues.append(RuleIssue(("meter",), "a credit rule needs the meter whose priced "
                                    "usage burns the credit", at_value=False))
        if rule.group_by:
            issues.append(RuleIssue(("group_by",), "credit burns on the meter's total: "
                                    "group_by cannot be priced"))
        return issues

    def sample(self, rule: Rule) -> Sample:
        condition = _condition(rule)
        currency = condition.below.currency if condition.below is not None else "usd"
        bound = condition.below.amount if condition.below is not None else Decimal(100)
        balance = bound * Decimal("0.6")
        return Sample(float(balance), f"ongoing credit {format_money(balance, currency)}",
                      Bound(float(bound)), details={"depletes_at": "2025-03-13"})


CREDIT = CreditKind()

"""``forecast`` conditions: the running period (usually the month) projected to its end.

Method — a run-rate projection, chosen because it is explainable in one sentence and needs no
model: ``projected = to_date + rate × remaining``.

* ``to_date`` is everything reported for the period so far, the running day included.
* ``rate`` is usage per second over the last ``rate_window`` of *complete* buckets (whole
  buckets: ``round(rate_window / bucket)``, at least one), divided by the time they span, so a
  23- or 25-hour day weighs what it lasted. It may reach back into the previous period, which
  is why the need starts that far back. With day buckets and a ``rate_window`` of whole weeks
  every weekday is counted equally often, so weekly seasonality cancels without modelling it.
* ``remaining`` runs from the data's freshness (``refreshed_at``, capped at ``now``) to the
  period's end, since ``to_date`` holds usage up to then.

Negative usage (corrections: Stripe accepts negative meter events) is summed like any other:
``to_date`` and the run rate are net, so a correction lowers the projection and can only stop a
forecast alert, never start one; a rate that is zero or negative projects no crossing. A budget
that is not a finite number is an ``error`` finding.

No verdict before ``min_elapsed`` of the period has passed (``active=False``, and the message
says so). The finding's ``projected`` is the projected total, ``threshold`` the budget, and
``details["crosses_at"]`` the local ISO date the budget is (or was already) crossed, ``None``
when the projection stays under it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator

from alertd import calendar
from alertd.clock import format_duration, readable_duration
from alertd.conditions import cost
from alertd.conditions.base import (
    SAMPLE_QUOTA,
    Bound,
    ConditionKind,
    ConditionModel,
    RuleIssue,
    Sample,
    ValueFrom,
)
from alertd.conditions.cost import cost_bounds
from alertd.conditions.money import billing_need, split_money, wants_billing
from alertd.conditions.series import (
    NOMINAL_SECONDS,
    complete_buckets,
    data_need,
    effective_refreshed_at,
    finding,
    granularity_for,
    local_date,
    no_complete_data,
    number,
)
from alertd.conditions.threshold import (
    QuotaProblem,
    quota_key,
    read_quota,
    value_from_issues,
)
from alertd.config.settings import Duration, PositiveDuration
from alertd.model import (
    Bucket,
    Customer,
    DataNeed,
    Figures,
    Finding,
    Granularity,
    Period,
    Series,
)
from alertd.pricing import Money
from alertd.templating import format_number

if TYPE_CHECKING:
    from alertd.rules.schema import Rule

#: The shortest period of each window (a day can be 23 hours, but forecasts count elapsed
#: time from the period start, so the nominal length is the right bound).
SHORTEST_PERIOD: dict[Granularity, float] = {
    "hour": 3600.0, "day": 86400.0, "week": 7 * 86400.0, "month": 28 * 86400.0,
}


class ForecastCondition(ConditionModel):
    type: Literal["forecast"]
    value: float | None = None
    value_from: ValueFrom | None = None
    min_elapsed: Duration = 3 * 86400.0
    #: How far back the run rate is measured.
    rate_window: PositiveDuration = 7 * 86400.0
    #: ``cost``: the projected invoice amount (:mod:`alertd.conditions.cost`); its ``value``
    #: is an amount with a currency, moved to ``cost_value``.
    measure: Literal["usage", "cost"] = "usage"
    cost_value: Money | None = Field(None, exclude=True)

    _money = model_validator(mode="before")(split_money)

    @model_validator(mode="after")
    def _budget(self) -> ForecastCondition:
        if self.measure == "cost":
            cost_bounds(self.cost_value, None, self.value_from)
            return self
        if (self.value is None) == (self.value_from is None):
            raise ValueError("a forecast needs exactly one budget: 'value' or 'value_from'")
        return self


@dataclass(frozen=True, slots=True)
class ProjectedTotal(Figures):
    """A forecast's figures: the budget (``threshold``) and the projected total."""

    threshold: float
    projected: float

    def contract(self) -> dict[str, float]:
        return {"threshold": self.threshold, "projected": self.projected}

    def bound(self) -> tuple[str, float] | None:
        return ("", self.threshold)


@dataclass(frozen=True, slots=True)
class Projection:
    """A period-to-date total projected to the period's end at a constant run rate."""

    to_date: float
    rate: float  #: usage per second
    as_of: int
    period: Period
    rate_buckets: int

    @property
    def total(self) -> float:
        return self.to_date + self.rate * (self.period.ends_at - self.as_of)

    def crossing(self, budget: float, buckets: Sequence[Bucket]) -> int | None:
        """When usage exceeds ``budget``: the bucket where it already did, or the instant the
        run rate gets there before the period ends; ``None`` if it stays under."""
        if self.to_date > budget:
            return _bucket_exceeding(buckets, budget)
        if self.rate <= 0:
            return None
        at = self.as_of + (budget - self.to_date) / self.rate
        return int(at) if at < self.period.ends_at else None


def _bucket_exceeding(buckets: Sequence[Bucket], budget: float) -> int | None:
    running = 0.0
    for bucket in buckets:
        running += bucket.value
        if running > budget:
            return bucket.starts_at
    return None


def rate_bucket_count(rule: Rule) -> int:
    """How many whole buckets the run rate is measured over."""
    condition = _condition(rule)
    return max(1, round(condition.rate_window / NOMINAL_SECONDS[granularity_for(rule)]))


def project(rule: Rule, series: Series, now: int) -> Projection | None:
    """The projection for the period containing ``now``; ``None`` without a complete bucket
    to measure the run rate on."""
    period = calendar.period_containing(now, rule.window, rule.timezone)
    recent = complete_buckets(series.buckets)[-rate_bucket_count(rule):]
    if not recent:
        return None
    span = sum(bucket.ends_at - bucket.starts_at for bucket in recent)
    as_of = max(period.starts_at, effective_refreshed_at(series.refreshed_at, now))
    return Projection(
        to_date=sum(b.value for b in _in_period(series.buckets, period)),
        rate=sum(bucket.value for bucket in recent) / span,
        as_of=as_of,
        period=period,
        rate_buckets=len(recent),
    )


def _in_period(buckets: Sequence[Bucket], period: Period) -> list[Bucket]:
    return [bucket for bucket in buckets if period.contains(bucket.starts_at)]


def _condition(rule: Rule) -> ForecastCondition:
    if not isinstance(rule.condition, ForecastCondition):
        raise TypeError(f"rule {rule.name} has no forecast condition")
    return rule.condition


def budget_for(condition: ForecastCondition, customer: Customer) -> float | QuotaProblem:
    if condition.value_from is not None:
        return read_quota(condition.value_from, customer)
    assert condition.value is not None  # the schema demands value or value_from
    if not math.isfinite(condition.value):
        return QuotaProblem(f"the forecast budget {condition.value!r} is not a finite number: "
                            "fix the rule")
    return condition.value


class ForecastEvaluator:
    """The :class:`~alertd.conditions.base.Evaluator` of ``forecast`` conditions."""

    def needs(self, rule: Rule, customer: str, now: int) -> tuple[DataNeed, ...]:
        if wants_billing(rule):
            return (billing_need(rule, customer, now),)
        granularity = granularity_for(rule)
        current = calendar.period_containing(now, rule.window, rule.timezone)
        latest = calendar.period_containing(now, granularity, rule.timezone)
        # One bucket more than the rate needs: the last one may not be complete yet.
        earliest = calendar.shift(latest, granularity, -(rate_bucket_count(rule) + 1))
        return (data_need(rule, customer, now, min(current.starts_at, earliest.starts_at)),)

    def evaluate(self, rule: Rule, series: Series, customer: Customer, now: int) -> Finding:
        if wants_billing(rule):
            return cost.forecast(rule, _condition(rule), series, customer, now, ProjectedTotal)
        period = calendar.period_containing(now, rule.window, rule.timezone)
        budget = budget_for(_condition(rule), customer)
        if isinstance(budget, QuotaProblem):
            return finding(rule, series, period, state="error", message=budget.message)
        projection = project(rule, series, now)
        if projection is None:
            return no_complete_data(rule, series, period, "the run rate")
        elapsed = projection.as_of - period.starts_at
        if elapsed < _condition(rule).min_elapsed:
            return _too_early(rule, series, projection, budget, elapsed)
        return _verdict(rule, series, projection, budget)


def _too_early(
    rule: Rule, series: Series, projection: Projection, budget: float, elapsed: int
) -> Finding:
    wait = readable_duration(_condition(rule).min_elapsed, units=2)
    return finding(
        rule, series, projection.period,
        value=projection.to_date,
        figures=Bound(budget),
        message=(
            f"{number(projection.to_date)} so far; no forecast until {wait} of the "
            f"{rule.window} have passed ({readable_duration(elapsed, units=2)} so far)"
        ),
        details={"crosses_at": None, "method": _method(rule, projection)},
    )


def _verdict(rule: Rule, series: Series, projection: Projection, budget: float) -> Finding:
    total = projection.total
    crossing = projection.crossing(budget, _in_period(series.buckets, projection.period))
    crosses_at = None if crossing is None else local_date(crossing, rule.timezone)
    active = total > budget
    return finding(
        rule, series, projection.period,
        value=projection.to_date,
        active=active,
        level=rule.severity if active else None,
        figures=ProjectedTotal(budget, total),
        message=_message(rule, projection, budget, crosses_at),
        details={
            "crosses_at": crosses_at,
            "method": _method(rule, projection),
            "rate_per_day": projection.rate * 86400,
        },
    )


def _method(rule: Rule, projection: Projection) -> str:
    unit = granularity_for(rule)
    return (
        f"period-to-date plus the run rate of the last {projection.rate_buckets} complete "
        f"{unit}(s) until the {rule.window} ends"
    )


def _message(rule: Rule, projection: Projection, budget: float, crosses_at: str | None) -> str:
    """``on track for 1,240,000 by the end of 2025-01 (UTC), budget 1,000,000: crosses it on
    2025-01-24``."""
    end = local_date(projection.period.ends_at - 1, rule.timezone)
    head = (
        f"{number(projection.to_date)} so far, on track for {number(round(projection.total))} "
        f"by {end} ({rule.timezone}), budget {number(budget)}"
    )
    if crosses_at is None:
        return f"{head}: stays under it"
    verb = "crossed it on" if projection.to_date > budget else "crosses it on"
    return f"{head}: {verb} {crosses_at}"


def _issues(rule: Rule, condition: ForecastCondition) -> list[RuleIssue]:
    issues = value_from_issues(condition.value_from)
    if rule.window == "hour":
        issues.append(RuleIssue(
            ("window",),
            "window: a forecast condition needs window: day, week or month (it projects "
            "period-to-date usage to the end of the period)",
        ))
        return issues
    shortest = SHORTEST_PERIOD[rule.window]
    if condition.min_elapsed >= shortest:
        issues.append(RuleIssue(
            ("condition", "min_elapsed"),
            f"condition.min_elapsed: {format_duration(condition.min_elapsed)} is not shorter "
            f"than a {rule.window}, so this forecast could never be made; set min_elapsed "
            f"below {format_duration(shortest)}",
        ))
    return issues


def _sample(rule: Rule, condition: ForecastCondition) -> Sample:
    budget = condition.value if condition.value is not None else SAMPLE_QUOTA
    value, projected = budget * 0.62, budget * 1.24
    message = (f"on track for {format_number(projected)} this {rule.window}, "
               f"budget {format_number(budget)}")
    return Sample(value, message, ProjectedTotal(budget, projected),
                  details={"elapsed_percent": 50}, recent_level=(budget or value) * 0.8,
                  quota_metadata=quota_key(condition.value_from))


class ForecastKind(ForecastEvaluator, ConditionKind):
    """``forecast``: the running period projected to its end; judged per period."""

    type = "forecast"
    model = ForecastCondition
    per_period = True

    def judged_at(self, rule: Rule) -> Granularity | None:
        return granularity_for(rule)

    def reads_running_period(self, rule: Rule) -> bool:
        return True

    def check(self, rule: Rule) -> list[RuleIssue]:
        if wants_billing(rule):
            return cost.check(rule)
        return _issues(rule, _condition(rule))

    def sample(self, rule: Rule) -> Sample:
        condition = _condition(rule)
        if condition.measure == "cost":
            sampled = cost.sample(rule, condition.cost_value, None)
            return Sample(sampled.value, f"projected {sampled.message}",
                          ProjectedTotal(sampled.value / 1.18, sampled.value),
                          details={"crosses_at": "2025-03-20"})
        return _sample(rule, condition)


FORECAST = ForecastKind()

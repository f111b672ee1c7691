"""``threshold`` conditions: one period's usage against a fixed or per-customer bound.

Upper thresholds (``>``, ``>=``) judge the running period, complete or not: usage grows (but
for corrections, below), so a crossing seen early is a crossing. Lower ones (``<``, ``<=``)
judge the last period that has ended, and only once its data is complete, so "usage dropped"
never fires at 00:05 because the day has just begun; until then the finding is ``nodata``.

Bounds come from ``value``, from ``value_from`` (a quota in the customer's Stripe metadata,
scaled by ``percent``), or from ``levels`` (absolute, or percents of the ``value_from`` quota).
A customer whose quota is missing or not a number gets an ``error`` finding that names the
customer and the key: reported, never guessed; so does a bound that is not a finite number
(``.inf`` in a rule file that slipped past ``validate``).

Negative usage (Stripe accepts negative meter events: corrections) is summed like any other:
thresholds compare the period's *net* total. An upper threshold is simply not crossed by a
negative total, and a correction that takes a firing period back under its bound resolves it
like any drop. A lower threshold is not judged on a negative total: corrections larger than the
usage say nothing about usage being low, so that finding is ``nodata`` (it neither fires nor
resolves); a total of zero or more is judged as usual.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator

from alertd import calendar
from alertd.conditions import cost
from alertd.conditions.base import (
    ADJECTIVE,
    SAMPLE_QUOTA,
    UPPER_OPS,
    Bound,
    ConditionKind,
    ConditionModel,
    Op,
    RuleIssue,
    Sample,
    ValueFrom,
)
from alertd.conditions.cost import cost_bounds
from alertd.conditions.money import billing_need, split_money, wants_billing
from alertd.conditions.series import (
    data_need,
    describe_period,
    find_bucket,
    finding,
    no_complete_data,
    number,
    window_buckets,
)
from alertd.model import Bucket, Customer, DataNeed, Finding, Granularity, Period, Series
from alertd.pricing import Money
from alertd.templating import format_number

if TYPE_CHECKING:
    from alertd.rules.schema import Rule


class ThresholdCondition(ConditionModel):
    type: Literal["threshold"]
    op: Op = ">"
    value: float | None = None
    value_from: ValueFrom | None = None
    levels: dict[str, float] | None = None
    #: ``cost``: the priced usage of the billing period (:mod:`alertd.conditions.cost`), its
    #: ``value``/``levels`` amounts with a currency, moved to ``cost_value``/``cost_levels``.
    measure: Literal["usage", "cost"] = "usage"
    cost_value: Money | None = Field(None, exclude=True)
    cost_levels: dict[str, Money] | None = Field(None, exclude=True)

    _money = model_validator(mode="before")(split_money)

    @model_validator(mode="after")
    def _one_bound(self) -> ThresholdCondition:
        if self.measure == "cost":
            cost_bounds(self.cost_value, self.cost_levels, self.value_from)
            return self
        if self.levels is not None:
            if self.value is not None:
                raise ValueError("use either 'value' or 'levels', not both")
            if not self.levels:
                raise ValueError("'levels' needs at least one level")
        elif (self.value is None) == (self.value_from is None):
            raise ValueError("a threshold needs exactly one of 'value' or 'value_from'")
        return self

    def ordered_levels(self) -> list[tuple[str, float]]:
        """Levels from least to most severe: for ``>``, ascending bounds; for ``<``, descending."""
        assert self.levels is not None
        return sorted(self.levels.items(), key=lambda kv: kv[1], reverse=self.op not in UPPER_OPS)

COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
}

#: ``(level name, bound)`` pairs, least severe first.
Bounds = tuple[tuple[str, float], ...]


@dataclass(frozen=True, slots=True)
class QuotaProblem:
    """Why a customer's quota could not be read; becomes an ``error`` finding."""

    message: str


def read_quota(value_from: ValueFrom, customer: Customer) -> float | QuotaProblem:
    """The number in the customer's metadata that ``value_from`` names, times its percent."""
    raw = customer.metadata.get(value_from.metadata)
    if raw is None:
        return QuotaProblem(
            f"customer {customer.id} has no metadata key {value_from.metadata!r} "
            f"(value_from needs a number there)"
        )
    try:
        quota = float(raw)
    except ValueError:
        quota = math.nan
    if not math.isfinite(quota):
        return QuotaProblem(
            f"customer {customer.id} metadata {value_from.metadata!r} is {raw!r}, not a number"
        )
    return quota * value_from.percent / 100


def bounds_for(
    condition: ThresholdCondition, customer: Customer, severity: str
) -> Bounds | QuotaProblem:
    """The condition's bounds for ``customer``, least severe first.

    Without ``levels`` there is one bound, named ``severity``. With ``levels`` and
    ``value_from``, each level is a percent of the quota (quota × percent / 100).
    """
    if condition.value_from is None:
        base = condition.value
    else:
        quota = read_quota(condition.value_from, customer)
        if isinstance(quota, QuotaProblem):
            return quota
        base = quota
    if condition.levels is None:
        assert base is not None  # the schema demands value or value_from
        bounds: Bounds = ((severity, base),)
    else:
        scale = 1.0 if base is None else base / 100
        bounds = tuple((name, level * scale) for name, level in condition.ordered_levels())
    unusable = [f"{name} {bound!r}" for name, bound in bounds if not math.isfinite(bound)]
    if unusable or not bounds:
        return QuotaProblem(f"the threshold's bound is not a finite number "
                            f"({', '.join(unusable) or 'no levels'}): fix the rule")
    return bounds


def crossed(bounds: Bounds, op: str, value: float) -> tuple[str, float] | None:
    """The most severe bound ``value`` crosses under ``op``, if any."""
    hits = [bound for bound in bounds if COMPARE[op](value, bound[1])]
    return hits[-1] if hits else None


class ThresholdEvaluator:
    """The :class:`~alertd.conditions.base.Evaluator` of ``threshold`` conditions."""

    def needs(self, rule: Rule, customer: str, now: int) -> tuple[DataNeed, ...]:
        if wants_billing(rule):
            return (billing_need(rule, customer, now),)
        return (data_need(rule, customer, now, judged_period(rule, now).starts_at),)

    def evaluate(self, rule: Rule, series: Series, customer: Customer, now: int) -> Finding:
        condition = _condition(rule)
        if wants_billing(rule):
            return cost.threshold(rule, condition, series, customer, now)
        period = judged_period(rule, now)
        bounds = bounds_for(condition, customer, rule.severity)
        if isinstance(bounds, QuotaProblem):
            return finding(rule, series, period, state="error", message=bounds.message)
        bucket = _judged_bucket(rule, series, period)
        if bucket is None:
            return no_complete_data(rule, series, period, calendar.period_key(period, rule.window))
        if bucket.value < 0 and _condition(rule).op not in UPPER_OPS:
            return finding(
                rule, series, period, state="nodata", value=bucket.value,
                complete=bucket.complete,
                message=(f"net usage {describe_period(period, rule.window, now)} is "
                         f"{number(bucket.value)}: corrections (negative meter events) exceed "
                         f"the usage, so '{_condition(rule).op}' is not judged on it"),
            )
        return _verdict(rule, series, period, bucket, bounds, now)


def _condition(rule: Rule) -> ThresholdCondition:
    if not isinstance(rule.condition, ThresholdCondition):
        raise TypeError(f"rule {rule.name} has no threshold condition")
    return rule.condition


def judged_period(rule: Rule, now: int) -> Period:
    """The running period for upper thresholds, the one before it for lower ones."""
    current = calendar.period_containing(now, rule.window, rule.timezone)
    if _condition(rule).op in UPPER_OPS:
        return current
    return calendar.shift(current, rule.window, -1)


def _judged_bucket(rule: Rule, series: Series, period: Period) -> Bucket | None:
    """The usage of ``period``; ``None`` when a lower threshold has no complete data for it.

    The running period may have no bucket yet (``now`` at its very first instant): that is
    zero usage so far, not missing data.
    """
    buckets = window_buckets(series, rule.window, rule.timezone)
    bucket = find_bucket(buckets, period)
    if _condition(rule).op in UPPER_OPS:
        return bucket or Bucket(period.starts_at, period.ends_at, 0.0, complete=False)
    return bucket if bucket is not None and bucket.complete else None


def _verdict(
    rule: Rule, series: Series, period: Period, bucket: Bucket, bounds: Bounds, now: int
) -> Finding:
    op = _condition(rule).op
    hit = crossed(bounds, op, bucket.value)
    bound = hit[1] if hit else bounds[0][1]
    return finding(
        rule, series, period,
        value=bucket.value,
        active=hit is not None,
        complete=bucket.complete,
        level=hit[0] if hit else None,
        figures=Bound(bound),
        message=_message(rule, period, bucket.value, op, hit, bounds, now),
    )


def _message(
    rule: Rule,
    period: Period,
    value: float,
    op: str,
    hit: tuple[str, float] | None,
    bounds: Sequence[tuple[str, float]],
    now: int,
) -> str:
    """``42,100 today (America/New_York) > 40,000 [critical]``."""
    usage = f"{number(value)} {describe_period(period, rule.window, now)}"
    if hit is None:
        return f"{usage}; fires when {op} {number(bounds[0][1])}"
    named = f" [{hit[0]}]" if len(bounds) > 1 or _condition(rule).levels else ""
    return f"{usage} {op} {number(hit[1])}{named}"


def value_from_issues(value_from: ValueFrom | None) -> list[RuleIssue]:
    """A ``value_from`` that names no metadata key."""
    if value_from is None or value_from.metadata.strip():
        return []
    return [RuleIssue(
        ("condition", "value_from", "metadata"),
        "condition.value_from.metadata: name the Stripe customer metadata key that holds "
        "the quota (e.g. monthly_quota)",
    )]


def quota_key(value_from: ValueFrom | None) -> str | None:
    return None if value_from is None else value_from.metadata


def _sample(rule: Rule, condition: ThresholdCondition) -> Sample:
    severity = None
    if condition.levels:
        severity, bound = condition.ordered_levels()[-1]
        if condition.value_from is not None:
            bound = SAMPLE_QUOTA * bound / 100
    elif condition.value is not None:
        bound = condition.value
    else:
        assert condition.value_from is not None
        bound = SAMPLE_QUOTA * condition.value_from.percent / 100
    value = bound * (1.18 if condition.op in UPPER_OPS else 0.55)
    message = (f"{ADJECTIVE[rule.window]} usage {format_number(value)} {condition.op} "
               f"{format_number(bound)}")
    return Sample(value, message, Bound(bound), severity=severity,
                  details={"op": condition.op}, recent_level=bound * 0.8,
                  quota_metadata=quota_key(condition.value_from))


class ThresholdKind(ThresholdEvaluator, ConditionKind):
    """``threshold``: judged per period; upper ones read the running period and only climb."""

    type = "threshold"
    model = ThresholdCondition
    per_period = True

    def judged_at(self, rule: Rule) -> Granularity | None:
        return None if _condition(rule).op in UPPER_OPS else rule.window

    def reads_running_period(self, rule: Rule) -> bool:
        return _condition(rule).op in UPPER_OPS

    def grows_within_period(self, rule: Rule) -> bool:
        # Upper thresholds judge the running period's total, which grows but for negative
        # meter events (corrections); backtest checks a period's rows for those and then
        # judges every instant instead of bisecting.
        return _condition(rule).op in UPPER_OPS

    def levels(self, rule: Rule) -> tuple[str, ...]:
        condition = _condition(rule)
        if condition.cost_levels:
            return tuple(name for name, _ in cost.ordered(condition.cost_levels))
        if condition.levels:
            return tuple(name for name, _ in condition.ordered_levels())
        return (rule.severity,)

    def check(self, rule: Rule) -> list[RuleIssue]:
        return value_from_issues(_condition(rule).value_from) + cost.check(rule)

    def sample(self, rule: Rule) -> Sample:
        if _condition(rule).measure == "cost":
            return cost.sample(rule, _condition(rule).cost_value, _condition(rule).cost_levels)
        return _sample(rule, _condition(rule))


THRESHOLD = ThresholdKind()

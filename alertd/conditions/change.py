"""``change`` conditions: the last complete period against an earlier one, by percent.

The judged period is the last one that has ended (the running one is never complete), and it
is judged only once its data is complete; until then the finding is ``nodata``. It is compared
with the period before it (``compare_to: previous``) or with the period that contained the
same local time seven days earlier (``last_week``: Monday against last Monday, so weekends are
compared with weekends; for weekly and monthly windows that is simply the previous period).

``min_volume`` guards both sides: a change is judged only when the judged period and the
compared one each reach it, so "2 → 4 calls" is no 100 % alarm. A drop to almost nothing
therefore is no ``change`` either; ``absence`` and ``anomaly`` rules catch those.

Negative usage (corrections: Stripe accepts negative meter events) is summed into the periods'
net totals. When either total is negative, a percent change means nothing (from -50 to 100
is no "+300 %"), so the finding is ``nodata``: it neither fires nor resolves.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from alertd import calendar
from alertd.conditions.base import (
    ADJECTIVE,
    Baseline,
    ConditionKind,
    ConditionModel,
    Direction,
    Sample,
)
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
from alertd.templating import format_number

if TYPE_CHECKING:
    from alertd.rules.schema import Rule


class ChangeCondition(ConditionModel):
    type: Literal["change"]
    compare_to: Literal["previous", "last_week"] = "previous"
    direction: Direction = "up"
    percent: Annotated[float, Field(gt=0)]
    min_volume: Annotated[float, Field(ge=0)] = 0.0


def week_earlier(period: Period, granularity: Granularity) -> Period:
    """The period of ``granularity`` containing the same local wall time 7 days before
    ``period`` starts (DST-safe: a 09:00 hour maps to last week's 09:00 hour)."""
    local = datetime.fromtimestamp(period.starts_at, calendar.zone(period.timezone))
    earlier = int((local - timedelta(days=7)).timestamp())
    return calendar.period_containing(earlier, granularity, period.timezone)


def judged_period(rule: Rule, now: int) -> Period:
    """The last period that has ended by ``now``."""
    current = calendar.period_containing(now, rule.window, rule.timezone)
    return calendar.shift(current, rule.window, -1)


def compared_period(rule: Rule, judged: Period) -> Period:
    if _condition(rule).compare_to == "last_week":
        return week_earlier(judged, rule.window)
    return calendar.shift(judged, rule.window, -1)


def change_percent(current: float, compared: float) -> float:
    """``(current - compared) / compared`` in percent; from zero, any rise is infinite."""
    if compared == 0:
        return 0.0 if current == 0 else float("inf")
    return (current - compared) / compared * 100


def _condition(rule: Rule) -> ChangeCondition:
    if not isinstance(rule.condition, ChangeCondition):
        raise TypeError(f"rule {rule.name} has no change condition")
    return rule.condition


class ChangeEvaluator:
    """The :class:`~alertd.conditions.base.Evaluator` of ``change`` conditions."""

    def needs(self, rule: Rule, customer: str, now: int) -> tuple[DataNeed, ...]:
        compared = compared_period(rule, judged_period(rule, now))
        return (data_need(rule, customer, now, compared.starts_at),)

    def evaluate(self, rule: Rule, series: Series, customer: Customer, now: int) -> Finding:
        judged = judged_period(rule, now)
        compared = compared_period(rule, judged)
        buckets = window_buckets(series, rule.window, rule.timezone)
        current = _if_complete(find_bucket(buckets, judged))
        if current is None:
            what = calendar.period_key(judged, rule.window)
            return no_complete_data(rule, series, judged, what)
        earlier = _if_complete(find_bucket(buckets, compared))
        if earlier is None:
            what = calendar.period_key(compared, rule.window)
            return no_complete_data(rule, series, judged, what)
        if min(current.value, earlier.value) < 0:
            return _negative(rule, series, judged, current, earlier, now)
        return _verdict(rule, series, judged, current, earlier, now)


def _negative(
    rule: Rule, series: Series, judged: Period, current: Bucket, earlier: Bucket, now: int
) -> Finding:
    earlier_period = Period(earlier.starts_at, earlier.ends_at, rule.timezone)
    return finding(
        rule, series, judged, state="nodata", value=current.value, figures=Baseline(earlier.value),
        complete=True,
        message=(f"net usage {number(current.value)} {describe_period(judged, rule.window, now)}"
                 f" vs {number(earlier.value)} "
                 f"{describe_period(earlier_period, rule.window, now)}: a negative total "
                 "(corrections exceeding usage) has no percent change, so it is not judged"),
    )


def _if_complete(bucket: Bucket | None) -> Bucket | None:
    return bucket if bucket is not None and bucket.complete else None


def is_change(condition: ChangeCondition, current: float, compared: float) -> bool:
    """Whether ``compared → current`` is a change the condition alerts on."""
    if min(current, compared) < condition.min_volume:
        return False
    percent = change_percent(current, compared)
    up = percent >= condition.percent
    down = percent <= -condition.percent
    if condition.direction == "up":
        return up
    if condition.direction == "down":
        return down
    return up or down


def _verdict(
    rule: Rule, series: Series, judged: Period, current: Bucket, earlier: Bucket, now: int
) -> Finding:
    condition = _condition(rule)
    percent = change_percent(current.value, earlier.value)
    active = is_change(condition, current.value, earlier.value)
    return finding(
        rule, series, judged,
        value=current.value,
        active=active,
        complete=True,
        level=rule.severity if active else None,
        figures=Baseline(earlier.value),
        message=_message(rule, judged, current, earlier, percent, now),
        details={
            "change_percent": _rounded(percent),
            "compare_to": condition.compare_to,
            "compared_window": {
                "starts_at": earlier.starts_at, "ends_at": earlier.ends_at,
                "timezone": rule.timezone,
            },
            "direction": condition.direction,
            "min_volume": condition.min_volume,
        },
    )


def _rounded(percent: float) -> float | None:
    """JSON has no infinity: a rise from zero is reported as ``None``."""
    return None if percent == float("inf") else round(percent, 1)


def _message(
    rule: Rule, judged: Period, current: Bucket, earlier: Bucket, percent: float, now: int
) -> str:
    """``2,400 on 2025-01-06 (UTC): +140% vs 1,000 on 2024-12-30 (UTC); alerts at +100%``."""
    condition = _condition(rule)
    sign = {"up": "+", "down": "-", "both": "±"}[condition.direction]
    change = "new usage from zero" if percent == float("inf") else f"{percent:+.0f}%"
    earlier_period = Period(earlier.starts_at, earlier.ends_at, rule.timezone)
    guard = f" with at least {number(condition.min_volume)} on both sides" if (
        condition.min_volume
    ) else ""
    return (
        f"{number(current.value)} {describe_period(judged, rule.window, now)}: {change} vs "
        f"{number(earlier.value)} {describe_period(earlier_period, rule.window, now)}; "
        f"alerts at {sign}{number(condition.percent)}%{guard}"
    )


def _sample(rule: Rule, condition: ChangeCondition) -> Sample:
    baseline = 120_000.0
    step = condition.percent / 100 * 1.5
    value = baseline * (1 - min(step, 0.9) if condition.direction == "down" else 1 + step)
    percent = round((value / baseline - 1) * 100, 1)
    message = f"{ADJECTIVE[rule.window]} usage {format_number(value)} changed {percent:+g}% " \
              f"vs {format_number(baseline)}"
    return Sample(value, message, Baseline(baseline),
                  details={"change_percent": percent, "previous": baseline,
                           "compare_to": condition.compare_to},
                  recent_level=baseline)


class ChangeKind(ChangeEvaluator, ConditionKind):
    """``change``: the last complete period against an earlier one; one episode may span
    periods."""

    type = "change"
    model = ChangeCondition
    per_period = False

    def judged_at(self, rule: Rule) -> Granularity | None:
        return rule.window

    def reads_running_period(self, rule: Rule) -> bool:
        return False

    def sample(self, rule: Rule) -> Sample:
        return _sample(rule, _condition(rule))


CHANGE = ChangeKind()

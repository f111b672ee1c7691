"""``absence`` conditions: no usage (total at most ``floor``) over the last ``duration``.

Judged on hourly buckets, whatever the rule's window, so a stop is noticed ``duration`` after
it happened rather than at the next midnight; ``duration`` is rounded up to whole hours, which
only ever asks for more silence. The judged span is the last ``duration`` of *complete*
buckets, ending where complete data ends, and the whole span must be inside the fetched range.

Absence is a state, not a per-period event, so its findings carry an empty ``period_key``: a
customer that stays silent is one alert, not one per day.

Never judged while the data is stale (``refreshed_at`` older than ``stale_after``) or when the
complete data does not reach back ``duration``: silence in data that has not arrived is no
silence, so those are ``nodata``.

Negative usage (corrections: Stripe accepts negative meter events) is never "no usage". The
span's usage is what its positive buckets add up to; a correction cannot cancel it out. A span
whose positive usage stays at most ``floor`` but that holds a negative bucket is not judged
(``nodata``): a correction arriving is activity, and what it corrects is unknown.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from alertd import calendar
from alertd.clock import format_duration, readable_duration
from alertd.conditions.base import Bound, ConditionKind, ConditionModel, RuleIssue, Sample
from alertd.conditions.series import (
    complete_buckets,
    data_need,
    finding,
    is_stale,
    local_time,
    number,
)
from alertd.config.settings import PositiveDuration
from alertd.model import Bucket, Customer, DataNeed, Finding, Granularity, Period, Series

if TYPE_CHECKING:
    from alertd.rules.schema import Rule

DEFAULT_STALE_AFTER = 7200.0


class AbsenceCondition(ConditionModel):
    type: Literal["absence"]
    duration: PositiveDuration
    floor: Annotated[float, Field(ge=0)] = 0.0


def _condition(rule: Rule) -> AbsenceCondition:
    if not isinstance(rule.condition, AbsenceCondition):
        raise TypeError(f"rule {rule.name} has no absence condition")
    return rule.condition


def span_hours(rule: Rule) -> int:
    """``duration`` in whole hourly buckets, rounded up."""
    return max(1, math.ceil(_condition(rule).duration / 3600))


def last_usage_end(buckets: Sequence[Bucket]) -> int | None:
    """The end of the last bucket with any usage in it."""
    for bucket in reversed(buckets):
        if bucket.value > 0:
            return bucket.ends_at
    return None


class AbsenceEvaluator:
    """The :class:`~alertd.conditions.base.Evaluator` of ``absence`` conditions."""

    def __init__(self, stale_after: float = DEFAULT_STALE_AFTER) -> None:
        self.stale_after = stale_after

    def needs(self, rule: Rule, customer: str, now: int) -> tuple[DataNeed, ...]:
        latest = calendar.period_containing(now, "hour", rule.timezone)
        # Beyond the span: the running hour, and as many hours as data may trail ``now``
        # without being stale, so that fresh-enough data always covers the whole span.
        slack = 1 + math.ceil(self.stale_after / 3600)
        earliest = calendar.shift(latest, "hour", -(span_hours(rule) + slack))
        return (data_need(rule, customer, now, earliest.starts_at, "hour"),)

    def evaluate(self, rule: Rule, series: Series, customer: Customer, now: int) -> Finding:
        window = calendar.period_containing(now, "hour", rule.timezone)
        if series.refreshed_at is not None and is_stale(series.refreshed_at, now,
                                                        self.stale_after):
            return self._stale(rule, series, window)
        span = complete_buckets(series.buckets)[-span_hours(rule):]
        if len(span) < span_hours(rule):
            return self._short(rule, series, window, len(span))
        return _verdict(rule, series, span)

    def _stale(self, rule: Rule, series: Series, window: Period) -> Finding:
        assert series.refreshed_at is not None
        return finding(
            rule, series, window, state="nodata", period_key="",
            message=(
                f"usage data is stale (refreshed {local_time(series.refreshed_at, rule.timezone)},"
                f" more than {readable_duration(self.stale_after, units=2)} ago): absence not "
                "judged"
            ),
        )

    @staticmethod
    def _short(rule: Rule, series: Series, window: Period, hours: int) -> Finding:
        return finding(
            rule, series, window, state="nodata", period_key="",
            message=(
                f"only {hours}h of complete data, {span_hours(rule)}h needed: absence not "
                f"judged"
            ),
        )


def _verdict(rule: Rule, series: Series, span: Sequence[Bucket]) -> Finding:
    condition = _condition(rule)
    total = sum(bucket.value for bucket in span if bucket.value > 0)
    corrections = sum(bucket.value for bucket in span if bucket.value < 0)
    window = Period(span[0].starts_at, span[-1].ends_at, rule.timezone)
    if corrections and total <= condition.floor:
        return finding(
            rule, series, window, state="nodata", value=total, complete=True, period_key="",
            message=(f"{number(corrections)} of corrections (negative usage) and "
                     f"{number(total)} of usage in the last "
                     f"{readable_duration(window.ends_at - window.starts_at, units=2)} of "
                     "complete data: absence not judged"),
        )
    active = total <= condition.floor
    last_end = last_usage_end(series.buckets)
    return finding(
        rule, series, window,
        value=total,
        active=active,
        complete=True,
        level=rule.severity if active else None,
        figures=Bound(condition.floor),
        period_key="",
        message=_message(rule, total, window, last_end),
        details={"last_usage_at": last_end, "duration": condition.duration},
    )


def _message(rule: Rule, total: float, window: Period, last_end: int | None) -> str:
    """``no usage in the last 6h of complete data (2025-01-16 04:00 UTC to 10:00)``."""
    condition = _condition(rule)
    span = (
        f"the last {readable_duration(window.ends_at - window.starts_at, units=2)} of complete "
        "data "
        f"({local_time(window.starts_at, rule.timezone)} to "
        f"{local_time(window.ends_at, rule.timezone)})"
    )
    if total > condition.floor:
        return f"{number(total)} in {span}"
    what = "no usage" if total == 0 else f"only {number(total)} (floor {number(condition.floor)})"
    last = "" if last_end is None else (
        f"; last usage in the hour before {local_time(last_end, rule.timezone)}"
    )
    return f"{what} in {span}{last}"


def _issues(rule: Rule, condition: AbsenceCondition) -> list[RuleIssue]:
    bucket, unit = (3600.0, "hour") if rule.window == "hour" else (86400.0, "day")
    if condition.duration >= bucket:
        return []
    return [RuleIssue(
        ("condition", "duration"),
        f"condition.duration: at least {format_duration(bucket)} with window: {rule.window} "
        f"(usage is counted in {unit} buckets, so a shorter silence cannot be seen), "
        f"got {format_duration(condition.duration)}"
        + ("; use window: hour for shorter silences" if unit == "day" else ""),
    )]


class AbsenceKind(AbsenceEvaluator, ConditionKind):
    """``absence``: a state, not a per-period event; judged on hourly buckets."""

    type = "absence"
    model = AbsenceCondition
    per_period = False

    def judged_at(self, rule: Rule) -> Granularity | None:
        return "hour"

    def reads_running_period(self, rule: Rule) -> bool:
        return False

    def check(self, rule: Rule) -> list[RuleIssue]:
        return _issues(rule, _condition(rule))

    def sample(self, rule: Rule) -> Sample:
        silent = _condition(rule).duration + 1800
        return Sample(0.0, f"no usage for {readable_duration(silent)}",
                      Bound(_condition(rule).floor), details={"silent_for": silent},
                      recent_level=40_000.0, recent_silent=True)


ABSENCE = AbsenceKind()

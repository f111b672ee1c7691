"""``absence`` conditions: no usage (total at most ``floor``) over the last ``duration``.

Judged on hourly buckets, whatever the rule's window, so a stop is noticed ``duration`` after
it happened rather than at the next midnight; ``duration`` is rounded up to whole hours, which
only ever asks for more silence. The judged span is the last ``duration`` of *complete*
buckets, ending where complete data ends, and the whole span must be inside the fetched range.

Absence is a state, not a per-period event, so its findings carry an empty ``period_key``: a
customer that stays silent is one alert, not one per day.

Without a fixed ``duration``, each customer's usual gaps are learned from the last ``history``
of hourly buckets: the silence alerted on is :data:`GAP_MARGIN` times the customer's second
longest gap (a gap that happened at least twice is one they often have; the longest alone may
have been an outage), and at least :data:`MIN_GAP_HOURS`. So a small customer idle every night
is not "absent" every night, and one that never pauses is told within two hours.

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
#: The shortest learned silence, in hours (a fixed ``duration`` may be shorter).
MIN_GAP_HOURS = 2
#: How much longer than a usual gap a silence must be to be an absence.
GAP_MARGIN = 1.5


class AbsenceCondition(ConditionModel):
    type: Literal["absence"]
    #: A fixed silence to alert on; unset, each customer's usual gaps are learned instead.
    duration: PositiveDuration | None = None
    floor: Annotated[float, Field(ge=0)] = 0.0
    #: How far back usual gaps are learned (only without ``duration``).
    history: PositiveDuration = 28 * 86400.0


def _condition(rule: Rule) -> AbsenceCondition:
    if not isinstance(rule.condition, AbsenceCondition):
        raise TypeError(f"rule {rule.name} has no absence condition")
    return rule.condition


def span_hours(rule: Rule) -> int:
    """``duration`` in whole hourly buckets, rounded up; without one, the hours of ``history``
    (the range usual gaps are learned from)."""
    condition = _condition(rule)
    seconds = condition.history if condition.duration is None else condition.duration
    return max(1, math.ceil(seconds / 3600))


def learned_span(buckets: Sequence[Bucket], floor: float) -> tuple[int, int]:
    """``(hours of silence alerted on, the usual gap in hours)`` from complete ``buckets``:
    gaps are runs of hours at most ``floor``; the run still going at the end is not one."""
    gaps: list[int] = []
    run = 0
    for bucket in buckets:
        if bucket.value <= floor:
            run += 1
        elif run:
            gaps.append(run)
            run = 0
    gaps.sort(reverse=True)
    usual = gaps[1] if len(gaps) > 1 else 0
    return max(MIN_GAP_HOURS, math.ceil(GAP_MARGIN * usual)), usual


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
        complete = complete_buckets(series.buckets)
        usual = None
        hours = span_hours(rule)
        if _condition(rule).duration is None:
            hours, usual = learned_span(complete, _condition(rule).floor)
        span = complete[-hours:]
        if len(span) < hours:
            return self._short(rule, series, window, len(span), hours)
        return _verdict(rule, series, span, usual)

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
    def _short(rule: Rule, series: Series, window: Period, hours: int, needed: int) -> Finding:
        return finding(
            rule, series, window, state="nodata", period_key="",
            message=f"only {hours}h of complete data, {needed}h needed: absence not judged",
        )


def _verdict(
    rule: Rule, series: Series, span: Sequence[Bucket], usual: int | None = None
) -> Finding:
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
        message=_message(rule, total, window, last_end) + (
            "" if usual is None else f" (this customer's usual gaps: up to {usual}h)"
        ),
        details={"last_usage_at": last_end,
                 "duration": condition.duration if usual is None else len(span) * 3600.0,
                 "usual_gap_hours": usual},
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
    if condition.duration is None or condition.duration >= bucket:
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
        silent = (_condition(rule).duration or 6 * 3600.0) + 1800  # learned: say six hours
        return Sample(0.0, f"no usage for {readable_duration(silent)}",
                      Bound(_condition(rule).floor), details={"silent_for": silent},
                      recent_level=40_000.0, recent_silent=True)


ABSENCE = AbsenceKind()

"""The evaluation of ``anomaly`` conditions: series → local-time values → assessment → finding.

Sits between ``series.build_series`` and the alert lifecycle: :class:`AnomalyEvaluator` asks for
the trailing ``history`` of hourly (``window: hour``) or daily buckets (``window: day``), lays
them out by *local* hour (or day) number — so "the same hour of the week" means the same local
wall-clock hour across DST — blanks ``exclude`` periods out, and judges the **latest complete**
bucket, never the running one, with :func:`alertd.conditions.anomaly_model.assess_many` (its
module docstring has the method). :mod:`alertd.conditions.anomaly` holds the condition's
settings, its rule checks and the kind, and documents each setting.

**Batches.** The engine hands a rule's series of a batch of customers over together
(:meth:`AnomalyEvaluator.evaluate_many`; ``evaluate`` is a batch of one): each series is laid
out on its own (:func:`_lay_out`: the judged bucket, the history, local time, ``exclude``),
those not judged get their finding there, and the detector judges the rest together, one
batch per length (a rule's series share the need's range; only customers whose first usage
falls inside it are shorter). Judged one by one, the detector was two thirds of the cost of
an anomaly series (0.21 of 0.31 ms on ``bench/dryrun.py``'s hourly rules, 3,238 series/s on
one core); judged together, it is a small part (see :mod:`alertd.conditions.anomaly_model`).

It reads a series as columns (:mod:`alertd.conditions.columns`): the ~840 buckets of an hourly
rule's history stay numpy arrays, and only the judged bucket becomes a :class:`Bucket`. The
local-time layout and the ``exclude`` mask are :mod:`alertd.conditions.anomaly_time`'s, worked
out once per (zone, range) and shared by every series of the rule.

**Negative usage** (corrections: Stripe accepts negative meter events) is no usage level to
learn or judge. A judged bucket whose net value is negative is not judged (``nodata``: neither
fires nor resolves), and negative history buckets count as 0, so one large correction neither
drags the expectation down nor widens the band.

Why over 400 lines: one kind's evaluation, series to finding, in the order it runs; the batch
lay-out (:func:`_lay_out_many`) is the per-series steps over rows and reads best beside them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, cast

import numpy as np

from alertd import calendar
from alertd.conditions.anomaly_model import Array, Assessment, Settings, assess_many
from alertd.conditions.anomaly_time import excluded, local_values
from alertd.conditions.base import Baseline
from alertd.conditions.columns import BucketColumns, columns_of
from alertd.conditions.series import data_need, finding, number, window_buckets
from alertd.model import (
    NO_FIGURES,
    Bucket,
    Customer,
    DataNeed,
    Finding,
    Granularity,
    Period,
    Series,
)

if TYPE_CHECKING:
    from alertd.conditions.anomaly import AnomalyCondition, ExcludePeriod
    from alertd.rules.schema import Rule

METHOD_HOUR_OF_DAY = "same hour of day"
METHOD_HOUR_OF_WEEK = "same hour of week"
METHOD_DAY_OF_WEEK = "same weekday"


@dataclass(frozen=True, slots=True)
class Plan:
    """How buckets of one size are judged (counts in buckets; see :class:`Settings`)."""

    unit_seconds: int
    seasons: tuple[tuple[int, str], ...]
    pool: int
    lookback: int
    hold: int
    min_adaptation: int
    min_errors: int


#: How many judged buckets' names (:func:`span`, :func:`period_key`) are kept: a pass judges
#: one bucket per rule window and zone.
NAMES = 256

HOURLY = Plan(3600, ((24, METHOD_HOUR_OF_DAY), (168, METHOD_HOUR_OF_WEEK)),
              pool=168, lookback=24, hold=0, min_adaptation=2, min_errors=12)
DAILY = Plan(86400, ((7, METHOD_DAY_OF_WEEK),), pool=28, lookback=7, hold=0, min_adaptation=3,
             min_errors=7)
#: Weeks and months (not accepted by rule validation, but judged sensibly if asked): no seasons.
LONGER = Plan(0, (), pool=12, lookback=2, hold=0, min_adaptation=2, min_errors=3)


def plan_for(window: Granularity) -> Plan:
    return HOURLY if window == "hour" else DAILY if window == "day" else LONGER


def settings_for(condition: AnomalyCondition, plan: Plan) -> Settings:
    unit = plan.unit_seconds or 30 * 86400
    adaptation = max(plan.min_adaptation, round(condition.adaptation / unit))
    return Settings(
        sensitivity=condition.sensitivity, adaptation=adaptation, pool=plan.pool,
        lookback=plan.lookback, hold=plan.hold, seasons=plan.seasons,
        direction=condition.direction, min_volume=condition.min_volume,
        min_errors=plan.min_errors,
    )


class AnomalyEvaluator:
    """Judges ``condition: {type: anomaly}`` rules (the module docstring has the method)."""

    def needs(self, rule: Rule, customer: str, now: int) -> tuple[DataNeed, ...]:
        """One need: the rule's buckets from ``history`` before the current period's start to
        the end of the current period, or ``now`` rounded up to the minute if earlier."""
        current = calendar.period_containing(now, rule.window, rule.timezone)
        granularity: Granularity = "hour" if rule.window == "hour" else "day"
        starts_at = history_start(current, granularity, _condition(rule).history)
        return (data_need(rule, customer, now, starts_at, granularity),)

    def evaluate(self, rule: Rule, series: Series, customer: Customer, now: int) -> Finding:
        """The verdict on the latest complete bucket: ``nodata`` when there is none yet;
        inactive, saying why, before ``min_history``, with too little history, or when the
        bucket is excluded (:meth:`evaluate_many` of one series)."""
        return self.evaluate_many(rule, ((series, customer),), now)[0]

    def evaluate_many(self, rule: Rule, items: Sequence[tuple[Series, Customer]], now: int
                      ) -> list[Finding]:
        """:meth:`evaluate` of each ``(series, customer)`` of ``rule``: the series are laid out
        one by one, then the detector judges those of one length together
        (:func:`~alertd.conditions.anomaly_model.assess_many`: a pass hands every series of a
        rule over at once, and nearly all have the full history, so one batch).

        Reads each series as columns (arrays): no bucket object is made but the judged one."""
        condition = _condition(rule)
        plan = plan_for(rule.window)
        findings: list[Finding | None] = [None] * len(items)
        waiting: dict[int, list[tuple[int, Series, Bucket, Array]]] = {}
        for index, laid_out in enumerate(_lay_out_many(rule, condition, plan,
                                                       [s for s, _ in items], now)):
            series = items[index][0]
            if isinstance(laid_out, Finding):
                findings[index] = laid_out
            else:
                judged, values = laid_out
                waiting.setdefault(len(values), []).append((index, series, judged, values))
        config = settings_for(condition, plan)
        for group in waiting.values():
            block = np.stack([values for *_, values in group])
            for (index, series, judged, _), assessment in zip(
                    group, assess_many(block, config), strict=True):
                findings[index] = _no_verdict(
                    rule, series, judged,
                    f"not enough history yet to learn this {rule.window}'s usual",
                ) if assessment is None else judge(rule, condition, series, judged, assessment)
        return [f for f in findings if f is not None]


LaidOut = Finding | tuple[Bucket, Array]


def _lay_out_many(rule: Rule, condition: AnomalyCondition, plan: Plan,
                  many: Sequence[Series], now: int) -> list[LaidOut]:
    """:func:`_lay_out` of each series; those with the same bucket starts (a rule's series in
    a pass) and judged bucket are laid out together where they are judged (complete, not
    negative, enough history: the others are settled one by one, as :func:`_lay_out` does)."""
    laid: list[LaidOut | None] = [None] * len(many)
    if rule.window not in ("hour", "day"):
        return [_lay_out(rule, condition, plan, series, now) for series in many]
    columns = [columns_of(series.buckets) for series in many]
    shared: dict[tuple[int, int, int], list[int]] = {}
    for index, column in enumerate(columns):
        starts = column.starts
        key = (len(starts), int(starts[0]), int(starts[-1])) if len(starts) else (0, 0, 0)
        shared.setdefault(key, []).append(index)
    for indices in shared.values():
        starts = columns[indices[0]].starts
        alike = [i for i in indices if np.array_equal(columns[i].starts, starts)]
        for index in set(indices) - set(alike):
            laid[index] = _lay_out(rule, condition, plan, many[index], now)
        if len(alike) < 2 or not len(starts):
            for index in alike:
                laid[index] = _lay_out(rule, condition, plan, many[index], now)
            continue
        for index, value in zip(alike, _lay_out_alike(
                rule, condition, plan, [many[i] for i in alike], [columns[i] for i in alike],
                now), strict=True):
            laid[index] = value
    return [value for value in laid if value is not None]


def _lay_out_alike(rule: Rule, condition: AnomalyCondition, plan: Plan,
                   alike: Sequence[Series], columns: Sequence[BucketColumns], now: int
                   ) -> list[LaidOut]:
    """:func:`_lay_out_many` of series with the same bucket starts (``columns``: theirs)."""
    starts = columns[0].starts
    values = np.stack([c.values for c in columns])
    complete = np.stack([c.complete for c in columns])
    count = values.shape[1]
    last = count - 1 - np.argmax(complete[:, ::-1], axis=1)  # argmax: the first True
    rows = np.arange(len(alike))
    at = np.where(complete[rows, last], last, -1)
    # Judged together where the judged bucket is one (the usual case) and not negative.
    judged_at = int(np.bincount(at + 1).argmax()) - 1
    together = (at == judged_at) & (values[:, max(judged_at, 0)] >= 0) & (judged_at >= 0)
    if judged_at > 0:
        # History counts from the first bucket with usage (history_shortfall).
        used = values[:, :judged_at] != 0
        first = np.argmax(used, axis=1)
        seen = np.where(used[rows, first], starts[judged_at] - starts[first], 0)
        together &= seen >= condition.min_history
    else:  # nothing before the judged bucket: no history yet
        together &= condition.min_history <= 0
    laid: list[LaidOut | None] = [None] * len(alike)
    chosen = np.flatnonzero(together)
    if len(chosen):
        rows_values = judged_rows(starts[:judged_at + 1], values[chosen, :judged_at + 1], plan,
                                  rule.timezone, condition.exclude)
        for row, laid_values in zip(chosen.tolist(), rows_values, strict=True):
            judged = columns[row][judged_at]
            laid[row] = _no_verdict(rule, alike[row], judged,
                                    "excluded (condition.exclude): not judged"
                                    ) if laid_values is None else (judged, laid_values)
    for row in np.flatnonzero(~together).tolist():
        laid[row] = _lay_out(rule, condition, plan, alike[row], now)
    return [value for value in laid if value is not None]


def _lay_out(rule: Rule, condition: AnomalyCondition, plan: Plan, series: Series, now: int
             ) -> LaidOut:
    """The judged bucket and the values the detector is handed for one series, or the finding
    when it is not judged (no complete bucket, negative, too little history, excluded)."""
    columns = columns_of(
        series.buckets if rule.window in ("hour", "day")
        else window_buckets(series, rule.window, rule.timezone)
    )
    judged_at = latest_complete(columns)
    if judged_at is None:
        return _nodata(rule, series, columns, now)
    judged = columns[judged_at]
    if judged.value < 0:
        return _negative(rule, series, judged)
    # Completeness grows from the start (the freshness rule): all before it is complete.
    shortfall = history_shortfall(columns, judged_at, condition.min_history)
    if shortfall is not None:
        return _no_verdict(rule, series, judged, shortfall)
    values = judged_values(columns, judged_at, plan, rule.timezone, condition.exclude)
    if values is None:
        return _no_verdict(rule, series, judged, "excluded (condition.exclude): not judged")
    return judged, values


# --------------------------------------------------------------------------- data


def history_start(current: Period, granularity: Granularity, history: float) -> int:
    """``history`` of local wall-clock time before ``current`` starts, floored to a bucket, so
    ``35d`` means 35 local days even across a DST change."""
    zone = calendar.zone(current.timezone)
    local = datetime.fromtimestamp(current.starts_at, zone).replace(tzinfo=None)
    earlier = (local - timedelta(seconds=history)).replace(tzinfo=zone)
    return calendar.floor(int(earlier.timestamp()), granularity, current.timezone)


def latest_complete(columns: BucketColumns) -> int | None:
    """The index of the last complete bucket (the running one is never judged)."""
    complete = columns.complete
    if not len(complete):
        return None
    last = len(complete) - 1 - int(np.argmax(complete[::-1]))  # argmax: the first True
    return last if complete[last] else None


def history_shortfall(columns: BucketColumns, judged_at: int, min_history: float) -> str | None:
    """Why no verdict can be given yet on bucket ``judged_at``, or ``None``. History counts
    from the first bucket with usage: zero-filled buckets before a customer's first use say
    nothing about them."""
    first = first_nonzero(columns.values[:judged_at])
    seen = 0 if first is None else int(columns.starts[judged_at] - columns.starts[first])
    if seen >= min_history:
        return None
    return f"not enough history: {seen // 86400:g} of {min_history / 86400:g} days"


# --------------------------------------------------------------------------- values


def judged_values(
    columns: BucketColumns, judged_at: int, plan: Plan, tz: str,
    exclude: Sequence[ExcludePeriod],
) -> Array | None:
    """The values up to the judged bucket ``judged_at``, one per local unit from the local day
    of the first usage on, ``NaN`` where no bucket exists (the hour a DST change skips) or the
    bucket is excluded; ``None`` when the judged bucket itself is excluded."""
    return judged_rows(columns.starts[:judged_at + 1], columns.values[np.newaxis, :judged_at + 1],
                       plan, tz, exclude)[0]


def judged_rows(
    starts: np.ndarray, raw: Array, plan: Plan, tz: str, exclude: Sequence[ExcludePeriod],
) -> list[Array | None]:
    """:func:`judged_values` of each row of ``raw`` (series with the bucket starts ``starts``,
    the judged bucket last), laid out together."""
    if plan.unit_seconds:
        first, values = local_values(starts, raw, plan.unit_seconds, tz)
    else:
        first, values = 0, raw
    # Negative buckets (corrections) are no usage level to learn: they count as 0.
    values = np.maximum(values, 0.0)
    judged = np.ones(len(values), dtype=bool)
    if exclude and plan.unit_seconds:
        values = np.where(excluded(first, values.shape[-1], plan.unit_seconds, exclude),
                          np.nan, values)
        judged = ~np.isnan(values[:, -1])
    used = values > 0  # NaN compares False
    unit = first + np.argmax(used, axis=1)  # the first usage's local unit (argmax: first True)
    per_day = 86400 // plan.unit_seconds if plan.unit_seconds else 1
    trims = np.where(used.any(axis=1), np.maximum(unit - unit % per_day - first, 0), 0)
    return [row[trim:] if keep else None
            for row, trim, keep in zip(values, trims.tolist(), judged.tolist(), strict=True)]


def first_nonzero(values: np.ndarray) -> int | None:
    """The index of the first non-zero entry, or ``None`` (one pass that stops at it, where
    ``flatnonzero`` would list them all)."""
    if not len(values):
        return None
    first = int(np.argmax(values != 0))
    return first if values[first] != 0 else None


# --------------------------------------------------------------------------- verdict


def judge(
    rule: Rule, condition: AnomalyCondition, series: Series, judged: Bucket,
    assessment: Assessment,
) -> Finding:
    """The finding for ``judged``: active while its episode lasts."""
    value, expected = judged.value, assessment.expected
    low, high = assessment.low, assessment.high
    window = Period(judged.starts_at, judged.ends_at, rule.timezone)
    active = assessment.active
    # A verdict on the mean of the last few buckets (a lasting shift) says so.
    mean = "" if assessment.span == 1 else (
        f"; the last {assessment.span} {rule.window}s averaged {number(assessment.value)}")
    message = (
        f"{verdict(assessment.score, active, assessment.outside)}: {number(value)} "
        f"{span(window, rule.window)}{mean}, expected {number(expected)} "
        f"({number(low)}–{number(high)}, {assessment.method})"
    )
    size = judged.ends_at - judged.starts_at
    since = None
    if active and assessment.started:
        since = judged.starts_at - assessment.started * size
        began = Period(since, since + size, rule.timezone)
        message += f"; unusual since {span(began, rule.window)}"
    quiet = value < condition.min_volume and expected < condition.min_volume
    if quiet:
        message += f"; both below min_volume {number(condition.min_volume)}"
    details = {
        "band": [low, high],
        "method": assessment.method,
        "score": round(assessment.score, 2),
        "sensitivity": condition.sensitivity,
        "direction": condition.direction,
        "samples": assessment.errors,
        "span": assessment.span,
        "episode_since": since,
    }
    return _finding(rule, series, judged, active, message, baseline=expected, details=details)


def verdict(score: float, active: bool, outside: bool) -> str:
    if not active:
        return "as usual"
    if not outside:
        return "back inside the band, episode held"
    return "unusually high" if score > 0 else "unusually low"


@lru_cache(maxsize=NAMES)
def span(window: Period, granularity: Granularity) -> str:
    """``2025-01-03 14:00–15:00 UTC`` for an hour, ``on 2025-01-03 (UTC)`` otherwise.
    Cached: every series of a rule is judged on the same bucket."""
    if granularity != "hour":
        return f"on {calendar.period_key(window, granularity)} ({window.timezone})"
    start = datetime.fromtimestamp(window.starts_at, calendar.zone(window.timezone))
    # Named by wall-clock hours, so the repeated hour of a DST change reads 01:00–02:00 twice.
    return f"{start:%Y-%m-%d %H:%M}–{(start.hour + 1) % 24:02d}:{start:%M} {window.timezone}"


# --------------------------------------------------------------------------- findings


def _condition(rule: Rule) -> AnomalyCondition:
    # The condition model lives with the kind (anomaly.py, which imports this module).
    if rule.condition.type != "anomaly":
        raise TypeError(f"rule {rule.name} has no anomaly condition")
    return cast("AnomalyCondition", rule.condition)


def _finding(
    rule: Rule,
    series: Series,
    judged: Bucket,
    active: bool,
    message: str,
    *,
    baseline: float | None = None,
    details: dict[str, object] | None = None,
) -> Finding:
    window = Period(judged.starts_at, judged.ends_at, rule.timezone)
    return finding(
        rule, series, window, message=message, value=judged.value, active=active,
        complete=True, level=rule.severity if active else None,
        figures=NO_FIGURES if baseline is None else Baseline(baseline),
        period_key=period_key(window, rule.window), details=details or {},
    )


@lru_cache(maxsize=NAMES)
def period_key(window: Period, granularity: Granularity) -> str:
    """:func:`alertd.calendar.period_key`, cached as :func:`span` is."""
    return calendar.period_key(window, granularity)


def _no_verdict(rule: Rule, series: Series, judged: Bucket, reason: str) -> Finding:
    return _finding(rule, series, judged, False, reason, details={"method": "none"})


def _negative(rule: Rule, series: Series, judged: Bucket) -> Finding:
    window = Period(judged.starts_at, judged.ends_at, rule.timezone)
    return finding(
        rule, series, window, state="nodata", value=judged.value, complete=True,
        message=(f"net usage {number(judged.value)} {span(window, rule.window)}: corrections "
                 "(negative meter events) exceed the usage, so it is not judged as an anomaly"),
    )


def _nodata(rule: Rule, series: Series, buckets: BucketColumns, now: int) -> Finding:
    if buckets:
        window = Period(buckets[-1].starts_at, buckets[-1].ends_at, rule.timezone)
    else:
        window = calendar.period_containing(now, rule.window, rule.timezone)
    return finding(rule, series, window, state="nodata", message="no complete bucket yet")

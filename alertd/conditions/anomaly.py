"""``anomaly`` conditions: is the latest complete bucket far outside what this time usually sees?

Sits between ``series.build_series`` and the alert lifecycle: :class:`AnomalyEvaluator` asks for
the trailing ``history`` of hourly (``window: hour``) or daily buckets (weeks and months are
summed from days), then judges the **latest complete** bucket, never the running one, against a
robust, seasonality-aware expectation built from the complete buckets before it.

**Center.** The median of the same *season slot* in up to :data:`MAX_SEASONS` earlier
seasons: for an hour, the same local hour of the week (Monday 14:00 is compared with earlier
Mondays 14:00, so weekends, night shifts and customers in other time zones need no model); for
a day, the same weekday. While the history is too short for that to be measured (see below), it
falls back to the same hour of earlier days, then to the previous buckets.

**Spread.** Four samples make a poor MAD, so the spread comes from the errors this same
predictor made over the recent past (every other hour of the last week; every day of the last
four weeks): each such bucket divided by the median of *its* earlier seasons. The MAD of those
ratios (x 1.4826, the normal-consistent scale) times the center is the spread — unless the
slot's own samples spread wider (on-off usage: "0, 0, 300, 400" on the last four Saturdays).
It is at least :data:`RELATIVE_FLOOR` of the center and :data:`ABSOLUTE_FLOOR`, so a flat
series does not alert on tiny wiggles, and at least the square root of the center, because
usage is counted: a count of about n varies by about sqrt(n) by chance alone, which is what
makes quiet hours relatively noisier than busy ones. The band is
``center ± sensitivity x spread``.

**Recent level.** The median of those ratios over the last day of hours (week of days) says
where usage runs now. The band scaled by it is joined to the seasonal band (their hull is the
band), so a level shift alerts while the recent level still reflects the old normal — about
half a day for hourly rules — and then becomes the new normal; a return to the old normal is
inside the seasonal band, so recovery from a stop never alerts. Anomalous buckets are
deliberately *not* excluded from the history: that would make a level shift alert forever,
and the medians already ignore a few outliers.

**Idle slots.** When the center is zero (a customer who uses the product a few days a month,
or never at night), any use would be infinitely many spreads away. Such a bucket is compared
with the customer's own non-zero buckets instead: only usage well above its usual busy buckets
is unusual, and nothing is too low.

**Negative usage** (corrections: Stripe accepts negative meter events) is no usage level to
learn or judge. A judged bucket whose net value is negative is not judged (``nodata``: neither
fires nor resolves), and negative history buckets count as 0 when the expectation is built, so
one large correction neither drags the center down nor widens the band.

``score`` is in spreads from the nearest expectation (0 between the two), so
``|score| > sensitivity`` is exactly "outside the band". ``min_history`` counts from the first
bucket with usage: a new customer gets no verdict, and is told so. ``min_volume``: a bucket
whose value and expectation are both below it is never anomalous.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from alertd import calendar as windows
from alertd.clock import format_duration
from alertd.conditions.base import (
    ADJECTIVE,
    Baseline,
    ConditionKind,
    ConditionModel,
    Direction,
    RuleIssue,
    Sample,
)
from alertd.conditions.series import data_need, finding, number, window_buckets
from alertd.config.settings import PositiveDuration
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
from alertd.templating import format_number

if TYPE_CHECKING:
    from alertd.rules.schema import Rule

#: MAD times this estimates the standard deviation of normally distributed data.
MAD_SCALE = 1.4826
#: The spread is at least this fraction of the expected value (with the default sensitivity
#: of 4, nothing within ±28 % is unusual)...
RELATIVE_FLOOR = 0.07
#: ...and at least this many units, so "0, 0, 0, 1" is not a many-sigma event.
ABSOLUTE_FLOOR = 1.0
#: A center is the median of at most this many earlier seasons.
MAX_SEASONS = 8
#: The trailing method (weeks, months, very short histories) needs this many earlier buckets.
MIN_SAMPLES = 3

#: A bucket's value; ``map`` with it reads the ~840 buckets of a judgement at C speed.
VALUE = attrgetter("value")

METHOD_HOUR_OF_WEEK = "seasonal-hour-of-week median/MAD"
METHOD_HOUR_OF_DAY = "seasonal-hour-of-day median/MAD"
METHOD_DAY_OF_WEEK = "seasonal-day-of-week median/MAD"
METHOD_RECENT = "recent-buckets median/MAD"
METHOD_TRAILING = "trailing median/MAD"
METHOD_IDLE = "idle-slot: non-zero buckets median/MAD"


@dataclass(frozen=True, slots=True)
class SlotScheme:
    """How buckets of one size are judged. ``seasons``: (length in buckets, method), best
    first. The errors of every ``stride``-th bucket of the last ``pool`` give the spread (at
    least ``min_pool`` buckets' worth are needed); those of the last ``recent`` the level."""

    unit_seconds: int
    seasons: tuple[tuple[int, str], ...]
    pool: int
    min_pool: int
    recent: int
    stride: int = 1

    def pool_units(self, unit: int) -> range:
        """The pooled buckets before ``unit``, ending with the one just before it."""
        count = -(-self.pool // self.stride)
        return range(unit - 1 - (count - 1) * self.stride, unit, self.stride)


HOURLY = SlotScheme(
    3600,
    ((168, METHOD_HOUR_OF_WEEK), (24, METHOD_HOUR_OF_DAY), (1, METHOD_RECENT)),
    # Every other hour of the last week: a week still covers weekdays and the weekend, at
    # half the cost (the bench judges a million hours).
    pool=168, min_pool=24, recent=24, stride=2,
)
DAILY = SlotScheme(86400, ((7, METHOD_DAY_OF_WEEK), (1, METHOD_RECENT)), pool=28, min_pool=7,
                   recent=7)
#: Weeks and months: too few in any sensible history for seasons; trailing median/MAD only.
LONGER = SlotScheme(0, (), pool=0, min_pool=0, recent=0)


class AnomalyEvaluator:
    """Judges ``condition: {type: anomaly}`` rules (the module docstring has the method)."""

    def needs(self, rule: Rule, customer: str, now: int) -> tuple[DataNeed, ...]:
        """One need: the rule's buckets from ``history`` before the current period's start to
        the end of the current period, or ``now`` rounded up to the minute if earlier."""
        current = windows.period_containing(now, rule.window, rule.timezone)
        granularity: Granularity = "hour" if rule.window == "hour" else "day"
        starts_at = history_start(current, granularity, _condition(rule).history)
        return (data_need(rule, customer, now, starts_at, granularity),)

    def evaluate(self, rule: Rule, series: Series, customer: Customer, now: int) -> Finding:
        """The verdict on the latest complete bucket: ``nodata`` when there is none yet;
        inactive, saying why, before ``min_history`` or with too few samples."""
        condition = _condition(rule)
        buckets: Sequence[Bucket] = (
            series.buckets if rule.window in ("hour", "day")
            else window_buckets(series, rule.window, rule.timezone)
        )
        judged_at = latest_complete(buckets)
        if judged_at is None:
            return _nodata(rule, series, buckets, now)
        judged = buckets[judged_at]
        if judged.value < 0:
            return _negative(rule, series, judged)
        # Completeness grows from the start (the freshness rule): all before it is complete.
        history = without_corrections(buckets[:judged_at])
        shortfall = history_shortfall(history, judged, condition.min_history)
        if shortfall is not None:
            return _no_verdict(rule, series, judged, shortfall)
        expectation = expect(history, judged, rule.window, rule.timezone, condition.sensitivity)
        if expectation is None:
            return _no_verdict(
                rule, series, judged,
                f"not enough history: fewer than {MIN_SAMPLES} earlier {rule.window}s",
            )
        return judge(rule, condition, series, judged, expectation)


# --------------------------------------------------------------------------- data


def history_start(current: Period, granularity: Granularity, history: float) -> int:
    """``history`` of local wall-clock time before ``current`` starts, floored to a bucket, so
    ``35d`` means 35 local days even across a DST change."""
    zone = windows.zone(current.timezone)
    local = datetime.fromtimestamp(current.starts_at, zone).replace(tzinfo=None)
    earlier = (local - timedelta(seconds=history)).replace(tzinfo=zone)
    return windows.floor(int(earlier.timestamp()), granularity, current.timezone)


def without_corrections(history: Sequence[Bucket]) -> Sequence[Bucket]:
    """``history`` with negative buckets counted as 0 (copied only when there is one)."""
    if not history or min(map(VALUE, history)) >= 0:
        return history
    return [b if b.value >= 0 else replace(b, value=0.0) for b in history]


def latest_complete(buckets: Sequence[Bucket]) -> int | None:
    """The index of the last complete bucket (the running one is never judged)."""
    for index in range(len(buckets) - 1, -1, -1):
        if buckets[index].complete:
            return index
    return None


def history_shortfall(history: Sequence[Bucket], judged: Bucket, min_history: float) -> str | None:
    """Why no verdict can be given yet, or ``None``. History counts from the first bucket with
    usage: zero-filled buckets before a customer's first use say nothing about them."""
    first = next((b for b in history if b.value != 0), None)
    seen = 0 if first is None else judged.starts_at - first.starts_at
    if seen >= min_history:
        return None
    return f"not enough history: {seen // 86400:g} of {min_history / 86400:g} days"


# --------------------------------------------------------------------------- expectation


@dataclass(frozen=True, slots=True)
class Reference:
    """One expectation: a center and a spread (an estimated standard deviation)."""

    center: float
    spread: float

    def score(self, value: float) -> float:
        return (value - self.center) / self.spread


@dataclass(frozen=True, slots=True)
class Expectation:
    """What the judged bucket was expected to be: the seasonal reference and, when the recent
    level is known, the same scaled to it (the band is the hull of theirs)."""

    references: tuple[Reference, ...]
    sensitivity: float
    method: str
    samples: int
    level: float | None = None

    @property
    def band(self) -> tuple[float, float]:
        """``(low, high)``; a low below zero reads 0 (usage is never negative)."""
        k = self.sensitivity
        low = min(r.center - k * r.spread for r in self.references)
        high = max(r.center + k * r.spread for r in self.references)
        return max(low, 0.0), high

    def nearest(self, value: float) -> Reference:
        """The reference that explains ``value`` best (the smallest absolute score)."""
        return min(self.references, key=lambda r: abs(r.score(value)))

    def score(self, value: float) -> float:
        """Spreads from the nearest expectation; 0 between two expectations."""
        scores = [r.score(value) for r in self.references]
        if min(scores) <= 0 <= max(scores):
            return 0.0
        return min(scores, key=abs)


def expect(
    history: Sequence[Bucket], judged: Bucket, window: Granularity, tz: str, sensitivity: float
) -> Expectation | None:
    """The expectation for ``judged`` from the complete buckets before it (``None`` with too
    few samples for any method)."""
    plan = HOURLY if window == "hour" else DAILY if window == "day" else LONGER
    if plan.unit_seconds:
        line = timeline(history, plan.unit_seconds, tz)
        unit = local_units([judged.starts_at], plan.unit_seconds, tz)[0]
    else:
        line, unit = Timeline(0, [b.value for b in history]), len(history)
    line = line.since_first_use(86400 // plan.unit_seconds if plan.unit_seconds else 1)
    fitted = fit(line, unit, plan)
    if fitted is not None:
        return seasonal_expectation(line, fitted, plan, sensitivity)
    return trailing_expectation(line.present(), sensitivity)


@dataclass(frozen=True, slots=True)
class Fit:
    """A season whose recent errors could be measured: the judged bucket's center and its
    samples, and the recent buckets' ratios to their own centers (oldest first; ``recent``:
    those of the last ``plan.recent`` buckets)."""

    method: str
    center: float
    samples: list[float]
    errors: list[float]
    recent: list[float]


def fit(line: Timeline, unit: int, plan: SlotScheme) -> Fit | None:
    """The best season of ``plan`` for which at least ``min_pool`` recent errors exist."""
    pooled = plan.pool_units(unit)
    values = line.window(pooled.start, pooled.stop)[::plan.stride]
    recent = -(-plan.recent // plan.stride)
    for length, method in plan.seasons:
        season = Season(line, length)
        samples = season.samples(unit)
        if not samples:
            continue
        centers = season.centers(pooled)
        errors = ratios(values, centers)
        if len(errors) * plan.stride >= plan.min_pool:
            latest = ratios(values[-recent:], centers[-recent:])
            return Fit(method, median(samples), samples, errors, latest)
    return None


def ratios(values: Sequence[float | None], centers: Sequence[float | None]) -> list[float]:
    """``value / center`` wherever both exist and the center is above the floor."""
    return [
        value / center
        for value, center in zip(values, centers, strict=True)
        if value is not None and center is not None and center > ABSOLUTE_FLOOR
    ]


def seasonal_expectation(
    line: Timeline, fitted: Fit, plan: SlotScheme, sensitivity: float
) -> Expectation:
    center, count = fitted.center, len(fitted.samples)
    if center <= 0:
        return idle_expectation(line.present(), sensitivity, count)
    typical = median(fitted.errors)
    relative = MAD_SCALE * median([abs(r - typical) for r in fitted.errors])
    # The slot's own samples can only widen the band: on-off usage ("0, 0, 300, 400" on the
    # last four Saturdays) makes a median of 150 that 0 is not really far from.
    own = MAD_SCALE * median([abs(v - center) for v in fitted.samples])
    primary = Reference(center, floored(max(relative * center, own), center))
    recent = fitted.recent
    level = median(recent) if len(recent) * plan.stride >= plan.recent // 4 else None
    references = (primary,) if level is None else (
        primary, Reference(center * level, floored(primary.spread * level, center * level))
    )
    return Expectation(references, sensitivity, fitted.method, count, level)


def trailing_expectation(values: list[float], sensitivity: float) -> Expectation | None:
    """Median and MAD of every earlier bucket: weeks, months, and very short histories."""
    if len(values) < MIN_SAMPLES:
        return None
    center = median(values)
    if center <= 0 and any(v > 0 for v in values):
        return idle_expectation(values, sensitivity, len(values))
    mad = MAD_SCALE * median([abs(v - center) for v in values])
    return Expectation(
        (Reference(center, floored(mad, center)),), sensitivity, METHOD_TRAILING, len(values)
    )


def idle_expectation(values: Iterable[float], sensitivity: float, count: int) -> Expectation:
    """Usually nothing happens in this slot: a use is unusual only above the customer's own
    busy buckets (their median + sensitivity x their spread); nothing is too low."""
    busy = [v for v in values if v > 0] or [0.0]
    busy_center = median(busy)
    mad = MAD_SCALE * median([abs(v - busy_center) for v in busy])
    high = busy_center + sensitivity * floored(mad, busy_center)
    return Expectation((Reference(0.0, high / sensitivity),), sensitivity, METHOD_IDLE, count)


def floored(spread: float, center: float) -> float:
    """``spread``, but at least :data:`RELATIVE_FLOOR` of ``center``, :data:`ABSOLUTE_FLOOR`,
    and ``sqrt(center)``: usage is counted, and a count of about n varies by about sqrt(n) by
    chance alone (on a count of 20 that is 22 %; on a million, 0.1 %)."""
    size = abs(center)
    return max(spread, RELATIVE_FLOOR * size, ABSOLUTE_FLOOR, math.sqrt(size))


# --------------------------------------------------------------------------- seasons


@dataclass(frozen=True, slots=True)
class Timeline:
    """History values by local unit number (hours or days since 1970-01-01 local time;
    positions for weeks and months), densely: ``values[i]`` is unit ``first + i``, ``None``
    where no bucket exists (the hour a DST change skips; a repeated hour keeps its later
    bucket)."""

    first: int
    values: list[float | None]
    #: Whether any value is ``None``.
    gaps: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "gaps", None in self.values)

    def get(self, unit: int) -> float | None:
        index = unit - self.first
        return self.values[index] if 0 <= index < len(self.values) else None

    def window(self, lo: int, hi: int) -> list[float | None]:
        """Values of units ``lo`` to ``hi - 1``, ``None`` outside the timeline."""
        before = min(max(0, self.first - lo), hi - lo)
        inside: list[float | None] = self.values[max(lo - self.first, 0):max(hi - self.first, 0)]
        after = hi - lo - before - len(inside)
        if before or after:
            return [None] * before + inside + [None] * after
        return inside

    def present(self) -> list[float]:
        return [v for v in self.values if v is not None]

    def since_first_use(self, per_day: int) -> Timeline:
        """From the local day of the first usage on: zero-filled buckets before a customer's
        first use would make a two-week-old customer look idle half the time."""
        used = next((i for i, v in enumerate(self.values) if v), None)
        if used is None:
            return self
        start = self.first + used
        start = max(start - start % per_day, self.first)
        if start == self.first:
            return self
        return Timeline(start, self.values[start - self.first:])


@dataclass(frozen=True, slots=True)
class Season:
    """Medians of the same slot in earlier seasons of ``length`` units."""

    line: Timeline
    length: int

    def count(self, unit: int) -> int:
        """How many earlier seasons ``unit``'s center can use."""
        return max(0, min(MAX_SEASONS, (unit - self.line.first) // self.length))

    def samples(self, unit: int) -> list[float]:
        """The same slot in each earlier season that ``unit``'s center uses."""
        found = (self.line.get(unit - self.length * k) for k in range(1, self.count(unit) + 1))
        return [value for value in found if value is not None]

    def centers(self, units: range) -> list[float | None]:
        """The center of each of ``units`` (``None``: no earlier season)."""
        result: list[float | None] = []
        start, step = units.start, units.step
        while start < units.stop:
            seasons = self.count(start)
            boundary = units.stop
            if seasons < MAX_SEASONS:
                boundary = min(boundary, self.line.first + self.length * (seasons + 1))
            part = range(start, boundary, step)
            result.extend(self._medians(part, seasons))
            start += len(part) * step
        return result

    def _medians(self, units: range, seasons: int) -> list[float | None]:
        """Medians for ``units``, which all have ``seasons`` earlier seasons in the timeline."""
        if seasons == 0:
            return [None] * len(units)
        values, start, step = self.line.values, units.start - self.line.first, units.step
        columns = [
            values[start - self.length * k:units.stop - self.line.first - self.length * k:step]
            for k in range(1, seasons + 1)
        ]
        if self.line.gaps:
            return [_median_or_none(row) for row in zip(*columns, strict=True)]
        # Every value is present (no DST gap): sort rows whole, which is much cheaper.
        middle = seasons // 2
        rows = map(sorted, zip(*columns, strict=True))
        if seasons % 2:
            return [row[middle] for row in rows]
        return [(row[middle - 1] + row[middle]) / 2 for row in rows]


def _median_or_none(row: Iterable[float | None]) -> float | None:
    present = [v for v in row if v is not None]
    return median(present) if present else None


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    count = len(ordered)
    if count == 0:
        raise ValueError("median of no values")
    middle = count // 2
    return ordered[middle] if count % 2 else (ordered[middle - 1] + ordered[middle]) / 2


# --------------------------------------------------------------------------- local time


def timeline(history: Sequence[Bucket], unit_seconds: int, tz: str) -> Timeline:
    if not history:
        return Timeline(0, [])
    values: list[float | None]
    if tz == "UTC":  # the common case, and a cheap one: no DST, so no gaps
        first = history[0].starts_at // unit_seconds
        if history[-1].starts_at // unit_seconds - first + 1 == len(history):
            values = list(map(VALUE, history))
            return Timeline(first, values)
    units = local_units([b.starts_at for b in history], unit_seconds, tz)
    values = [None] * (units[-1] - units[0] + 1)
    for unit, bucket in zip(units, history, strict=True):
        values[unit - units[0]] = bucket.value
    return Timeline(units[0], values)


def local_units(starts: Sequence[int], unit_seconds: int, tz: str) -> list[int]:
    """Local wall-clock hour (or day) numbers since 1970-01-01 local time, for sorted instants.

    The zone's offset is looked up once a day and per bucket only around a change: a lookup
    costs more than everything else done with a bucket."""
    if tz == "UTC":
        return [start // unit_seconds for start in starts]
    offsets = utc_offsets(starts, tz, step=max(1, 86400 // unit_seconds))
    return [(start + offset) // unit_seconds
            for start, offset in zip(starts, offsets, strict=True)]


def utc_offsets(starts: Sequence[int], tz: str, step: int) -> list[int]:
    if not starts:
        return []
    probes = sorted({*range(0, len(starts), step), len(starts) - 1})
    known = {i: utc_offset(starts[i], tz) for i in probes}
    offsets = [0] * len(starts)
    for left, right in zip(probes, [*probes[1:], len(starts)], strict=True):
        same = right == len(starts) or known[left] == known[right]
        for i in range(left, right):
            offsets[i] = known[left] if same else utc_offset(starts[i], tz)
    return offsets


def utc_offset(instant: int, tz: str) -> int:
    offset = datetime.fromtimestamp(instant, UTC).astimezone(windows.zone(tz)).utcoffset()
    return int(offset.total_seconds()) if offset is not None else 0


# --------------------------------------------------------------------------- verdict


def judge(
    rule: Rule,
    condition: AnomalyCondition,
    series: Series,
    judged: Bucket,
    expectation: Expectation,
) -> Finding:
    """The finding for ``judged`` against ``expectation``, honouring ``direction`` and
    ``min_volume``."""
    value = judged.value
    score = expectation.score(value)
    low, high = expectation.band
    expected = expectation.nearest(value).center
    quiet = value < condition.min_volume and expected < condition.min_volume
    active = not quiet and outside(score, condition.sensitivity, condition.direction)
    window = Period(judged.starts_at, judged.ends_at, rule.timezone)
    message = (
        f"{verdict(score, active)}: {number(value)} {span(window, rule.window)}, expected "
        f"{number(expected)} ({number(low)}–{number(high)})"
    )
    if quiet:
        message += f"; both below min_volume {number(condition.min_volume)}"
    details = {
        "band": [low, high],
        "method": expectation.method,
        "score": round(score, 2),
        "sensitivity": condition.sensitivity,
        "direction": condition.direction,
        "samples": expectation.samples,
        "level": expectation.level,
    }
    return _finding(rule, series, judged, active, message, baseline=expected, details=details)


def outside(score: float, sensitivity: float, direction: Direction) -> bool:
    if direction == "up":
        return score > sensitivity
    if direction == "down":
        return score < -sensitivity
    return abs(score) > sensitivity


def verdict(score: float, active: bool) -> str:
    if not active:
        return "as usual"
    return "unusually high" if score > 0 else "unusually low"


def span(window: Period, granularity: Granularity) -> str:
    """``2025-01-03 14:00–15:00 UTC`` for an hour, ``on 2025-01-03 (UTC)`` otherwise."""
    if granularity != "hour":
        return f"on {windows.period_key(window, granularity)} ({window.timezone})"
    start = datetime.fromtimestamp(window.starts_at, windows.zone(window.timezone))
    # Named by wall-clock hours, so the repeated hour of a DST change reads 01:00–02:00 twice.
    return f"{start:%Y-%m-%d %H:%M}–{(start.hour + 1) % 24:02d}:{start:%M} {window.timezone}"


# --------------------------------------------------------------------------- findings


def _condition(rule: Rule) -> AnomalyCondition:
    if not isinstance(rule.condition, AnomalyCondition):
        raise TypeError(f"rule {rule.name} has no anomaly condition")
    return rule.condition


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
        details=details or {},
    )


def _no_verdict(rule: Rule, series: Series, judged: Bucket, reason: str) -> Finding:
    return _finding(rule, series, judged, False, reason, details={"method": "none"})


def _negative(rule: Rule, series: Series, judged: Bucket) -> Finding:
    window = Period(judged.starts_at, judged.ends_at, rule.timezone)
    return finding(
        rule, series, window, state="nodata", value=judged.value, complete=True,
        message=(f"net usage {number(judged.value)} {span(window, rule.window)}: corrections "
                 "(negative meter events) exceed the usage, so it is not judged as an anomaly"),
    )


def _nodata(rule: Rule, series: Series, buckets: Sequence[Bucket], now: int) -> Finding:
    if buckets:
        window = Period(buckets[-1].starts_at, buckets[-1].ends_at, rule.timezone)
    else:
        window = windows.period_containing(now, rule.window, rule.timezone)
    return finding(rule, series, window, state="nodata", message="no complete bucket yet")


# --------------------------------------------------------------------------- the kind


class AnomalyCondition(ConditionModel):
    type: Literal["anomaly"]
    sensitivity: Annotated[float, Field(gt=0)] = 4.0
    direction: Direction = "both"
    #: Five weeks: the judged hour and each hour of the week before it have four earlier weeks.
    history: PositiveDuration = 35 * 86400.0
    min_history: PositiveDuration = 7 * 86400.0
    min_volume: Annotated[float, Field(ge=0)] = 0.0


def _issues(rule: Rule, condition: AnomalyCondition) -> list[RuleIssue]:
    issues = []
    if rule.window not in ("hour", "day"):
        issues.append(RuleIssue(
            ("window",),
            f"window: an anomaly condition needs window: hour or day, not {rule.window!r} (its "
            "baseline needs many periods of history); for weeks or months use a change "
            "condition",
        ))
    if condition.min_history > condition.history:
        issues.append(RuleIssue(
            ("condition", "min_history"),
            f"condition.min_history: {format_duration(condition.min_history)} is longer than "
            f"history ({format_duration(condition.history)}), so the rule could never fire",
        ))
    return issues


def _sample(rule: Rule, condition: AnomalyCondition) -> Sample:
    baseline = 80_000.0
    value = baseline * (0.15 if condition.direction == "down" else 3.2)
    spread = baseline * 0.12 * condition.sensitivity
    message = f"{ADJECTIVE[rule.window]} usage {format_number(value)} is outside the " \
              f"expected {format_number(baseline - spread)}–{format_number(baseline + spread)}"
    return Sample(value, message, Baseline(baseline),
                  details={"band": [baseline - spread, baseline + spread],
                           "method": "median/MAD, same hour of week"},
                  recent_level=baseline)


class AnomalyKind(AnomalyEvaluator, ConditionKind):
    """``anomaly``: the last complete bucket against its seasonal expectation."""

    type = "anomaly"
    model = AnomalyCondition
    per_period = False

    def judged_at(self, rule: Rule) -> Granularity | None:
        return rule.window

    def reads_running_period(self, rule: Rule) -> bool:
        return False

    def check(self, rule: Rule) -> list[RuleIssue]:
        return _issues(rule, _condition(rule))

    def sample(self, rule: Rule) -> Sample:
        return _sample(rule, _condition(rule))


ANOMALY = AnomalyKind()

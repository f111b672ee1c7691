"""Rows → series, with the freshness rule; and the pieces every evaluator shares.

Sits between the source and the evaluators::

    UsageResult.rows --planner.extract_rows--> rows of one DataNeed
        --build_series--> Series (one per group-by value set) --evaluator--> Finding

A series is zero-filled over its need's range at the need's granularity, because a successful
response without a row for a bucket means no usage in it. Missing or stale *data* is a
different thing, decided by :func:`is_stale` and reported as ``nodata``, never as zero.

The freshness rule: a bucket is complete only when its calendar period ended at least
``freshness_lag`` before ``refreshed_at``, and ``refreshed_at`` is capped at ``now`` (data after
``--at`` counts as not yet refreshed). A bucket cut short by the end of the range (the running
hour or day) is never complete, because its period has not ended.

Also here: :func:`window_buckets` (day buckets summed into the rule's weeks and months),
:func:`data_need` (the one request shape every evaluator asks for) and the small helpers that
build findings, so every evaluator words them the same way.

Why over 400 lines: the freshness rule, the binning and the finding helpers are what every
evaluator shares; one module, so that no kind imports another kind for them.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from alertd import calendar
from alertd.conditions.columns import BucketColumns
from alertd.model import (
    NO_FIGURES,
    Bucket,
    DataNeed,
    Dimensions,
    Figures,
    Filters,
    Finding,
    FindingState,
    Granularity,
    MeterSpec,
    Period,
    Series,
    SeriesKey,
    UsageRow,
    make_filters,
)
from alertd.templating import format_number
from alertd.usage_columns import UsageColumns

if TYPE_CHECKING:
    from alertd.rules.schema import Rule

#: The nominal length of a bucket, for turning durations into bucket counts.
NOMINAL_SECONDS: Mapping[Granularity, int] = {
    "hour": 3600, "day": 86400, "week": 7 * 86400, "month": 30 * 86400,
}

# --------------------------------------------------------------------------- freshness


def is_stale(refreshed_at: int | None, now: int, stale_after: float) -> bool:
    """Whether data refreshed at ``refreshed_at`` is too old to judge at ``now``.

    ``None`` (a source that should report freshness did not) counts as stale. A caller whose
    source never reports freshness (event summaries) must not ask.
    """
    return refreshed_at is None or now - refreshed_at > stale_after


def effective_refreshed_at(refreshed_at: int | None, now: int) -> int:
    """``refreshed_at`` capped at ``now``; ``None`` (the source reports no freshness at all,
    which the caller has accepted) is taken as ``now``."""
    return now if refreshed_at is None else min(refreshed_at, now)


# --------------------------------------------------------------------------- needs


def granularity_for(rule: Rule) -> Granularity:
    """``hour`` buckets for hourly rules, else ``day`` buckets summed locally into weeks and
    months, so rules of different windows share one request."""
    return "hour" if rule.window == "hour" else "day"


def range_end(rule: Rule, now: int) -> int:
    """The end of every request range: the end of the current period, or ``now`` rounded up
    to the minute (Stripe wants minute-aligned ranges), whichever is earlier."""
    return min(calendar.next_start(now, rule.window, rule.timezone), calendar.ceil_minute(now))


def data_need(
    rule: Rule, customer: str, now: int, starts_at: int, granularity: Granularity | None = None
) -> DataNeed:
    """The one :class:`DataNeed` of ``rule`` for ``customer``, from ``starts_at`` to
    :func:`range_end`, at ``granularity`` (default :func:`granularity_for`).

    Never empty (Stripe refuses an empty range): when ``now`` is the very first instant of a
    period, the range reaches back one bucket, which the evaluator does not judge.
    """
    spec = MeterSpec(
        rule.meter, make_filters(rule.filters), make_filters(rule.tenant_filters),
        tuple(rule.group_by),
    )
    bucket = granularity or granularity_for(rule)
    ends_at = range_end(rule, now)
    if starts_at >= ends_at:
        starts_at = calendar.floor(ends_at - 1, bucket, rule.timezone)
    return DataNeed(
        customer=customer,
        spec=spec,
        granularity=bucket,
        timezone=rule.timezone,
        starts_at=starts_at,
        ends_at=ends_at,
    )


# --------------------------------------------------------------------------- build


def build_series(
    rule: Rule,
    need: DataNeed,
    rows: Sequence[UsageRow],
    refreshed_at: int | None,
    *,
    now: int,
    freshness_lag: float,
) -> list[Series]:
    """One zero-filled :class:`Series` per distinct group-by value set in ``rows``.

    ``rows`` already belong to ``need`` (its meter and filters). A rule without ``group_by``
    always yields exactly one series, even with no rows. Rows outside the range are ignored;
    a group-by key missing from a row counts as the value ``""``.

    Many rows are binned with numpy (an hourly rule with five weeks of history has ~840 rows
    per series, and this runs for every rule and customer every cycle) — from columns
    (:class:`~alertd.usage_columns.UsageColumns`, as the source hands them) with no Python
    per row —, a few in a loop (numpy costs more than it saves on the one row of a monthly
    threshold); sums add in row order either way. The series carry their buckets as
    :class:`BucketColumns` (arrays; bucket objects are made only when read).
    """
    slots = _slots(need.starts_at, need.ends_at, need.granularity, need.timezone)
    sums: Mapping[Dimensions, Sequence[float] | np.ndarray] = (
        _binned(rule, need, rows, slots) if len(rows) >= FEW_ROWS
        else _looped(rule, need, rows, slots))
    capped = None if refreshed_at is None else min(refreshed_at, now)
    complete_before = effective_refreshed_at(refreshed_at, now) - freshness_lag
    axis = _axis(need, slots, complete_before)
    return [_series(rule, need, group, axis, values_, capped)
            for group, values_ in sorted(sums.items())]


#: From this many rows on, numpy bins them.
FEW_ROWS = 32


def _looped(
    rule: Rule, need: DataNeed, rows: Sequence[UsageRow], slots: _Slots
) -> dict[Dimensions, list[float]]:
    count = len(slots.periods)
    sums: dict[Dimensions, list[float]] = {}
    if not rule.group_by:
        sums[()] = [0.0] * count
    for row in rows:
        if not need.starts_at <= row.starts_at < need.ends_at:
            continue
        index = bisect_right(slots.starts, row.starts_at) - 1
        if index >= 0 and row.starts_at < slots.ends[index]:
            group = _group_of(row.dimensions, rule.group_by)
            sums.setdefault(group, [0.0] * count)[index] += row.value
    return sums


def _binned(
    rule: Rule, need: DataNeed, rows: Sequence[UsageRow], slots: _Slots
) -> dict[Dimensions, np.ndarray]:
    count = len(slots.periods)
    sums: dict[Dimensions, np.ndarray] = {}
    if not rule.group_by:
        sums[()] = np.zeros(count)
    if rows:
        columns = UsageColumns.of(rows)
        index = _slot_indices(slots, columns.starts, need)
        values = columns.values
        if rule.group_by:
            names, ids = columns.dimension_groups(rule.group_by)
        else:
            names, ids = [()], np.zeros(len(rows), np.int64)
        # One bincount over (group, slot) cells: rows outside the range go to a spare cell.
        inside = index >= 0
        cells = np.where(inside, ids * count + index, len(names) * count)
        binned = np.bincount(cells, weights=values, minlength=len(names) * count + 1)
        present = np.bincount(ids[inside], minlength=len(names))
        for number_, group in enumerate(names):
            if present[number_]:
                sums[group] = binned[number_ * count:(number_ + 1) * count]
    return sums


@dataclass(frozen=True, slots=True)
class _Slots:
    """A need's calendar periods, their starts and ends (as arrays too); ``step`` when the
    periods are all that long and follow each other without a gap (hours; days in a zone
    without DST), else 0."""

    periods: tuple[Period, ...]
    starts: tuple[int, ...]
    ends: tuple[int, ...]
    starts_array: np.ndarray
    ends_array: np.ndarray
    step: int


@lru_cache(maxsize=1024)
def _slots(starts_at: int, ends_at: int, granularity: Granularity, tz: str) -> _Slots:
    """The need's calendar periods; cached, since one pass builds the same range for many
    customers."""
    periods = tuple(calendar.periods(starts_at, ends_at, granularity, tz))
    starts = tuple(slot.starts_at for slot in periods)
    ends = tuple(slot.ends_at for slot in periods)
    starts_array, ends_array = np.asarray(starts, np.int64), np.asarray(ends, np.int64)
    lengths = np.unique(ends_array - starts_array)
    regular = len(lengths) == 1 and bool(np.array_equal(starts_array[1:], ends_array[:-1]))
    return _Slots(periods, starts, ends, starts_array, ends_array,
                  int(lengths[0]) if regular else 0)


def _slot_indices(slots: _Slots, instants: np.ndarray, need: DataNeed) -> np.ndarray:
    """Each row's slot index (``instants``: the rows' starts), -1 for a row outside the range
    or between slots."""
    inside = (instants >= need.starts_at) & (instants < need.ends_at)
    if slots.step:  # the range lies within the slots, and a row in it is in the slot its
        # start falls in: one division
        return np.where(inside, (instants - slots.starts[0]) // slots.step, -1)
    index = np.searchsorted(slots.starts_array, instants, side="right") - 1
    safe = np.maximum(index, 0)
    ok = inside & (index >= 0) & (instants < slots.ends_array[safe])
    return np.where(ok, index, -1)


def _group_of(dimensions: Dimensions, group_by: Sequence[str]) -> Dimensions:
    found = dict(dimensions)
    return tuple(sorted((key, found.get(key, "")) for key in group_by))


@dataclass(frozen=True, slots=True)
class _Axis:
    """The time columns every series of one need shares (read-only arrays)."""

    starts: np.ndarray
    ends: np.ndarray
    complete: np.ndarray


def _axis(need: DataNeed, slots: _Slots, complete_before: float) -> _Axis:
    # Only the first slot can start before the range and only the last end after it.
    starts, ends = slots.starts_array.copy(), slots.ends_array.copy()
    starts[0], ends[-1] = max(starts[0], need.starts_at), min(ends[-1], need.ends_at)
    # The slot's own end, not the clipped one: a running period is never complete. Ends are
    # increasing, so the complete buckets are a prefix.
    done = bisect_right(slots.ends, min(complete_before, need.ends_at))
    complete = np.arange(len(ends)) < done
    for column in (starts, ends, complete):
        column.flags.writeable = False
    return _Axis(starts, ends, complete)


def _series(
    rule: Rule,
    need: DataNeed,
    group: Dimensions,
    axis: _Axis,
    values: Sequence[float] | np.ndarray,
    refreshed_at: int | None,
) -> Series:
    return Series(
        key=SeriesKey(rule.name, need.customer, group),
        meter=rule.meter,
        dimensions=series_dimensions(need.spec.dimension_filters, group),
        granularity=need.granularity,
        timezone=need.timezone,
        # Columns: the buckets are made only if something reads them (the anomaly kind reads
        # the arrays).
        buckets=BucketColumns(axis.starts, axis.ends, np.asarray(values, np.float64),
                              axis.complete),
        refreshed_at=refreshed_at,
    )


def series_dimensions(filters: Filters, group: Dimensions) -> Dimensions:
    """What a series measures: its fixed dimension filters (one accepting several values
    reads ``"premium,pro"``) and its group-by values."""
    fixed = {key: ",".join(values) for key, values in filters}
    return tuple(sorted({**fixed, **dict(group)}.items()))


# --------------------------------------------------------------------------- windows


def window_buckets(series: Series, granularity: Granularity, tz: str) -> list[Bucket]:
    """``series`` summed into calendar periods of ``granularity`` in ``tz``.

    A window bucket spans its whole period and is complete only when every bucket in it is
    complete and they cover the period from start to end. Periods the series only reaches
    part of the way into at its start are left out (their sum would be partial).
    """
    if not series.buckets:
        return []
    first = series.buckets[0].starts_at
    groups: dict[int, list[Bucket]] = {}
    for bucket in series.buckets:
        groups.setdefault(calendar.floor(bucket.starts_at, granularity, tz), []).append(bucket)
    return [
        _summed(Period(start, calendar.next_start(start, granularity, tz), tz), parts)
        for start, parts in groups.items()
        if start >= first
    ]


def _summed(period: Period, parts: Sequence[Bucket]) -> Bucket:
    covered = parts[0].starts_at == period.starts_at and parts[-1].ends_at == period.ends_at
    return Bucket(
        starts_at=period.starts_at,
        ends_at=period.ends_at,
        value=sum(part.value for part in parts),
        complete=covered and all(part.complete for part in parts),
    )


def complete_buckets(buckets: Iterable[Bucket]) -> list[Bucket]:
    return [bucket for bucket in buckets if bucket.complete]


def find_bucket(buckets: Sequence[Bucket], period: Period) -> Bucket | None:
    """The bucket starting where ``period`` starts, if the series reaches it."""
    for bucket in buckets:
        if bucket.starts_at == period.starts_at:
            return bucket
    return None


# --------------------------------------------------------------------------- findings


def finding(
    rule: Rule,
    series: Series,
    window: Period,
    *,
    message: str,
    state: FindingState = "inactive",
    value: float | None = None,
    active: bool = False,
    complete: bool = False,
    level: str | None = None,
    figures: Figures = NO_FIGURES,
    period_key: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> Finding:
    """A :class:`Finding` about ``series`` over ``window``. ``period_key`` defaults to the
    name of ``window`` in the rule's window granularity."""
    return Finding(
        key=series.key,
        meter=series.meter,
        dimensions=series.dimensions,
        window=window,
        complete=complete,
        value=value,
        active=active,
        level=level,
        state=state,
        message=message,
        figures=figures,
        period_key=calendar.period_key(window, rule.window) if period_key is None else period_key,
        details=dict(details or {}),
    )


def no_complete_data(rule: Rule, series: Series, window: Period, what: str) -> Finding:
    """The ``nodata`` finding for a period that must be judged on complete data but has none."""
    refreshed = "unknown" if series.refreshed_at is None else local_time(
        series.refreshed_at, rule.timezone
    )
    return finding(
        rule, series, window, state="nodata",
        message=f"no complete data for {what} yet (data refreshed {refreshed})",
    )


def number(value: float) -> str:
    """How usage reads in messages: the one formatter templates use too. A value that is not
    finite reads as itself (``nan``, ``inf``): such a finding becomes an ``error`` finding
    (:func:`alertd.conditions.finite`), and its message must still be made first."""
    return format_number(value) if math.isfinite(value) else str(value)


def local_time(instant: int, tz: str) -> str:
    return datetime.fromtimestamp(instant, calendar.zone(tz)).strftime("%Y-%m-%d %H:%M %Z")


def local_date(instant: int, tz: str) -> str:
    return datetime.fromtimestamp(instant, calendar.zone(tz)).date().isoformat()


_CURRENT = {"hour": "this hour", "day": "today", "week": "this week", "month": "this month"}
_NAMED = {"hour": "in hour", "day": "on", "week": "in week", "month": "in"}


def describe_period(period: Period, granularity: Granularity, now: int) -> str:
    """``today (America/New_York)`` for the running period, ``on 2025-01-03 (UTC)`` else."""
    if period.contains(now):
        text = _CURRENT[granularity]
    elif granularity == "hour":
        # Not the period key (``2026-12-01T15+0000``): the local clock hours a person reads.
        ends = datetime.fromtimestamp(period.ends_at, calendar.zone(period.timezone))
        text = f"in the hour {local_time(period.starts_at, period.timezone)[:16]}–{ends:%H:%M}"
    else:
        text = f"{_NAMED[granularity]} {calendar.period_key(period, granularity)}"
    return f"{text} ({period.timezone})"

"""Local time for the anomaly evaluator: buckets laid out by local hour (or day) number, and
which of those units ``exclude`` periods blank out — each worked out once per range and reused.

Where it sits: :func:`alertd.conditions.anomaly_eval.judged_values` lays a series' values out
with :func:`local_values` and masks them with :func:`excluded` before
:func:`alertd.conditions.anomaly_model.assess_many` sees them. Every series of a rule in one pass
has the same bucket starts (the need's range) and the same ``exclude`` periods, so both are cached
(bounded, :data:`LAYOUTS` entries each): a zone's offsets are looked up once per (zone, range),
not once per series. The cached arrays are read-only.

Local unit numbers count from 1970-01-01 *local* time, so "the same hour of the week" is the same
wall-clock hour across a DST change: the hour a change skips has no bucket (``NaN``), the hour it
repeats keeps its later bucket.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from alertd import calendar
from alertd.conditions.anomaly_model import Array

if TYPE_CHECKING:
    from alertd.conditions.anomaly import ExcludePeriod

EPOCH = date(1970, 1, 1).toordinal()
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
#: How many (zone, range) layouts and exclude masks are kept: a pass has one range per rule
#: window and history (a few), so this holds every rule's with room for a reload's.
LAYOUTS = 64


def local_values(starts: np.ndarray, values: np.ndarray, unit_seconds: int, tz: str
                 ) -> tuple[int, Array]:
    """``(first local unit, values)``, densely by local unit number along the last axis
    (``NaN`` for a unit no bucket starts in): ``values`` is one series, or rows of series
    with these bucket starts. The layout is worked out once per (zone, unit, bucket starts)."""
    if tz == "UTC":  # the common case, and a cheap one: no DST, so no gaps
        first = int(starts[0]) // unit_seconds
        if int(starts[-1]) // unit_seconds - first + 1 == len(starts):
            return first, values
    first, positions, kept, length = _layout(tz, unit_seconds, np.ascontiguousarray(
        starts, np.int64).tobytes())
    dense = np.full((*values.shape[:-1], length), np.nan)
    # A repeated hour (fall back) keeps its later bucket (``kept``: the last of equal ones).
    dense[..., positions[kept]] = values[..., kept]
    return first, dense


@lru_cache(maxsize=LAYOUTS)
def _layout(tz: str, unit_seconds: int, starts: bytes
            ) -> tuple[int, np.ndarray, np.ndarray, int]:
    """``(first local unit, each bucket's position from it, the buckets that keep their
    position, units spanned)`` for the bucket starts ``starts`` (int64 bytes: the key is the
    starts themselves, so a hit is exact)."""
    instants = np.frombuffer(starts, np.int64)
    units = np.asarray(local_units(instants.tolist(), unit_seconds, tz), np.int64)
    positions = units - units[0]
    kept = np.append(positions[1:] != positions[:-1], True)  # the later of a repeated unit
    positions.flags.writeable = kept.flags.writeable = False
    return int(units[0]), positions, kept, int(units[-1] - units[0]) + 1


def excluded(first: int, count: int, unit_seconds: int, periods: Sequence[ExcludePeriod]
             ) -> np.ndarray:
    """Which of the local units ``first .. first + count - 1`` any period excludes (read-only;
    worked out once per range and periods)."""
    return _excluded(first, count, unit_seconds, tuple(periods))


@lru_cache(maxsize=LAYOUTS)
def _excluded(first: int, count: int, unit_seconds: int, periods: tuple[ExcludePeriod, ...]
              ) -> np.ndarray:
    per_day = 86400 // unit_seconds
    units = np.arange(first, first + count)
    days = units // per_day
    mask = np.zeros(count, dtype=bool)
    for period in periods:
        if period.from_ is not None:
            lo, hi = _bounds(period, unit_seconds)
            mask |= (units >= lo) & (units < hi)
            continue
        hit = np.ones(count, dtype=bool)
        if period.weekdays:
            wanted = [WEEKDAYS.index(day) for day in period.weekdays]
            hit &= np.isin((days + 3) % 7, wanted)  # day 0 (1970-01-01) was a Thursday
        if period.dates:
            hit &= _on_dates(days, period.dates)
        if period.hours:
            start, stop = period.hours
            if per_day == 1:  # a day bucket is excluded only by hours covering all of it
                hit &= start == 0 and stop == 24
            else:
                hour = units % per_day
                hit &= (hour >= start) & (hour < stop) if start < stop else (
                    (hour >= start) | (hour < stop))
        mask |= hit
    mask.flags.writeable = False
    return mask


def _bounds(period: ExcludePeriod, unit_seconds: int) -> tuple[int, int]:
    """``[lo, hi)`` in local units: a date ``to`` includes its whole day."""
    def unit_of(moment: date | datetime, end: bool) -> int:
        if isinstance(moment, datetime):
            seconds = (moment.replace(tzinfo=None) - datetime(1970, 1, 1)).total_seconds()
            return -(-int(seconds) // unit_seconds) if end else int(seconds) // unit_seconds
        day = moment.toordinal() - EPOCH + (1 if end else 0)
        return day * (86400 // unit_seconds)

    assert period.from_ is not None
    lo = unit_of(period.from_, False)
    # A lone instant (from == to) is the bucket it falls in, not an empty range.
    return lo, max(unit_of(period.to or period.from_, True), lo + 1)


def _on_dates(days: np.ndarray, dates: Sequence[str]) -> np.ndarray:
    unique = np.unique(days)
    names = {int(day): date.fromordinal(int(day) + EPOCH).strftime("%m-%d") for day in unique}
    wanted = {day for day, name in names.items() if name in dates}
    return np.isin(days, list(wanted))



# --------------------------------------------------------------------------- local time


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
    offset = datetime.fromtimestamp(instant, UTC).astimezone(calendar.zone(tz)).utcoffset()
    return int(offset.total_seconds()) if offset is not None else 0

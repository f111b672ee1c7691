"""Calendar periods in an IANA time zone: pure arithmetic on unix seconds.

Days, weeks and months start at local midnight, so a day is 23 or 25 hours long across a DST
change and a month is 28 to 31 days. Weeks start on Monday (ISO 8601); Stripe does not
document its week start, so this is the one assumption here. Hours are local wall-clock
hours, so in ``Asia/Kolkata`` they start at :30 UTC; an hour never spans a change of UTC
offset (a fall-back night has two 01:00 hours). A local midnight that does not exist (a DST
jump at 00:00) starts the day at the first instant that does.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from alertd.model import Granularity, Period


@lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _local(instant: int, tz: str) -> datetime:
    return datetime.fromtimestamp(instant, zone(tz))


def _midnight(year: int, month: int, day: int, tz: str) -> int:
    return int(datetime(year, month, day, tzinfo=zone(tz)).timestamp())


#: Calendar answers remembered (:func:`floor`, :func:`next_start`; pure functions of their
#: arguments). A pass floors the same few thousand hour starts for every customer of a time
#: zone (each row's bucket, each window), ~2–6 µs each through ``zoneinfo``; a remembered one
#: costs ~0.1 µs. 16,384 keys hold 60 days of hours in two granularities for a few zones, in
#: ~3.7 MB a memo at most (traced); an account whose zones need more loses the gain, not
#: correctness.
MEMO = 16_384


@lru_cache(maxsize=MEMO)
def floor(instant: int, granularity: Granularity, tz: str) -> int:
    """The start of the calendar period of ``granularity`` that contains ``instant``."""
    local = _local(instant, tz)
    if granularity == "hour":
        return _hour_floor(instant, local, tz)
    if granularity == "day":
        start = _midnight(local.year, local.month, local.day, tz)
    elif granularity == "week":
        monday = local.date() - timedelta(days=local.weekday())
        start = _midnight(monday.year, monday.month, monday.day, tz)
    else:
        start = _midnight(local.year, local.month, 1, tz)
    return start if start <= instant else _previous_start(start, granularity, tz)


def _previous_start(start: int, granularity: Granularity, tz: str) -> int:
    return floor(start - 1, granularity, tz)


@lru_cache(maxsize=MEMO)
def next_start(instant: int, granularity: Granularity, tz: str) -> int:
    """The start of the period after the one containing ``instant``."""
    return _following(floor(instant, granularity, tz), granularity, tz)


def _following(start: int, granularity: Granularity, tz: str) -> int:
    """The start of the period after the one that starts at ``start`` (a period start)."""
    if granularity == "hour":
        return _next_hour(start, tz)
    local = _local(start, tz)
    if granularity == "day":
        following = local.date() + timedelta(days=1)
    elif granularity == "week":
        following = local.date() + timedelta(days=7)
    else:
        year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
        return _midnight(year, month, 1, tz)
    return _midnight(following.year, following.month, following.day, tz)


# Every UTC offset in use is a multiple of 15 minutes and clocks change at a local :00 or :30,
# so hour boundaries and offset changes all fall on UTC quarter hours.
_QUARTER = 900


def _offset(instant: int, tz: str) -> timedelta | None:
    return _local(instant, tz).utcoffset()


def _is_hour_start(instant: int, tz: str) -> bool:
    """A local ``:00``, or the first instant of a new UTC offset."""
    return _local(instant, tz).minute == 0 or _offset(instant, tz) != _offset(instant - 1, tz)


def _hour_floor(instant: int, local: datetime, tz: str) -> int:
    """The latest hour start at or before ``instant``.

    An hour never spans a change of UTC offset: the two 01:00 hours of a fall-back night are
    separate hours, and where clocks move by 30 minutes (Australia/Lord_Howe) or at :45
    (Pacific/Chatham) the hour in which they move is cut at the change. So hours never exceed
    3600 s and their keys (which carry the offset) stay unique.
    """
    start = instant - local.minute * 60 - local.second
    if _offset(start, tz) == local.utcoffset():
        return start  # the common case: no offset change since the local :00
    candidate = instant - instant % _QUARTER
    for _ in range(8):
        if _is_hour_start(candidate, tz):
            return candidate
        candidate -= _QUARTER
    return instant - instant % _QUARTER  # unreachable with the tz database; stay contiguous


def _next_hour(start: int, tz: str) -> int:
    """The first hour start after the hour start ``start``; usually ``start + 3600``."""
    following = start + 3600
    local = _local(following, tz)
    if local.minute == 0 and local.utcoffset() == _offset(start, tz):
        return following
    for candidate in range(start + _QUARTER, following, _QUARTER):
        if _is_hour_start(candidate, tz):
            return candidate
    return following


def period_containing(instant: int, granularity: Granularity, tz: str) -> Period:
    """The calendar period containing ``instant``."""
    start = floor(instant, granularity, tz)
    return Period(start, _following(start, granularity, tz), tz)


def shift(period: Period, granularity: Granularity, count: int) -> Period:
    """The period ``count`` periods after (negative: before) ``period``."""
    tz = period.timezone
    start = floor(period.starts_at, granularity, tz)
    for _ in range(abs(count)):
        start = _following(start, granularity, tz) if count > 0 else floor(
            start - 1, granularity, tz
        )
    return Period(start, _following(start, granularity, tz), tz)


def periods(starts_at: int, ends_at: int, granularity: Granularity, tz: str) -> list[Period]:
    """Every whole calendar period overlapping ``[starts_at, ends_at)``, in order (not clipped)."""
    result: list[Period] = []
    start = floor(starts_at, granularity, tz)
    while start < ends_at:
        following = _following(start, granularity, tz)
        result.append(Period(start, following, tz))
        start = following
    return result


def ceil_minute(instant: float) -> int:
    """``instant`` rounded up to a whole minute (Stripe wants minute-aligned ranges)."""
    whole = int(instant)
    if whole < instant:
        whole += 1
    return -(-whole // 60) * 60


def floor_minute(instant: float) -> int:
    return int(instant) // 60 * 60


def period_key(period: Period, granularity: Granularity) -> str:
    """A readable, stable name for a period in its own zone: ``2025-01-03``, ``2025-01``,
    ``2025-W01`` (ISO week), ``2025-01-03T04+0000``. Used for "once per period" decisions.

    An hour's key carries its UTC offset so that the two 01:00 hours of a fall-back night
    (``2024-11-03T01-0400`` and ``2024-11-03T01-0500`` in New York) stay distinct."""
    local = _local(period.starts_at, period.timezone)
    if granularity == "hour":
        return local.strftime("%Y-%m-%dT%H%z")
    if granularity == "day":
        return local.strftime("%Y-%m-%d")
    if granularity == "week":
        year, week, _ = local.isocalendar()
        return f"{year}-W{week:02d}"
    return local.strftime("%Y-%m")

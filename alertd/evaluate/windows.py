"""Calendar periods in an IANA time zone: pure arithmetic on unix seconds.

Days, weeks and months start at local midnight, so a day is 23 or 25 hours long across a DST
change and a month is 28 to 31 days. Weeks start on Monday (ISO 8601); Stripe does not
document its week start, so this is the one assumption here. Hours are local wall-clock
hours, so in ``Asia/Kolkata`` they start at :30 UTC. A local midnight that does not exist (a DST
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


def floor(instant: int, granularity: Granularity, tz: str) -> int:
    """The start of the calendar period of ``granularity`` that contains ``instant``."""
    local = _local(instant, tz)
    if granularity == "hour":
        start = int(local.replace(minute=0, second=0, microsecond=0).timestamp())
        # In a repeated (fall-back) hour the wall-clock floor may land an hour late; step back.
        return start if start <= instant else start - 3600
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


def next_start(instant: int, granularity: Granularity, tz: str) -> int:
    """The start of the period after the one containing ``instant``."""
    start = floor(instant, granularity, tz)
    if granularity == "hour":
        # DST changes move clocks by whole hours (Lord Howe's 30 minutes aside), so the next
        # local hour always starts 3600 s later.
        return start + 3600
    local = _local(start, tz)
    if granularity == "day":
        following = local.date() + timedelta(days=1)
    elif granularity == "week":
        following = local.date() + timedelta(days=7)
    else:
        year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
        return _midnight(year, month, 1, tz)
    return _midnight(following.year, following.month, following.day, tz)


def period_containing(instant: int, granularity: Granularity, tz: str) -> Period:
    """The calendar period containing ``instant``."""
    return Period(floor(instant, granularity, tz), next_start(instant, granularity, tz), tz)


def shift(period: Period, granularity: Granularity, count: int) -> Period:
    """The period ``count`` periods after (negative: before) ``period``."""
    instant = period.starts_at
    for _ in range(abs(count)):
        instant = next_start(instant, granularity, period.timezone) if count > 0 else floor(
            instant - 1, granularity, period.timezone
        )
    return period_containing(instant, granularity, period.timezone)


def periods(starts_at: int, ends_at: int, granularity: Granularity, tz: str) -> list[Period]:
    """Every whole calendar period overlapping ``[starts_at, ends_at)``, in order (not clipped)."""
    result: list[Period] = []
    instant = floor(starts_at, granularity, tz)
    while instant < ends_at:
        following = next_start(instant, granularity, tz)
        result.append(Period(instant, following, tz))
        instant = following
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
    ``2025-W01``, ``2025-01-03T04``. Used for "once per period" decisions."""
    local = _local(period.starts_at, period.timezone)
    if granularity == "hour":
        return local.strftime("%Y-%m-%dT%H%z")
    if granularity == "day":
        return local.strftime("%Y-%m-%d")
    if granularity == "week":
        year, week, _ = local.isocalendar()
        return f"{year}-W{week:02d}"
    return local.strftime("%Y-%m")

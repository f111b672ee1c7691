"""A customer's daily usage of one meter by one dimension, for the customer page and
``/api/v1/customers/{id}/usage`` — read from Stripe at most once per view, then cached.

Where it sits: the status page asks :meth:`UsageView.daily` with the running world's
:class:`~alertd.source.Source` (the same client, on the same ``analytics`` rate budget as the
polls). One view is one :class:`~alertd.model.UsageQuery`: the last ``days`` whole UTC days
up to the current hour (Stripe needs minute-aligned bounds; the hour keeps repeated views on
one cache key), ``value_grouping_window=day``, grouped by the chosen key. The source may
split an answer that ``has_more`` — the only way one view costs more than one request. An
answer is kept :data:`CACHE_SECONDS` in a cache of at most :data:`CACHE_ENTRIES` entries
(least recently used out first), so reloading a page or the API spends nothing.

:func:`daily_sums` (pure) turns the rows into ``{date: {dimension value: sum}}``; rows without
the key count under ``"(none)"``. :func:`alertd.charts.stacked_rows` shapes them as the
guide's back end does.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from alertd.model import MeterSpec, UsageQuery, UsageRow
from alertd.source import Source

CACHE_SECONDS = 300.0
CACHE_ENTRIES = 256
MAX_DAYS = 90
NONE_VALUE = "(none)"
_KEY = re.compile(r"^[A-Za-z0-9_.\-\[\]]{1,100}$")
_ID = re.compile(r"^[A-Za-z0-9_\-]{1,255}$")


@dataclass(frozen=True, slots=True)
class Daily:
    """Sums per date (``YYYY-MM-DD``, UTC) per dimension value, and the data's freshness."""

    dates: tuple[str, ...]
    sums: Mapping[str, Mapping[str, float]]
    refreshed_at: int | None
    requests: int


def usage_query(customer: str, meter: str, group_by: str, now: int, days: int) -> UsageQuery:
    """The one request of a view (pure); :class:`ValueError` for an unusable argument."""
    if not _ID.match(customer) or not _ID.match(meter):
        raise ValueError("customer and meter are Stripe ids (letters, digits, _ and -)")
    if group_by and not _KEY.match(group_by):
        raise ValueError("group_by is a dimension key (letters, digits, _ . - [ ])")
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"days must be between 1 and {MAX_DAYS}")
    hour = now - now % 3600
    today = now - now % 86400
    return UsageQuery(
        customer=customer, starts_at=today - (days - 1) * 86400, ends_at=hour + 3600,
        window="day", timezone="UTC",
        meters=(MeterSpec(meter, group_by=(group_by,) if group_by else ()),),
    )


def dates_of(query: UsageQuery) -> tuple[str, ...]:
    first = query.starts_at
    return tuple(dt.datetime.fromtimestamp(t, dt.UTC).date().isoformat()
                 for t in range(first, query.ends_at, 86400))


def daily_sums(rows: Iterable[UsageRow], group_by: str) -> dict[str, dict[str, float]]:
    sums: dict[str, dict[str, float]] = {}
    for row in rows:
        date = dt.datetime.fromtimestamp(row.starts_at, dt.UTC).date().isoformat()
        value = dict(row.dimensions).get(group_by, NONE_VALUE) if group_by else "total"
        day = sums.setdefault(date, {})
        day[value] = day.get(value, 0.0) + row.value
    return sums


class UsageView:
    """The cache in front of the source (one per daemon)."""

    def __init__(self) -> None:
        self._cache: OrderedDict[UsageQuery, tuple[float, Daily]] = OrderedDict()
        self.requests = 0

    async def daily(
        self, source: Source, customer: str, meter: str, group_by: str, now: float,
        days: int = 30,
    ) -> Daily:
        query = usage_query(customer, meter, group_by, int(now), days)
        cached = self._cache.get(query)
        if cached is not None and now - cached[0] < CACHE_SECONDS:
            self._cache.move_to_end(query)
            return cached[1]
        result = await source.fetch(query)
        self.requests += result.requests
        daily = Daily(dates_of(query), daily_sums(result.rows, group_by), result.refreshed_at,
                      result.requests)
        self._cache[query] = (now, daily)
        self._cache.move_to_end(query)
        while len(self._cache) > CACHE_ENTRIES:
            self._cache.popitem(last=False)
        return daily

"""How many answers one usage query takes, and its range cut into pages fetched side by side.

Where it sits: :class:`~alertd.source.analytics.MeterUsageSource` asks :func:`page_ranges`
before it sends a query and fetches the pieces concurrently, and tells its
:class:`PageLearner` about every answer; ``bench/fetch.py`` counts the pages in the plan and
``bench/lower_bound.py`` in the bound, from the same :class:`Paging`.

Why: one answer holds at most a page of rows (Stripe does not document how many; the
simulator's page is 5,000). A query with more rows is answered ``has_more: true``, its rows
are not used (:func:`~alertd.source.analytics.parse_unless_more`), and its range is asked
again in pieces: a wasted request, the largest body of all parsed for nothing, and the
follow-ups sent only after it came back. A query's rows are its buckets times the rows one
bucket holds for each spec (one per series: per group-by value). Buckets are known; rows per
bucket depend on the customer's dimension values, which nothing tells before reading, so they
are learned: a moving average per (granularity, spec) over every customer's answers
(bounded by the rule set, not by the customers). The page size is learned from the answers
that said ``has_more`` (the rows they held). Until both are known nothing is split in
advance, and ``has_more`` still splits what was predicted too small.

Pure: :func:`bucket_starts`, :func:`expected_rows`, :func:`page_ranges`, :func:`split_evenly`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from alertd.calendar import periods
from alertd.model import Granularity, MeterSpec, UsageQuery
from alertd.usage_columns import UsageColumns

#: Weight of each answer in the moving average of rows per bucket.
WEIGHT = 0.1

SpecKey = tuple[Granularity, MeterSpec]


@dataclass(frozen=True, slots=True)
class Paging:
    """What is known of answers' size: the most rows one answer holds (``None``: no answer
    said ``has_more`` yet) and the rows one bucket holds for each (granularity, spec)."""

    page_rows: int | None = None
    rows_per_bucket: Mapping[SpecKey, float] = field(default_factory=dict)


def bucket_starts(query: UsageQuery) -> list[int]:
    """The start of every bucket of ``query``'s range (just its start without a window)."""
    if query.window is None:
        return [query.starts_at]
    return list(range_bucket_starts(query.starts_at, query.ends_at, query.window,
                                    query.timezone))


#: Bucket lengths that are the same everywhere in UTC (so counted without a calendar).
_FIXED = {"hour": 3600, "day": 86400}


@lru_cache(maxsize=4096)
def range_bucket_starts(starts_at: int, ends_at: int, window: Granularity, timezone: str
                        ) -> tuple[int, ...]:
    """The start of every bucket of ``window`` in ``timezone`` overlapping ``[starts_at,
    ends_at)``, the first clipped to ``starts_at``. Cached: every customer of a rule set asks
    for the same ranges."""
    size = _FIXED.get(window) if timezone == "UTC" else None
    if size is not None:
        first = starts_at - starts_at % size
        return (starts_at, *range(first + size, ends_at, size))
    return tuple(max(p.starts_at, starts_at)
                 for p in periods(starts_at, ends_at, window, timezone))


def bucket_count(starts_at: int, ends_at: int, window: Granularity, timezone: str) -> int:
    """How many buckets overlap ``[starts_at, ends_at)`` (:func:`range_bucket_starts`)."""
    return len(range_bucket_starts(starts_at, ends_at, window, timezone))


def spec_rows_per_bucket(window: Granularity, spec: MeterSpec, paging: Paging) -> float | None:
    """Rows a bucket holds for ``spec``: learned, else at most one for a spec that groups by
    nothing, else unknown (``None``)."""
    known = paging.rows_per_bucket.get((window, spec))
    if known is not None:
        return known
    return 1.0 if not spec.group_by else None


def expected_rows(query: UsageQuery, paging: Paging, buckets: int | None = None
                  ) -> float | None:
    """The rows ``query`` is expected to have, or ``None`` when some spec's are unknown."""
    if query.window is None:
        return None
    per_bucket = 0.0
    for spec in query.meters:
        rows = spec_rows_per_bucket(query.window, spec, paging)
        if rows is None:
            return None
        per_bucket += rows
    count = buckets if buckets is not None else bucket_count(
        query.starts_at, query.ends_at, query.window, query.timezone)
    return count * per_bucket


def split_evenly(query: UsageQuery, pieces: int, starts: list[int] | None = None
                 ) -> tuple[tuple[int, int], ...]:
    """``query``'s range cut at bucket boundaries into ``pieces`` runs of buckets as even as
    they can be (fewer when it has fewer buckets). Pure."""
    starts = starts if starts is not None else bucket_starts(query)
    pieces = max(1, min(pieces, len(starts)))
    cuts = [starts[len(starts) * i // pieces] for i in range(1, pieces)]
    edges = [query.starts_at, *cuts, query.ends_at]
    return tuple(itertools.pairwise(edges))


def page_ranges(query: UsageQuery, paging: Paging) -> tuple[tuple[int, int], ...]:
    """The ranges ``query`` is fetched in: the whole range, or, when its expected rows pass
    a page, the fewest runs of whole buckets that each fit one (runs as even as they can be).
    Pure."""
    whole = ((query.starts_at, query.ends_at),)
    if paging.page_rows is None or query.window is None:
        return whole
    rows = expected_rows(query, paging)
    if rows is None or rows <= paging.page_rows:
        return whole
    starts = bucket_starts(query)
    per_bucket = rows / len(starts)
    buckets_per_page = max(1, math.floor(paging.page_rows / per_bucket))
    return split_evenly(query, math.ceil(len(starts) / buckets_per_page), starts)


@dataclass(slots=True)
class PageCounts:
    """What paging did so far (for benches and tests): ``presplit`` requests added before
    sending, ``followups`` after ``has_more`` answers (of which there were ``more``), and
    queries split in advance whose rows did fit one page after all (``unneeded``)."""

    presplit: int = 0
    more: int = 0
    followups: int = 0
    unneeded: int = 0


class PageLearner:
    """Learns :class:`Paging` from answers; one per source, shared by its queries."""

    def __init__(self, weight: float = WEIGHT) -> None:
        self.weight = weight
        self.counts = PageCounts()
        self._page_rows: int | None = None
        self._rows_per_bucket: dict[SpecKey, float] = {}
        self._snapshot = Paging()

    def paging(self) -> Paging:
        """What is known now (a frozen snapshot: later answers do not change it)."""
        return self._snapshot

    def answered_more(self, rows_held: int) -> None:
        """An answer said ``has_more`` holding ``rows_held`` rows: a page is at least that."""
        self.counts.more += 1
        if rows_held > 0 and (self._page_rows is None or rows_held > self._page_rows):
            self._page_rows = rows_held
            self._refresh()

    def answered(self, query: UsageQuery, rows: UsageColumns) -> None:
        """A complete answer to ``query`` (or a piece of it): its rows per bucket and spec."""
        if query.window is None or not query.meters:
            return
        buckets = bucket_count(query.starts_at, query.ends_at, query.window, query.timezone)
        codes = {meter: code for code, meter in enumerate(rows.meters)}
        for spec in query.meters:
            code = codes.get(spec.meter)
            count = 0 if code is None else int(np.count_nonzero(rows.meter_codes == code))
            key = (query.window, spec)
            sample = count / buckets
            old = self._rows_per_bucket.get(key)
            self._rows_per_bucket[key] = sample if old is None else old + self.weight * (
                sample - old)
        if self._page_rows is not None and len(rows) > self._page_rows:
            self._page_rows = len(rows)
        self._refresh()

    def _refresh(self) -> None:
        self._snapshot = Paging(self._page_rows, dict(self._rows_per_bucket))

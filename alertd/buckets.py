"""The bucket cache's decisions: what a poll asks Stripe for, and what it keeps. Pure.

Where it sits::

    needs --key_needs--> one hull need per cache key --fetch_range(entry)--> the (shrunk) need
        the planner plans --source--> rows --combine(entry)--> the key's rows --cut--> each need
        --updated--> the entry the store keeps (alertd.store.base.BucketStore)

A *cache key* is everything that makes a query's rows distinct: customer, granularity, time
zone, meter, dimension filters, tenant filters and group-by (:func:`cache_key`). Rules whose
needs share a key share one entry, which covers the hull of their ranges — so the entry is
bounded by the longest of those rules' needs: rows before its start are dropped.

A poll re-reads only what may still change (:func:`fetch_range`): the running bucket and the
``settle_window`` before it, from the start of the bucket that window's start falls in — as of
the time the entry was *read*, so a bucket is taken from the cache only if it was already final
when Stripe answered for it (:func:`settled_before`; an entry keeps only those rows). Stripe
accepts back-dated meter events and event cancellations for up to 24 hours (usage can go
*down*), and aggregates with a lag of minutes, so a bucket that ended more than 24 h ago (plus
the freshness lag) is final: 24 h is the default. Everything before comes from the entry.
A full read (the whole range from Stripe) happens when there is no entry, when the entry does
not cover the need (a rule now looks further back, or the entry stops before the window), and
every ``full_reread_every`` — which repairs whatever a cache could get wrong (events back-dated
beyond the window, a bug). A re-read *replaces* every row of its range: a bucket whose usage
was cancelled to nothing disappears from the entry as it disappears from Stripe's answer.

Hours of the running buckets: a key read as hours (:func:`hourly`: a day, week or month key
whose unsettled part is recent) also keeps the *hours* of its first unsettled bucket that were
already settled when read (``[covered_to, hours_to)``, the zone they were read in). The next poll
asks Stripe only from ``hours_to`` — the settle window and the time since that poll, whatever
the hour of the day — and sums the kept and fresh hours back into the key's buckets
(:func:`hours_from`, :func:`rebucket`). Without it, a day key re-read yesterday and today in
full each poll (up to 48 hours for a 24-hour window), a week key its whole week.

Rows equal a cold full read's exactly when nothing before the window changed since it was
cached: :func:`combine` is cached rows of ``[start, fetched_from)`` followed by the fresh rows,
both already in the planner's order (bucket, then dimensions).

Extents first, rows later: what to ask Stripe for depends only on an entry's *extent* (its
range, full-read time and kept hours' end and zone: :class:`BucketExtent`, columns of their own
in the store), never on its rows. So a poll plans a batch from extents and loads the rows only
when the batch's answers are about to be judged (:mod:`alertd.service.reads`): the batches
queued ahead, whose requests keep a slow Stripe busy, hold no cached rows. Between the two
reads another poll (of another ``every``) may have replaced the entry; :func:`serves` says
whether the entry loaded still holds what the plan takes from the cache.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

import numpy as np

from alertd import calendar
from alertd.model import DataNeed, UsageRow
from alertd.usage_columns import UsageColumns, concatenated, sorted_table, summed


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """How long buckets may still change, and how often everything is read again anyway."""

    settle_window: float = 86_400.0
    full_reread_every: float = 7 * 86_400.0


@dataclass(frozen=True, slots=True)
class BucketEntry:
    """The cached rows of one key: complete for ``[covered_from, covered_to)``.

    ``full_at`` is when the whole range was last read from Stripe. ``rows`` are the key's own
    rows (the planner's :func:`~alertd.planner.extract_rows` output), sorted: a tuple, or
    columns (:class:`~alertd.usage_columns.UsageColumns`, as the store reads them:
    :mod:`alertd.bucket_payload`).
    ``hours`` are the key's hourly rows (in ``hours_zone``) of ``[covered_to, hours_to)``,
    settled when read, for a key read as hours; none when ``hours_to <= covered_to``.
    """

    key: str
    covered_from: int
    covered_to: int
    full_at: int
    rows: Sequence[UsageRow]
    hours: Sequence[UsageRow] = ()
    hours_to: int = 0
    hours_zone: str = ""


class Extent(Protocol):
    """What planning reads of an entry: a :class:`BucketEntry` or a :class:`BucketExtent`."""

    @property
    def key(self) -> str: ...
    @property
    def covered_from(self) -> int: ...
    @property
    def covered_to(self) -> int: ...
    @property
    def full_at(self) -> int: ...
    @property
    def hours_to(self) -> int: ...
    @property
    def hours_zone(self) -> str: ...


@dataclass(frozen=True, slots=True)
class BucketExtent:
    """An entry without its rows: what a poll plans from (:func:`fetch_range`,
    :func:`hours_from`). ``hours_to`` and ``hours_zone`` are ``0`` and ``""`` for an entry that
    keeps no hours, as stored."""

    key: str
    covered_from: int
    covered_to: int
    full_at: int
    hours_to: int = 0
    hours_zone: str = ""


def extent_of(entry: Extent) -> BucketExtent:
    """``entry``'s extent as the store keeps it (no kept hours: ``0`` and ``""``)."""
    keeps = entry.hours_to > entry.covered_to
    return BucketExtent(entry.key, entry.covered_from, entry.covered_to, entry.full_at,
                        entry.hours_to if keeps else 0, entry.hours_zone if keeps else "")


def serves(entry: BucketEntry | None, hull: DataNeed, fetched: DataNeed, planned: DataNeed
           ) -> bool:
    """Whether ``entry`` holds what a plan made from an extent takes from the cache: the rows
    of ``[hull start, fetched start)`` (:func:`combine`) and, when ``planned`` starts later
    than ``fetched``, the kept hours in between in ``planned``'s zone (:func:`kept_hours`).
    True of the entry the plan was made from; an entry replaced since by another poll
    usually still serves (it covers the same range, read later)."""
    if fetched.starts_at > hull.starts_at and (
            entry is None or entry.covered_from > hull.starts_at
            or entry.covered_to < fetched.starts_at):
        return False
    if planned.starts_at > fetched.starts_at:
        return (entry is not None and entry.hours_zone == planned.timezone
                and entry.covered_to == fetched.starts_at
                and entry.hours_to >= planned.starts_at)
    return True


def cache_key(need: DataNeed) -> str:
    """The key of the rows ``need`` asks for, whatever range it asks them over."""
    spec = need.spec
    return json.dumps([need.customer, need.granularity, need.timezone, spec.meter,
                       spec.dimension_filters, spec.tenant_filters, spec.group_by],
                      separators=(",", ":"))


def key_needs(needs: Iterable[DataNeed]) -> dict[str, DataNeed]:
    """One need per cache key: the hull of the ranges of the needs sharing it."""
    hulls: dict[str, DataNeed] = {}
    for need in needs:
        key = cache_key(need)
        seen = hulls.get(key)
        hulls[key] = need if seen is None else replace(
            seen, starts_at=min(seen.starts_at, need.starts_at),
            ends_at=max(seen.ends_at, need.ends_at))
    return hulls


def settled_before(need: DataNeed, now: int, policy: CachePolicy) -> int:
    """Where the buckets of ``need`` that can no longer change end, as of ``now``: the start
    of the bucket that ``now - settle_window`` falls in, within ``need``'s range."""
    start = calendar.floor(int(now - policy.settle_window), need.granularity, need.timezone)
    return min(max(start, need.starts_at), need.ends_at)


def reread_after(key: str, policy: CachePolicy) -> float:
    """How long after its last full read a key is read in full again: between half and all of
    ``full_reread_every``, fixed per key, so entries warmed together are not all re-read in the
    same poll a week later (after the first, their full reads stay spread)."""
    return policy.full_reread_every * (0.5 + 0.5 * (zlib.crc32(key.encode()) / 2**32))


def fetch_range(need: DataNeed, entry: Extent | None, now: int, policy: CachePolicy
                ) -> DataNeed:
    """The need to ask Stripe for: ``need`` itself (a full read) or the part of it from where
    the entry's buckets were not yet settled when they were read."""
    if entry is None or now - entry.full_at >= reread_after(entry.key, policy):
        return need
    if not need.starts_at >= entry.covered_from or not (
            need.starts_at < entry.covered_to < need.ends_at):
        return need  # the rule looks further back, or the entry holds nothing of use
    return replace(need, starts_at=entry.covered_to)


def combine(need: DataNeed, fetched: DataNeed, entry: BucketEntry | None,
            rows: Sequence[UsageRow]) -> Sequence[UsageRow]:
    """The key's rows over ``need``'s range: cached ones before ``fetched`` starts, then
    ``rows`` (what Stripe said for ``fetched``'s range, already cut to the key's spec).
    Columns in, columns out (a few array operations); other rows give a list."""
    if isinstance(rows, UsageColumns):
        if entry is None or fetched.starts_at <= need.starts_at:
            return rows
        cached = UsageColumns.of(entry.rows).starting_in(need.starts_at, fetched.starts_at)
        return concatenated([cached, rows])
    if entry is None or fetched.starts_at <= need.starts_at:
        return list(rows)
    kept = [r for r in entry.rows if need.starts_at <= r.starts_at < fetched.starts_at]
    return kept + list(rows)


def updated(key: str, need: DataNeed, fetched: DataNeed, entry: BucketEntry | None,
            rows: Sequence[UsageRow], now: int, policy: CachePolicy,
            hours: Sequence[UsageRow] = (), hours_zone: str = "") -> BucketEntry:
    """The entry to keep after a successful read of ``fetched`` (``rows``: :func:`combine`'s):
    the settled rows only — the others are read again next time anyway. ``hours``: the key's
    hourly rows (in ``hours_zone``) from ``fetched``'s start, when it was read as hours; the
    settled ones of the first unsettled bucket are kept too."""
    full = entry is None or fetched.starts_at <= need.starts_at
    settled = settled_before(need, now, policy)
    hours_to = settled
    if hours_zone:
        hours_to = min(max(hours_settled_before(now, hours_zone, policy), settled), need.ends_at)
    return BucketEntry(key, need.starts_at, settled,
                       now if full or entry is None else entry.full_at,
                       _starting_in(rows, -(2**62), settled),
                       _starting_in(hours, settled, hours_to),
                       hours_to, hours_zone if hours_to > settled else "")


def _starting_in(rows: Sequence[UsageRow], starts_at: int, ends_at: int) -> Sequence[UsageRow]:
    """The rows whose bucket starts in ``[starts_at, ends_at)``: columns stay columns."""
    if isinstance(rows, UsageColumns):
        return rows.starting_in(starts_at, ends_at)
    return tuple(r for r in rows if starts_at <= r.starts_at < ends_at)


def hours_settled_before(now: int, zone: str, policy: CachePolicy) -> int:
    """Where the hours (of ``zone``) that can no longer change end, as of ``now``."""
    return calendar.floor(int(now - policy.settle_window), "hour", zone)


def hours_from(planned: DataNeed, fetched: DataNeed, entry: Extent | None) -> DataNeed:
    """``planned`` (``fetched`` as hours) starting where ``entry``'s kept hours end, when they
    are the hours of ``fetched``'s first bucket in the zone ``planned`` reads; else itself."""
    if (entry is None or planned.granularity != "hour" or planned == fetched
            or entry.hours_zone != planned.timezone or entry.covered_to != fetched.starts_at
            or not fetched.starts_at < entry.hours_to < planned.ends_at):
        return planned
    return replace(planned, starts_at=entry.hours_to)


def kept_hours(planned: DataNeed, fetched: DataNeed, entry: BucketEntry | None
               ) -> Sequence[UsageRow]:
    """The entry's hours that :func:`hours_from` left out of ``planned``: those before it."""
    if entry is None or planned.starts_at <= fetched.starts_at:
        return ()
    return _starting_in(entry.hours, fetched.starts_at, planned.starts_at)


#: How much longer than the settle window a range may be and still be asked for as hours: a
#: shrunk range is the settle window, the time since the previous poll and the part of a day
#: before the window (the window starts at a bucket start), so two days cover daily polls.
RECENT_EXTRA = 2 * 86_400


def hourly(fetched: DataNeed, policy: CachePolicy) -> DataNeed:
    """What to plan for ``fetched`` (a key's need, possibly shrunk by :func:`fetch_range`).

    A recent day need (at most ``settle_window`` + :data:`RECENT_EXTRA` long, as every shrunk
    one is, and as a rule's current day or week is) is asked for as hours: in UTC when its time
    zone is a whole number of hours from UTC over the range (hours of every such zone are UTC's
    hours), else in its own zone. Then every shrunk need of a customer is of one granularity
    and zone, so they all share a request (up to 5 meters) instead of one request per
    granularity and time zone; :func:`rebucket` sums the hours back into the need's days. The
    hours of a shrunk range are few (at most ``settle_window`` plus a poll interval plus a
    day), so rows stay few too. A longer (full) read stays as it is.
    """
    if fetched.ends_at - fetched.starts_at > policy.settle_window + RECENT_EXTRA:
        return fetched
    zone = "UTC" if _whole_hours(fetched) else fetched.timezone
    return replace(fetched, granularity="hour", timezone=zone)


def planned_needs(fetched: dict[str, DataNeed], policy: CachePolicy,
                  entries: Mapping[str, Extent] | None = None) -> dict[str, DataNeed]:
    """What to plan for each key of one batch: :func:`hourly`, except where a request of the
    need's own granularity and zone is made for the customer anyway (another key is read in
    full, e.g. a rule just added): then it joins that request instead of costing an hourly one.
    An hourly need starts where its entry's kept hours end (:func:`hours_from`).
    """
    entries = entries or {}
    planned = {k: hourly(f, policy) for k, f in fetched.items()}
    anyway = {(p.customer, p.granularity, p.timezone) for k, p in planned.items()
              if p == fetched[k]}
    return {k: f if (f.customer, f.granularity, f.timezone) in anyway
            else hours_from(planned[k], f, entries.get(k)) for k, f in fetched.items()}


def _whole_hours(need: DataNeed) -> bool:
    return all(_offset_seconds(at, need.timezone) % 3600 == 0
               for at in (need.starts_at, need.ends_at))


def _offset_seconds(instant: int, tz: str) -> int:
    offset = datetime.fromtimestamp(instant, calendar.zone(tz)).utcoffset()
    return 0 if offset is None else int(offset.total_seconds())


def rebucket(rows: Sequence[UsageRow], need: DataNeed) -> Sequence[UsageRow]:
    """Rows of hours summed into ``need``'s buckets (its granularity, its time zone), clipped
    to its range as Stripe clips them, in the planner's order (bucket, then dimensions).
    Columns in, columns out; other rows give a list."""
    if isinstance(rows, UsageColumns):
        return _rebucket_columns(rows, need)
    sums: dict[tuple[int, tuple[tuple[str, str], ...]], float] = {}
    meter = need.spec.meter
    for r in rows:
        start = calendar.floor(r.starts_at, need.granularity, need.timezone)
        group = (start, r.dimensions)
        sums[group] = sums.get(group, 0.0) + r.value
    out: list[UsageRow] = []
    for (start, dims), value in sorted(sums.items()):
        end = min(calendar.next_start(start, need.granularity, need.timezone), need.ends_at)
        out.append(UsageRow(max(start, need.starts_at), end, value, meter, dims))
    return out


def _rebucket_columns(rows: UsageColumns, need: DataNeed) -> UsageColumns:
    """:func:`rebucket` of columns: each distinct hour is floored once, the sums by
    :func:`~alertd.usage_columns.summed` (in row order, as the loop adds them)."""
    if not len(rows):
        return UsageColumns.empty()
    hours, hour_of = np.unique(rows.starts, return_inverse=True)
    floors = [calendar.floor(h, need.granularity, need.timezone) for h in hours.tolist()]
    starts = np.asarray(floors, np.int64)[hour_of.reshape(len(rows))]
    names, rank = sorted_table(rows.dimensions)
    buckets = sorted(set(floors))
    ends = {b: min(calendar.next_start(b, need.granularity, need.timezone), need.ends_at)
            for b in buckets}
    # The end depends on the bucket only, so summing per (bucket, bucket) is per bucket.
    out = summed(starts, starts, rows.values, rank[rows.dimension_codes], need.spec.meter,
                 names)
    clipped_ends = np.asarray([ends[b] for b in out.starts.tolist()], np.int64)
    return UsageColumns(np.maximum(out.starts, need.starts_at), clipped_ends, out.values,
                        out.meter_codes, out.meters, out.dimension_codes, out.dimensions)


def cut(need: DataNeed, rows: Sequence[UsageRow]) -> Sequence[UsageRow]:
    """The rows of ``need``'s own range out of its key's rows (columns stay columns)."""
    if isinstance(rows, UsageColumns):
        return rows.starting_in(need.starts_at, need.ends_at)
    return [r for r in rows if need.starts_at <= r.starts_at < need.ends_at]


def unchanged(entry: BucketEntry, stored: BucketEntry | None) -> bool:
    """Whether saving ``entry`` would store what ``stored`` (the key's entry as loaded) holds:
    the same range, full-read time, rows and kept hours (bit for bit). A steady poll within
    the hour it last saved in rewrites entries unchanged — its settled range ends where it
    did — so it saves only the others.

    Why skipping cannot lose an entry to pruning (entries not saved for ``full_reread_every``
    are dropped): an entry's last save was at or after its ``full_at`` (a full read saves a
    changed entry, ``full_at`` being that poll's ``now``), so one that pruning drops has not
    been read in full for longer than ``full_reread_every`` — its next read is a full one
    (:func:`reread_after`) whether or not it is there.
    """
    return stored is not None and _fields(entry) == _fields(stored) and _same_rows(
        entry.rows, stored.rows) and _same_rows(_kept(entry), _kept(stored))


def _fields(entry: BucketEntry) -> tuple[object, ...]:
    keeps = entry.hours_to > entry.covered_to  # as stored: no hours_to without hours
    return (entry.key, entry.covered_from, entry.covered_to, entry.full_at,
            entry.hours_to if keeps else 0, entry.hours_zone if keeps else "")


def _kept(entry: BucketEntry) -> Sequence[UsageRow]:
    return entry.hours if entry.hours_to > entry.covered_to else ()


def _same_rows(rows: Sequence[UsageRow], other: Sequence[UsageRow]) -> bool:
    """Rows equal field by field (values bit for bit; the meter is the key's), compared as
    columns: a few array comparisons, a dict look-up per dimension set."""
    if rows is other:
        return True
    a, b = UsageColumns.of(rows), UsageColumns.of(other)
    if not (len(a) == len(b) and np.array_equal(a.starts, b.starts)
            and np.array_equal(a.ends, b.ends)
            and np.array_equal(a.values.view(np.int64), b.values.view(np.int64))):
        return False
    if a.dimensions == b.dimensions:
        return np.array_equal(a.dimension_codes, b.dimension_codes)
    index = {d: code for code, d in enumerate(a.dimensions)}
    recode = np.fromiter((index.get(d, -1) for d in b.dimensions), np.int64, len(b.dimensions))
    return len(index) == len(a.dimensions) and np.array_equal(a.dimension_codes,
                                                              recode[b.dimension_codes])


def key_meter(key: str) -> str | None:
    """The meter a :func:`cache_key` names, also behind a store's prefix (an account's:
    ``account=eu\x1f``; JSON escapes a ``\x1f`` inside the key); ``ValueError`` for anything
    else."""
    try:
        meter = json.loads(key.rpartition("\x1f")[2])[3]
    except (TypeError, ValueError, KeyError, IndexError) as exc:
        raise ValueError(f"not a cache key: {exc!r}") from None
    return None if meter is None else str(meter)


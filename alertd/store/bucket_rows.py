"""The bucket cache's table, whatever the SQL engine: one row per key, and what it decodes to.

Where it sits: shared by :mod:`alertd.store.sqlite_buckets` and :mod:`alertd.store.pg_buckets`,
which differ only in placeholders and in how a row is replaced. The table (``usage_buckets``)
has the same columns on both (SQLite migrations 4 and 9, PostgreSQL 5 and 8): ``key``,
``covered_from``, ``covered_to``, ``full_at``, ``saved_at``, ``rows`` — the entry's payload
as compact JSON with base64 columns (:mod:`alertd.bucket_payload`) — and ``hours_to`` and
``hours_zone``, which the payload holds too: a poll plans a batch from the extents alone
(:func:`extents_from`, no payload read) and loads whole entries only for the batch it judges
(:mod:`alertd.service.reads`). It replaces those that changed, whole, a batch of customers at
a time, so neither store keeps rows in memory between batches.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from alertd.bucket_payload import decode_entry, encode_entry
from alertd.buckets import BucketEntry, BucketExtent, extent_of

log = logging.getLogger("alertd.store")

#: The columns, in the order :func:`entry_params` gives their values.
COLUMNS = ("key", "covered_from", "covered_to", "full_at", "saved_at", "rows", "hours_to",
           "hours_zone")
#: What :func:`entries_from` reads, in its order.
ENTRY_COLUMNS = ("key", "covered_from", "covered_to", "full_at", "rows")
#: What :func:`extents_from` reads, in its order.
EXTENT_COLUMNS = ("key", "covered_from", "covered_to", "full_at", "hours_to", "hours_zone")
#: Keys per query: well under SQLite's default limit of 32,766 variables.
CHUNK = 500


def entry_params(entries: Iterable[BucketEntry], now: int) -> list[tuple[Any, ...]]:
    """One tuple of :data:`COLUMNS` values per entry, stamped ``now``."""
    params = []
    for entry in entries:
        extent = extent_of(entry)
        params.append((entry.key, entry.covered_from, entry.covered_to, entry.full_at, now,
                       encode_entry(entry), extent.hours_to, extent.hours_zone))
    return params


def chunks(keys: Iterable[str]) -> Iterator[list[str]]:
    """The distinct keys, sorted, :data:`CHUNK` at a time."""
    wanted = sorted(set(keys))
    for start in range(0, len(wanted), CHUNK):
        yield wanted[start:start + CHUNK]


def entries_from(found: Iterable[Sequence[Any]]) -> dict[str, BucketEntry]:
    """Entries of ``(key, covered_from, covered_to, full_at, rows)`` rows; one that cannot be
    decoded is left out and logged — a damaged entry costs one full read, nothing more."""
    out: dict[str, BucketEntry] = {}
    for key, covered_from, covered_to, full_at, text in found:
        try:
            out[key] = decode_entry(str(key), int(covered_from), int(covered_to), int(full_at),
                                    str(text))
        except ValueError as exc:
            log.warning("cached buckets unreadable, reading them again error=%s", exc)
    return out


def extents_from(found: Iterable[Sequence[Any]]) -> dict[str, BucketExtent]:
    """Extents of rows of :data:`EXTENT_COLUMNS`."""
    return {str(key): BucketExtent(str(key), int(covered_from), int(covered_to), int(full_at),
                                   int(hours_to), str(hours_zone))
            for key, covered_from, covered_to, full_at, hours_to, hours_zone in found}

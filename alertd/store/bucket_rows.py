"""The bucket cache's table, whatever the SQL engine: one row per key, and what it decodes to.

Where it sits: shared by :mod:`alertd.store.sqlite_buckets` and :mod:`alertd.store.pg_buckets`,
which differ only in placeholders and in how a row is replaced. The table (``usage_buckets``)
has the same columns on both (SQLite migration 4, PostgreSQL migration 4): ``key``,
``covered_from``, ``covered_to``, ``full_at``, ``saved_at`` and ``rows`` — the entry's payload
as compact JSON with base64 columns (:mod:`alertd.bucket_payload`). A poll reads whole entries
and replaces those that changed, whole, a batch of customers at a time, so neither store keeps
rows in memory between batches.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from alertd.bucket_payload import decode_entry, encode_entry
from alertd.buckets import BucketEntry

log = logging.getLogger("alertd.store")

#: The columns, in the order :func:`entry_params` gives their values.
COLUMNS = ("key", "covered_from", "covered_to", "full_at", "saved_at", "rows")
#: Keys per query: well under SQLite's default limit of 32,766 variables.
CHUNK = 500


def entry_params(entries: Iterable[BucketEntry], now: int) -> list[tuple[Any, ...]]:
    """One tuple of :data:`COLUMNS` values per entry, stamped ``now``."""
    return [(e.key, e.covered_from, e.covered_to, e.full_at, now, encode_entry(e))
            for e in entries]


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

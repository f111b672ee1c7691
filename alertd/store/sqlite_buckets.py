"""The bucket cache on the SQLite store: the :class:`~alertd.store.base.BucketStore` methods.

Where it sits: mixed into :class:`~alertd.store.sqlite.SqliteStore` (same connection, same
worker thread, same error handling); the table is migration 4 of :mod:`alertd.store.schema`.
One row per cache key holds that key's rows as compact JSON (:func:`alertd.buckets.encode_rows`):
a poll reads and replaces whole entries, a batch of customers at a time, so nothing here keeps
rows in memory between batches — the cache lives on disk.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, TypeVar

from alertd.buckets import BucketEntry, decode_rows, encode_rows, key_meter

T = TypeVar("T")
log = logging.getLogger("alertd.store")

#: Keys per ``IN (...)``: well under SQLite's default limit of 32,766 variables.
_CHUNK = 500


class SqliteBuckets:
    """The cache methods; the host class provides ``_read`` and ``_write``."""

    if TYPE_CHECKING:  # provided by SqliteStore, the class this mixes into
        async def _read(self, work: Callable[[sqlite3.Connection], T]) -> T: ...

        async def _write(self, work: Callable[[sqlite3.Connection], T]) -> T: ...

    async def load_buckets(self, keys: Iterable[str]) -> dict[str, BucketEntry]:
        wanted = sorted(set(keys))
        return await self._read(lambda conn: _load(conn, wanted))

    async def save_buckets(self, entries: Iterable[BucketEntry], now: int) -> None:
        rows = [(e.key, e.covered_from, e.covered_to, e.full_at, now, encode_rows(e.rows))
                for e in entries]
        if rows:
            await self._write(lambda conn: conn.executemany(
                "INSERT OR REPLACE INTO usage_buckets (key, covered_from, covered_to, full_at,"
                " saved_at, rows) VALUES (?, ?, ?, ?, ?, ?)", rows))

    async def prune_buckets(self, before: int) -> int:
        return await self._write(lambda conn: conn.execute(
            "DELETE FROM usage_buckets WHERE saved_at < ?", (before,)).rowcount)


def _load(conn: sqlite3.Connection, keys: list[str]) -> dict[str, BucketEntry]:
    found: dict[str, BucketEntry] = {}
    for start in range(0, len(keys), _CHUNK):
        chunk = keys[start:start + _CHUNK]
        marks = ",".join("?" * len(chunk))
        for key, covered_from, covered_to, full_at, text in conn.execute(
            "SELECT key, covered_from, covered_to, full_at, rows FROM usage_buckets "
            f"WHERE key IN ({marks})", chunk,
        ):
            try:
                found[key] = BucketEntry(key, int(covered_from), int(covered_to), int(full_at),
                                         decode_rows(text, key_meter(key)))
            except ValueError as exc:  # a damaged entry costs one full read, nothing more
                log.warning("cached buckets unreadable, reading them again error=%s", exc)
    return found

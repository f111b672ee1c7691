"""The bucket cache on the SQLite store: the :class:`~alertd.store.base.BucketStore` methods.

Where it sits: mixed into :class:`~alertd.store.sqlite.SqliteStore` (same connection, same
worker thread, same error handling); the table is migrations 4 and 9 of :mod:`alertd.store.schema`.
What is stored and how it decodes is :mod:`alertd.store.bucket_rows`, shared with PostgreSQL
(:mod:`alertd.store.pg_buckets`); only the SQL differs.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, TypeVar

from alertd.buckets import BucketEntry, BucketExtent
from alertd.store.bucket_rows import (
    COLUMNS,
    EXTENT_COLUMNS,
    chunks,
    entries_from,
    entry_params,
    extents_from,
)

T = TypeVar("T")

_SAVE = (f"INSERT OR REPLACE INTO usage_buckets ({', '.join(COLUMNS)}) "
         f"VALUES ({', '.join('?' * len(COLUMNS))})")


class SqliteBuckets:
    """The cache methods; the host class provides ``_read`` and ``_write``."""

    if TYPE_CHECKING:  # provided by SqliteStore, the class this mixes into
        async def _read(self, work: Callable[[sqlite3.Connection], T]) -> T: ...

        async def _write(self, work: Callable[[sqlite3.Connection], T]) -> T: ...

    async def load_buckets(self, keys: Iterable[str]) -> dict[str, BucketEntry]:
        wanted = list(chunks(keys))
        return await self._read(lambda conn: _load(conn, wanted))

    async def load_extents(self, keys: Iterable[str]) -> dict[str, BucketExtent]:
        chunked = list(chunks(keys))
        return await self._read(lambda conn: _load_extents(conn, chunked))

    async def save_buckets(self, entries: Iterable[BucketEntry], now: int) -> None:
        params = entry_params(entries, now)
        if params:
            await self._write(lambda conn: conn.executemany(_SAVE, params))

    async def drop_buckets(self, keys: Iterable[str]) -> None:
        chunked = list(chunks(keys))

        def drop(conn: sqlite3.Connection) -> None:
            for chunk in chunked:
                conn.execute(f"DELETE FROM usage_buckets WHERE key IN "
                             f"({','.join('?' * len(chunk))})", chunk)

        if chunked:
            await self._write(drop)

    async def prune_buckets(self, before: int) -> int:
        return await self._write(lambda conn: conn.execute(
            "DELETE FROM usage_buckets WHERE saved_at < ?", (before,)).rowcount)


def _load(conn: sqlite3.Connection, chunked: list[list[str]]) -> dict[str, BucketEntry]:
    found: dict[str, BucketEntry] = {}
    for chunk in chunked:
        found.update(entries_from(conn.execute(
            "SELECT key, covered_from, covered_to, full_at, rows FROM usage_buckets "
            f"WHERE key IN ({','.join('?' * len(chunk))})", chunk)))
    return found


def _load_extents(conn: sqlite3.Connection, chunked: list[list[str]]
                  ) -> dict[str, BucketExtent]:
    found: dict[str, BucketExtent] = {}
    for chunk in chunked:
        found.update(extents_from(conn.execute(
            f"SELECT {', '.join(EXTENT_COLUMNS)} FROM usage_buckets "
            f"WHERE key IN ({','.join('?' * len(chunk))})", chunk)))
    return found

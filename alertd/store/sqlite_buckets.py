"""The bucket cache on the SQLite store: the :class:`~alertd.store.base.BucketStore` methods.

Where it sits: mixed into :class:`~alertd.store.sqlite.SqliteStore` (same connection, same
worker thread, same error handling); the table is migrations 4 and 9 of :mod:`alertd.store.schema`.
What is stored and how it decodes is :mod:`alertd.store.bucket_rows`, shared with PostgreSQL
(:mod:`alertd.store.pg_buckets`); only the SQL differs.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from alertd.buckets import BucketEntry, BucketExtent
from alertd.store.bucket_rows import (
    COLUMNS,
    ENTRY_COLUMNS,
    EXTENT_COLUMNS,
    chunks,
    entries_from,
    entry_params,
    extents_from,
)

T = TypeVar("T")
E = TypeVar("E")  # what a row decodes to: an entry or an extent

_SAVE = (f"INSERT OR REPLACE INTO usage_buckets ({', '.join(COLUMNS)}) "
         f"VALUES ({', '.join('?' * len(COLUMNS))})")


class SqliteBuckets:
    """The cache methods; the host class provides ``_read`` and ``_write``."""

    if TYPE_CHECKING:  # provided by SqliteStore, the class this mixes into
        async def _read(self, work: Callable[[sqlite3.Connection], T]) -> T: ...

        async def _write(self, work: Callable[[sqlite3.Connection], T]) -> T: ...

    async def load_buckets(self, keys: Iterable[str]) -> dict[str, BucketEntry]:
        return await self._select(ENTRY_COLUMNS, keys, entries_from)

    async def load_extents(self, keys: Iterable[str]) -> dict[str, BucketExtent]:
        return await self._select(EXTENT_COLUMNS, keys, extents_from)

    async def save_buckets(self, entries: Iterable[BucketEntry], now: int) -> None:
        params = entry_params(entries, now)
        if params:
            await self._write(lambda conn: conn.executemany(_SAVE, params))

    async def prune_buckets(self, before: int) -> int:
        return await self._write(lambda conn: conn.execute(
            "DELETE FROM usage_buckets WHERE saved_at < ?", (before,)).rowcount)

    async def _select(self, columns: Sequence[str], keys: Iterable[str],
                      decode: Callable[[Iterable[Sequence[Any]]], dict[str, E]]
                      ) -> dict[str, E]:
        """``columns`` of the rows of ``keys``, decoded (entries or extents)."""
        chunked = list(chunks(keys))

        def load(conn: sqlite3.Connection) -> dict[str, E]:
            found: dict[str, E] = {}
            for chunk in chunked:
                found.update(decode(conn.execute(
                    f"SELECT {', '.join(columns)} FROM usage_buckets "
                    f"WHERE key IN ({','.join('?' * len(chunk))})", chunk)))
            return found

        return await self._read(load)

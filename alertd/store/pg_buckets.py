"""The bucket cache on the PostgreSQL store: the :class:`~alertd.store.base.BucketStore` methods.

Where it sits: mixed into :class:`~alertd.store.postgres.PostgresStore` (its connection, lock
and error handling); the table is migrations 5 and 8 of :mod:`alertd.store.pg_schema`, with the
columns of SQLite's. What is stored and how it decodes is :mod:`alertd.store.bucket_rows`,
shared with :mod:`alertd.store.sqlite_buckets`; only the SQL differs (``= ANY`` for a key list,
``ON CONFLICT`` to replace). Replicas share the cache: a standby that takes over warms from it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg

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
Conn = psycopg.AsyncConnection[dict[str, Any]]

_SAVE = (f"INSERT INTO usage_buckets ({', '.join(COLUMNS)}) "
         f"VALUES ({', '.join(['%s'] * len(COLUMNS))}) ON CONFLICT (key) DO UPDATE SET "
         + ", ".join(f"{c} = EXCLUDED.{c}" for c in COLUMNS[1:]))


class PgBuckets:
    """The cache methods; the host class provides ``_run``."""

    if TYPE_CHECKING:  # provided by PostgresStore, the class this mixes into
        async def _run(self, work: Callable[[Conn], Awaitable[T]], write: bool = False
                       ) -> T: ...

    async def load_buckets(self, keys: Iterable[str]) -> dict[str, BucketEntry]:
        return await self._select(ENTRY_COLUMNS, keys, entries_from)

    async def load_extents(self, keys: Iterable[str]) -> dict[str, BucketExtent]:
        return await self._select(EXTENT_COLUMNS, keys, extents_from)

    async def _select(self, columns: Sequence[str], keys: Iterable[str],
                      decode: Callable[[Iterable[Sequence[Any]]], dict[str, E]]
                      ) -> dict[str, E]:
        """``columns`` of the rows of ``keys``, decoded (entries or extents)."""
        chunked = list(chunks(keys))
        sql = f"SELECT {', '.join(columns)} FROM usage_buckets WHERE key = ANY(%s)".encode()

        async def load(conn: Conn) -> dict[str, E]:
            found: dict[str, E] = {}
            for chunk in chunked:
                cursor = await conn.execute(sql, (chunk,))
                found.update(decode(tuple(r[c] for c in columns)
                                    for r in await cursor.fetchall()))
            return found

        return await self._run(load)

    async def save_buckets(self, entries: Iterable[BucketEntry], now: int) -> None:
        params = entry_params(entries, now)

        async def save(conn: Conn) -> None:
            async with conn.cursor() as cursor:
                await cursor.executemany(_SAVE.encode(), params)

        if params:
            await self._run(save, write=True)

    async def prune_buckets(self, before: int) -> int:
        async def prune(conn: Conn) -> int:
            cursor = await conn.execute(
                b"DELETE FROM usage_buckets WHERE saved_at < %s", (before,))
            return cursor.rowcount

        return await self._run(prune, write=True)

"""Which store the settings name, opened: SQLite (``state.path``) or PostgreSQL (``state.url``).

Where it sits: every command that touches state (the daemon, ``check``, ``backtest``,
``silence``, ``state``) opens it here, so "both backends" is one decision in one place. The
SQLite file is one process's at a time (:mod:`alertd.store.lock`), so ``exclusive=True`` takes
its lock; a PostgreSQL database is shared by design (leases and claims keep replicas apart), so
no lock is taken there.

:mod:`alertd.store.postgres` (and with it psycopg, ~12 MB of a process's memory) is imported
only when the settings name a PostgreSQL database: a SQLite deployment never loads it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, TypeAlias

from alertd.config.settings import Settings
from alertd.store.base import default_holder
from alertd.store.lock import exclusive as exclusive_lock
from alertd.store.sqlite import SqliteStore, StoreObserver

if TYPE_CHECKING:
    from alertd.store.postgres import PostgresStore

AnyStore: TypeAlias = "SqliteStore | PostgresStore"


def replica_name(settings: Settings) -> str:
    return settings.state.replica or default_holder()


def store_for(settings: Settings, observer: StoreObserver | None = None,
              claim_seconds: float = 150.0) -> AnyStore:
    """The store of ``settings``, not yet opened."""
    if settings.state.url is not None:
        from alertd.store.postgres import PostgresStore

        password = settings.state.resolved_password()
        return PostgresStore(
            settings.state.url, holder=replica_name(settings), claim_seconds=claim_seconds,
            password=None if password is None else password.get_secret_value(),
            observer=observer)
    return SqliteStore(settings.state_path(), observer=observer)


@asynccontextmanager
async def open_store(
    settings: Settings, holder: str | None = None, *, observer: StoreObserver | None = None,
    claim_seconds: float = 150.0,
) -> AsyncIterator[AnyStore]:
    """The opened store; with ``holder`` (who needs it alone, for the message) a SQLite file's
    lock is held while it is open."""
    async with AsyncExitStack() as stack:
        if holder is not None and settings.state.url is None:
            stack.enter_context(exclusive_lock(settings.state_path(), holder))
        yield await stack.enter_async_context(store_for(settings, observer, claim_seconds))

"""The store fixture of the backend-neutral tests: each runs on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from alertd.store.base import Store
from alertd.store.postgres import PostgresStore
from alertd.store.sqlite import SqliteStore

#: Opens (another connection to) the one store of the test: call it again to "reopen".
OpenStore = Callable[[], "SqliteStore | PostgresStore"]


@pytest.fixture(params=["sqlite", "postgres"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> OpenStore:
    if request.param == "sqlite":
        return lambda: SqliteStore(tmp_path / "alertd.db")
    url: str = request.getfixturevalue("pg_url")
    return lambda: PostgresStore(url, holder="test-replica")


def as_store(store: Store) -> Store:
    """Type check: both backends are the Store protocol."""
    return store

"""The PostgreSQL password reaches the real server's connection from ``state.password_file``,
else ``ALERTD_STATE_PASSWORD`` — never from the URL (refused there)."""

from __future__ import annotations

from pathlib import Path

import pytest

from alertd.config.settings import Settings
from alertd.store.open import open_store
from alertd.store.postgres import PostgresStore


def password_used(store: object) -> str | None:
    """The password libpq connected with (the server trusts this machine, so it accepts
    any: what is checked is that alertd handed the right one to the driver)."""
    assert isinstance(store, PostgresStore) and store._conn is not None
    return store._conn.info.password


async def test_the_password_file_wins_over_the_environment(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret = tmp_path / "state_password"
    secret.write_text("from-file\n")
    monkeypatch.setenv("ALERTD_STATE_PASSWORD", "from-env")
    with_file = Settings.model_validate(
        {"state": {"url": pg_url, "password_file": str(secret)}, "rule_files": []})
    async with open_store(with_file) as store:
        assert password_used(store) == "from-file"
    from_env = Settings.model_validate({"state": {"url": pg_url}, "rule_files": []})
    async with open_store(from_env) as store:
        assert password_used(store) == "from-env"
    monkeypatch.delenv("ALERTD_STATE_PASSWORD")
    monkeypatch.delenv("PGPASSWORD", raising=False)
    async with open_store(from_env) as store:  # neither: libpq's own (PGPASSWORD, .pgpass)
        assert password_used(store) in (None, "")

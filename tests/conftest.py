"""Suite-wide test switches.

``@pytest.mark.needs_program("NAME", …)`` marks a test that runs a real external program
(Alertmanager, promtool, systemd-analyze). Where one is not on ``PATH`` the test is skipped
with the reason printed; under CI (``CI=true``) it errors instead, so a CI image that lost a
program cannot turn those tests into silent skips (``.ci/run`` installs them).

The ``pg_server`` and ``pg_url`` fixtures give a test a real PostgreSQL server
(``ALERTD_TEST_PG``, default ``postgresql://postgres@127.0.0.1:5432/test``) and a schema of its
own, created for it and dropped after it, so parallel workers (``-n 2``) and other people on
the same server never see each other's rows. Where no server answers they skip with the
reason, and under CI they error the same way (the CI machines run the server).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from urllib.parse import quote

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "needs_program(*names): runs these external programs; skipped where absent, "
        "an error under CI=true",
    )


def missing_programs(item: pytest.Item) -> list[str]:
    names = [n for marker in item.iter_markers("needs_program") for n in marker.args]
    return [name for name in names if shutil.which(name) is None]


def pytest_runtest_setup(item: pytest.Item) -> None:
    missing = missing_programs(item)
    if not missing:
        return
    reason = f"needs {', '.join(missing)} on PATH (not installed)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}; CI must install it (.ci/run)", pytrace=False)
    # A user's laptop without the program: skip, saying why (CI failed above instead).
    pytest.skip(reason)


# ------------------------------------------------------------------ PostgreSQL

PG_BASE = os.environ.get("ALERTD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def _server_problem() -> str | None:
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install 'psycopg[binary]')"
    try:
        with psycopg.connect(PG_BASE, connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return f"no PostgreSQL server at {PG_BASE}: {' '.join(str(exc).split())[:200]}"


def schema_url(schema: str) -> str:
    """``PG_BASE`` with ``search_path`` set to ``schema`` for every connection."""
    sep = "&" if "?" in PG_BASE else "?"
    return f"{PG_BASE}{sep}options={quote(f'-csearch_path={schema}')}"


@pytest.fixture(scope="session")
def pg_server() -> str:
    problem = _server_problem()
    if problem is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{problem}; CI must run the server (.ci/run waits for it)",
                        pytrace=False)
        # No PostgreSQL server here (a user's laptop): skip, saying why; CI failed above.
        pytest.skip(problem)
    return PG_BASE


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A URL whose connections see only a new, empty schema (dropped after the test)."""
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}".encode())
    try:
        yield schema_url(schema)
    finally:
        with psycopg.connect(pg_server, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE".encode())

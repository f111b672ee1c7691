"""Queries for the status page: notification history pages, one row, resend.

Where it sits: :class:`~alertd.store.sqlite.SqliteStore` runs these in its store thread for
the :class:`~alertd.store.base.Store` methods ``outbox_page``, ``outbox_for_alert``,
``outbox_row``, ``attempts`` and ``resend``. The two page queries are pure and take the
driver's placeholder, so :mod:`alertd.store.postgres` builds its pages with them too; the
rest are SQLite's own (the contracts are in :mod:`alertd.store.base`).

Every delivery attempt is logged (:func:`log_attempts`, in the ``record_attempts`` transaction)
in ``outbox_attempts``, and pruned with its outbox row; a row has a bounded number of them
(``delivery.max_age`` over the backoff), and :func:`attempts` reads at most ``limit``.

Paging is by key (``created_at, id`` below the previous page's last row), never by OFFSET, so
page 500 of a large outbox costs what page 1 does: the ``outbox_history`` index (migration 5)
serves the newest-first order, with or without a status filter. Finding the rows of one alert
reads each candidate's JSON: it is bounded by ``scan`` rows (newest first) because the outbox
is pruned (``notify.keep_delivered``) and a page shows only the latest few.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from alertd.store.base import Attempt, OutboxCursor, OutboxStatus


def page_query(
    columns: str, status: OutboxStatus | None, receiver: str | None,
    before: OutboxCursor | None, limit: int, mark: str = "?",
) -> tuple[str, list[Any]]:
    """The SQL and parameters of one newest-first page (pure; ``mark``: the driver's
    placeholder, ``?`` for sqlite3, ``%s`` for psycopg)."""
    where: list[str] = []
    params: list[Any] = []
    if status is not None:
        where.append(f"o.status = {mark}")
        params.append(status)
    if receiver is not None:
        where.append(f"o.receiver = {mark}")
        params.append(receiver)
    if before is not None:
        where.append(f"(o.created_at, o.id) < ({mark}, {mark})")
        params.extend(before)
    sql = f"SELECT {columns} FROM outbox o"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY o.created_at DESC, o.id DESC LIMIT {mark}"
    params.append(max(1, min(limit, 500)))
    return sql, params


def for_alert_query(columns: str, fingerprint: str, scan: int, mark: str = "?"
                    ) -> tuple[str, list[Any]]:
    """Rows whose notification carries the alert ``fingerprint``, among the newest ``scan``."""
    # The fingerprint is hex; quoting it as a JSON string keeps LIKE from matching a prefix.
    pattern = '%"fingerprint":"' + fingerprint.replace("%", "").replace("_", "") + '"%'
    sql = (f"SELECT {columns} FROM (SELECT * FROM outbox ORDER BY created_at DESC, id DESC "
           f"LIMIT {mark}) o WHERE o.notification LIKE {mark} "
           "ORDER BY o.created_at DESC, o.id DESC")
    return sql, [scan, pattern]


def resend(conn: sqlite3.Connection, row_id: str, now: float) -> bool:
    """Puts a failed or undeliverable row back in line, due now; ``False`` if it is neither."""
    cursor = conn.execute(
        "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = ? "
        "WHERE id = ? AND status IN ('failed', 'undeliverable')",
        (now, row_id),
    )
    return cursor.rowcount == 1


def log_attempts(conn: sqlite3.Connection, attempts: Sequence[Attempt]) -> None:
    """Logs a batch of attempts in the transaction that records them (``record_attempts``)."""
    conn.executemany("INSERT INTO outbox_attempts (id, attempt, at, status, error) "
                     "VALUES (?, ?, ?, ?, ?)",
                     [(a.id, a.attempts, a.at, a.status, a.error) for a in attempts])


def prune_attempts(conn: sqlite3.Connection, before: float) -> None:
    """The attempts of the rows ``prune_outbox`` is about to delete."""
    conn.execute("DELETE FROM outbox_attempts WHERE id IN (SELECT id FROM outbox "
                 "WHERE status != 'pending' AND created_at < ?)", (before,))


def attempts(conn: sqlite3.Connection, row_id: str, limit: int) -> list[Attempt]:
    """The newest ``limit`` attempts at one row, oldest first."""
    rows = conn.execute(
        "SELECT attempt, at, status, error FROM outbox_attempts WHERE id = ? "
        "ORDER BY at DESC, rowid DESC LIMIT ?", (row_id, max(1, min(limit, 1000)))).fetchall()
    return [Attempt(row_id, r["status"], r["attempt"], r["at"], error=r["error"])
            for r in reversed(rows)]

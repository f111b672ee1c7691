"""The SQLite file format of the state store: schema versions, migrations, opening.

``PRAGMA user_version`` counts the :data:`MIGRATIONS` applied and ``PRAGMA application_id``
marks the file as alertd's. :func:`open_database` applies the missing migrations in one
transaction; a file from a newer alertd, another application's database or a damaged file
raise :class:`~alertd.errors.StoreError` saying what to do.

Privacy: the file holds customer names and e-mail addresses, so it is created ``0600``
whatever the umask, and an existing file is narrowed to ``0600`` when opened. SQLite gives its
``-wal`` and ``-shm`` files the mode of the database file, so they are ``0600`` too.

Integrity: a file with a valid header and broken pages opens fine and fails later, query by
query. :func:`open_database` runs ``PRAGMA quick_check`` first (it reads every page once but
skips the index cross-checks of ``integrity_check``: a few milliseconds for a state file of
megabytes). It is bounded by :data:`QUICK_CHECK_SECONDS`; a check cut short by that bound is
logged and the file is used, since a slow disk is no proof of damage. A damaged file raises
:class:`~alertd.errors.StoreDamagedError` with :func:`recovery_hint`.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from alertd.errors import StoreDamagedError, StoreError

log = logging.getLogger("alertd.store")

T = TypeVar("T")

APPLICATION_ID = 0x616C7464  # "altd"

#: Statements that bring a file from version ``i`` to ``i + 1`` (``user_version`` is the count
#: applied). Never edit a released entry: append a new one.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # 1: series state, notification log, outbox, silences
        """CREATE TABLE alert_state (
            rule TEXT NOT NULL, customer TEXT NOT NULL, grp TEXT NOT NULL,
            fingerprint TEXT NOT NULL, state TEXT NOT NULL, updated_at INTEGER NOT NULL,
            PRIMARY KEY (rule, customer, grp))""",
        """CREATE TABLE notification_log (
            receiver TEXT NOT NULL, group_key TEXT NOT NULL, firing TEXT NOT NULL,
            resolved TEXT NOT NULL, sent_at INTEGER NOT NULL, notification_id TEXT NOT NULL,
            PRIMARY KEY (receiver, group_key))""",
        """CREATE TABLE outbox (
            id TEXT PRIMARY KEY, receiver TEXT NOT NULL, group_key TEXT NOT NULL,
            notification TEXT NOT NULL,
            status TEXT NOT NULL
                CHECK (status IN ('pending', 'delivered', 'failed', 'undeliverable')),
            attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at REAL NOT NULL,
            last_error TEXT, created_at REAL NOT NULL, delivered_at REAL)""",
        "CREATE INDEX outbox_due ON outbox (status, next_attempt_at)",
        """CREATE TABLE silences (
            id TEXT PRIMARY KEY, matchers TEXT NOT NULL, starts_at INTEGER NOT NULL,
            ends_at INTEGER NOT NULL, comment TEXT NOT NULL, created_by TEXT,
            created_at INTEGER NOT NULL, expired INTEGER NOT NULL DEFAULT 0)""",
    ),
    (  # 2: aggregation groups (group_wait timers survive restarts)
        """CREATE TABLE alert_groups (
            receiver TEXT NOT NULL, group_key TEXT NOT NULL, group_labels TEXT NOT NULL,
            group_wait REAL NOT NULL, group_interval REAL NOT NULL,
            repeat_interval REAL NOT NULL, send_resolved INTEGER NOT NULL,
            created_at INTEGER NOT NULL, flushed_at INTEGER,
            PRIMARY KEY (receiver, group_key))""",
        """CREATE TABLE group_alerts (
            receiver TEXT NOT NULL, group_key TEXT NOT NULL, instance TEXT NOT NULL,
            rank INTEGER NOT NULL, alert TEXT NOT NULL,
            PRIMARY KEY (receiver, group_key, instance))""",
        "CREATE INDEX outbox_group_order ON outbox (receiver, group_key, status, created_at)",
    ),
    (  # 3: leader leases (one file has one writer, but the daemon asks the same way)
        """CREATE TABLE leases (
            name TEXT PRIMARY KEY, holder TEXT NOT NULL, generation INTEGER NOT NULL,
            expires_at REAL NOT NULL)""",
    ),
    (  # 4: the bucket cache (alertd.buckets): one row per cache key, its rows as JSON
        """CREATE TABLE usage_buckets (
            key TEXT PRIMARY KEY, covered_from INTEGER NOT NULL, covered_to INTEGER NOT NULL,
            full_at INTEGER NOT NULL, saved_at INTEGER NOT NULL, rows TEXT NOT NULL)""",
        "CREATE INDEX usage_buckets_saved ON usage_buckets (saved_at)",
    ),
    (  # 5: the status page's notification history, newest first (alertd.store.pages)
        "CREATE INDEX outbox_history ON outbox (created_at DESC, id DESC)",
        "CREATE INDEX outbox_history_status ON outbox (status, created_at DESC, id DESC)",
        # Every delivery attempt with its outcome and error (the history shows them all).
        """CREATE TABLE outbox_attempts (
            id TEXT NOT NULL, attempt INTEGER NOT NULL, at REAL NOT NULL,
            status TEXT NOT NULL, error TEXT)""",
        "CREATE INDEX outbox_attempts_of ON outbox_attempts (id, at)",
    ),
    (  # 6: alert state keyed by Stripe account too (alertd.accounts); '' is stripe.api_key's
        """CREATE TABLE alert_state_by_account (
            rule TEXT NOT NULL, customer TEXT NOT NULL, grp TEXT NOT NULL,
            fingerprint TEXT NOT NULL, state TEXT NOT NULL, updated_at INTEGER NOT NULL,
            account TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (rule, customer, grp, account))""",
        """INSERT INTO alert_state_by_account (rule, customer, grp, fingerprint, state,
            updated_at) SELECT rule, customer, grp, fingerprint, state, updated_at
            FROM alert_state""",
        "DROP TABLE alert_state",
        "ALTER TABLE alert_state_by_account RENAME TO alert_state",
    ),
    (  # 7: outbox_history_status (status first) serves every query outbox_due did; one
        # index fewer to keep up on each delivery's UPDATE (issue 16)
        "DROP INDEX IF EXISTS outbox_due",
    ),
    (  # 8: a flush loads only the groups it can affect (Store.load_scope, issue 13). Without
        # these EXPLAIN QUERY PLAN shows "SCAN group_alerts" (every entry of every group, to
        # find an episode's groups) and "SCAN alert_groups" (to find the due ones, and for
        # next_group_due's MIN); with them, SEARCH on each. The expression is the one
        # alertd.store.sqlite writes as _DUE_AT: SQLite uses the index only for that text.
        "CREATE INDEX group_alerts_instance ON group_alerts (instance)",
        """CREATE INDEX alert_groups_due ON alert_groups ((CASE WHEN flushed_at IS NULL
            THEN created_at + group_wait ELSE flushed_at + group_interval END))""",
    ),
    (  # 9: a bucket entry's kept hours' end and zone as columns, so a poll plans from the
        # extents alone and loads rows only for the batch it judges (alertd.buckets). Rows
        # stored before keep 0 and '' here (their payloads say more): planned as keeping no
        # hours, such a key reads its first unsettled bucket as hours once, and its next
        # save writes the columns (alertd.service.reads.save compares them too).
        "ALTER TABLE usage_buckets ADD COLUMN hours_to INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE usage_buckets ADD COLUMN hours_zone TEXT NOT NULL DEFAULT ''",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)
FILE_MODE = 0o600
#: Upper bound on the start-up integrity check (see the module doc).
QUICK_CHECK_SECONDS = 10.0
#: SQLite virtual-machine steps between two looks at the clock during the check.
_PROGRESS_STEPS = 1_000


def recovery_hint(path: Path | str) -> str:
    """What a user does with a damaged state file: one sentence, commands included."""
    return (
        f"To recover: stop alertd, move it aside with its -wal and -shm files "
        f"(mv {path} {path}.damaged) and start alertd on a new file (alert states and "
        "undelivered notifications are lost), or salvage the rows first with "
        f"'sqlite3 {path}.damaged .recover | sqlite3 {path}'"
    )


def is_damage(exc: sqlite3.Error) -> bool:
    """Whether ``exc`` says the file itself is corrupt (not locked, full or read-only)."""
    # SQLITE_NOTADB ("file is not a database") is left out: that is some other file, whose
    # own message says so; only SQLITE_CORRUPT means an alertd file went bad.
    code = getattr(exc, "sqlite_errorcode", None)
    return code == sqlite3.SQLITE_CORRUPT or "malformed" in str(exc)


def prepare_file(path: Path) -> None:
    """Create ``path`` (and its folder) ``0600`` if missing; narrow an existing one to ``0600``.

    ``os.open``'s mode is filtered by the umask, so the mode is set again with ``fchmod``.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            os.fchmod(fd, FILE_MODE)
        finally:
            os.close(fd)
        for suffix in ("-wal", "-shm"):
            companion = path.with_name(path.name + suffix)
            if companion.exists():
                companion.chmod(FILE_MODE)
    except OSError as exc:
        raise StoreError(
            f"cannot create or open the state file {path}: {exc.strerror or exc}; let alertd "
            f"write to {path.parent} (systemd: StateDirectory=), or change state.path"
        ) from None


def quick_check(conn: sqlite3.Connection, path: Path, limit: float = QUICK_CHECK_SECONDS) -> None:
    """SQLite's ``quick_check`` within ``limit`` seconds; :class:`StoreDamagedError` if it
    finds damage."""
    deadline = time.monotonic() + limit
    conn.set_progress_handler(lambda: int(time.monotonic() > deadline), _PROGRESS_STEPS)
    try:
        rows = [" ".join(str(row[0]).split()) for row in conn.execute("PRAGMA quick_check(5)")]
    except sqlite3.OperationalError as exc:
        if "interrupt" not in str(exc):
            raise
        log.warning("state file check cut short path=%s after=%gs; using the file", path, limit)
        return
    finally:
        conn.set_progress_handler(None, 0)
    if rows != ["ok"]:
        raise StoreDamagedError(
            f"the state file {path} is damaged (SQLite quick_check: {'; '.join(rows)[:200]}). "
            + recovery_hint(path)
        )


def open_database(path: Path, busy_timeout: float = 5.0) -> sqlite3.Connection:
    """A checked connection to ``path`` at :data:`SCHEMA_VERSION`, or :class:`StoreError`."""
    if str(path) != ":memory:":
        prepare_file(path)
    conn = sqlite3.connect(str(path), timeout=busy_timeout, isolation_level=None)
    conn.row_factory = sqlite3.Row
    try:
        _check_identity(conn, path)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        quick_check(conn, path)
        transaction(conn, lambda c: migrate(c, path))
    except StoreError:
        conn.close()
        raise
    except sqlite3.Error as exc:
        conn.close()
        raise store_error(path, exc) from None
    return conn


def store_error(path: Path | str, exc: sqlite3.Error) -> StoreError:
    """The :class:`StoreError` for an SQLite error on ``path``, saying what to do."""
    if is_damage(exc):
        return StoreDamagedError(f"the state file {path} is damaged ({exc}). "
                                 + recovery_hint(path))
    if isinstance(exc, sqlite3.OperationalError):
        return StoreError(
            f"cannot use the state file {path}: {exc} (check that alertd may write to it and "
            "its folder, and that no other program holds a lock on it)"
        )
    return StoreError(
        f"{path} is not a usable alertd state file ({exc}). If it is damaged, move it aside "
        "and alertd starts a new one (its alert states and undelivered notifications are "
        "lost), or point state.path elsewhere."
    )


def _check_identity(conn: sqlite3.Connection, path: Path) -> None:
    application_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    tables = conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0]
    if application_id not in (0, APPLICATION_ID) or (application_id == 0 and tables and
                                                      version == 0):
        raise StoreError(
            f"{path} is a SQLite database of another application, not an alertd state file; "
            "point state.path at a new file"
        )
    _check_version(version, path)


def _check_version(version: int, path: Path) -> None:
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path} was written by a newer alertd (state schema {version}; this alertd knows "
            f"up to {SCHEMA_VERSION}). Upgrade alertd, or point state.path at a new file."
        )


def migrate(conn: sqlite3.Connection, path: Path) -> int:
    """Applies the missing migrations (inside the caller's transaction); the new version."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    _check_version(version, path)  # another process may have upgraded the file meanwhile
    for statements in MIGRATIONS[version:]:
        for statement in statements:
            conn.execute(statement)
    if version < SCHEMA_VERSION:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    return SCHEMA_VERSION


def transaction(conn: sqlite3.Connection, work: Callable[[sqlite3.Connection], T]) -> T:
    """Runs ``work`` in one write transaction: all of it commits, or none of it."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = work(conn)
    except BaseException:
        if conn.in_transaction:  # some errors (e.g. SQLITE_FULL) already rolled it back
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result

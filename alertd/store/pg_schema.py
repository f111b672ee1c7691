"""The PostgreSQL schema of the state store: versions, migrations, connecting.

The same mechanism as SQLite's (:mod:`alertd.store.schema`): :data:`MIGRATIONS` is a tuple of
statement lists, entry ``i`` brings the database from version ``i`` to ``i + 1``; the table
``alertd_schema`` holds the version applied. :func:`migrate` applies the missing entries in one
transaction, under a transaction-scoped advisory lock so two replicas starting together never
both migrate (transaction-scoped locks, unlike session locks, work behind PgBouncer's
transaction pooling). A database from a newer alertd is refused.

Tables and columns mirror the SQLite file (JSON as text, times as numbers) so
:mod:`alertd.store.rows` decodes both and ``alertd state copy`` moves rows one to one; the
outbox has two more columns, ``claimed_by`` and ``claimed_until``, for delivery from several
replicas (:mod:`alertd.store.postgres`).

The password never appears in a URL alertd logs: :func:`redacted` is what messages show.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

from alertd.errors import StoreError

#: Never edit a released entry: append a new one.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # 1: series state, notification log, outbox, silences (SQLite versions 1 and 2)
        """CREATE TABLE alert_state (
            rule TEXT NOT NULL, customer TEXT NOT NULL, grp TEXT NOT NULL,
            fingerprint TEXT NOT NULL, state TEXT NOT NULL, updated_at BIGINT NOT NULL,
            PRIMARY KEY (rule, customer, grp))""",
        """CREATE TABLE notification_log (
            receiver TEXT NOT NULL, group_key TEXT NOT NULL, firing TEXT NOT NULL,
            resolved TEXT NOT NULL, sent_at BIGINT NOT NULL, notification_id TEXT NOT NULL,
            PRIMARY KEY (receiver, group_key))""",
        """CREATE TABLE outbox (
            id TEXT PRIMARY KEY, receiver TEXT NOT NULL, group_key TEXT NOT NULL,
            notification TEXT NOT NULL,
            status TEXT NOT NULL
                CHECK (status IN ('pending', 'delivered', 'failed', 'undeliverable')),
            attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at DOUBLE PRECISION NOT NULL,
            last_error TEXT, created_at DOUBLE PRECISION NOT NULL,
            delivered_at DOUBLE PRECISION)""",
        "CREATE INDEX outbox_due ON outbox (status, next_attempt_at)",
        "CREATE INDEX outbox_group_order ON outbox (receiver, group_key, status, created_at)",
        """CREATE TABLE silences (
            id TEXT PRIMARY KEY, matchers TEXT NOT NULL, starts_at BIGINT NOT NULL,
            ends_at BIGINT NOT NULL, comment TEXT NOT NULL, created_by TEXT,
            created_at BIGINT NOT NULL, expired INTEGER NOT NULL DEFAULT 0)""",
        """CREATE TABLE alert_groups (
            receiver TEXT NOT NULL, group_key TEXT NOT NULL, group_labels TEXT NOT NULL,
            group_wait DOUBLE PRECISION NOT NULL, group_interval DOUBLE PRECISION NOT NULL,
            repeat_interval DOUBLE PRECISION NOT NULL, send_resolved INTEGER NOT NULL,
            created_at BIGINT NOT NULL, flushed_at BIGINT,
            PRIMARY KEY (receiver, group_key))""",
        """CREATE TABLE group_alerts (
            receiver TEXT NOT NULL, group_key TEXT NOT NULL, instance TEXT NOT NULL,
            rank INTEGER NOT NULL, alert TEXT NOT NULL,
            PRIMARY KEY (receiver, group_key, instance))""",
    ),
    (  # 2: leader leases and outbox claims (several replicas on one database)
        """CREATE TABLE leases (
            name TEXT PRIMARY KEY, holder TEXT NOT NULL, generation BIGINT NOT NULL,
            expires_at DOUBLE PRECISION NOT NULL)""",
        "ALTER TABLE outbox ADD COLUMN claimed_by TEXT",
        "ALTER TABLE outbox ADD COLUMN claimed_until DOUBLE PRECISION",
    ),
    (  # 3: the status page's history, newest first, and every delivery attempt (SQLite 5)
        "CREATE INDEX outbox_history ON outbox (created_at DESC, id DESC)",
        "CREATE INDEX outbox_history_status ON outbox (status, created_at DESC, id DESC)",
        # seq orders attempts recorded at the same instant (SQLite's rowid).
        """CREATE TABLE outbox_attempts (
            seq BIGSERIAL PRIMARY KEY, id TEXT NOT NULL, attempt INTEGER NOT NULL,
            at DOUBLE PRECISION NOT NULL, status TEXT NOT NULL, error TEXT)""",
        "CREATE INDEX outbox_attempts_of ON outbox_attempts (id, at)",
    ),
    (  # 4: alert state keyed by Stripe account too (SQLite 6); '' is stripe.api_key's
        "ALTER TABLE alert_state ADD COLUMN account TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE alert_state DROP CONSTRAINT alert_state_pkey",
        "ALTER TABLE alert_state ADD PRIMARY KEY (rule, customer, grp, account)",
    ),
    (  # 5: the bucket cache (alertd.store.pg_buckets), SQLite's migration 4
        """CREATE TABLE usage_buckets (
            key TEXT PRIMARY KEY, covered_from BIGINT NOT NULL, covered_to BIGINT NOT NULL,
            full_at BIGINT NOT NULL, saved_at BIGINT NOT NULL, rows TEXT NOT NULL)""",
        "CREATE INDEX usage_buckets_saved ON usage_buckets (saved_at)",
    ),
    (  # 6: outbox_due goes (SQLite 7). No query can use its second column: the claim and
        # next_attempt_at filter on GREATEST(next_attempt_at, claimed_until), which no index
        # on next_attempt_at serves, so the planner only ever used it for status = 'pending',
        # and outbox_history_status (status first) serves that as well. EXPLAIN ANALYZE on
        # PostgreSQL 15, 200 pending of 8,200 rows: the claim, next_attempt_at, pending_count
        # and outbox('pending') moved from outbox_due to outbox_history_status in the same
        # ~0.1-1 ms; at 3,000 of 6,000 pending both plans scan the table. One index fewer to
        # keep up on each delivery's UPDATE (issue 16).
        "DROP INDEX IF EXISTS outbox_due",
    ),
    (  # 7: a flush loads only the groups it can affect (Store.load_scope, SQLite 8). Without
        # these EXPLAIN shows a Seq Scan on group_alerts (every entry of every group, to find
        # an episode's groups) and on alert_groups (the due ones; next_group_due's MIN); with
        # them, index scans. The expression is alertd.store.postgres's _DUE_AT.
        "CREATE INDEX group_alerts_instance ON group_alerts (instance)",
        """CREATE INDEX alert_groups_due ON alert_groups ((CASE WHEN flushed_at IS NULL
            THEN created_at + group_wait ELSE flushed_at + group_interval END))""",
    ),
    (  # 8: a bucket entry's kept hours' end and zone as columns (SQLite 9: why there)
        "ALTER TABLE usage_buckets ADD COLUMN hours_to BIGINT NOT NULL DEFAULT 0",
        "ALTER TABLE usage_buckets ADD COLUMN hours_zone TEXT NOT NULL DEFAULT ''",
    ),
)

SCHEMA_VERSION = len(MIGRATIONS)
#: Any constant: the advisory lock that serialises migrations across replicas.
_MIGRATION_LOCK = 0x616C7464


def redacted(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


async def connect(url: str, password: str | None, timeout: float = 10.0
                  ) -> psycopg.AsyncConnection[dict[str, Any]]:
    """An autocommit connection to ``url`` (``password`` overrides one in the URL), or
    :class:`StoreError` saying what failed without the password."""
    extra: dict[str, Any] = {"connect_timeout": max(1, int(timeout))}
    if password is not None:
        extra["password"] = password
    try:
        return await psycopg.AsyncConnection.connect(
            url, autocommit=True, row_factory=psycopg.rows.dict_row,
            application_name="alertd", **extra)
    except psycopg.Error as exc:
        reason = " ".join(str(exc).split())[:300]
        raise StoreError(
            f"cannot connect to the state database {redacted(url)}: {reason} (check "
            "state.url, state.password_file or PGPASSWORD, and that the server is up)"
        ) from None


async def migrate(conn: psycopg.AsyncConnection[dict[str, Any]], url: str) -> int:
    """Brings the database to :data:`SCHEMA_VERSION` in one transaction; the version."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        await conn.execute("CREATE TABLE IF NOT EXISTS alertd_schema (version INTEGER NOT NULL)")
        row = await (await conn.execute("SELECT max(version) AS v FROM alertd_schema")).fetchone()
        version = int(row["v"]) if row is not None and row["v"] is not None else 0
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{redacted(url)} was written by a newer alertd (state schema {version}; this "
                f"alertd knows up to {SCHEMA_VERSION}). Upgrade alertd on every replica.")
        for statements in MIGRATIONS[version:]:
            for statement in statements:
                await conn.execute(statement.encode())
        if version < SCHEMA_VERSION:
            await conn.execute("DELETE FROM alertd_schema")
            await conn.execute("INSERT INTO alertd_schema VALUES (%s)", (SCHEMA_VERSION,))
    return SCHEMA_VERSION

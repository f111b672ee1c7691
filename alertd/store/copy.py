"""Moving state from a SQLite file to a PostgreSQL database (``alertd state copy``).

Where it sits: a one-off step when a deployment grows from one process to replicas. The file
is opened (and migrated) the ordinary way, so a damaged, foreign or newer file is refused as
at start; the database is migrated, then every row of the state tables is inserted in ONE
transaction — alert states, groups, the notification log, the outbox (pending rows keep
their ids, so the receivers' ``Idempotency-Key`` stays), its attempt log and silences. Leases
are not copied: the first replica to start takes them. A database that already holds state is
refused, so a copy never mixes two histories; stop the daemon using the file first.
"""

from __future__ import annotations

from pathlib import Path

import psycopg

from alertd.errors import StoreError
from alertd.store.pg_schema import connect, migrate, redacted
from alertd.store.schema import open_database

#: The tables copied, with the columns both backends have, in a foreign-key-free order.
TABLES: dict[str, tuple[str, ...]] = {
    "alert_state": ("rule", "customer", "grp", "fingerprint", "state", "updated_at",
                    "account"),
    "alert_groups": ("receiver", "group_key", "group_labels", "group_wait", "group_interval",
                     "repeat_interval", "send_resolved", "created_at", "flushed_at"),
    "group_alerts": ("receiver", "group_key", "instance", "rank", "alert"),
    "notification_log": ("receiver", "group_key", "firing", "resolved", "sent_at",
                         "notification_id"),
    "outbox": ("id", "receiver", "group_key", "notification", "status", "attempts",
               "next_attempt_at", "last_error", "created_at", "delivered_at"),
    # The status page's attempt log; PostgreSQL numbers the rows (seq) in the file's order.
    "outbox_attempts": ("id", "attempt", "at", "status", "error"),
    "silences": ("id", "matchers", "starts_at", "ends_at", "comment", "created_by",
                 "created_at", "expired"),
}


def read_file(path: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every row of :data:`TABLES` in the state file ``path``."""
    if not path.exists():
        raise StoreError(f"no state file at {path}")
    conn = open_database(path)
    try:
        return {table: [tuple(r) for r in conn.execute(
            f"SELECT {', '.join(columns)} FROM {table}")] for table, columns in TABLES.items()}
    finally:
        conn.close()


async def copy_file(path: Path, url: str, password: str | None = None) -> dict[str, int]:
    """Copies the file's state into the (empty) database at ``url``; rows copied per table."""
    found = read_file(path)
    conn = await connect(url, password)
    try:
        await migrate(conn, url)
        async with conn.transaction():
            for table in TABLES:
                row = await (await conn.execute(
                    f"SELECT EXISTS (SELECT 1 FROM {table}) AS taken".encode())).fetchone()
                if row is not None and row["taken"]:
                    raise StoreError(
                        f"{redacted(url)} already holds alert state (table {table} is not "
                        "empty); copy into a new database")
            async with conn.cursor() as cur:
                for table, columns in TABLES.items():
                    marks = ", ".join(["%s"] * len(columns))
                    if found[table]:
                        await cur.executemany(
                            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"
                            .encode(), found[table])
    except psycopg.Error as exc:
        raise StoreError(f"copy to {redacted(url)} failed, nothing was written: "
                         f"{' '.join(str(exc).split())[:300]}") from None
    finally:
        await conn.close()
    return {table: len(rows) for table, rows in found.items()}


__all__ = ["TABLES", "copy_file", "read_file"]

"""The SQLite state store: one file (WAL), created and migrated automatically.

Threading: the connection lives in one dedicated worker thread and every call runs there
(``run_in_executor`` on a single-thread executor, as aiosqlite does). Writes, checkpoints and
their fsyncs can take milliseconds on real disks; keeping them off the event loop keeps the
health endpoint and the systemd watchdog responsive, and one owning thread serialises this
process's transactions without "database is locked" errors between its own tasks. Other processes
(``alertd silence add`` while the daemon runs) wait on ``busy_timeout``.

Durability: ``synchronous=NORMAL`` in WAL mode survives a killed process (SIGKILL) completely;
only a power loss may drop the latest commits. That keeps every invariant: an alert state and
the outbox rows it caused are one transaction, so they vanish together and the next pass
redoes both; a lost "delivered" mark means a resend with the same idempotency key.

Failures: every SQLite error becomes a :class:`~alertd.errors.StoreError` (a damaged file a
:class:`~alertd.errors.StoreDamagedError` that says how to recover) and is told to the
``observer``, which the daemon uses to count it and to turn ``/readyz`` to 503; the first
success after a failure is told too.

The file format (schema versions, migrations, refusing newer, foreign or damaged files, file
modes) is in :mod:`alertd.store.schema`.

Why over 400 lines: it is the one implementation of the Store protocol; each operation's SQL and
its transaction stay side by side (the status page's queries are built in
:mod:`alertd.store.pages`).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, TypeVar

from alertd.alerts import AlertState
from alertd.errors import StoreError
from alertd.model import SeriesKey
from alertd.silences import Silence
from alertd.store import pages, rows
from alertd.store.base import (
    Attempt,
    Changes,
    FlushSet,
    GroupId,
    GroupScope,
    Lease,
    LeaseLostError,
    NotificationGroup,
    OutboxCursor,
    OutboxRow,
    OutboxStatus,
    SentRecord,
    next_lease,
)
from alertd.store.schema import (
    APPLICATION_ID,
    MIGRATIONS,
    SCHEMA_VERSION,
    open_database,
    store_error,
    transaction,
)
from alertd.store.sqlite_buckets import SqliteBuckets
from alertd.store.written import Written

T = TypeVar("T")

__all__ = ["APPLICATION_ID", "MIGRATIONS", "SCHEMA_VERSION", "SCOPE_IDS", "SqliteStore",
           "StoreObserver"]

#: A group's :attr:`~alertd.store.base.NotificationGroup.due_at`, as the index
#: ``alert_groups_due`` (:mod:`alertd.store.schema`, migration 8) is built on.
_DUE_AT = ("CASE WHEN flushed_at IS NULL THEN created_at + group_wait "
           "ELSE flushed_at + group_interval END")
#: Rows whose group id is one of a JSON array of ``[receiver, group_key]`` pairs (the primary
#: keys serve it: EXPLAIN QUERY PLAN says SEARCH ... (receiver=? AND group_key=?)).
_OF_GROUPS = ("(receiver, group_key) IN (SELECT json_extract(value, '$[0]'), "
              "json_extract(value, '$[1]') FROM json_each(?))")
#: The groups a :class:`~alertd.store.base.GroupScope` covers: due at ``?``, holding one of a
#: JSON array of episodes, or one of a JSON array of group ids.
SCOPE_IDS = (f"SELECT receiver, group_key FROM alert_groups WHERE {_DUE_AT} <= ? "
             "UNION SELECT receiver, group_key FROM group_alerts "
             "WHERE instance IN (SELECT value FROM json_each(?)) "
             f"UNION SELECT receiver, group_key FROM alert_groups WHERE {_OF_GROUPS}")
_OUTBOX_COLUMNS = ", ".join(f"o.{c}" for c in rows.OUTBOX_COLUMNS)
#: An earlier pending row of the same receiver and group as row ``o``: a group's notifications
#: are delivered in order, so a row waits while one ahead of it waits for its retry.
_EARLIER_IN_GROUP = (
    "SELECT 1 FROM outbox p WHERE p.status = 'pending' AND p.receiver = o.receiver "
    "AND p.group_key = o.group_key AND (p.created_at, p.id) < (o.created_at, o.id)"
)


class StoreObserver(Protocol):
    """Told about store failures at run time (the daemon's readiness and metrics)."""

    def on_store_error(self, error: StoreError) -> None: ...

    def on_store_ok(self) -> None:
        """The first call that succeeded after one that failed."""
        ...


class StoreHealth:
    """What both stores tell their :class:`StoreObserver`: every failure, and the first
    success after a failure (so readiness and metrics recover once, not on every call)."""

    def __init__(self, observer: StoreObserver | None) -> None:
        self._observer = observer
        self._failing = False

    def failed(self, error: StoreError) -> None:
        self._failing = True
        if self._observer is not None:
            self._observer.on_store_error(error)

    def succeeded(self) -> None:
        if self._failing:
            self._failing = False
            if self._observer is not None:
                self._observer.on_store_ok()


class SqliteStore(SqliteBuckets):
    """The :class:`~alertd.store.base.Store` on one SQLite file. Use ``async with``.

    Also the :class:`~alertd.store.base.BucketStore` (the bucket cache, in
    :mod:`alertd.store.sqlite_buckets`)."""

    def __init__(
        self, path: str | Path, *, busy_timeout: float = 5.0,
        observer: StoreObserver | None = None,
    ) -> None:
        self.path = Path(path)
        self._busy_timeout = busy_timeout
        self._health = StoreHealth(observer)
        self._written = Written()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="alertd-store")
        self._conn: sqlite3.Connection | None = None

    async def open(self) -> SqliteStore:
        """Opens (creating or migrating) the file. Idempotent."""
        if self._conn is None:
            # Not through _in_thread: a refusal to open is the caller's to report, not a
            # run-time failure for the observer.
            loop = asyncio.get_running_loop()
            try:
                self._conn = await loop.run_in_executor(
                    self._executor, lambda: open_database(self.path, self._busy_timeout)
                )
            except StoreError:
                self._executor.shutdown(wait=False)
                raise
        return self

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await self._in_thread(conn.close)
        self._executor.shutdown(wait=True)

    async def __aenter__(self) -> SqliteStore:
        return await self.open()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # ----------------------------------------------------------------- plumbing

    async def _in_thread(self, work: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(self._executor, work)
        except sqlite3.Error as exc:
            error = store_error(self.path, exc)
            self._told(error)
            raise error from exc
        except StoreError as exc:
            self._told(exc)
            raise
        self._health.succeeded()
        return result

    def _told(self, error: StoreError) -> None:
        self._health.failed(error)

    async def _read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._connection()
        return await self._in_thread(lambda: work(conn))

    async def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._connection()
        return await self._in_thread(lambda: transaction(conn, work))

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"state store {self.path} is not open (use 'async with')")
        return self._conn

    # ----------------------------------------------------------------- states, groups, log

    async def load_states(self, rules: Iterable[str] | None = None) -> dict[SeriesKey, AlertState]:
        names = None if rules is None else sorted(set(rules))
        return await self._read(lambda c: _load_states(c, names))

    async def load_groups(self) -> dict[GroupId, NotificationGroup]:
        return await self._read(_load_groups)

    async def load_sent(self) -> dict[GroupId, SentRecord]:
        return await self._read(_load_sent)

    async def load_scope(self, scope: GroupScope) -> FlushSet:
        return await self._read(lambda c: _load_scope(c, scope))

    async def next_group_due(self, account: str | None = None) -> float | None:
        def query(conn: sqlite3.Connection) -> float | None:
            if account is None:
                row = conn.execute(f"SELECT MIN({_DUE_AT}) FROM alert_groups").fetchone()
            else:
                row = conn.execute(f"SELECT MIN({_DUE_AT}) FROM alert_groups WHERE COALESCE("
                                   "json_extract(group_labels, '$.account'), '') = ?",
                                   (account,)).fetchone()
            return None if row[0] is None else float(row[0])

        return await self._read(query)

    async def commit_transitions(self, changes: Changes, fence: Lease | None = None) -> None:
        def commit(conn: sqlite3.Connection) -> None:
            if fence is not None:
                _check_fence(conn, fence)
            _apply_changes(conn, changes, self._written)

        await self._write(commit)

    # ----------------------------------------------------------------- leases

    async def acquire_lease(self, name: str, holder: str, ttl: float, now: float) -> Lease:
        return await self._write(lambda c: _acquire(c, name, holder, now + ttl, now))

    async def release_lease(self, lease: Lease) -> None:
        await self._write(lambda c: c.execute(
            "UPDATE leases SET expires_at = 0 WHERE name = ? AND holder = ? AND generation = ?",
            (lease.name, lease.holder, lease.generation)))

    async def leases(self) -> list[Lease]:
        return await self._read(lambda c: [_lease(r) for r in c.execute(
            "SELECT * FROM leases ORDER BY name")])

    async def drop_leases(self, prefix: str, expired_before: float) -> int:
        return await self._write(lambda c: c.execute(
            "DELETE FROM leases WHERE substr(name, 1, ?) = ? AND expires_at < ?",
            (len(prefix), prefix, expired_before)).rowcount)

    # ----------------------------------------------------------------- outbox

    async def due_deliveries(
        self, now: float, receiver: str | None = None, limit: int = 200,
        *, exclude_groups: Collection[str] = (),
    ) -> list[OutboxRow]:
        where = ("o.status = 'pending' AND o.next_attempt_at <= ? AND NOT EXISTS ("
                 f"{_EARLIER_IN_GROUP} AND p.next_attempt_at > ?)")
        params: list[Any] = [now, now]
        if receiver is not None:
            where += " AND o.receiver = ?"
            params.append(receiver)
        if exclude_groups:
            where += " AND o.group_key NOT IN (SELECT value FROM json_each(?))"
            params.append(json.dumps(sorted(exclude_groups)))
        # Walked in delivery order on the status index (read backwards), stopping at
        # ``limit``: the planner's choice, outbox_due, visited every pending row and sorted
        # them on every round — quadratic over a backlog.
        sql = (f"SELECT {_OUTBOX_COLUMNS} FROM outbox o INDEXED BY outbox_history_status "
               f"WHERE {where} ORDER BY o.created_at, o.id LIMIT ?")
        params.append(limit)
        return await self._read(
            lambda c: [rows.outbox_row(r, self._written) for r in c.execute(sql, params)])

    async def next_attempt_at(self, receiver: str | None = None) -> float | None:
        sql = ("SELECT MIN(o.next_attempt_at) FROM outbox o WHERE o.status = 'pending' "
               f"AND NOT EXISTS ({_EARLIER_IN_GROUP})")
        params: tuple[str, ...] = ()
        if receiver is not None:
            sql += " AND o.receiver = ?"
            params = (receiver,)

        def query(conn: sqlite3.Connection) -> float | None:
            value = conn.execute(sql, params).fetchone()[0]
            return None if value is None else float(value)

        return await self._read(query)

    async def record_attempt(self, attempt: Attempt) -> None:
        await self.record_attempts((attempt,))

    async def record_attempts(self, attempts: Sequence[Attempt]) -> None:
        if not attempts:
            return
        params = [_attempt_params(a) for a in attempts]

        def work(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "UPDATE outbox SET status = ?, attempts = ?, "
                "next_attempt_at = COALESCE(?, next_attempt_at), "
                "last_error = COALESCE(?, last_error), "
                "delivered_at = COALESCE(?, delivered_at) WHERE id = ?", params)
            pages.log_attempts(conn, attempts)

        await self._write(work)

    async def outbox(self, status: OutboxStatus | None = None) -> list[OutboxRow]:
        sql = f"SELECT {_OUTBOX_COLUMNS} FROM outbox o"
        params: tuple[str, ...] = ()
        if status is not None:
            sql += " WHERE o.status = ?"
            params = (status,)
        sql += " ORDER BY o.created_at, o.id"
        return await self._read(lambda c: [rows.outbox_row(r) for r in c.execute(sql, params)])

    async def pending_count(self) -> int:
        return await self._read(lambda c: int(c.execute(
            "SELECT COUNT(*) FROM outbox WHERE status = 'pending'").fetchone()[0]))

    async def prune_outbox(self, before: float) -> int:
        def work(conn: sqlite3.Connection) -> int:
            pages.prune_attempts(conn, before)
            return conn.execute(
                "DELETE FROM outbox WHERE status != 'pending' AND created_at < ?", (before,)
            ).rowcount

        return await self._write(work)

    # ----------------------------------------------------------------- status page

    async def outbox_page(
        self, *, status: OutboxStatus | None = None, receiver: str | None = None,
        before: OutboxCursor | None = None, limit: int = 50,
    ) -> list[OutboxRow]:
        sql, params = pages.page_query(_OUTBOX_COLUMNS, status, receiver, before, limit)
        return await self._read(lambda c: [rows.outbox_row(r) for r in c.execute(sql, params)])

    async def outbox_for_alert(self, fingerprint: str, *, scan: int = 5000) -> list[OutboxRow]:
        sql, params = pages.for_alert_query(_OUTBOX_COLUMNS, fingerprint, scan)
        return await self._read(lambda c: [rows.outbox_row(r) for r in c.execute(sql, params)])

    async def outbox_row(self, row_id: str) -> OutboxRow | None:
        return await self._read(lambda c: _one_row(c, row_id))

    async def attempts(self, row_id: str, *, limit: int = 100) -> list[Attempt]:
        return await self._read(lambda c: pages.attempts(c, row_id, limit))

    async def resend(self, row_id: str, now: float) -> OutboxRow | None:
        def work(conn: sqlite3.Connection) -> OutboxRow | None:
            pages.resend(conn, row_id, now)
            return _one_row(conn, row_id)

        return await self._write(work)

    # ----------------------------------------------------------------- silences

    async def add_silence(self, silence: Silence) -> None:
        await self._write(lambda c: c.execute(
            "INSERT INTO silences (id, matchers, starts_at, ends_at, comment, created_by, "
            "created_at, expired) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            rows.silence_params(silence),
        ))

    async def silences(self, now: int, *, include_expired: bool = False) -> list[Silence]:
        sql = "SELECT * FROM silences"
        params: tuple[int, ...] = ()
        if not include_expired:
            sql += " WHERE expired = 0 AND ends_at > ?"
            params = (now,)
        return await self._read(lambda c: [rows.silence(r) for r in c.execute(sql, params)])

    async def expire_silence(self, silence_id: str, now: int) -> Silence | None:
        def expire(conn: sqlite3.Connection) -> Silence | None:
            conn.execute(
                "UPDATE silences SET expired = 1, ends_at = MIN(ends_at, ?) WHERE id = ?",
                (now, silence_id),
            )
            row = conn.execute("SELECT * FROM silences WHERE id = ?", (silence_id,)).fetchone()
            return None if row is None else rows.silence(row)

        return await self._write(expire)


# --------------------------------------------------------------------------- rows


def _attempt_params(attempt: Attempt) -> tuple[object, ...]:
    delivered_at = attempt.at if attempt.status == "delivered" else None
    return (attempt.status, attempt.attempts, attempt.next_attempt_at, attempt.error,
            delivered_at, attempt.id)


def _lease(row: sqlite3.Row) -> Lease:
    return Lease(row["name"], row["holder"], row["generation"], row["expires_at"])


def _acquire(conn: sqlite3.Connection, name: str, holder: str, until: float,
             now: float) -> Lease:
    row = conn.execute("SELECT * FROM leases WHERE name = ?", (name,)).fetchone()
    current = None if row is None else _lease(row)
    lease = next_lease(current, name, holder, until, now)
    if lease is None:
        assert current is not None
        return current
    conn.execute("INSERT OR REPLACE INTO leases VALUES (?, ?, ?, ?)",
                 (lease.name, lease.holder, lease.generation, lease.expires_at))
    return lease


def _check_fence(conn: sqlite3.Connection, fence: Lease) -> None:
    row = conn.execute("SELECT * FROM leases WHERE name = ?", (fence.name,)).fetchone()
    if row is None or (row["holder"], row["generation"]) != (fence.holder, fence.generation):
        raise LeaseLostError(
            f"lease {fence.name!r} generation {fence.generation} is no longer held by "
            f"{fence.holder}: another replica leads it now; nothing was written")


def _load_states(
    conn: sqlite3.Connection, names: list[str] | None
) -> dict[SeriesKey, AlertState]:
    if names is None:
        found = list(conn.execute("SELECT rule, customer, grp, account, state FROM alert_state"))
    else:
        found = []
        for start in range(0, len(names), 500):
            chunk = names[start:start + 500]
            marks = ",".join("?" * len(chunk))
            found.extend(conn.execute(
                f"SELECT rule, customer, grp, account, state FROM alert_state "
                f"WHERE rule IN ({marks})",
                chunk,
            ))
    return dict(rows.state_item(r) for r in found)


def _load_groups(conn: sqlite3.Connection) -> dict[GroupId, NotificationGroup]:
    return rows.groups_from(conn.execute("SELECT * FROM alert_groups"),
                            conn.execute("SELECT * FROM group_alerts ORDER BY instance"))


def _load_scope(conn: sqlite3.Connection, scope: GroupScope) -> FlushSet:
    """The groups ``scope`` covers (found on the primary keys and the two indexes of
    migration 8), then their headers, entries and log, read in one transaction."""
    conn.execute("BEGIN")  # one snapshot for the ids and the rows (WAL: readers never wait)
    try:
        found = conn.execute(SCOPE_IDS, (scope.now, json.dumps(sorted(scope.instances)),
                                         _idents_json(scope.idents)))
        covered = _idents_json(tuple(found))
        groups = rows.groups_from(
            conn.execute(f"SELECT * FROM alert_groups WHERE {_OF_GROUPS}", (covered,)),
            conn.execute(f"SELECT * FROM group_alerts WHERE {_OF_GROUPS} ORDER BY instance",
                         (covered,)))
        wanted = _idents_json(groups.keys() | scope.idents)
        sent = {(r["receiver"], r["group_key"]): rows.sent_record(r) for r in conn.execute(
            f"SELECT * FROM notification_log WHERE {_OF_GROUPS}", (wanted,))}
    finally:
        conn.execute("COMMIT")
    return FlushSet(groups, sent)


def _idents_json(idents: Iterable[Sequence[str]]) -> str:
    return json.dumps(sorted([receiver, key] for receiver, key in idents))


def _load_sent(conn: sqlite3.Connection) -> dict[GroupId, SentRecord]:
    return {(r["receiver"], r["group_key"]): rows.sent_record(r)
            for r in conn.execute("SELECT * FROM notification_log")}


def _apply_changes(conn: sqlite3.Connection, changes: Changes, written: Written) -> None:
    _write_states(conn, changes.states)
    for ident in changes.dropped_groups:
        for table in ("alert_groups", "group_alerts", "notification_log"):
            conn.execute(f"DELETE FROM {table} WHERE receiver = ? AND group_key = ?", ident)
    for group in changes.groups:
        ident = (group.receiver, group.group_key)
        conn.execute("DELETE FROM group_alerts WHERE receiver = ? AND group_key = ?", ident)
        conn.execute("INSERT OR REPLACE INTO alert_groups VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     rows.group_params(group))
        conn.executemany("INSERT INTO group_alerts VALUES (?, ?, ?, ?, ?)",
                         rows.entry_params(group))
    for record in changes.sent:
        conn.execute("INSERT OR REPLACE INTO notification_log VALUES (?, ?, ?, ?, ?, ?)",
                     rows.sent_params(record))
    conn.executemany(
        "INSERT OR IGNORE INTO outbox (id, receiver, group_key, notification, status, "
        "attempts, next_attempt_at, created_at) VALUES (?, ?, ?, ?, 'pending', 0, ?, ?)",
        [rows.outbox_params(n, written) for n in changes.outbox],
    )


def _write_states(
    conn: sqlite3.Connection, states: Mapping[SeriesKey, AlertState | None]
) -> None:
    for key, state in states.items():
        if state is None:
            conn.execute("DELETE FROM alert_state WHERE rule = ? AND customer = ? AND grp = ? "
                         "AND account = ?", rows.state_where(key))
        else:
            conn.execute("INSERT OR REPLACE INTO alert_state VALUES (?, ?, ?, ?, ?, ?, ?)",
                         rows.state_params(key, state))


def _one_row(conn: sqlite3.Connection, row_id: str) -> OutboxRow | None:
    row = conn.execute(f"SELECT {_OUTBOX_COLUMNS} FROM outbox o WHERE o.id = ?",
                       (row_id,)).fetchone()
    return None if row is None else rows.outbox_row(row)

"""The PostgreSQL state store: one database shared by every replica (psycopg 3, async).

Where it sits: the same :class:`~alertd.store.base.Store` as :mod:`alertd.store.sqlite`,
chosen by ``state.url: postgresql://…``; the schema and its migrations are in
:mod:`alertd.store.pg_schema`, row encoding in :mod:`alertd.store.rows`.

Contract, beyond the SQLite store's (one transaction for alert state and its outbox rows):

* Leases (:meth:`PostgresStore.acquire_lease`) are rows, locked ``FOR UPDATE`` while one is
  decided — not session advisory locks, which PgBouncer's transaction pooling breaks. A
  fenced :meth:`commit_transitions` reads the lease row ``FOR SHARE`` in its own transaction:
  a takeover that commits first makes the old leader's write fail with
  :class:`~alertd.store.base.LeaseLostError`; one that commits later waits for it.
* Delivery from any replica: :meth:`due_deliveries` claims the rows it returns — it sets
  ``claimed_by`` (this replica) and ``claimed_until`` (``now + claim_seconds``) on rows
  selected ``FOR UPDATE SKIP LOCKED``, so two replicas never get the same row. A group is
  claimed whole by one replica at a time (a transaction-scoped advisory lock per group and
  "no earlier row of the group claimed by another"), which keeps a group's notifications in
  order. A replica killed mid-delivery leaves its claim to expire; another then sends the row
  again under the same id (the receiver's ``Idempotency-Key``). Recording an attempt clears
  the claim.
* Times are the callers' clock (unix seconds), as for SQLite: replicas need synchronised
  clocks (NTP); skew eats into the lease's margin.

Connection: one connection per store, used by one call at a time (an ``asyncio.Lock``); a
broken connection is dropped and the next call connects again, so a database restart costs
the calls in between (each a :class:`~alertd.errors.StoreError` told to the observer).

Why over 400 lines: the one PostgreSQL implementation of the Store protocol; each operation's
SQL and its transaction stay side by side, as in :mod:`alertd.store.sqlite`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from types import TracebackType
from typing import Any, TypeVar

import psycopg

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
    default_holder,
    next_lease,
)
from alertd.store.pg_buckets import PgBuckets
from alertd.store.pg_schema import connect, migrate, redacted
from alertd.store.sqlite import StoreHealth, StoreObserver
from alertd.store.written import Written

T = TypeVar("T")
Conn = psycopg.AsyncConnection[dict[str, Any]]

#: A group's :attr:`~alertd.store.base.NotificationGroup.due_at`, as the index
#: ``alert_groups_due`` (:mod:`alertd.store.pg_schema`, migration 7) is built on.
_DUE_AT = ("CASE WHEN flushed_at IS NULL THEN created_at + group_wait "
           "ELSE flushed_at + group_interval END")
#: Rows whose group id is one of two parallel arrays (receivers, group keys).
_OF_GROUPS = "(receiver, group_key) IN (SELECT * FROM unnest(%s::text[], %s::text[]))"
#: The groups a :class:`~alertd.store.base.GroupScope` covers: due at ``%s``, holding one of
#: an array of episodes, or one of the group ids of two arrays.
SCOPE_IDS = (f"SELECT receiver, group_key FROM alert_groups WHERE {_DUE_AT} <= %s "
             "UNION SELECT receiver, group_key FROM group_alerts WHERE instance = ANY(%s) "
             f"UNION SELECT receiver, group_key FROM alert_groups WHERE {_OF_GROUPS}")
_COLUMNS = ", ".join(f"o.{c}" for c in rows.OUTBOX_COLUMNS)
_EARLIER = ("SELECT 1 FROM outbox p WHERE p.status = 'pending' AND p.receiver = o.receiver "
            "AND p.group_key = o.group_key AND (p.created_at, p.id) < (o.created_at, o.id)")
#: When row ``o`` may next be tried by the replica ``%(me)s``: a row another replica holds a
#: live claim on counts from the claim's end, so an idle worker never spins on it.
_FREE_AT = ("GREATEST(o.next_attempt_at, CASE WHEN o.claimed_by IS DISTINCT FROM %(me)s "
            "THEN COALESCE(o.claimed_until, 0) ELSE 0 END)")


class PostgresStore(PgBuckets):
    """The :class:`~alertd.store.base.Store` on a PostgreSQL database. Use ``async with``.

    Also the :class:`~alertd.store.base.BucketStore` (the bucket cache, in
    :mod:`alertd.store.pg_buckets`)."""

    def __init__(
        self, url: str, *, password: str | None = None, holder: str | None = None,
        claim_seconds: float = 150.0, observer: StoreObserver | None = None,
    ) -> None:
        self.url = url
        self.holder = holder or default_holder()
        self.claim_seconds = claim_seconds
        self._password = password
        self._health = StoreHealth(observer)
        self._written = Written()
        self._conn: Conn | None = None
        self._lock = asyncio.Lock()
        self._open = False

    def __repr__(self) -> str:
        return f"PostgresStore({redacted(self.url)!r})"

    async def open(self) -> PostgresStore:
        """Connects and migrates. Idempotent; a refusal is the caller's to report."""
        if not self._open:
            conn = await connect(self.url, self._password)
            try:
                await migrate(conn, self.url)
            except psycopg.Error as exc:
                await conn.close()
                raise self._error(exc) from None
            except StoreError:
                await conn.close()
                raise
            self._conn, self._open = conn, True
        return self

    async def close(self) -> None:
        self._open = False
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close()

    async def __aenter__(self) -> PostgresStore:
        return await self.open()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # ----------------------------------------------------------------- plumbing

    def _error(self, exc: psycopg.Error) -> StoreError:
        reason = " ".join(str(exc).split())[:300]
        return StoreError(f"cannot use the state database {redacted(self.url)}: {reason}")

    async def _run(self, work: Callable[[Conn], Awaitable[T]], write: bool = False) -> T:
        if not self._open:
            raise StoreError(f"state store {redacted(self.url)} is not open (use 'async with')")
        async with self._lock:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = await connect(self.url, self._password)
                conn = self._conn
                if write:
                    async with conn.transaction():
                        result = await work(conn)
                else:
                    result = await work(conn)
            except psycopg.Error as exc:
                if isinstance(exc, psycopg.OperationalError) and self._conn is not None:
                    await self._conn.close()  # reconnect on the next call
                    self._conn = None
                error = self._error(exc)
                self._told(error)
                raise error from exc
            except StoreError as exc:
                if not isinstance(exc, LeaseLostError):
                    self._told(exc)
                raise
        self._health.succeeded()
        return result

    def _told(self, error: StoreError) -> None:
        self._health.failed(error)

    async def _rows(self, sql: str, params: Any = None) -> list[dict[str, Any]]:
        async def query(conn: Conn) -> list[dict[str, Any]]:
            return await (await conn.execute(sql.encode(), params)).fetchall()

        return await self._run(query)

    async def _value(self, sql: str, params: Any = None) -> Any:
        found = await self._rows(sql, params)
        return next(iter(found[0].values())) if found else None

    # ----------------------------------------------------------------- states, groups, log

    async def load_states(self, rules: Iterable[str] | None = None) -> dict[SeriesKey, AlertState]:
        sql = "SELECT rule, customer, grp, account, state FROM alert_state"
        if rules is None:
            return dict(rows.state_item(r) for r in await self._rows(sql))
        found = await self._rows(sql + " WHERE rule = ANY(%s)", (sorted(set(rules)),))
        return dict(rows.state_item(r) for r in found)

    async def load_groups(self) -> dict[GroupId, NotificationGroup]:
        async def query(conn: Conn) -> dict[GroupId, NotificationGroup]:
            heads = await (await conn.execute("SELECT * FROM alert_groups")).fetchall()
            entries = await (await conn.execute(
                "SELECT * FROM group_alerts ORDER BY instance")).fetchall()
            return rows.groups_from(heads, entries)

        return await self._run(query, write=True)  # one snapshot for heads and entries

    async def load_sent(self) -> dict[GroupId, SentRecord]:
        found = await self._rows("SELECT * FROM notification_log")
        return {(r["receiver"], r["group_key"]): rows.sent_record(r) for r in found}

    async def load_scope(self, scope: GroupScope) -> FlushSet:
        async def query(conn: Conn) -> FlushSet:
            found = await (await conn.execute(SCOPE_IDS.encode(), (
                scope.now, sorted(scope.instances), *_columns(scope.idents)))).fetchall()
            covered = _columns((r["receiver"], r["group_key"]) for r in found)
            heads = await (await conn.execute(
                f"SELECT * FROM alert_groups WHERE {_OF_GROUPS}".encode(), covered)).fetchall()
            entries = await (await conn.execute(
                f"SELECT * FROM group_alerts WHERE {_OF_GROUPS} ORDER BY instance".encode(),
                covered)).fetchall()
            groups = rows.groups_from(heads, entries)
            logged = await (await conn.execute(
                f"SELECT * FROM notification_log WHERE {_OF_GROUPS}".encode(),
                _columns(groups.keys() | scope.idents))).fetchall()
            return FlushSet(groups, {(r["receiver"], r["group_key"]): rows.sent_record(r)
                                     for r in logged})

        return await self._run(query, write=True)  # one snapshot for the ids and the rows

    async def next_group_due(self, account: str | None = None) -> float | None:
        if account is None:
            value = await self._value(f"SELECT MIN({_DUE_AT}) FROM alert_groups")
        else:
            value = await self._value(
                f"SELECT MIN({_DUE_AT}) FROM alert_groups WHERE "
                "COALESCE(group_labels::jsonb ->> 'account', '') = %s", (account,))
        return None if value is None else float(value)

    async def commit_transitions(self, changes: Changes, fence: Lease | None = None) -> None:
        async def commit(conn: Conn) -> None:
            if fence is not None:
                await _check_fence(conn, fence)
            await _apply_changes(conn, changes, self._written)

        await self._run(commit, write=True)

    # ----------------------------------------------------------------- leases

    async def acquire_lease(self, name: str, holder: str, ttl: float, now: float) -> Lease:
        async def acquire(conn: Conn) -> Lease:
            await conn.execute(
                "INSERT INTO leases VALUES (%s, '', 0, 0) ON CONFLICT (name) DO NOTHING",
                (name,))
            row = await (await conn.execute(
                "SELECT * FROM leases WHERE name = %s FOR UPDATE", (name,))).fetchone()
            assert row is not None
            current = _lease(row) if row["generation"] else None
            lease = next_lease(current, name, holder, now + ttl, now)
            if lease is None:
                assert current is not None
                return current
            await conn.execute(
                "UPDATE leases SET holder = %s, generation = %s, expires_at = %s "
                "WHERE name = %s", (lease.holder, lease.generation, lease.expires_at, name))
            return lease

        return await self._run(acquire, write=True)

    async def release_lease(self, lease: Lease) -> None:
        await self._run(lambda c: c.execute(
            "UPDATE leases SET expires_at = 0 WHERE name = %s AND holder = %s "
            "AND generation = %s", (lease.name, lease.holder, lease.generation)), write=True)

    async def leases(self) -> list[Lease]:
        return [_lease(r) for r in await self._rows(
            "SELECT * FROM leases WHERE generation > 0 ORDER BY name")]

    async def drop_leases(self, prefix: str, expired_before: float) -> int:
        async def drop(conn: Conn) -> int:
            cursor = await conn.execute(
                "DELETE FROM leases WHERE left(name, %s) = %s AND expires_at < %s",
                (len(prefix), prefix, expired_before))
            return cursor.rowcount

        return await self._run(drop, write=True)

    # ----------------------------------------------------------------- outbox

    async def due_deliveries(
        self, now: float, receiver: str | None = None, limit: int = 200,
        *, exclude_groups: Collection[str] = (),
    ) -> list[OutboxRow]:
        params: dict[str, Any] = {"now": now, "me": self.holder, "limit": limit,
                                  "receiver": receiver,
                                  "busy": json.dumps(sorted(exclude_groups))}
        pick = (
            f"SELECT {_COLUMNS}, (SELECT COUNT(*) FROM outbox p WHERE p.status = 'pending' "
            "AND p.receiver = o.receiver AND p.group_key = o.group_key "
            "AND (p.created_at, p.id) < (o.created_at, o.id) "
            "AND p.claimed_by IS DISTINCT FROM %(me)s) AS ahead "
            f"FROM outbox o WHERE o.status = 'pending' AND {_FREE_AT} <= %(now)s "
            "AND (%(receiver)s::text IS NULL OR o.receiver = %(receiver)s) "
            "AND NOT (o.group_key = ANY(ARRAY(SELECT json_array_elements_text("
            "%(busy)s::json)))) "
            f"AND NOT EXISTS ({_EARLIER} AND (p.next_attempt_at > %(now)s OR "
            "(p.claimed_until > %(now)s AND p.claimed_by IS DISTINCT FROM %(me)s))) "
            "ORDER BY o.created_at, o.id LIMIT %(limit)s FOR UPDATE OF o SKIP LOCKED"
        )

        async def claim(conn: Conn) -> list[rows.Row]:
            # Never prepared: a generic plan made while the table was small would be kept.
            found = await (await conn.execute(pick.encode(), params, prepare=False)).fetchall()
            kept = in_group_order(found)
            if kept:
                await conn.execute(
                    "UPDATE outbox SET claimed_by = %s, claimed_until = %s "
                    "WHERE id = ANY(ARRAY(SELECT json_array_elements_text(%s::json)))",
                    (self.holder, now + self.claim_seconds, json.dumps([r["id"] for r in kept])))
            return kept

        return [rows.outbox_row(r, self._written) for r in await self._run(claim, write=True)]

    async def next_attempt_at(self, receiver: str | None = None) -> float | None:
        # The head (oldest pending row) of each group, by one sort: an anti-join against
        # the earlier rows went quadratic — seconds per call at 4,000 pending rows — when
        # the planner's statistics still described the table as small. Never prepared, so
        # a generic plan made on a small table is not kept either.
        sql = (f"SELECT MIN(free) AS free FROM (SELECT DISTINCT ON (o.receiver, o.group_key) "
               f"{_FREE_AT} AS free FROM outbox o WHERE o.status = 'pending' "
               "AND (%(receiver)s::text IS NULL OR o.receiver = %(receiver)s) "
               "ORDER BY o.receiver, o.group_key, o.created_at, o.id) AS heads")
        params = {"me": self.holder, "receiver": receiver}

        async def query(conn: Conn) -> Any:
            row = await (await conn.execute(sql.encode(), params, prepare=False)).fetchone()
            return None if row is None else row["free"]

        value = await self._run(query)
        return None if value is None else float(value)

    async def record_attempt(self, attempt: Attempt) -> None:
        await self.record_attempts((attempt,))

    async def record_attempts(self, attempts: Sequence[Attempt]) -> None:
        if not attempts:
            return
        # Set-based: two statements over a batch, not one per attempt (executemany's
        # per-statement cost was a third of the outbox's CPU per notification). The batch
        # goes as one JSON text: psycopg dumps arrays element by element in Python (in text
        # form through a regex, ~6 us each; binary ~1.5 us), json.dumps in C. A row's last
        # attempt in the batch decides its state; every attempt is logged, in order.
        last = list({a.id: a for a in attempts}.values())
        update = json.dumps([
            [a.id, a.status, a.attempts, _float(a.next_attempt_at), a.error,
             float(a.at) if a.status == "delivered" else None] for a in last])
        log_rows = json.dumps([[a.id, a.attempts, float(a.at), a.status, a.error]
                               for a in attempts])

        async def record(conn: Conn) -> None:
            await conn.execute(
                "UPDATE outbox o SET status = a.status, attempts = a.attempts, "
                "next_attempt_at = COALESCE(a.next, o.next_attempt_at), "
                "last_error = COALESCE(a.error, o.last_error), "
                "delivered_at = COALESCE(a.delivered, o.delivered_at), claimed_by = NULL, "
                "claimed_until = NULL FROM (SELECT v->>0 AS id, v->>1 AS status, "
                "(v->>2)::int AS attempts, (v->>3)::float8 AS next, v->>4 AS error, "
                "(v->>5)::float8 AS delivered FROM json_array_elements(%s::json) AS e(v)) AS a "
                "WHERE o.id = a.id", (update,))
            # The attempt log (the status page's), in the same transaction.
            await conn.execute(
                "INSERT INTO outbox_attempts (id, attempt, at, status, error) "
                "SELECT v->>0, (v->>1)::int, (v->>2)::float8, v->>3, v->>4 "
                "FROM json_array_elements(%s::json) WITH ORDINALITY AS e(v, n) ORDER BY n",
                (log_rows,))

        await self._run(record, write=True)

    async def outbox(self, status: OutboxStatus | None = None) -> list[OutboxRow]:
        where = "" if status is None else " WHERE o.status = %s"
        found = await self._rows(f"SELECT {_COLUMNS} FROM outbox o{where} "
                                 "ORDER BY o.created_at, o.id", None if status is None
                                 else (status,))
        return [rows.outbox_row(r) for r in found]

    async def pending_count(self) -> int:
        return int(await self._value("SELECT COUNT(*) FROM outbox WHERE status = 'pending'"))

    async def prune_outbox(self, before: float) -> int:
        async def prune(conn: Conn) -> int:
            await conn.execute(
                "DELETE FROM outbox_attempts WHERE id IN (SELECT id FROM outbox "
                "WHERE status <> 'pending' AND created_at < %s)", (before,))
            cur = await conn.execute(
                "DELETE FROM outbox WHERE status <> 'pending' AND created_at < %s", (before,))
            return cur.rowcount

        return await self._run(prune, write=True)

    # ----------------------------------------------------------------- status page

    async def outbox_page(
        self, *, status: OutboxStatus | None = None, receiver: str | None = None,
        before: OutboxCursor | None = None, limit: int = 50,
    ) -> list[OutboxRow]:
        sql, params = pages.page_query(_COLUMNS, status, receiver, before, limit, mark="%s")
        return [rows.outbox_row(r) for r in await self._rows(sql, params)]

    async def outbox_for_alert(self, fingerprint: str, *, scan: int = 5000) -> list[OutboxRow]:
        sql, params = pages.for_alert_query(_COLUMNS, fingerprint, max(0, scan), mark="%s")
        found = await self._rows(sql, params)
        return [rows.outbox_row(r) for r in found]

    async def outbox_row(self, row_id: str) -> OutboxRow | None:
        found = await self._rows(f"SELECT {_COLUMNS} FROM outbox o WHERE o.id = %s", (row_id,))
        return rows.outbox_row(found[0]) if found else None

    async def attempts(self, row_id: str, *, limit: int = 100) -> list[Attempt]:
        found = await self._rows(
            "SELECT attempt, at, status, error FROM outbox_attempts WHERE id = %s "
            "ORDER BY at DESC, seq DESC LIMIT %s", (row_id, max(1, min(limit, 1000))))
        return [Attempt(row_id, r["status"], r["attempt"], r["at"], error=r["error"])
                for r in reversed(found)]

    async def resend(self, row_id: str, now: float) -> OutboxRow | None:
        async def work(conn: Conn) -> OutboxRow | None:
            # Any stale claim goes too, so the next replica to look may take it at once.
            await conn.execute(
                "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = %s, "
                "claimed_by = NULL, claimed_until = NULL "
                "WHERE id = %s AND status IN ('failed', 'undeliverable')", (now, row_id))
            row = await (await conn.execute(
                f"SELECT {_COLUMNS} FROM outbox o WHERE o.id = %s", (row_id,))).fetchone()
            return None if row is None else rows.outbox_row(row)

        return await self._run(work, write=True)

    # ----------------------------------------------------------------- silences

    async def add_silence(self, silence: Silence) -> None:
        await self._run(lambda c: c.execute(
            "INSERT INTO silences (id, matchers, starts_at, ends_at, comment, created_by, "
            "created_at, expired) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            rows.silence_params(silence)), write=True)

    async def silences(self, now: int, *, include_expired: bool = False) -> list[Silence]:
        if include_expired:
            return [rows.silence(r) for r in await self._rows("SELECT * FROM silences")]
        found = await self._rows(
            "SELECT * FROM silences WHERE expired = 0 AND ends_at > %s", (now,))
        return [rows.silence(r) for r in found]

    async def expire_silence(self, silence_id: str, now: int) -> Silence | None:
        async def expire(conn: Conn) -> Silence | None:
            row = await (await conn.execute(
                "UPDATE silences SET expired = 1, ends_at = LEAST(ends_at, %s) WHERE id = %s "
                "RETURNING *", (now, silence_id))).fetchone()
            return None if row is None else rows.silence(row)

        return await self._run(expire, write=True)


def in_group_order(candidates: Sequence[rows.Row]) -> list[rows.Row]:
    """The candidates (oldest first) this replica may claim without breaking a group's order.

    ``ahead`` counts the earlier pending rows of a candidate's group that are not this
    replica's. The k-th candidate of a group is kept only when exactly its k predecessors
    among the candidates are ahead of it: a row whose predecessor was skipped (locked by a
    replica claiming it right now) waits, as does every later row of that group."""
    seen: dict[tuple[str, str], int] = {}
    broken: set[tuple[str, str]] = set()
    kept: list[rows.Row] = []
    for row in candidates:
        group = (row["receiver"], row["group_key"])
        index = seen.get(group, 0)
        seen[group] = index + 1
        if group in broken or int(row["ahead"]) != index:
            broken.add(group)
            continue
        kept.append(row)
    return kept


def _columns(idents: Iterable[tuple[str, str]]) -> tuple[list[str], list[str]]:
    """Group ids as the two arrays :data:`_OF_GROUPS` takes."""
    pairs = sorted(idents)
    return [receiver for receiver, _ in pairs], [key for _, key in pairs]


def _float(value: float | None) -> float | None:
    """A float or ``None`` (an instant given as an int is stored as the float it is)."""
    return None if value is None else float(value)


def _lease(row: rows.Row) -> Lease:
    return Lease(row["name"], row["holder"], int(row["generation"]), float(row["expires_at"]))


async def _check_fence(conn: Conn, fence: Lease) -> None:
    row = await (await conn.execute(
        "SELECT holder, generation FROM leases WHERE name = %s FOR SHARE", (fence.name,)
    )).fetchone()
    if row is None or (row["holder"], row["generation"]) != (fence.holder, fence.generation):
        raise LeaseLostError(
            f"lease {fence.name!r} generation {fence.generation} is no longer held by "
            f"{fence.holder}: another replica leads it now; nothing was written")


async def _apply_changes(conn: Conn, changes: Changes, written: Written) -> None:
    """One statement per kind of change, each with all its rows (``executemany`` pipelines
    them): a commit of a thousand transitions is a handful of round trips, not thousands."""
    gone = [rows.state_where(key) for key, state in changes.states.items() if state is None]
    kept = [rows.state_params(key, state) for key, state in changes.states.items()
            if state is not None]
    async with conn.cursor() as cur:
        if gone:
            await cur.executemany(
                "DELETE FROM alert_state WHERE rule = %s AND customer = %s AND grp = %s "
                "AND account = %s", gone)
        if kept:
            await cur.executemany(
                "INSERT INTO alert_state VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT "
                "(rule, customer, grp, account) DO UPDATE SET "
                "fingerprint = EXCLUDED.fingerprint, "
                "state = EXCLUDED.state, updated_at = EXCLUDED.updated_at", kept)
        if changes.dropped_groups:
            for table in ("alert_groups", "group_alerts", "notification_log"):
                await cur.executemany(
                    f"DELETE FROM {table} WHERE receiver = %s AND group_key = %s".encode(),
                    list(changes.dropped_groups))
        await _write_groups(cur, changes.groups)
        if changes.sent:
            await cur.executemany(
                "INSERT INTO notification_log VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT "
                "(receiver, group_key) DO UPDATE SET firing = EXCLUDED.firing, "
                "resolved = EXCLUDED.resolved, sent_at = EXCLUDED.sent_at, "
                "notification_id = EXCLUDED.notification_id",
                [rows.sent_params(record) for record in changes.sent])
        if changes.outbox:
            await cur.executemany(
                "INSERT INTO outbox (id, receiver, group_key, notification, status, attempts, "
                "next_attempt_at, created_at) VALUES (%s, %s, %s, %s, 'pending', 0, %s, %s) "
                "ON CONFLICT (id) DO NOTHING",
                [rows.outbox_params(n, written) for n in changes.outbox])


async def _write_groups(cur: psycopg.AsyncCursor[dict[str, Any]],
                        groups: Iterable[NotificationGroup]) -> None:
    """Each group's row and its whole entry list, replaced (the last write of a group wins)."""
    latest = {(group.receiver, group.group_key): group for group in groups}
    if not latest:
        return
    await cur.executemany("DELETE FROM group_alerts WHERE receiver = %s AND group_key = %s",
                          list(latest))
    await cur.executemany(
        "INSERT INTO alert_groups VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT "
        "(receiver, group_key) DO UPDATE SET group_labels = EXCLUDED.group_labels, "
        "group_wait = EXCLUDED.group_wait, group_interval = EXCLUDED.group_interval, "
        "repeat_interval = EXCLUDED.repeat_interval, send_resolved = EXCLUDED.send_resolved, "
        "created_at = EXCLUDED.created_at, flushed_at = EXCLUDED.flushed_at",
        [rows.group_params(group) for group in latest.values()])
    entries = [entry for group in latest.values() for entry in rows.entry_params(group)]
    if entries:
        await cur.executemany("INSERT INTO group_alerts VALUES (%s, %s, %s, %s, %s)", entries)

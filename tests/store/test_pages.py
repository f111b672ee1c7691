"""The state store's status-page queries on both backends (a real SQLite file, the real
PostgreSQL server): keyset pages of the notification history, the rows of one alert, one row,
resend and the attempt log."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import psycopg

from alertd.model import Alert, Notification
from alertd.store.base import Attempt, Changes
from alertd.store.postgres import PostgresStore
from alertd.store.sqlite import SqliteStore
from tests.store.conftest import OpenStore
from tests.store.test_sqlite import NOW, alert, notification


async def test_history_pages_newest_first_without_gaps_or_repeats(make_store: OpenStore) -> None:
    rows = tuple(notification(f"n{i:03}", created_at=NOW + i // 3) for i in range(120))
    async with make_store() as store:
        await store.commit_transitions(Changes(outbox=rows))
        seen, before = [], None
        while True:
            page = await store.outbox_page(before=before, limit=25)
            if not page:
                break
            seen.extend(r.id for r in page)
            before = (page[-1].created_at, page[-1].id)
        expected = [r.id for r in sorted(rows, key=lambda n: (n.created_at, n.id),
                                         reverse=True)]
        assert seen == expected


async def test_history_filters_by_status_and_receiver(make_store: OpenStore) -> None:
    async with make_store() as store:
        await store.commit_transitions(Changes(outbox=(
            notification("a"), notification("b", receiver="hooks"),
            notification("c", created_at=NOW + 1))))
        await store.record_attempt(Attempt("a", "failed", 3, NOW + 9, error="HTTP 503"))
        assert [r.id for r in await store.outbox_page(status="failed")] == ["a"]
        assert [r.id for r in await store.outbox_page(status="pending")] == ["c", "b"]
        assert [r.id for r in await store.outbox_page(receiver="hooks")] == ["b"]
        assert [r.id for r in await store.outbox_page(status="pending", receiver="ops")] == ["c"]


async def test_history_queries_use_their_index(tmp_path: Path) -> None:
    path = tmp_path / "alertd.db"
    async with SqliteStore(path):
        pass
    conn = sqlite3.connect(path)
    for sql in ("SELECT * FROM outbox o ORDER BY o.created_at DESC, o.id DESC LIMIT 50",
                "SELECT * FROM outbox o WHERE o.status = 'failed' "
                "ORDER BY o.created_at DESC, o.id DESC LIMIT 50"):
        plan = " ".join(str(r[-1]) for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}"))
        assert "outbox_history" in plan and "TEMP B-TREE" not in plan, plan


async def test_rows_of_one_alert(make_store: OpenStore) -> None:
    mine = dataclasses.replace(alert(), fingerprint="aaaa000011112222")
    other = dataclasses.replace(alert("cus_2"), fingerprint="bbbb000011112222")

    def carrying(nid: str, *alerts: Alert, at: int = NOW) -> Notification:
        return Notification(nid, "ops", "firing", "g1", {}, alerts, at)

    async with make_store() as store:
        await store.commit_transitions(Changes(outbox=(
            carrying("n1", mine), carrying("n2", other), carrying("n3", mine, other, at=NOW + 1))))
        assert [r.id for r in await store.outbox_for_alert(mine.fingerprint)] == ["n3", "n1"]
        assert [r.id for r in await store.outbox_for_alert("aaaa0000")] == []  # no prefixes
        assert [r.id for r in await store.outbox_for_alert(mine.fingerprint, scan=1)] == ["n3"]


async def test_resend_puts_a_failed_row_back_in_line_once(make_store: OpenStore) -> None:
    async with make_store() as store:
        await store.commit_transitions(Changes(outbox=(notification("a"), notification("b"))))
        await store.record_attempt(Attempt("a", "undeliverable", 1, NOW + 1, error="HTTP 400"))
        again = await store.resend("a", NOW + 100)
        assert again is not None
        assert (again.status, again.attempts, again.next_attempt_at) == ("pending", 0, NOW + 100)
        assert again.last_error == "HTTP 400"  # kept until the next attempt says otherwise
        await store.record_attempt(Attempt("b", "delivered", 1, NOW + 2))
        kept = await store.resend("b", NOW + 100)
        assert kept is not None and kept.status == "delivered"  # never sent twice
        assert await store.resend("missing", NOW) is None
        assert await store.outbox_row("missing") is None


async def test_every_attempt_is_kept_with_its_error_until_the_row_is_pruned(
    make_store: OpenStore,
) -> None:
    async with make_store() as store:
        await store.commit_transitions(Changes(outbox=(notification("a"),)))
        await store.record_attempt(Attempt("a", "pending", 1, NOW + 1, NOW + 6, "HTTP 503"))
        await store.record_attempt(Attempt("a", "pending", 2, NOW + 6, NOW + 16, "timed out"))
        await store.record_attempt(Attempt("a", "undeliverable", 3, NOW + 16, error="HTTP 400"))
        await store.resend("a", NOW + 100)
        await store.record_attempt(Attempt("a", "delivered", 1, NOW + 101))
        seen = [(a.attempts, a.at, a.status, a.error) for a in await store.attempts("a")]
        assert seen == [(1, NOW + 1, "pending", "HTTP 503"), (2, NOW + 6, "pending", "timed out"),
                        (3, NOW + 16, "undeliverable", "HTTP 400"),
                        (1, NOW + 101, "delivered", None)]
        assert [a.at for a in await store.attempts("a", limit=2)] == [NOW + 16, NOW + 101]
        assert await store.prune_outbox(NOW + 1) == 1
        assert await store.attempts("a") == []


async def test_history_queries_use_their_index_on_postgresql(pg_url: str) -> None:
    rows = tuple(notification(f"n{i:04}", created_at=NOW + i) for i in range(2000))
    async with PostgresStore(pg_url, holder="test-replica") as store:
        await store.commit_transitions(Changes(outbox=rows))
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("ANALYZE outbox")
        for sql in ("SELECT * FROM outbox o ORDER BY o.created_at DESC, o.id DESC LIMIT 50",
                    "SELECT * FROM outbox o WHERE o.status = 'failed' "
                    "ORDER BY o.created_at DESC, o.id DESC LIMIT 50"):
            plan = " ".join(str(r[0]) for r in conn.execute(f"EXPLAIN {sql}"))
            assert "outbox_history" in plan and "Sort" not in plan, plan

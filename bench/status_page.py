"""Status page render times with 10,000 customers and 1,000 alerts (issue 15).

    python bench/status_page.py [--customers 10000] [--alerts 1000] [--notifications 20000]

Fills a real SQLite state file with one alert state per customer (10,000), the notification
history (20,000 outbox rows, a tenth failed), and the status board with 1,000 firing or
pending series, each with 30 recent buckets; then serves the real aiohttp application
(``alertd.service.http.build_app`` with the status page) on loopback and times each page
over HTTP (``--rounds`` requests each, after one warm-up): the overview (first and last
page), an alert's page (its chart and its notifications), the history (first page, a page
deep in it, failed only), silences, and the JSON API. Prints p50/p95 per page beside the
target: p95 ≤ 100 ms for every page of 50 rows (1 s for the API's largest page, 500 rows).
The customer chart is not here: it is one cached Stripe request (``alertd.web.usage``), whose
cost is Stripe's latency, measured by ``fetch.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from alertd.alerts import AlertState
from alertd.clock import SystemClock
from alertd.model import (
    Alert,
    Bucket,
    Customer,
    Finding,
    Notification,
    Period,
    Series,
    SeriesKey,
)
from alertd.service.http import Health, serve
from alertd.service.metrics import Metrics
from alertd.store.base import Attempt, Changes
from alertd.store.sqlite import SqliteStore
from alertd.web.app import StatusContext
from alertd.web.auth import Access
from alertd.web.board import Board
from bench.common import machine_note

TARGET_P95_MS = 100.0
NOW = 1_741_608_000


def _key(i: int) -> SeriesKey:
    return SeriesKey("tokens-daily" if i % 2 else "spend-month", f"cus_{i:06}")


def _alert(i: int) -> Alert:
    key = _key(i)
    return Alert(fingerprint=key.fingerprint, status="firing", rule=key.rule, severity="warning",
                 customer=Customer(key.customer, f"Customer {i}"), meter="mtr_tokens",
                 dimensions=(), window=Period(NOW - 86400, NOW, "UTC"), value=1200.0 + i,
                 labels={"rule": key.rule, "customer": key.customer}, annotations={},
                 starts_at=NOW - 600, ends_at=None, refreshed_at=NOW - 60, threshold=1000.0)


async def fill(store: SqliteStore, customers: int, alerts: int, notifications: int) -> None:
    states = {_key(i): AlertState(status="firing" if i < alerts else "inactive",
                                  last_active_at=NOW, firing_since=NOW - 600)
              for i in range(customers)}
    await store.commit_transitions(Changes(states=states))
    for start in range(0, notifications, 2000):
        rows = tuple(Notification(f"n{i:07}", "ops", "firing", f"g{i % 50}", {},
                                  (_alert(i % alerts),), NOW - notifications + i)
                     for i in range(start, min(start + 2000, notifications)))
        await store.commit_transitions(Changes(outbox=rows))
    for i in range(0, notifications, 10):
        await store.record_attempt(Attempt(f"n{i:07}", "failed", 5, NOW, error="HTTP 503"))


def board_with(alerts: int) -> Board:
    board = Board()
    findings, series = [], {}
    for i in range(alerts):
        key = _key(i)
        findings.append(Finding(
            key=key, meter="mtr_tokens", dimensions=(), window=Period(NOW - 86400, NOW, "UTC"),
            complete=False, value=1200.0 + i, active=True, level="warning",
            state="firing" if i % 4 else "pending", message=f"{1200 + i} today >= 1000"))
        series[key] = Series(key, "mtr_tokens", (), "hour", "UTC", tuple(
            Bucket(NOW - (30 - h) * 3600, NOW - (29 - h) * 3600, 40.0 + h, True)
            for h in range(30)), NOW - 60)
    board.record({"tokens-daily", "spend-month"}, findings, NOW,
                 customers={k.customer: Customer(k.customer, "C") for k in series},
                 series=series)
    return board


async def timed(client: httpx.AsyncClient, path: str, rounds: int) -> list[float]:
    (await client.get(path)).raise_for_status()  # warm-up (templates compiled, pages cached)
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        answer = await client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        answer.raise_for_status()
    return times


async def main(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory() as folder:
        async with SqliteStore(Path(folder) / "alertd.db") as store:
            started = time.perf_counter()
            await fill(store, args.customers, args.alerts, args.notifications)
            board = board_with(args.alerts)
            filled = time.perf_counter() - started
            status = StatusContext(store=store, board=board, clock=SystemClock(),
                                   access=Access())
            async with serve("127.0.0.1:0", Metrics(), Health(), SystemClock(), status) as url, \
                    httpx.AsyncClient(base_url=url, timeout=30) as client:
                deep = await store.outbox_page(limit=1, before=(NOW - args.notifications // 2,
                                                                "n"))
                fingerprint = board.page(limit=1)[0].fingerprint
                pages = {
                    "overview": "/",
                    "overview, last page": f"/?start={max(args.alerts - 50, 0)}",
                    "alert page": f"/alerts/{fingerprint}",
                    "history": "/notifications",
                    "history, deep page": f"/notifications?before={deep[0].created_at!r}:"
                                          f"{deep[0].id}",
                    "history, failed": "/notifications?status=failed",
                    "silences": "/silences",
                    "api alerts": "/api/v1/alerts",
                    "api notifications": "/api/v1/notifications",
                    "api alerts, 500": "/api/v1/alerts?limit=500",
                    "api notifications, 500": "/api/v1/notifications?limit=500",
                }
                print(machine_note())
                print(f"store: {args.customers:,} customers' states, {args.notifications:,} "
                      f"notifications; board: {args.alerts:,} alerts (filled in {filled:.1f} s)")
                print(f"{'page':24} {'p50 ms':>8} {'p95 ms':>8} {'target p95':>11}  ok")
                missed = 0
                for name, path in pages.items():
                    times = sorted(await timed(client, path, args.rounds))
                    p50 = statistics.median(times)
                    p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
                    # The largest API page (500 rows, ten pages' worth) gets ten times the time.
                    target = TARGET_P95_MS * (10 if name.endswith(", 500") else 1)
                    ok = p95 <= target
                    missed += not ok
                    print(f"{name:24} {p50:8.1f} {p95:8.1f} {target:11.0f}  "
                          f"{'yes' if ok else 'NO'}")
    return 1 if missed else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--alerts", type=int, default=1_000)
    parser.add_argument("--notifications", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=40)
    sys.exit(asyncio.run(main(parser.parse_args())))

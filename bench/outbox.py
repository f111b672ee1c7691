"""Outbox bookkeeping throughput on SQLite and on PostgreSQL: notifications per second.

Usage::

    python bench/outbox.py [--count 5000] [--groups 500]
                           [--state postgresql://postgres@127.0.0.1:5432/test]

What runs: ``--count`` notifications (in ``--groups`` groups of one receiver) committed in one
transaction, then the real outbox worker (``Outbox.run_until_idle``: claims, order within a
group, batched ``record_attempts``) delivers them through an in-process notifier that returns at
once — so the figure is the store side of delivery (reading due rows, claiming, recording),
the part that was one transaction per attempt (202–332/s on SQLite). Real channels add their
own cost on top (``bench/notify.py`` measures the webhook path end to end). PostgreSQL runs in a
schema of its own, dropped afterwards. Target: >= 2,000 notifications/s on either backend.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alertd.clock import SystemClock
from alertd.model import Notification
from alertd.notify.outbox import Outbox
from alertd.store.base import Changes
from alertd.store.postgres import PostgresStore
from alertd.store.sqlite import SqliteStore
from bench.common import figure, machine_note, print_table
from bench.notify import fresh_schema

TARGET = 2000.0


class Instant:
    """A notifier that accepts every notification at once."""

    def __init__(self) -> None:
        self.sent = 0

    async def send(self, notification: Notification) -> None:
        self.sent += 1


def notifications(count: int, groups: int, now: int) -> tuple[Notification, ...]:
    return tuple(Notification(f"n{i:06d}", "ops", "firing", f"g{i % groups}",
                              {"rule": "bench"}, (), now) for i in range(count))


async def measure(store: SqliteStore | PostgresStore, count: int, groups: int) -> float:
    now = int(time.time())
    async with store:
        await store.commit_transitions(Changes(outbox=notifications(count, groups, now)))
        sink = Instant()
        outbox = Outbox(store, {"ops": sink}, clock=SystemClock(), concurrency=16)
        started = time.perf_counter()
        report = await outbox.run_until_idle(timeout=300)
        elapsed = time.perf_counter() - started
        assert sink.sent == count and report.outcomes.get("delivered") == count, report
        assert await store.pending_count() == 0
    return count / elapsed


async def main(args: argparse.Namespace) -> None:
    print(machine_note())
    with tempfile.TemporaryDirectory() as folder:
        rate = await measure(SqliteStore(Path(folder) / "alertd.db"), args.count, args.groups)
    rows = [figure("SQLite: notifications/s", rate, "{:.0f}", f">= {TARGET:.0f}",
                   lambda v: v >= TARGET)]
    if args.state:
        with fresh_schema(args.state) as url:
            rate = await measure(PostgresStore(url), args.count, args.groups)
        rows.append(figure("PostgreSQL: notifications/s", rate, "{:.0f}", f">= {TARGET:.0f}",
                           lambda v: v >= TARGET))
    print_table(f"outbox bookkeeping: {args.count} notifications in {args.groups} groups",
                rows)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--groups", type=int, default=500)
    parser.add_argument("--state", help="also a postgresql:// URL (a schema of its own)")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))

"""What one commit of the daemon loads and costs with many open groups: scoped vs every group.

Usage::

    python bench/notify.py --scope [--groups 1000,5000] [--touch 50] [--due 20] [--commits 10]
                                   [--state postgresql://postgres@127.0.0.1/test]

(or ``python bench/flush_scope.py`` with the same options). Issue 13: each of a pass's
commits (:class:`alertd.service.recording.PassRecorder`) went through a flush that loaded every
open group with its alerts and the whole notification log. Here a state store holds
``--groups`` open groups (one per customer, ``group_by: [rule, customer]``, each with a firing
alert carrying 12 recent buckets and a notification log record, flushed a moment ago), of
which ``--due`` are due (their ``group_interval`` has passed: a repeat check). A commit is
:meth:`Pipeline.record` of ``--touch`` still-firing alerts of other customers — what a batch
of a pass gives. Each store is built once and copied, so the scoped pipeline and the one
loading every group (``Pipeline(scoped=False)``, the first release's flush) start alike.

Printed per size and pipeline: group headers + entries + log records loaded per commit (the
goal: ∝ touched + due, whatever the number of open groups), the CPU per commit (this
process, the store's thread included; median of ``--commits``), and the tracemalloc peak of
one commit (Python allocations above what was held before it). The notifications of both
pipelines are compared (they must be the same).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Mapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alertd.config.settings import Receiver, RootRoute
from alertd.model import Alert, Bucket, Customer, Period
from alertd.notify.grouping import FiringUpdate
from alertd.notify.pipeline import Lifecycle, Pipeline
from alertd.notify.routing import RouteTree
from alertd.store.base import (
    Changes,
    FlushSet,
    GroupEntry,
    GroupId,
    GroupScope,
    NotificationGroup,
    SentRecord,
    Store,
)
from alertd.store.postgres import PostgresStore
from alertd.store.sqlite import SqliteStore
from bench.common import Figure, figure, machine_note, print_table

NOW = 1_735_689_600
RULE = "daily-token-quota"
ROUTE = {"receiver": "ops", "group_by": ["rule", "customer"], "group_wait": "30s",
         "group_interval": "5m", "repeat_interval": "4h"}
TREE = RouteTree(RootRoute.model_validate(ROUTE))
RECEIVERS = [Receiver.model_validate({"name": "ops", "webhook": {"url": "http://x/ops"}})]


class CountingStore:
    """The store, counting the group headers, entries and log records its loads return."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.rows = 0

    async def load_groups(self) -> dict[GroupId, NotificationGroup]:
        found = await self._store.load_groups()
        self.rows += FlushSet(found).rows()
        return found

    async def load_sent(self) -> dict[GroupId, SentRecord]:
        found = await self._store.load_sent()
        self.rows += len(found)
        return found

    async def load_scope(self, scope: GroupScope) -> FlushSet:
        found = await self._store.load_scope(scope)
        self.rows += found.rows()
        return found

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)


def alert(customer: str) -> Alert:
    day = Period(NOW - 86400, NOW, "UTC")
    return Alert(
        fingerprint=f"fp-{customer}", status="firing", rule=RULE, severity="warning",
        customer=Customer(customer, f"Customer {customer}", f"{customer}@example.com", {}),
        meter="mtr_tokens", dimensions=(), window=day, value=1_250_000.0,
        labels={"alertname": RULE, "rule": RULE, "customer": customer, "severity": "warning"},
        annotations={"summary": f"{customer}: 1,250,000 tokens today > 1,000,000"},
        starts_at=NOW - 3600, ends_at=None, refreshed_at=NOW - 60, threshold=1_000_000.0,
        recent=tuple(Bucket(NOW - (12 - i) * 3600, NOW - (11 - i) * 3600, 90_000.0 + i, True)
                     for i in range(12)))


def update(customer: str) -> FiringUpdate:
    return FiringUpdate(f"fp-{customer}@{NOW - 3600}", 0, alert(customer))


def key_of(customer: str) -> GroupId:
    labels = alert(customer).labels
    (destination,) = TREE.destinations(labels)
    return destination.receiver, destination.group_key(labels)


def open_groups(count: int, due: int, commits: int) -> Changes:
    """``count`` groups of one firing alert each, flushed a moment ago, with their log: the
    first ``due × commits`` fall due ``due`` at a time, one second apart, from NOW (their
    log lacks the alert, so each sends a notification); the rest are due in ~5 min."""
    groups, records = [], []
    for index in range(count):
        customer = f"cus_{index:06d}"
        receiver, key = key_of(customer)
        entry = update(customer)
        falls_due = index < due * commits
        flushed = NOW + index // max(due, 1) - 300 if falls_due else NOW - 10
        groups.append(NotificationGroup(
            receiver, key, {"customer": customer, "rule": RULE}, 30.0, 300.0, 14_400.0, True,
            NOW - 3600, flushed, (GroupEntry(entry.instance, 0, entry.alert),)))
        announced = {} if falls_due else {entry.instance: 0}
        records.append(SentRecord(receiver, key, announced, frozenset(), NOW - 400,
                                  f"n-{index}"))
    return Changes(groups=tuple(groups), sent=tuple(records))


async def commit_once(pipeline: Pipeline, counting: CountingStore, customers: list[str],
                      now: int) -> tuple[int, float, tuple[str, ...]]:
    counting.rows = 0
    started = time.process_time()
    report = await pipeline.record(
        Lifecycle((), {}, (), tuple(update(c) for c in customers)), now)
    return counting.rows, time.process_time() - started, tuple(
        n.id for n in report.notifications)


async def measure(store: Store, scoped: bool, args: argparse.Namespace, count: int
                  ) -> dict[str, object]:
    """``--commits`` commits, one second apart, each of ``--touch`` alerts of groups not
    touched before, with ``--due`` groups falling due; the last one under tracemalloc."""
    counting = CountingStore(store)
    pipeline = Pipeline(counting, TREE, RECEIVERS, scoped=scoped)  # type: ignore[arg-type]
    first_touched = args.due * args.commits
    rows, cpus, ids = [], [], []
    for index in range(args.commits):
        start = first_touched + index * args.touch
        touched = [f"cus_{n:06d}" for n in range(start, start + args.touch)]
        if index == args.commits - 1:
            tracemalloc.start()
            held = tracemalloc.get_traced_memory()[0]
        loaded, cpu, sent = await commit_once(pipeline, counting, touched, NOW + index)
        rows.append(loaded)
        cpus.append(cpu)
        ids.extend(sent)
    peak = tracemalloc.get_traced_memory()[1] - held
    tracemalloc.stop()
    return {"rows": statistics.median(rows), "cpu_ms": statistics.median(cpus[:-1]) * 1000,
            "peak_mb": peak / 1e6, "ids": ids}


async def build_sqlite(folder: Path, count: int, due: int, commits: int
                       ) -> tuple[Path, Path]:
    path = folder / f"groups-{count}.db"
    async with SqliteStore(path) as store:
        await store.commit_transitions(open_groups(count, due, commits))
    copy = folder / f"groups-{count}-whole.db"
    shutil.copy(path, copy)
    return path, copy


async def bench_sqlite(args: argparse.Namespace, count: int) -> list[dict[str, object]]:
    with tempfile.TemporaryDirectory(prefix="alertd-scope-") as folder:
        paths = await build_sqlite(Path(folder), count, args.due, args.commits)
        found = []
        for scoped, path in zip((True, False), paths, strict=True):
            async with SqliteStore(path) as store:
                found.append(await measure(store, scoped, args, count))
    return found


async def bench_postgres(args: argparse.Namespace, count: int) -> list[dict[str, object]]:
    from bench.notify import fresh_schema

    found = []
    for scoped in (True, False):
        with fresh_schema(args.state) as url:
            async with PostgresStore(url, holder="bench") as store:
                await store.commit_transitions(open_groups(count, args.due, args.commits))
                found.append(await measure(store, scoped, args, count))
    return found


def rows_bound(args: argparse.Namespace) -> int:
    """Rows a commit needs: each touched or due group's header, entry and log record."""
    return 3 * (args.touch + args.due)


def figures(name: str, results: Mapping[int, list[dict[str, Any]]],
            args: argparse.Namespace) -> list[Figure]:
    bound = rows_bound(args)
    found = []
    for count, (scoped, whole) in results.items():
        tag = f"{name} {count:,} open groups"
        found += [
            figure(f"{tag}: rows loaded per commit, scoped", scoped["rows"], "{:,.0f}",
                   f"= {bound:,} (3 × (touched + due))", lambda v: v == bound),
            figure(f"{tag}: rows loaded per commit, every group", whole["rows"], "{:,.0f}"),
            figure(f"{tag}: CPU ms per commit, scoped", scoped["cpu_ms"], "{:.1f}"),
            figure(f"{tag}: CPU ms per commit, every group", whole["cpu_ms"], "{:.1f}"),
            figure(f"{tag}: tracemalloc peak MB of a commit, scoped", scoped["peak_mb"],
                   "{:.2f}"),
            figure(f"{tag}: tracemalloc peak MB of a commit, every group", whole["peak_mb"],
                   "{:.2f}"),
            figure(f"{tag}: notifications queued, scoped", len(scoped["ids"]), "{:,.0f}",
                   f"= {args.due * args.commits:,} (due × commits)",
                   lambda v: v == args.due * args.commits),
            figure(f"{tag}: notification ids differing from every group's",
                   len(set(scoped["ids"]) ^ set(whole["ids"])), "{:.0f}", "0",
                   lambda v: v == 0),
        ]
    return found


async def main(args: argparse.Namespace) -> None:
    print(machine_note())
    sizes = [int(n) for n in args.groups.split(",")]
    if min(sizes) < (args.due + args.touch) * args.commits:
        raise SystemExit("--groups must hold (due + touch) × commits groups")
    backends = [("SQLite", bench_sqlite), *([("PostgreSQL", bench_postgres)]
                                            if args.state else [])]
    for name, bench in backends:
        results = {count: await bench(args, count) for count in sizes}
        print_table(f"one commit of {args.touch} alerts with {args.due} groups due, {name} "
                    f"({machine_note()})", figures(name, results, args))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--groups", default="1000,5000",
                        help="open groups in the store, comma-separated sizes")
    parser.add_argument("--touch", type=int, default=50, help="alerts a commit files")
    parser.add_argument("--due", type=int, default=20, help="groups due at the commit")
    parser.add_argument("--commits", type=int, default=10, help="commits per size")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    add_arguments(parser)
    parser.add_argument("--state", help="a postgresql:// URL: bench the PostgreSQL store too")
    asyncio.run(main(parser.parse_args()))

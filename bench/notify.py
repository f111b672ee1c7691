"""Notifications per second through the outbox end to end, and state change → delivery latency.

Usage::

    python bench/notify.py [--burst 4000] [--repeat 3] [--trickle 300] [--interval 0.02]
                           [--concurrency 8] [--state postgresql://postgres@127.0.0.1/test]
    python bench/notify.py --scope [--groups 1000,5000] [--touch 50] [--due 20] [--state …]

``--scope`` measures something else: what one commit loads and costs with thousands of open
groups, the scoped flush against one loading every group (:mod:`bench.flush_scope`).

Runs on a SQLite file, then, with ``--state``, on a PostgreSQL database (a schema of its own,
dropped after), and ends with one table for both backends beside the issue's target:
>= 2,000 notifications/s end to end on either. On a shared machine the wall-clock rate is only
as good as the load lets it be (the table prints the load average); the CPU figures are the
steady ones: alertd's CPU per notification in the delivery phase (claim, render, POST,
record) and including the evaluate + commit that made the notification, and what that CPU
allows — notifications per alertd CPU-second. The receiver's (and PostgreSQL's backend's)
CPU per notification are printed beside them: they run on the other core.

alertd side (this process): the real notification pipeline (``Pipeline.evaluate``: lifecycle,
routing, grouping, dedup, one SQLite transaction for states and outbox rows) on a SQLite state
file in a temporary folder, and the real outbox worker (``Outbox.run``, woken by each commit)
delivering through the real webhook notifier (Alertmanager-compatible JSON body). The receiver
is ``alertd.sinks.webhook_sink`` in a child process (``--serve-sink``), so it does not share
this event loop; it prints each delivery's ``Idempotency-Key`` (the notification id) and the
instant it had read the body.

One threshold rule, routed by ``rule`` and ``customer`` with no ``group_wait``, so each
finding of a new customer is one new firing notification.

* **Trickle** (``--trickle`` findings, one ``Pipeline.evaluate`` each, ``--interval`` s apart):
  latency from the state change — the moment ``evaluate`` returned, its transaction committed —
  to the receiver reading the body: p50, p99, max. The receiver's and this process's clocks
  are the same wall clock (same machine).
* **Burst** (``--burst`` findings in one ``evaluate``: that many notifications committed at
  once): notifications per second from the commit to the last delivery, and the latency
  percentiles under that queue. ``--concurrency`` is the outbox's groups in flight per
  receiver (its default, 8).

Why ``--repeat`` (default 3): one burst's wall figure is one draw from whatever else the
machine runs — single runs of the same commit measured 922 to 2,370 notifications/s at
high load. The burst runs ``--repeat`` times per backend, each round on a new store (file or
schema) after its own warm-up, so every round measures the same thing; one line per round
with its load average, the median round's detailed table, and a summary giving the median
beside the target with the min–max of the rounds, and the CPU figures (medians), which move
far less with the load.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import functools
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alertd import gctune
from alertd.calendar import period_containing, period_key
from alertd.clock import SystemClock
from alertd.conditions.base import Bound
from alertd.config.settings import Settings
from alertd.model import Finding, SeriesKey
from alertd.notify.factory import notifiers
from alertd.notify.outbox import CONCURRENCY, Outbox
from alertd.notify.pipeline import Pipeline
from alertd.notify.routing import RouteTree
from alertd.rules.schema import Rule
from alertd.sinks import Delivery, webhook_sink
from alertd.store.postgres import PostgresStore
from alertd.store.sqlite import SqliteStore
from bench import flush_scope
from bench.common import (
    Figure,
    Stopwatch,
    figure,
    machine_note,
    peak_rss_mb,
    percentile,
    print_profile,
    print_table,
)

#: The issue's target: notifications per second end to end, on either backend.
TARGET = 2000.0

RULE = Rule.model_validate({
    "name": "daily-token-quota", "meter": "mtr_sim_tokens",
    "condition": {"type": "threshold", "op": ">", "value": 1_000_000},
})


# --------------------------------------------------------------------------- the receiver


async def serve_sink() -> None:
    """The child process: a webhook sink that prints ``KEY RECEIVED_AT`` per delivery."""

    def heard(delivery: Delivery) -> None:
        key = delivery.headers.get("Idempotency-Key", "-")
        sys.stdout.write(f"{key} {time.time():.6f}\n")
        sys.stdout.flush()

    async with webhook_sink(heard) as sink:
        print(f"listening on {sink.url}", flush=True)
        await asyncio.Event().wait()


class SinkProcess:
    """The sink child process, and the delivery instants it reports, by notification id.

    This process's CPU is what is measured, so the reader thread only stores the child's
    output and counts its lines while deliveries go on; the lines are parsed when
    :attr:`received` is read, after the measurement. (Polling every 5 ms over the ids still
    missing, then parsing each line as it came, cost up to ~0.1 ms of this process's CPU per
    notification, counted as alertd's.)"""

    def __init__(self) -> None:
        self.url = ""
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._chunks: list[bytes] = []
        self._lines = 0
        self._received: dict[str, float] = {}
        self._repeats = 0
        #: The line count :meth:`wait_for` waits for, and how to tell it that it came.
        self._waiting: tuple[int, Callable[[], None]] | None = None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def lines(self) -> int:
        """Deliveries heard so far (repeats included): what :meth:`wait_for` counts from."""
        return self._lines

    @property
    def received(self) -> dict[str, float]:
        """When each notification id was heard (its first delivery)."""
        self._parse()
        return self._received

    @property
    def repeats(self) -> int:
        self._parse()
        return self._repeats

    def start(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, __file__, "--serve-sink"], stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL)
        assert self._process.stdout is not None  # stdout=PIPE
        first = self._process.stdout.readline().decode()
        if not first.startswith("listening on "):
            raise RuntimeError(f"the webhook sink did not start: {first!r}")
        self.url = first.split()[-1]
        threading.Thread(target=self._read, args=(self._process.stdout.fileno(),),
                         daemon=True).start()

    def _read(self, fd: int) -> None:
        while chunk := os.read(fd, 1 << 16):
            with self._lock:
                self._chunks.append(chunk)
                self._lines += chunk.count(b"\n")
                if self._waiting is not None and self._lines >= self._waiting[0]:
                    self._waiting[1]()
                    self._waiting = None

    def _parse(self) -> None:
        with self._lock:
            data, self._chunks = b"".join(self._chunks), []
            whole, _, rest = data.rpartition(b"\n")
            if rest:
                self._chunks.append(rest)
        for line in whole.decode().splitlines():
            key, _, instant = line.partition(" ")
            if key in self._received:
                self._repeats += 1
            else:
                self._received[key] = float(instant)

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(5)

    async def wait_for(self, ids: Sequence[str], since: int, timeout: float) -> None:
        """Until every id was heard, or ``timeout``: ``since`` is :attr:`lines` before they
        were committed. The reader thread says when that many more lines came; only then
        are they parsed and checked (a repeat would have counted too)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        target = since + len(ids)
        while True:
            heard = asyncio.Event()
            with self._lock:
                if self._lines < target:
                    self._waiting = (target, functools.partial(loop.call_soon_threadsafe,
                                                               heard.set))
                else:
                    heard.set()
            try:
                await asyncio.wait_for(heard.wait(), max(deadline - loop.time(), 0.0))
            except TimeoutError:
                return
            finally:
                with self._lock:
                    self._waiting = None
            received = self.received
            missing = sum(1 for i in ids if i not in received)
            if not missing:
                return
            target = self._lines + missing


# --------------------------------------------------------------------------- alertd side


@dataclass(frozen=True, slots=True)
class Alertd:
    pipeline: Pipeline
    outbox: Outbox
    #: The PostgreSQL server process serving the store's connection (None on SQLite).
    backend_pid: int | None = None


def settings_for(url: str) -> Settings:
    return Settings(
        receivers=[{"name": "ops", "webhook": {"url": f"{url}/ops"}}],
        route={"receiver": "ops", "group_by": ["rule", "customer"], "group_wait": "0s"},
        rule_files=[],
    )


@contextlib.asynccontextmanager
async def running_alertd(url: str, folder: Path, concurrency: int,
                        state: str | None = None) -> AsyncIterator[Alertd]:
    """Pipeline and outbox worker on a SQLite file in ``folder`` (or the PostgreSQL database
    ``state``), delivering to ``url``."""
    settings = settings_for(url)
    clock = SystemClock()
    async with contextlib.AsyncExitStack() as stack:
        store: SqliteStore | PostgresStore
        if state is None:
            store = SqliteStore(folder / "alertd.db")
        else:
            store = PostgresStore(stack.enter_context(fresh_schema(state)))
        await stack.enter_async_context(store)
        built = await stack.enter_async_context(
            notifiers(settings, clock=clock, concurrency=concurrency))
        outbox = Outbox(store, built, settings.delivery, clock, concurrency=concurrency)
        pipeline = Pipeline(store, RouteTree.from_settings(settings), settings.receivers,
                            on_commit=outbox.wake)
        await outbox.start()
        try:
            yield Alertd(pipeline, outbox, await backend_pid(store))
        finally:
            await outbox.stop(grace=5.0)


async def backend_pid(store: SqliteStore | PostgresStore) -> int | None:
    """The pid of the PostgreSQL server process of ``store``'s one connection (same machine:
    its CPU is read from ``/proc``)."""
    if not isinstance(store, PostgresStore):
        return None
    await store.pending_count()  # connects
    conn = store._conn  # a benchmark reading the server's pid, nothing else
    return None if conn is None else conn.info.backend_pid


@contextlib.contextmanager
def fresh_schema(base: str) -> Iterator[str]:
    """A URL on ``base`` whose connections see a new schema, dropped afterwards."""
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}".encode())
    try:
        sep = "&" if "?" in base else "?"
        yield f"{base}{sep}options={quote(f'-csearch_path={schema}')}"
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE".encode())


def firing(customer: str, now: int) -> Finding:
    """A threshold finding over its limit: a new firing alert for a customer not seen yet."""
    window = period_containing(now, "day", "UTC")
    return Finding(
        key=SeriesKey(RULE.name, customer), meter=RULE.meter, dimensions=(), window=window,
        complete=False, value=1_250_000.0, active=True, level="warning", state="inactive",
        message="1,250,000 tokens today > 1,000,000", figures=Bound(1_000_000.0),
        period_key=period_key(window, "day"),
    )


async def commit(alertd: Alertd, customers: Sequence[str]) -> tuple[dict[str, float], float]:
    """One ``evaluate`` of firing findings for ``customers``; each notification id with the
    instant the commit returned, and how long the evaluation took."""
    now = time.time()
    started = time.perf_counter()
    report = await alertd.pipeline.apply(
        [firing(c, int(now)) for c in customers], {RULE.name: RULE}, int(now), immediate=True)
    committed = time.time()
    spent = time.perf_counter() - started
    return {n.id: committed for n in report.notifications}, spent


# --------------------------------------------------------------------------- phases


async def trickle(alertd: Alertd, sink: SinkProcess, count: int, interval: float) -> list[Figure]:
    committed: dict[str, float] = {}
    evaluations: list[float] = []
    since = sink.lines
    for index in range(count):
        ids, spent = await commit(alertd, [f"cus_trickle_{index:05d}"])
        committed.update(ids)
        evaluations.append(spent)
        await asyncio.sleep(interval)
    await sink.wait_for(list(committed), since, timeout=30)
    latencies = [1000 * (sink.received[i] - t) for i, t in committed.items()
                 if i in sink.received]
    return [
        figure("notifications committed", len(committed), "{:.0f}"),
        figure("delivered", len(latencies), "{:.0f}", f"{len(committed)}",
               lambda v: v == len(committed)),
        figure("evaluate + commit, p50 ms", 1000 * percentile(evaluations, 0.5), "{:.1f}"),
        figure("state change → delivery, p50 ms", percentile(latencies, 0.5), "{:.1f}"),
        figure("state change → delivery, p99 ms", percentile(latencies, 0.99), "{:.1f}"),
        figure("state change → delivery, max ms", max(latencies, default=float("nan")),
               "{:.1f}"),
    ]


@dataclass(frozen=True, slots=True)
class BurstResult:
    """One burst's figures, and what the summary table needs of them."""

    rows: list[Figure]
    rate: float
    delivery_ms: float
    total_ms: float
    delivered: int
    duration: float
    #: The 1-minute load average when the burst had been delivered.
    load: float

    def line(self) -> str:
        """The round in one line."""
        return (f"{self.delivered} delivered in {self.duration:.2f} s = {self.rate:,.0f}/s; "
                f"alertd CPU ms per notification {self.delivery_ms:.3f} delivery, "
                f"{self.total_ms:.3f} incl. commit; load {self.load:.1f}")


async def burst(alertd: Alertd, sink: SinkProcess, count: int, tag: str) -> BurstResult:
    """``count`` new firing notifications at once, for customers named after ``tag`` (a
    customer already firing would make no new notification)."""
    customers = [f"cus_burst_{tag}_{i:05d}" for i in range(count)]
    server = alertd.backend_pid
    since = sink.lines
    with Stopwatch(server) as committing:
        committed, spent = await commit(alertd, customers)
    started = next(iter(committed.values()), time.time())
    with Stopwatch(sink.pid) as watch, Stopwatch(server) as backend:
        main_thread = time.thread_time()
        await sink.wait_for(list(committed), since, timeout=max(60.0, count / 10))
        main_thread = time.thread_time() - main_thread
    delivered = [sink.received[i] for i in committed if i in sink.received]
    latencies = [1000 * (sink.received[i] - t) for i, t in committed.items()
                 if i in sink.received]
    duration = max(delivered, default=started) - started
    n = max(len(delivered), 1)
    delivery_ms = 1000 * watch.cpu / n
    total_ms = 1000 * (watch.cpu + committing.cpu) / n
    rate = len(delivered) / duration if duration else 0.0
    rows = [
        figure("notifications committed in one transaction", len(committed), "{:.0f}"),
        figure("evaluate + commit, s", spent, "{:.2f}"),
        figure("delivered", len(delivered), "{:.0f}", f"{len(committed)}",
               lambda v: v == len(committed)),
        figure("commit → last delivery, s", duration, "{:.2f}"),
        figure("notifications/s delivered (wall)", rate, "{:.0f}"),
        figure("state change → delivery, p50 ms", percentile(latencies, 0.5), "{:.0f}"),
        figure("state change → delivery, p99 ms", percentile(latencies, 0.99), "{:.0f}"),
        figure("alertd CPU ms per notification, delivery", delivery_ms, "{:.3f}"),
        figure("  of which the event loop's thread", 1000 * main_thread / n, "{:.3f}"),
        figure("alertd CPU ms per notification, evaluate + commit",
               1000 * committing.cpu / n, "{:.3f}"),
        figure("receiver CPU ms per notification", 1000 * watch.child_cpu / n, "{:.3f}"),
    ]
    if server is not None:
        rows.append(Figure("PostgreSQL backend CPU ms per notification, delivery (+ commit)",
                           f"{1000 * backend.child_cpu / n:.3f} "
                           f"(+{1000 * committing.child_cpu / n:.3f})"))
    return BurstResult(rows, rate, delivery_ms, total_ms, len(delivered), duration,
                       os.getloadavg()[0])


async def bench_backend(args: argparse.Namespace, sink: SinkProcess, state: str | None
                        ) -> list[BurstResult]:
    """Trickle and ``--repeat`` bursts on one backend (``state``: a PostgreSQL URL, else a
    SQLite file). Each round has a store of its own (a new file, a new schema) and its own
    warm-up: on one store, each round's evaluate + commit read the alerts of the rounds
    before (its CPU grew ~25 % a round), so rounds would not measure the same thing."""
    where = "PostgreSQL" if state else "SQLite"
    print(f"\n== {where}; webhook sink (child process) at {sink.url}")
    if args.trickle:
        with tempfile.TemporaryDirectory() as folder:
            async with running_alertd(sink.url, Path(folder), args.concurrency,
                                      state) as alertd:
                rows = await trickle(alertd, sink, args.trickle, args.interval)
        print_table(f"trickle: {args.trickle} state changes, one every "
                    f"{args.interval * 1000:g} ms", rows)
    if not args.burst:
        return []
    results: list[BurstResult] = []
    print(f"\nburst: {args.burst} notifications at once, {args.repeat} rounds, each on a new "
          f"{'schema' if state else 'state file'} after a 200-notification warm-up")
    for index in range(args.repeat):
        with tempfile.TemporaryDirectory() as folder:
            async with running_alertd(sink.url, Path(folder), args.concurrency,
                                      state) as alertd:
                # Connections, caches. Customers are new each round: notification ids are
                # derived from the group, so a customer of an earlier round would repeat one.
                await burst(alertd, sink, min(200, args.burst), f"{where}-warm{index}")
                # cProfile slows what it watches: the first round only.
                profiler = cProfile.Profile() if args.profile and not index else None
                if profiler is not None:
                    profiler.enable()
                result = await burst(alertd, sink, args.burst, f"{where}-r{index}")
                if profiler is not None:
                    profiler.disable()
                    print_profile(profiler)
        results.append(result)
        print(f"  round {index + 1}/{args.repeat}: {result.line()}")
    middle = median_round(results)
    middle.rows.append(figure("peak RSS of this process, MB", peak_rss_mb(), "{:.0f}"))
    middle.rows.append(figure("repeated deliveries (every round)", sink.repeats, "{:.0f}",
                              "0", lambda v: v == 0))
    print_table(f"burst: the median round ({results.index(middle) + 1} of {len(results)}, by "
                f"rate), outbox concurrency {args.concurrency} ({machine_note()})", middle.rows)
    return results


def median_round(results: list[BurstResult]) -> BurstResult:
    """The round of the median rate (the lower middle one of an even count)."""
    return sorted(results, key=lambda r: r.rate)[(len(results) - 1) // 2]


def summary(results: dict[str, list[BurstResult]]) -> list[Figure]:
    """The issue's figure for each backend, wall and CPU-based, beside the target: medians
    over the rounds, with the wall rate's min–max and the rounds' load averages."""
    rows = []
    for name, rounds in results.items():
        rates = [r.rate for r in rounds]
        loads = [r.load for r in rounds]
        delivery = statistics.median(r.delivery_ms for r in rounds)
        total = statistics.median(r.total_ms for r in rounds)
        rows += [
            figure(f"{name}: notifications/s end to end (wall), median of {len(rounds)}",
                   statistics.median(rates), "{:,.0f}", f">= {TARGET:,.0f}",
                   lambda v: v >= TARGET),
            Figure(f"{name}:   min – max over the rounds (load average)",
                   f"{min(rates):,.0f} – {max(rates):,.0f}",
                   note=f"(load {min(loads):.1f} – {max(loads):.1f})"),
            Figure(f"{name}: alertd CPU ms per notification, delivery | incl. commit",
                   f"{delivery:.3f} | {total:.3f}", note="(medians)"),
            figure(f"{name}: notifications per alertd CPU-second, delivery",
                   1000 / delivery if delivery else 0, "{:,.0f}",
                   f">= {TARGET:,.0f}", lambda v: v >= TARGET),
            figure(f"{name}: notifications per alertd CPU-second, incl. commit",
                   1000 / total if total else 0, "{:,.0f}",
                   f">= {TARGET:,.0f}", lambda v: v >= TARGET),
        ]
    return rows


async def main(args: argparse.Namespace) -> None:
    gctune.tune()  # as `alertd run` does (alertd.gctune)
    print(machine_note())
    sink = SinkProcess()
    await asyncio.to_thread(sink.start)
    results: dict[str, list[BurstResult]] = {}
    try:
        for name, state in [("SQLite", None), *([("PostgreSQL", args.state)]
                                                if args.state else [])]:
            rounds = await bench_backend(args, sink, state)
            if rounds:
                results[name] = rounds
    finally:
        sink.stop()
    if results:
        print_table(f"end to end, state change → outbox → webhook ({machine_note()})",
                    summary(results))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--burst", type=int, default=4000)
    parser.add_argument("--repeat", type=int, default=3,
                        help="bursts per backend: the summary gives their median and min-max")
    parser.add_argument("--trickle", type=int, default=300)
    parser.add_argument("--interval", type=float, default=0.02)
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    parser.add_argument("--state", help="a postgresql:// URL: bench the PostgreSQL store too")
    parser.add_argument("--profile", action="store_true", help="cProfile the burst")
    parser.add_argument("--serve-sink", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--scope", action="store_true",
                        help="instead: rows, CPU and memory of one commit with many open "
                             "groups, scoped flush vs every group (bench/flush_scope.py)")
    flush_scope.add_arguments(parser)
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.scope:
        asyncio.run(flush_scope.main(arguments))
    else:
        asyncio.run(serve_sink() if arguments.serve_sink else main(arguments))

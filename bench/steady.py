"""The bucket cache in steady state: a warm-up pass, then steady passes, against the simulator.

Usage::

    python bench/steady.py [--customers 1000] [--cycles 3] [--latency 0.02] [--rate 100]
    python bench/steady.py --daemon [--customers 10000] [--cycles 2] [--every 60]

``--daemon`` runs the real ``alertd run`` in a child process instead (``bench/steady_daemon.py``
says how); the figures are the same.

The simulator runs in a child process (real time, ``--rate`` analytics requests per sliding
second, ``--latency`` per answer). alertd's side is what the daemon runs each poll:
:class:`alertd.service.engine.Engine` over the Stripe stack, with the bucket cache on a real
SQLite state file (``stripe.settle_window`` 24 h), evaluating the sixteen-rule mixed set of
``bench/planner.py`` for every customer. Pass 1 warms the cache (every key read in full);
each following pass is a steady cycle. Printed per cycle, beside their targets:

* **requests ÷ bound**: usage requests planned ÷ the bound for that pass — for the warm-up the
  lower bound of full reads (recent ranges as hours; the cache-less cold bound is printed
  too), for steady cycles the steady-state bound
  (:func:`bench.lower_bound.steady_state_needs` with the time since the previous pass);
  target 1.00;
* **rows ÷ warm-up**: rows fetched in a steady cycle ÷ rows of the warm-up (target ≤ 5 %);
* achieved requests/s, CPU seconds of this process per 1,000 requests, peak RSS;
* the deadline scheduler's book (:class:`alertd.service.schedule.DeadlineBook`, in RAM): the
  passes' findings are booked into one as the daemon's batches book them, and its bytes per
  customer (:meth:`~alertd.service.schedule.DeadlineBook.held_bytes`: its packed arrays and
  tables, the customer ids, each remembered series) are printed with what that makes at
  100,000 customers.

The passes hand their findings on batch by batch, as the daemon's do
(:class:`alertd.service.recording.PassRecorder` records them there). What a pass holds at its
end is printed per customer after each cycle: the pass's own findings and series (the
:class:`~alertd.service.engine.PassResult`; none since they go to ``on_batch`` only), the
status board's entries of the active series (each active finding made a firing one here, as
the lifecycle makes it once it fires: :class:`alertd.web.board.BoardPass`, batch by batch),
what ``tracemalloc`` traced (``--trace``: held at the pass's end over before it, and its peak
over before it), and the most rows the batches fetched ahead held
(:class:`alertd.service.reads.HeldAhead`) beside its bound.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alertd import conditions
from alertd.buckets import CachePolicy
from alertd.clock import SystemClock
from alertd.config.settings import CustomerSelection
from alertd.deadlines import Pacing
from alertd.rules.loader import RuleSet
from alertd.service.engine import BATCH_CUSTOMERS, BatchFindings, Engine
from alertd.service.reads import BucketCache
from alertd.service.schedule import BookReading, DeadlineBook
from alertd.service.world import stripe_stack
from alertd.sim.testing import SimulatorProcess
from alertd.store.sqlite import SqliteStore
from alertd.web.board import Board, BoardPass
from bench.common import (
    Figure,
    figure,
    machine_note,
    mixed_rules,
    peak_rss_mb,
    print_table,
    simulator_settings,
)
from bench.lower_bound import lower_bound, steady_state_needs


async def main(args: argparse.Namespace) -> None:
    print(machine_note())
    rules = mixed_rules()
    with SimulatorProcess(customers=args.customers, rate=int(args.rate),
                          latency=args.latency) as sim, tempfile.TemporaryDirectory() as tmp:
        settings = simulator_settings(sim.url, rate=args.rate)
        async with stripe_stack(settings, clock=SystemClock()) as stack, \
                SqliteStore(Path(tmp) / "alertd.db") as store:
            customers = [c.id for c in await stack.directory.customers(
                CustomerSelection(all=True))]
            engine = Engine(settings, RuleSet(tuple(rules)), stack.source, stack.directory,
                            sent=lambda: stack.http.requests,
                            cache=BucketCache(store, CachePolicy()),
                            batch_customers=args.batch_customers)
            warm_rows = 0.0
            previous: float | None = None
            book = DeadlineBook(15 * 60.0, Pacing())
            book.admit(customers)
            for cycle in range(1 + args.cycles):
                now = int(time.time())
                needs = [n for r in rules for c in customers for n in conditions.needs(r, c, now)]
                # The warm-up reads every key in full, recent ones as hours (no previous poll).
                since = 10**9 if previous is None else now - previous
                bound = lower_bound(steady_state_needs(needs, now, since))
                if previous is None:
                    print(f"cold lower bound without the cache: {lower_bound(needs)} requests")
                rows_before = engine.cache_counts.rows_fetched
                cpu, wall = time.process_time(), time.perf_counter()
                reading = BookReading(book, {r.name: r for r in rules}, now)
                board = Board()
                staged = board.begin(now)
                if args.trace:
                    tracemalloc.start()
                    tracemalloc.reset_peak()
                    before = tracemalloc.get_traced_memory()[0]

                async def booked(found: BatchFindings, reading: BookReading = reading,
                                 staged: BoardPass = staged) -> None:
                    reading.batch(found)
                    firing = [replace(f, state="firing") for f in found.findings if f.active]
                    staged.add(firing, customers=found.customers, series=found.series)

                result = await engine.run_pass(now, on_batch=booked)
                reading.done(result)
                cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
                if args.trace:
                    current, peak = tracemalloc.get_traced_memory()
                    tracemalloc.stop()
                board.record([r.name for r in rules], (), now, customers=result.customers,
                             series=result.series, staged=staged)
                count = max(len(customers), 1)
                pass_held = held_bytes([result.findings, result.series])
                board_held = held_bytes(list(board.entries.values()))
                print(f"held at the pass's end: its findings and series {pass_held / count:.0f}"
                      f" bytes a customer; the board ({len(board.entries)} entries) "
                      f"{board_held / count:.0f} bytes a customer "
                      f"({board_held / max(len(board.entries), 1):.0f} an entry)")
                if args.trace:
                    print(f"tracemalloc: held at the pass's end {(current - before) / count:.0f}"
                          f" bytes a customer over before it, peak {(peak - before) / 1e6:.1f}"
                          " MB over before it")
                ahead = engine.held_ahead
                print(f"rows held ahead of the judged batch: at most {ahead.peak} "
                      f"(bound {ahead.bound}), {ahead.deferred} batch starts and "
                      f"{ahead.waited} requests waited for rows")
                rows = engine.cache_counts.rows_fetched - rows_before
                warm_rows = warm_rows or rows
                print_table(title(cycle, len(customers), wall), figures(
                    result.queries, result.requests, bound, rows, warm_rows, wall, cpu,
                    steady=cycle > 0, failures=len(result.failures), rss=peak_rss_mb()))
                previous = now
            print_book(book, len(customers))
            held = held_bytes(list(result.customers.values()))
            print(f"the directory's customers (Customer objects, kept between polls): "
                  f"{held / max(len(customers), 1):.0f} bytes a customer, "
                  f"{held / max(len(customers), 1) * 100_000 / 1e6:.0f} MB at 100,000")


def print_book(book: DeadlineBook, customers: int) -> None:
    """The deadline book's bytes per customer, and at 100,000 customers."""
    size = book.held_bytes()
    per = size / max(customers, 1)
    series = book.series()
    print(f"deadline book: {size / 1e6:.2f} MB for {customers} customers and {series} series: "
          f"{per:.0f} bytes a customer ({size / max(series, 1):.0f} a series), "
          f"{per * 100_000 / 1e6:.0f} MB at 100,000 customers")


def held_bytes(roots: Iterable[object]) -> int:
    """``sys.getsizeof`` of ``roots`` and of everything reachable from them through
    containers and slotted dataclasses, each object once (strings included, though some, the
    customer ids, are shared with the directory)."""
    seen: set[int] = set()
    stack = list(roots)
    total = 0
    while stack:
        item = stack.pop()
        cached = item is None or (isinstance(item, int) and -5 <= item <= 256)  # interned
        if cached or id(item) in seen:
            continue
        seen.add(id(item))
        total += sys.getsizeof(item)
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            stack.extend(item)
        elif hasattr(item, "__slots__"):
            stack.extend(getattr(item, name) for name in item.__slots__
                         if hasattr(item, name))
    return total


def title(cycle: int, customers: int, wall: float, who: str = "") -> str:
    what = "warm-up (cold cache)" if cycle == 0 else f"steady cycle {cycle}"
    return f"{who}{what}: {customers} customers × 16 rules, {wall:.1f} s"


def figures(queries: int, requests: int, bound: int, rows: int, warm_rows: float,
            wall: float, cpu: float, *, steady: bool, failures: int, rss: float,
            who: str = "alertd") -> list[Figure]:
    """One cycle's table: ``rss`` is the peak RSS in MB, ``who`` the process measured."""
    found = [
        figure("usage requests planned", queries, "{:.0f}"),
        figure("bound" + (" (steady state)" if steady else " (full reads)"), bound, "{:.0f}"),
        figure("requests ÷ bound", queries / bound, "{:.2f}", "1.00",
               lambda v: abs(v - 1) < 0.005),
        figure("HTTP requests sent", requests, "{:.0f}"),
        figure("rows fetched", rows, "{:.0f}"),
        figure("achieved requests/s", requests / wall, "{:.1f}", "≥ 95 when budget-bound"),
        figure(f"CPU s per 1,000 requests ({who})", 1000 * cpu / max(requests, 1), "{:.2f}"),
        figure(f"peak RSS of {who} (MB)", rss, "{:.0f}", "≤ 150", lambda v: v <= 150),
        figure("failed requests", failures, "{:.0f}", "0", lambda v: v == 0),
    ]
    if steady:
        found.insert(5, figure("rows ÷ warm-up", rows / warm_rows, "{:.1%}", "≤ 5 %",
                               lambda v: v <= 0.05))
    return found


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--cycles", type=int, default=3, help="steady cycles after the warm-up")
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--batch-customers", type=int, default=BATCH_CUSTOMERS,
                        help="customers per batch (most; alertd's default)")
    parser.add_argument("--trace", action="store_true",
                        help="trace allocations (tracemalloc) during each pass: slower")
    parser.add_argument("--daemon", action="store_true",
                        help="run the real `alertd run` against the simulator")
    parser.add_argument("--every", type=float, default=60.0,
                        help="--daemon: every rule's poll interval, seconds (accelerated)")
    parser.add_argument("--limit", type=float, default=4 * 3600.0,
                        help="--daemon: give up after this many seconds")
    parser.add_argument("--progress", type=float, default=120.0,
                        help="--daemon: seconds between progress lines")
    parser.add_argument("--state-url", default=None,
                        help="--daemon: keep state and cache in this PostgreSQL database "
                             "(postgresql://...; an empty one: the bench does not clear it) "
                             "instead of a SQLite file")
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.daemon:
        from bench.steady_daemon import run

        asyncio.run(run(arguments))
    else:
        asyncio.run(main(arguments))

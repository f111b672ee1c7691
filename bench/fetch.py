"""Fetching everything a mixed rule set needs from the simulator, within Stripe's rate limit,
at several Stripe latencies.

Usage::

    python bench/fetch.py [--customers 1000] [--latencies 0.02,0.15,1] [--max-requests N]
                          [--plan-batch N] [--rate 100] [--pacing 1000] [--via source|engine]
                          [--profile]

For each latency of ``--latencies`` (seconds, default 20 ms, 150 ms and 1 s) a simulator runs
in a child process (``alertd.sim.testing.SimulatorProcess``) with the given number of
customers, enforcing ``--rate`` analytics requests per sliding second and adding that latency to
every answer, so its CPU is not this process's. This process is the alertd client:
``StripeHTTP`` with its rate budgets and in-flight slots, the Meter Usage Analytics source and
the customer directory, built by ``alertd.service.world.stripe_stack`` exactly as the daemon
builds them.

**Phase 1 — the mixed rule set.** The sixteen rules of ``bench/planner.py`` × every customer
(listed through the directory): needs (``alertd.conditions.needs``), the plan
(``alertd.planner.plan``) and its lower bound, then every planned query is fetched.
``--via source`` (default) hands the queries to ``Source.fetch`` from ``stripe.max_in_flight``
workers (the client's own slots decide how many are in flight) and drops each answer's rows
once counted, which is what the fetch path itself costs; ``--via engine`` runs
``Engine.run_pass`` instead (fetch, series, evaluation, batch after batch: far more memory and
CPU). Planned ``--plan-batch`` (20) customers at a time as the fetch goes, each batch with the pages
the source then expects (``alertd.source.pages``: a query expected to pass one answer's rows
is fetched in pieces side by side), the first few customers fetched before the rest is planned;
pages count in the requests per cycle and in the bound (``bench.lower_bound``, its page term).
``--plan-batch 0`` plans the whole cycle before fetching (no pages known). ``--max-requests``
stops planning before the planned requests pass N (whole customers).

**Phase 2 — pacing alone** (``--pacing N``, 0 to skip): at least N one-row queries
(yesterday's total of one meter, one customer each), so the rate budget, the in-flight slots
and the HTTP path are measured without the cost of large answers; more at a long latency, so
that the final latency is at most 1 % of the wall (:func:`pacing_length`: 9,603 at 1 s, ~100 s)
and the wall rate can meet its target.

Printed per phase, beside the targets of issues 2 and 13: requests per cycle ÷ the planner's
lower bound (1.00), achieved requests/s (≥ 95 at 100/s), the most requests the simulator saw in
any sliding second (≤ 100) and the seconds in which it saw more (0), beside the most the
client sent in any 1 s and in any 1 s + the budget's guard by its own send instants (≤ 97 /
100 by construction: a gap between the two counts is bunching at the receiver), 429s (0),
wall time ÷ (requests ÷ rate) (≤ 1.05), the client's in-flight limit and measured latency, the most
requests in flight at the simulator, peak RSS of this process (≤ 150 MB at 10,000 customers),
CPU seconds per 1,000 requests here (this process and its decoding process,
``alertd.source.decoder``, which the client is started with) and in the simulator, and the
decoding process's peak RSS. A last table puts every latency side
by side and says what limited each run: the budget, the client's CPU (its ceiling on a free
core, requests ÷ CPU seconds, is below the budget) or the machine (a loaded machine gave the
client too little CPU: the load average is printed). ``--profile`` adds the top functions of
each phase by own CPU time of the event loop's thread (cProfile on ``time.thread_time``: the
same on a loaded machine, and without the decoding process's share).
"event loop's timers late" is how late a 5 ms timer fires (p99 and most): a send waits
for the budget's timer, so it says how far the loop's own work pushes sends past their slots.

The collector is tuned first as ``alertd run`` tunes it (``alertd.gctune``: start-up frozen,
the young generation collected every 10,000 allocations), so the loop's GC pauses are the
daemon's.

10,000 customers plan about 70,000 requests: at 100/s that is 12 minutes or more of wall
time per latency; use ``--max-requests`` to stop earlier (the table says what was run).

Why over 400 lines: both phases, three ways of fetching and the figures of issues 2 and 13
read as one run; the shared figure helpers live in ``bench/common.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import math
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alertd import conditions, gctune
from alertd.calendar import floor
from alertd.clock import SystemClock
from alertd.config.settings import CustomerSelection
from alertd.errors import SourceError
from alertd.model import Customer, MeterSpec, UsageQuery
from alertd.planner import plan
from alertd.rules.loader import RuleSet
from alertd.rules.schema import Rule
from alertd.service.engine import Engine
from alertd.service.world import StripeStack, stripe_stack
from alertd.sim.testing import SimulatorProcess
from alertd.source import MeterUsageSource, Source
from alertd.source.inflight import ConcurrencyStats
from alertd.source.pages import PageLearner, Paging, page_ranges
from alertd.source.pool import SHARD_CONNECTIONS
from alertd.source.ratelimit import RateBudget
from bench.common import (
    Figure,
    Stopwatch,
    child_cpu_seconds,
    figure,
    machine_note,
    mixed_rules,
    peak_rss_mb,
    print_profile,
    print_table,
    report_progress,
    simulator_settings,
)
from bench.lower_bound import lower_bound

TARGET_RATE = 0.95  # of the limit
TARGET_WALL_RATIO = 1.05
TARGET_RSS_MB = 150.0
#: Phase 2's final latency is at most this share of its wall (:func:`pacing_length`).
TAIL_SHARE = 0.01
DEFAULT_LATENCIES = "0.02,0.15,1"
#: Customers fetched before the rest is planned (the pages they teach split the rest).
FIRST_CUSTOMERS = 5


@dataclass(slots=True)
class Tally:
    """What the fetches returned, counted as they finish."""

    rows: int = 0
    series: int = 0  # engine only
    findings: int = 0  # engine only
    failures: list[SourceError] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Workload:
    """The planned queries of one cycle, and the part of them this run fetches."""

    needs: int
    planned: int
    bound: int
    customers: tuple[str, ...]  # the customers fetched (all, unless capped)
    queries: tuple[UsageQuery, ...]  # their queries


# --------------------------------------------------------------------------- workload


def workload(rules: Sequence[Rule], customers: Sequence[str], now: int,
             max_requests: int | None, batch: int = 0) -> Workload:
    """Needs, plan and lower bound for every customer; the queries of the first customers
    whose planned requests fit in ``max_requests``.

    ``batch`` > 0 plans that many customers at a time instead of all at once, as an engine
    could: needs of different customers never share a request, so the totals are the same,
    and only one batch's needs and plan are in memory at a time.
    """
    size = batch or max(len(customers), 1)
    needs_count = planned = bound = 0
    chosen: list[str] = []
    queries: list[UsageQuery] = []
    for start in range(0, len(customers), size):
        part = customers[start:start + size]
        needs = [n for rule in rules for c in part for n in conditions.needs(rule, c, now)]
        the_plan = plan(needs)
        needs_count, planned = needs_count + len(needs), planned + len(the_plan.queries)
        bound += lower_bound(needs)
        by_customer: dict[str, list[UsageQuery]] = {}
        for query in the_plan.queries:
            by_customer.setdefault(query.customer, []).append(query)
        for customer in part:
            own = by_customer.get(customer, [])
            if max_requests is not None and chosen and len(queries) + len(own) > max_requests:
                max_requests = len(queries)  # full: later customers are not fetched
                continue
            chosen.append(customer)
            queries += own
    return Workload(needs_count, planned, bound, tuple(chosen), tuple(queries))


@dataclass(slots=True)
class PagedWorkload:
    """The plan of one cycle made batch by batch just ahead of the fetch, each batch with the
    pages the source then expects (:func:`alertd.source.pages.page_ranges`), so what the
    first answers taught (the page size, rows per bucket) splits the later queries in advance;
    counted as the batches are planned."""

    needs: int = 0
    queries: int = 0
    planned: int = 0  # HTTP requests: every query's pages
    bound: int = 0  # with the page term of the same Paging
    customers: list[str] = field(default_factory=list)
    planning_seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class PlannedBatch:
    """One batch's plan: its needs, queries, the HTTP requests their pages take, the bound."""

    needs: int
    queries: tuple[UsageQuery, ...]
    pieces: int
    bound: int
    seconds: float  # CPU seconds the planning took (of the thread that planned)


def plan_batch(rules: Sequence[Rule], part: Sequence[str], now: int,
               paging: Paging) -> PlannedBatch:
    """Needs, plan, pages and bound of ``part``'s customers (pure: runs in a thread)."""
    began = time.thread_time()
    needs = [n for rule in rules for c in part for n in conditions.needs(rule, c, now)]
    queries = plan(needs).queries
    pieces = sum(len(page_ranges(q, paging)) for q in queries)
    return PlannedBatch(len(needs), tuple(queries), pieces, lower_bound(needs, paging=paging),
                        time.thread_time() - began)


async def paged_queries(rules: Sequence[Rule], customers: Sequence[str], now: int,
                        pages: PageLearner, batch: int, max_requests: int | None,
                        into: PagedWorkload) -> AsyncIterator[tuple[UsageQuery, ...]]:
    """The queries of ``batch`` customers at a time, planned when the previous batch's have
    been taken, stopping before the planned requests pass ``max_requests``.

    Planned in a worker thread, as the fetch goes: a batch takes ~25 ms of CPU, more than two
    of the budget's slots, and on the event loop it held every send behind it (the budget
    then caught up, bunched). The pages known when the batch is planned are its snapshot."""
    for start in range(0, len(customers), batch):
        part = customers[start:start + batch]
        planned = await asyncio.to_thread(plan_batch, rules, part, now, pages.paging())
        into.planning_seconds += planned.seconds
        if max_requests is not None and into.planned and \
                into.planned + planned.pieces > max_requests:
            return
        into.needs += planned.needs
        into.queries += len(planned.queries)
        into.planned += planned.pieces
        into.bound += planned.bound
        into.customers += part
        yield planned.queries


def pacing_queries(customers: Iterable[str], now: int) -> list[UsageQuery]:
    """One one-row query per customer: yesterday's (UTC) total of the storage meter."""
    ends_at = floor(now, "day", "UTC")
    spec = MeterSpec("mtr_sim_storage")
    return [UsageQuery(c, ends_at - 86400, ends_at, "day", "UTC", (spec,)) for c in customers]


# --------------------------------------------------------------------------- fetching


async def fetch_streaming(source: Source, queries: Iterable[UsageQuery], workers: int,
                          tally: Tally) -> None:
    """Every query through ``source.fetch`` from ``workers`` concurrent workers; each
    answer's rows are counted and dropped."""

    async def batches() -> AsyncIterator[tuple[UsageQuery, ...]]:
        yield tuple(queries)

    await fetch_queued(source, batches(), workers, tally)


async def fetch_queued(source: Source, batches: AsyncIterator[tuple[UsageQuery, ...]],
                       workers: int, tally: Tally) -> None:
    """Every query of ``batches`` through ``source.fetch`` from ``workers`` concurrent
    workers, the next batch asked for once this one's queries are all queued (at most
    ``workers`` wait)."""
    queue: asyncio.Queue[UsageQuery | None] = asyncio.Queue(maxsize=workers)

    async def produce() -> None:
        try:
            async for batch in batches:
                for query in batch:
                    await queue.put(query)
        finally:
            for _ in range(workers):
                await queue.put(None)

    async def worker() -> None:
        while (query := await queue.get()) is not None:
            try:
                result = await source.fetch(query)
            except SourceError as exc:
                tally.failures.append(exc)
            else:
                tally.rows += len(result.rows)

    await asyncio.gather(produce(), *(worker() for _ in range(workers)))


async def fetch_paged(source: MeterUsageSource, rules: Sequence[Rule], ids: Sequence[str],
                      now: int, args: argparse.Namespace, lazy: PagedWorkload, tally: Tally,
                      workers: int) -> None:
    """The first :data:`FIRST_CUSTOMERS`, then the rest, planned batch by batch as the fetch
    goes (:func:`paged_queries`): nothing tells an answer's size before the first answers, and
    a cold start of the engine, whose first batch is small, learns it the same way."""
    for part in (ids[:FIRST_CUSTOMERS], ids[FIRST_CUSTOMERS:]):
        batches = paged_queries(rules, part, now, source.pages, args.plan_batch,
                                args.max_requests, lazy)
        await fetch_queued(source, batches, workers, tally)


async def fetch_with_engine(stack: StripeStack, rules: Sequence[Rule], customers: Sequence[str],
                            now: int, tally: Tally) -> None:
    """One ``Engine.run_pass`` over ``customers`` (fetch, series, evaluation)."""
    settings = simulator_settings(stack.http.settings.api_base,
                                  rate=stack.http.settings.requests_per_second)
    engine = Engine(settings, RuleSet(tuple(rules)), stack.source, stack.directory)
    result = await engine.run_pass(now, customer_ids=customers)
    tally.failures.extend(result.failures)
    tally.series = len(result.series)
    tally.findings = len(result.findings)


# --------------------------------------------------------------------------- phases


@dataclass(frozen=True, slots=True)
class Run:
    """One measured phase: what the client sent and spent, and what the simulator saw."""

    requests: int
    rows: int | None  # None: not counted (engine)
    failures: int
    watch: Stopwatch
    stats: dict[str, Any]
    rss_mb: float
    slots: ConcurrencyStats
    pressure: float | None  # share of the wall in which the machine lacked a free CPU
    lost: float = 0.0  # seconds of the rate budget's schedule given up (a busy event loop)
    late: tuple[float, float] = (0.0, 0.0)  # the event loop's timers late: p99, most (s)
    #: The most requests the client sent in any 1 s and in any 1 s + the budget's guard.
    sent_peaks: tuple[int, int, float] = (0, 0, 0.0)
    decoder_cpu: float = 0.0  # CPU seconds of the decoding process (in watch.cpu too)
    decoder_rss_mb: float = 0.0  # its peak RSS so far


class LoopLag:
    """How late the event loop runs its timers: a task asks to wake every :attr:`TICK`
    seconds and keeps how late it woke. A send waits for a timer of the rate budget, so this
    is how far a busy loop (an answer decoded, a batch planned, a loaded machine) pushes sends
    past their slots."""

    TICK = 0.005

    def __init__(self) -> None:
        self.late: list[float] = []

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.TICK
            await asyncio.sleep(self.TICK)
            self.late.append(max(0.0, loop.time() - due))

    def summary(self) -> tuple[float, float]:
        if not self.late:
            return 0.0, 0.0
        ordered = sorted(self.late)
        return ordered[int(0.99 * (len(ordered) - 1))], ordered[-1]


def sent_peaks(budget: RateBudget) -> tuple[int, int, float]:
    """The most requests ``budget`` sent in any 1 s and in any ``1 + guard`` s, and the
    guard: what the client did, beside what the simulator counted on arrival."""
    stats = budget.stats()
    return stats.peak_sent, stats.peak_sent_guarded, budget.guard


def peak_rss_of(pid: int | None) -> float:
    """The peak resident set size of a live process, in MB (``/proc``; 0 if unknown)."""
    if pid is None:
        return 0.0
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_pressure_us() -> int | None:
    """Microseconds in which some task of the machine waited for a CPU (Linux PSI), so far."""
    try:
        some = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    total = some.rsplit("total=", 1)[-1]
    return int(total) if total.isdigit() else None


async def measured(sim: SimulatorProcess, stack: StripeStack, total: int, what: str,
                   run: Coroutine[Any, Any, None]
                   ) -> tuple[Stopwatch, int, dict[str, Any], float | None, tuple[float, float],
                              float]:
    """Awaits ``run`` with progress reports; returns its stopwatch (its CPU including the
    decoding process's: the client's CPU is both), the HTTP requests sent meanwhile,
    the simulator's statistics of just that time, the share of that time in
    which the machine had a task waiting for a CPU (``None`` where Linux does not say), and
    how late the event loop ran its timers (:class:`LoopLag`: p99 and most, seconds), and the
    decoding process's CPU seconds."""
    await asyncio.to_thread(sim.reset_stats)
    sent_before = stack.http.requests
    progress = asyncio.create_task(
        report_progress(lambda: stack.http.requests - sent_before, total, what))
    lag = LoopLag()
    probe = asyncio.create_task(lag.run())
    pressure_before = cpu_pressure_us()
    decoder = stack.http.decoder_pid
    decoder_before = child_cpu_seconds(decoder)
    try:
        with Stopwatch(sim.pid) as watch:
            await run
    finally:
        progress.cancel()
        probe.cancel()
    decoder_cpu = child_cpu_seconds(decoder) - decoder_before
    watch.cpu += decoder_cpu
    pressure_after = cpu_pressure_us()
    pressure = None if pressure_before is None or pressure_after is None or not watch.wall \
        else (pressure_after - pressure_before) / 1e6 / watch.wall
    stats = await asyncio.to_thread(sim.stats)
    return watch, stack.http.requests - sent_before, stats, pressure, lag.summary(), decoder_cpu


def run_figures(run: Run, rate: float, rss_target: bool) -> list[Figure]:
    """The figures every phase prints."""
    wall = run.watch.wall
    per_second = run.requests / wall if wall else 0.0
    peak_analytics = float(run.stats["peak_per_second"]["analytics"])
    over = float(run.stats.get("seconds_over_limit", {}).get("analytics", 0))
    limited = float(run.stats["rate_limited"])
    thousands = max(run.requests, 1) / 1000
    latency = run.slots.latency
    rows = [
        figure("HTTP requests sent", run.requests, "{:.0f}"),
        figure("failed queries", run.failures, "{:.0f}", "0", lambda v: v == 0),
        figure("wall time, s", wall, "{:.1f}"),
        figure("achieved requests/s", per_second, "{:.1f}", f">= {TARGET_RATE * rate:g}",
               lambda v: v >= TARGET_RATE * rate),
        figure("arrival rate at the simulator (first → last), requests/s", arrival_rate(run),
               "{:.1f}", f">= {TARGET_RATE * rate:g}", lambda v: v >= TARGET_RATE * rate),
        figure("most requests in any 1 s (simulator)", peak_analytics, "{:.0f}",
               f"<= {rate:g}", lambda v: v <= rate),
        figure("seconds over the budget (simulator)", over, "{:.0f}", "0", lambda v: v == 0),
        Figure(f"most sent in any 1 s / any {1 + run.sent_peaks[2]:g} s (client, by send "
               "instant)", f"{run.sent_peaks[0]} / {run.sent_peaks[1]}",
               note=f"<= {math.floor(rate * 0.97)} / {math.floor(rate)} by construction"),
        figure("429s", limited, "{:.0f}", "0", lambda v: v == 0),
        figure(f"wall ÷ (requests ÷ {rate:g}/s)", wall / (run.requests / rate) if run.requests
               else 0.0, "{:.3f}", f"<= {TARGET_WALL_RATIO}", lambda v: v <= TARGET_WALL_RATIO),
        Figure("measured latency (moving average), ms",
               f"{1000 * latency:.0f}" if latency is not None else "-"),
        figure("in-flight limit at the end (client)", run.slots.limit, "{:.0f}"),
        Figure("most in flight: client slots / simulator",
               f"{run.slots.peak} / {run.stats.get('max_in_flight', '-')}"),
        figure("pace given up to a busy event loop, s", run.lost, "{:.2f}", "0",
               lambda v: v <= 0.01 * wall),
        Figure("event loop's timers late: p99 / most, ms",
               f"{1000 * run.late[0]:.1f} / {1000 * run.late[1]:.0f}",
               note=f"a slot is {1000 / rate:.1f} ms"),
        figure("client CPU s per 1,000 requests", run.watch.cpu / thousands, "{:.2f}"),
        figure("  of which the decoding process", run.decoder_cpu / thousands, "{:.2f}"),
        figure("client CPU busy, % of wall", 100 * run.watch.cpu / wall if wall else 0, "{:.0f}"),
        Figure("machine short of CPU (PSI some), % of wall",
               f"{100 * run.pressure:.0f}" if run.pressure is not None else "-",
               note="a task waited for a CPU"),
        Figure("client ceiling on one free core, requests/s",
               f"{ceiling(run):.0f}" if run.watch.cpu else "-",
               note="requests ÷ client CPU s (with the decoder's)"),
        figure("simulator CPU s per 1,000 requests", run.watch.child_cpu / thousands, "{:.2f}"),
    ]
    if run.rows is not None:
        rows[2:2] = [figure("rows received", run.rows, "{:.0f}")]
        if run.rows:
            rows.append(figure("client CPU µs per row received",
                               1e6 * run.watch.cpu / run.rows, "{:.1f}"))
    if run.decoder_rss_mb:
        rows.append(figure("peak RSS of the decoding process, MB", run.decoder_rss_mb,
                           "{:.0f}"))
    rss_check = (lambda v: v <= TARGET_RSS_MB) if rss_target else None
    rows.append(figure("peak RSS of this process, MB", run.rss_mb, "{:.0f}",
                       f"<= {TARGET_RSS_MB:g}" if rss_target else "", rss_check))
    return rows


def arrival_rate(run: Run) -> float:
    """Requests per second as the simulator saw them arrive, first to last: the pace while
    there was work, without the wall's last latency (the final answers coming back), which
    alone keeps 1,000 requests at 1 s latency under 92/s of wall time."""
    elapsed = float(run.stats.get("elapsed", 0.0))
    arrived = int(run.stats.get("by_endpoint", {}).get("meter_usage", run.requests))
    return (arrived - 1) / elapsed if elapsed > 0 and arrived > 1 else 0.0


def ceiling(run: Run) -> float:
    """Requests per second this process could sustain on one free core: requests ÷ CPU s."""
    return run.requests / run.watch.cpu if run.watch.cpu else float("inf")


def limited_by(run: Run, rate: float, load: float) -> str:
    """What held the run back, as far as the figures tell."""
    wall = run.watch.wall
    achieved = run.requests / wall if wall else 0.0
    busy = 100 * run.watch.cpu / wall if wall else 0.0
    needed = 100 * rate / ceiling(run)
    if achieved >= TARGET_RATE * rate:
        return f"the budget (client CPU {busy:.0f}% of a core)"
    starved = run.pressure is not None and run.pressure > 0.5 and busy < 0.9 * needed
    if starved:
        assert run.pressure is not None
        return (f"the machine: load {load:.1f} on {os.cpu_count()} cores, some task waited for "
                f"a CPU {100 * run.pressure:.0f}% of the time; the client got {busy:.0f}% of a "
                f"core, the budget needs {needed:.0f}%")
    if ceiling(run) < rate:
        return f"client CPU (ceiling {ceiling(run):.0f}/s on a free core)"
    return (f"not the CPU (client busy {busy:.0f}%, {needed:.0f}% needed): the ramp and tail "
            "of a short run, latency or slots")


@dataclass(frozen=True, slots=True)
class Measured:
    """One latency's runs: phase 1 with its plan figures, and phase 2 if it ran."""

    latency: float
    load: float  # 1-minute load average at the end
    mixed: Run
    plan_ratio: float
    pacing: Run | None


async def mixed_phase(args: argparse.Namespace, sim: SimulatorProcess, stack: StripeStack,
                      customers: Sequence[Customer], latency: float) -> tuple[Run, float]:
    rules = mixed_rules()
    now = int(time.time())
    ids = [c.id for c in customers]
    source = stack.source
    paged = args.via == "source" and args.plan_batch > 0 and isinstance(source, MeterUsageSource)
    tally = Tally()
    lazy = PagedWorkload()
    if paged:
        assert isinstance(source, MeterUsageSource)
        pages_before = replace(source.pages.counts)
        expected = args.max_requests or 7 * len(ids)
        print(f"planning {args.plan_batch} customers at a time as the fetch goes, with the "
              f"pages the source expects (the first {FIRST_CUSTOMERS} fetched before the "
              "rest is planned, as the engine's first batch)", flush=True)
        work = fetch_paged(source, rules, ids, now, args, lazy, tally,
                           stack.http.settings.max_in_flight)
    else:
        with Stopwatch() as planning:
            load = workload(rules, ids, now, args.max_requests, args.plan_batch)
        print(f"planned {load.planned} requests for {len(ids)} customers in {planning.wall:.1f}"
              f" s; fetching {len(load.queries)} ({len(load.customers)} customers) via "
              f"{args.via}", flush=True)
        expected = len(load.queries)
        if args.via == "engine":
            work = fetch_with_engine(stack, rules, load.customers, now, tally)
        else:
            work = fetch_streaming(source, load.queries, stack.http.settings.max_in_flight,
                                   tally)
    budget = stack.http.budgets.analytics
    lost_before = budget.stats().lost_seconds
    budget.reset_peaks()
    profiler = cProfile.Profile(time.thread_time) if args.profile else None
    if profiler is not None:
        profiler.enable()
    watch, sent, stats, pressure, late, decoder_cpu = await measured(
        sim, stack, expected, "requests sent (planned: the total)", work)
    if profiler is not None:
        profiler.disable()
    engine = args.via == "engine"
    run = Run(sent, None if engine else tally.rows, len(tally.failures), watch, stats,
              peak_rss_mb(), stack.http.concurrency("analytics"), pressure,
              budget.stats().lost_seconds - lost_before, late, sent_peaks(budget), decoder_cpu,
              peak_rss_of(stack.http.decoder_pid))
    if paged:
        assert isinstance(source, MeterUsageSource)
        counts = source.pages.counts
        fetched, needs, planned, bound = lazy.customers, lazy.needs, lazy.planned, lazy.bound
        queries_count = lazy.queries
        page_figures = [
            figure("queries planned (before pages)", lazy.queries, "{:.0f}"),
            figure("pages added in advance (pre-split)",
                   counts.presplit - pages_before.presplit, "{:.0f}"),
            figure("pre-splits that one page would have held",
                   counts.unneeded - pages_before.unneeded, "{:.0f}"),
            figure("has_more answers (each a wasted request)",
                   counts.more - pages_before.more, "{:.0f}"),
            figure("client CPU s planning (in the run)", lazy.planning_seconds, "{:.2f}"),
        ]
    else:
        fetched, needs, planned, bound = list(load.customers), load.needs, load.planned, \
            load.bound
        queries_count = len(load.queries)
        page_figures = []
    ratio = planned / bound if bound else 1.0
    figures = [
        Figure("customers fetched", f"{len(fetched)}", note=f"of {len(ids)}"),
        figure("rules × customers (needs per cycle)", needs, "{:.0f}"),
        figure("requests per cycle (planned, pages counted)" if paged
               else "requests per cycle (planned)", planned, "{:.0f}"),
        figure("lower bound (pages counted)" if paged else "planner lower bound", bound,
               "{:.0f}"),
        figure("requests ÷ lower bound", ratio, "{:.2f}", "1.00", lambda v: v <= 1.0),
        *page_figures,
        figure("HTTP requests ÷ planned (has_more splits, retries)",
               sent / max(planned if paged else queries_count, 1), "{:.2f}"),
        *run_figures(run, args.rate, rss_target=True),
    ]
    if engine:
        figures += [figure("series evaluated (engine)", tally.series, "{:.0f}"),
                    figure("findings (engine)", tally.findings, "{:.0f}")]
    print_table(f"phase 1 at {latency * 1000:g} ms: mixed rule set ({len(rules)} rules), "
                f"{len(fetched)} customers, via {args.via}", figures)
    for failure in tally.failures[:3]:
        print(f"  failure: {failure}")
    if profiler is not None:
        print_profile(profiler)
    return run, ratio


def pacing_length(least: int, latency: float, rate: float, margin: float = 0.03) -> int:
    """Requests phase 2 sends: at least ``least``, and enough that the last latency (the
    final answers coming back, a wall no pace can shorten) is at most :data:`TAIL_SHARE` of
    the wall at the budget's pace. Pure.

    At the pace of ``rate · (1 − margin)`` per second, ``n`` requests take ``n / pace +
    latency`` of wall: 1,000 requests at 1 s took 10.3 s + 1 s, at most 88.5/s of wall, so
    the 1 s figure could not say whether the client kept the pace. 1 % rather than 2 %: at
    2 % a perfect run reaches only 95.06/s of wall, and the in-flight limit's ramp (sized for
    :data:`alertd.source.inflight.INITIAL_LATENCY` until the first answers are timed) alone
    costs more than that."""
    pace = rate * (1 - margin)
    return max(least, math.ceil(pace * latency * (1 / TAIL_SHARE - 1)))


async def pacing_phase(args: argparse.Namespace, sim: SimulatorProcess, stack: StripeStack,
                       customers: Sequence[Customer], latency: float) -> Run:
    ids = [c.id for c in customers]
    count = pacing_length(args.pacing, latency, args.rate)
    queries = pacing_queries((ids * (count // max(len(ids), 1) + 1))[:count],
                             int(time.time()))
    tally = Tally()
    lost_before = stack.http.budgets.analytics.stats().lost_seconds
    stack.http.budgets.analytics.reset_peaks()
    profiler = cProfile.Profile(time.thread_time) if args.profile else None
    if profiler is not None:
        profiler.enable()
    watch, sent, stats, pressure, late, decoder_cpu = await measured(
        sim, stack, len(queries), "requests",
        fetch_streaming(stack.source, queries, stack.http.settings.max_in_flight, tally))
    if profiler is not None:
        profiler.disable()
    run = Run(sent, tally.rows, len(tally.failures), watch, stats, peak_rss_mb(),
              stack.http.concurrency("analytics"), pressure,
              stack.http.budgets.analytics.stats().lost_seconds - lost_before, late,
              sent_peaks(stack.http.budgets.analytics), decoder_cpu,
              peak_rss_of(stack.http.decoder_pid))
    shards = stack.http.shards()
    print_table(f"phase 2 at {latency * 1000:g} ms: pacing alone, {len(queries)} one-row "
                "requests", [*run_figures(run, args.rate, rss_target=False), Figure(
                    "connection pools open / most connections one pool held (its walk "
                    "per request)", f"{len(shards)} / "
                    f"{max((s.peak_connections for s in shards), default=0)}",
                    f"<= {SHARD_CONNECTIONS} per pool")])
    if profiler is not None:
        print_profile(profiler)
    return run


async def one_latency(args: argparse.Namespace, latency: float) -> Measured:
    """Both phases against a simulator adding ``latency`` seconds to every answer."""
    print(f"\n=== {latency * 1000:g} ms latency ===")
    print(machine_note())
    print(f"starting the simulator: {args.customers} customers, {args.rate:g} analytics "
          f"requests/s, {latency * 1000:g} ms latency", flush=True)
    with Stopwatch() as startup:
        sim = SimulatorProcess(customers=args.customers, rate=int(args.rate), latency=latency)
        await sim.__aenter__()
    try:
        print(f"simulator up in {startup.wall:.1f} s at {sim.url}", flush=True)
        settings = simulator_settings(sim.url, rate=args.rate)
        settings = settings.model_copy(update={"stripe": settings.stripe.model_copy(
            update={"decode_answers_in": args.decode})})
        async with stripe_stack(settings, clock=SystemClock()) as stack:
            await stack.http.start_decoder()
            with Stopwatch() as listing:
                customers = await stack.directory.customers(CustomerSelection(all=True))
            print(f"listed {len(customers)} customers in {listing.wall:.1f} s "
                  f"({stack.http.requests} general requests)", flush=True)
            mixed, ratio = await mixed_phase(args, sim, stack, customers, latency)
            pacing = await pacing_phase(args, sim, stack, customers, latency) \
                if args.pacing else None
    finally:
        await sim.__aexit__(None, None, None)
    return Measured(latency, os.getloadavg()[0], mixed, ratio, pacing)


def print_summary(results: Sequence[Measured], rate: float) -> None:
    """Every latency side by side, with the targets, and what limited each run."""
    headers = [f"{m.latency * 1000:g} ms" for m in results]
    rows: list[tuple[str, list[str], str]] = []
    phases: list[tuple[str, list[Run | None]]] = [
        ("phase 1", [m.mixed for m in results]), ("phase 2", [m.pacing for m in results])]
    for phase, runs in phases:
        if all(run is None for run in runs):
            continue

        def each(value: Callable[[Run], str], of: list[Run | None] = runs) -> list[str]:
            return [value(run) if run is not None else "-" for run in of]

        if phase == "phase 1":
            rows.append(("phase 1: requests per cycle ÷ bound",
                         [f"{m.plan_ratio:.2f}" for m in results], "1.00"))
        rows += [
            (f"{phase}: achieved requests/s", each(lambda r: f"{r.requests / r.watch.wall:.1f}"),
             f">= {TARGET_RATE * rate:g}"),
            (f"{phase}: arrival rate at the simulator, requests/s",
             each(lambda r: f"{arrival_rate(r):.1f}"), f">= {TARGET_RATE * rate:g}"),
            (f"{phase}: most requests in any 1 s (simulator)",
             each(lambda r: f"{r.stats['peak_per_second']['analytics']}"), f"<= {rate:g}"),
            (f"{phase}: most sent in any 1 s / 1 s + guard (client)",
             each(lambda r: f"{r.sent_peaks[0]} / {r.sent_peaks[1]}"), ""),
            (f"{phase}: seconds over the budget (simulator)",
             each(lambda r: f"{r.stats.get('seconds_over_limit', {}).get('analytics', 0)}"),
             "0"),
            (f"{phase}: 429s", each(lambda r: f"{r.stats['rate_limited']}"), "0"),
            (f"{phase}: client CPU s per 1,000 requests",
             each(lambda r: f"{1000 * r.watch.cpu / max(r.requests, 1):.2f}"), ""),
            (f"{phase}:   of which the decoding process",
             each(lambda r: f"{1000 * r.decoder_cpu / max(r.requests, 1):.2f}"), ""),
            (f"{phase}: client CPU busy, % of wall",
             each(lambda r: f"{100 * r.watch.cpu / r.watch.wall:.0f}"), ""),
            (f"{phase}: machine short of CPU (PSI), % of wall",
             each(lambda r: f"{100 * r.pressure:.0f}" if r.pressure is not None else "-"), ""),
            (f"{phase}: in-flight limit / most in flight (simulator)",
             each(lambda r: f"{r.slots.limit} / {r.stats.get('max_in_flight', '-')}"), ""),
            (f"{phase}: pace given up to a busy event loop, s",
             each(lambda r: f"{r.lost:.2f}"), "0"),
            (f"{phase}: event loop's timers late, p99 / most, ms",
             each(lambda r: f"{1000 * r.late[0]:.1f} / {1000 * r.late[1]:.0f}"), ""),
        ]
    name_width = max(len(name) for name, _, _ in rows)
    widths = [max(len(h), *(len(values[i]) for _, values, _ in rows))
              for i, h in enumerate(headers)]
    print(f"\nsummary: {rate:g} requests/s budget at each latency")
    header = "  ".join(f"{h:>{w}}" for h, w in zip(headers, widths, strict=True))
    print(f"{'':<{name_width}}  {header}  target")
    for name, values, target in rows:
        cells = "  ".join(f"{v:>{w}}" for v, w in zip(values, widths, strict=True))
        print(f"{name:<{name_width}}  {cells}  {target}".rstrip())
    print("limited by:")
    for m in results:
        parts = [f"phase 1 {limited_by(m.mixed, rate, m.load)}"]
        if m.pacing is not None:
            parts.append(f"phase 2 {limited_by(m.pacing, rate, m.load)}")
        print(f"  {m.latency * 1000:g} ms: " + "; ".join(parts))
    print(machine_note())


async def main(args: argparse.Namespace) -> None:
    gctune.tune()  # the collector's pace of `alertd run` (alertd.gctune)
    print(machine_note())
    results = [await one_latency(args, latency) for latency in args.latencies]
    print_summary(results, args.rate)


def latencies(text: str) -> list[float]:
    values = [float(part) for part in text.split(",") if part.strip()]
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"not a list of latencies in seconds: {text!r}")
    return values


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--max-requests", type=int, default=None,
                        help="fetch only the first customers whose planned requests fit")
    parser.add_argument("--rate", type=float, default=100.0,
                        help="analytics requests/s, enforced by the simulator and budgeted here")
    parser.add_argument("--latencies", type=latencies, default=latencies(DEFAULT_LATENCIES),
                        help="seconds added to every answer, one run each (comma-separated; "
                             f"default {DEFAULT_LATENCIES})")
    parser.add_argument("--latency", type=float, dest="latencies_one", default=None,
                        help="a single latency (the same as --latencies with one value)")
    parser.add_argument("--pacing", type=int, default=1000,
                        help="one-row requests of phase 2, at least (more at a long latency, "
                             "see pacing_length; 0: skip it)")
    parser.add_argument("--plan-batch", type=int, default=20,
                        help="plan this many customers at a time as the fetch goes, with "
                             "the pages the source expects (0: all at once before fetching, "
                             "no pages counted)")
    parser.add_argument("--via", choices=("source", "engine"), default="source")
    parser.add_argument("--decode", choices=("thread", "process"), default="thread",
                        help="where large answers are decoded (stripe.decode_answers_in; "
                             "the daemon's default: thread)")
    parser.add_argument("--profile", action="store_true", help="cProfile both phases")
    args = parser.parse_args()
    if args.latencies_one is not None:
        args.latencies = [args.latencies_one]
    return args


if __name__ == "__main__":
    asyncio.run(main(parse_args()))

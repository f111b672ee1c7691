"""Evaluation throughput, and the wall time of a ``--dry-run`` pass against the simulator.

Usage::

    python bench/dryrun.py [--eval-customers 100] [--repeat 3] [--customers 1000] [--rate 100]
                           [--latency 0.02] [--rule-files 'rules/*.yaml'] [--skip-pass]

**Part 1 — evaluation throughput, pure, one core.** For each rule of the mixed set of
``bench/planner.py`` (or of ``--rule-files``) and ``--eval-customers`` customers, the rows its
data need asks for are built in memory first (every bucket of the need's range, one row per
group-by value set: 3 models, 2 tiers, 4 endpoints; a daily and weekly cycle, noise, a partial
current bucket). Then, timed: ``conditions.needs`` + ``build_series`` for every (rule,
customer) and ``conditions.evaluate_many`` over the series of each rule's batch of up to
:data:`~alertd.service.engine.BATCH_CUSTOMERS` customers, as the engine judges them, per
condition type, the least CPU time (``time.process_time``) of ``--repeat`` runs. The rows are
handed as columns (:class:`alertd.usage_columns.UsageColumns`), as the analytics source hands
them. Printed: series evaluated per second and rows per second, per type and in all, and the
CPU one cycle of 1,000 customers would spend; for the anomaly kind, the whole evaluation
against its target (≥ 5,000 series/s, issue 12), and the detector alone on the same series'
values, in the evaluation's batches (``assess_many``) and one series at a time (``assess``).

**Part 2 — one ``--dry-run`` pass** over ``--customers`` customers of a simulator in a child
process (``--rate`` analytics requests/s, ``--latency`` s per answer): the customer listing,
``Engine.run_pass`` (plan, fetch, series, evaluation) and the notification pipeline in dry-run
(``alertd.commands.check.record``, an in-memory store, nothing sent), each timed, beside the
lower bound the rate budget sets: planned requests ÷ rate. The pass keeps every answer until
it ends, so its peak RSS is printed too.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alertd import conditions
from alertd.calendar import periods
from alertd.clock import SystemClock, parse_instant
from alertd.commands.check import record
from alertd.conditions import anomaly_eval
from alertd.conditions.anomaly import AnomalyCondition
from alertd.conditions.anomaly_model import Array, Settings, assess, assess_many
from alertd.conditions.columns import columns_of
from alertd.conditions.series import build_series
from alertd.config.settings import CustomerSelection
from alertd.model import Customer, DataNeed, UsageRow
from alertd.planner import plan
from alertd.rules.loader import RuleSet, load_rules
from alertd.rules.schema import Rule
from alertd.service.engine import BATCH_CUSTOMERS
from alertd.service.open import Collaborators, open_services
from alertd.service.world import World
from alertd.sim.testing import SimulatorProcess
from alertd.usage_columns import UsageColumns
from bench.common import (
    SIM_QUOTA_KEY,
    Figure,
    Stopwatch,
    figure,
    machine_note,
    mixed_rules,
    peak_rss_mb,
    print_table,
    report_progress,
    simulator_settings,
)
from bench.lower_bound import lower_bound

#: The dimension values the synthetic rows take, as the simulator's meters have them.
VALUES = {
    "model": ("gpt-4", "gpt-4o-mini", "claude-3"),
    "tier": ("standard", "premium"),
    "endpoint": ("chat", "embeddings", "search", "images"),
}
FRESHNESS_LAG = 300.0
REFRESH_LAG = 60


# --------------------------------------------------------------------------- part 1


def groups(rule: Rule) -> list[tuple[tuple[str, str], ...]]:
    """Every group-by value set a rule's rows carry (one empty set without group-by)."""
    sets: list[tuple[tuple[str, str], ...]] = [()]
    for key in rule.group_by:
        sets = [(*s, (key, value)) for s in sets for value in VALUES.get(key, ("a", "b"))]
    return [tuple(sorted(s)) for s in sets]


def synthetic_rows(rule: Rule, need: DataNeed, now: int, rng: random.Random) -> list[UsageRow]:
    """The rows a source would return for ``need``: every bucket × group, a daily and weekly
    cycle with noise; the running bucket holds only the part already elapsed."""
    scale = rng.uniform(500, 5000)
    rows = []
    for period in periods(need.starts_at, need.ends_at, need.granularity, need.timezone):
        hour = (period.starts_at // 3600) % 24
        weekday = (period.starts_at // 86400) % 7
        cycle = (1 + 0.5 * math.sin(2 * math.pi * hour / 24)) * (0.7 if weekday >= 5 else 1.0)
        elapsed = min(1.0, max(0.0, (now - period.starts_at) / (period.ends_at - period.starts_at)))
        for group in groups(rule):
            value = scale * cycle * rng.uniform(0.8, 1.2) * elapsed
            rows.append(UsageRow(period.starts_at, period.ends_at, round(value), rule.meter,
                                 group))
    return rows


@dataclass(frozen=True, slots=True)
class Case:
    """One (rule, customer) with its rows, built before timing starts."""

    rule: Rule
    customer: Customer
    rows: UsageColumns


def build_cases(rules: Sequence[Rule], count: int, now: int, seed: int) -> list[Case]:
    rng = random.Random(seed)
    customers = [Customer(f"cus_bench_{i:05d}", metadata={SIM_QUOTA_KEY: str(rng.randint(
        10_000, 100_000))}) for i in range(count)]
    cases = []
    for rule in rules:
        for customer in customers:
            need = conditions.needs(rule, customer.id, now)[0]
            # As the source hands them: columns (alertd.usage_columns), not row objects.
            rows = UsageColumns.of(synthetic_rows(rule, need, now, rng))
            cases.append(Case(rule, customer, rows))
    return cases


def evaluate_cases(cases: Sequence[Case], now: int, batch: int = BATCH_CUSTOMERS
                   ) -> tuple[int, int]:
    """needs + build_series for each case, then ``conditions.evaluate_many`` over the series of
    up to ``batch`` consecutive cases of one rule, as the engine judges a batch of customers;
    returns (series, rows) evaluated."""
    series_count = rows = 0
    refreshed_at = now - REFRESH_LAG
    start = 0
    while start < len(cases):
        rule = cases[start].rule
        stop = start
        while stop < len(cases) and stop - start < batch and cases[stop].rule is rule:
            stop += 1
        items = []
        for case in cases[start:stop]:
            need = conditions.needs(rule, case.customer.id, now)[0]
            items += [(series, case.customer) for series in build_series(
                rule, need, case.rows, refreshed_at, now=now, freshness_lag=FRESHNESS_LAG)]
            rows += len(case.rows)
        conditions.evaluate_many(rule, items, now)
        series_count += len(items)
        start = stop
    return series_count, rows


def best_cpu(run: Callable[[], object], repeat: int) -> float:
    """The least CPU time of ``repeat`` runs: on a loaded machine the steadiest figure."""
    times = []
    for _ in range(repeat):
        with Stopwatch() as watch:
            run()
        times.append(watch.cpu)
    return min(times)


def assess_inputs(cases: Sequence[Case], now: int, batch: int = BATCH_CUSTOMERS
                  ) -> list[tuple[Array, Settings]]:
    """What :func:`assess_many` is handed for the anomaly series of ``cases`` that are judged:
    the evaluator's own steps (latest complete bucket, history, local values) before it, and
    the series of up to ``batch`` consecutive cases of one rule stacked by length, as
    :meth:`~alertd.conditions.anomaly_eval.AnomalyEvaluator.evaluate_many` stacks them."""
    batches = []
    for start in range(0, len(cases), batch):
        by_length: dict[tuple[str, int], list[Array]] = defaultdict(list)
        configs: dict[tuple[str, int], Settings] = {}
        for case in cases[start:start + batch]:
            condition = cast("AnomalyCondition", case.rule.condition)
            plan_ = anomaly_eval.plan_for(case.rule.window)
            need = conditions.needs(case.rule, case.customer.id, now)[0]
            for series in build_series(case.rule, need, case.rows, now - REFRESH_LAG, now=now,
                                       freshness_lag=FRESHNESS_LAG):
                columns = columns_of(series.buckets)
                judged_at = anomaly_eval.latest_complete(columns)
                if judged_at is None or anomaly_eval.history_shortfall(
                        columns, judged_at, condition.min_history) is not None:
                    continue
                values = anomaly_eval.judged_values(columns, judged_at, plan_,
                                                    case.rule.timezone, condition.exclude)
                if values is not None:
                    key = (case.rule.name, len(values))
                    by_length[key].append(values)
                    configs[key] = anomaly_eval.settings_for(condition, plan_)
        batches += [(np.stack(rows), configs[key]) for key, rows in by_length.items()]
    return batches


def detector_figures(cases: Sequence[Case], now: int, whole_cpu: float, series: int,
                     repeat: int) -> list[Figure]:
    """The anomaly kind against its target, and the detector alone on the same series'
    values: in batches (:func:`assess_many`, as the evaluation runs it) and one series at a
    time (:func:`assess`, as before batches), apart from building series and findings."""
    inputs = assess_inputs(sorted(cases, key=lambda c: c.rule.name), now)
    judged = sum(len(block) for block, _ in inputs)
    batched = best_cpu(lambda: [assess_many(block, s) for block, s in inputs], repeat)
    alone = best_cpu(lambda: [assess(row, s) for block, s in inputs for row in block], repeat)
    per_series, per_batched = whole_cpu / series, batched / max(judged, 1)
    return [
        figure("anomaly: whole evaluation, series/s", series / whole_cpu, "{:,.0f}", "≥ 5,000",
               lambda v: v >= 5000),
        Figure("anomaly: assess_many alone, series/s", f"{judged / batched:,.0f}",
               note=f"{1e3 * per_batched:.3f} ms of {1e3 * per_series:.3f} ms per series "
                    f"({len(inputs)} batches); the rest (needs, series, local time, finding) "
                    f"{1e3 * (per_series - per_batched):.3f} ms"),
        Figure("anomaly: assess one series at a time, series/s", f"{judged / alone:,.0f}",
               note=f"{1e3 * alone / max(judged, 1):.3f} ms per series"),
    ]


def throughput(rules: Sequence[Rule], customers: int, now: int, repeat: int) -> None:
    by_type: dict[str, list[Rule]] = defaultdict(list)
    for rule in rules:
        by_type[rule.condition.type].append(rule)
    figures: list[Figure] = []
    detector: list[Figure] = []
    total_series = total_rows = 0
    total_time = 0.0
    for kind, kind_rules in sorted(by_type.items()):
        cases = build_cases(kind_rules, customers, now, seed=len(kind))
        evaluate_cases(cases[:20], now)  # warm caches (zone info, slot tables) first
        series, rows = evaluate_cases(cases, now)
        cpu = best_cpu(lambda cases=cases: evaluate_cases(cases, now), repeat)
        total_series, total_rows, total_time = (total_series + series, total_rows + rows,
                                                total_time + cpu)
        figures.append(Figure(
            f"{kind} ({len(kind_rules)} rules)", f"{series / cpu:,.0f} series/s",
            note=f"{rows / cpu:,.0f} rows/s, {1e3 * cpu / series:.2f} ms/series"))
        if kind == "anomaly":
            detector = detector_figures(cases, now, cpu, series, repeat)
    per_customer = total_time / customers
    figures += [
        Figure("all", f"{total_series / total_time:,.0f} series/s",
               note=f"{total_rows / total_time:,.0f} rows/s, {total_series} series"),
        figure("evaluation CPU s per cycle of 1,000 customers", 1000 * per_customer, "{:.1f}"),
        *detector,
    ]
    print_table(f"part 1: evaluation throughput, {customers} customers × {len(rules)} rules, "
                f"one core (CPU time, least of {repeat} runs)", figures)


# --------------------------------------------------------------------------- part 2


async def dry_run_pass(args: argparse.Namespace, rules: RuleSet) -> None:
    print(f"\nstarting the simulator: {args.customers} customers, {args.rate:g} requests/s, "
          f"{args.latency * 1000:g} ms latency", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        async with SimulatorProcess(customers=args.customers, rate=int(args.rate),
                                    latency=args.latency) as sim:
            settings = simulator_settings(
                sim.url, rate=args.rate, state_path=Path(scratch) / "alertd.db",
                receivers=[{"name": "ops", "webhook": {"url": "http://127.0.0.1:9/never"}}],
                route={"receiver": "ops"})
            world = World(settings, rules, None)
            await _measure_pass(world, sim, args.rate)


async def _measure_pass(world: World, sim: SimulatorProcess, rate: float) -> None:
    clock = SystemClock()
    # As ``alertd --dry-run`` opens them with no state file yet: an in-memory store, no delivery.
    async with open_services(world, Collaborators(clock), state=":memory:",
                             deliver=False) as services:
        stack = services.stripe
        with Stopwatch() as listing:
            customers = await stack.directory.customers(CustomerSelection(all=True))
            meters = await stack.directory.meters()
        now = int(clock.now())
        needs = [conditions.needs(r, c.id, now)[0] for r in world.rules for c in customers]
        planned, bound = len(plan(needs).queries), lower_bound(needs)
        del needs
        print(f"{len(customers)} customers, {planned} planned requests: the rate budget alone "
              f"needs {planned / rate:.0f} s; running the pass", flush=True)
        engine = services.engine
        await asyncio.to_thread(sim.reset_stats)
        sent_before = stack.http.requests
        progress = asyncio.create_task(report_progress(
            lambda: stack.http.requests - sent_before, planned, "requests"))
        try:
            with Stopwatch(sim.pid) as passing:
                result = await engine.run_pass(now)
        finally:
            progress.cancel()
        sent = stack.http.requests - sent_before
        with Stopwatch() as pipeline:
            outcome = await record(services.lanes[0], result, meters, dry_run=True)
    total = listing.wall + passing.wall + pipeline.wall
    states = Counter(f.state for f in outcome.findings)
    would_send = sum(1 for d in outcome.decisions if d.notification is not None)
    stats = await asyncio.to_thread(sim.stats)
    print_table(f"part 2: --dry-run pass, {len(customers)} customers × {len(world.rules)} rules", [
        figure("planned requests", planned, "{:.0f}"),
        figure("planner lower bound", bound, "{:.0f}"),
        figure("HTTP requests sent (has_more splits, retries)", sent, "{:.0f}"),
        figure("lower bound: planned ÷ rate, s", planned / rate, "{:.1f}"),
        figure("customers and meters listed, s", listing.wall, "{:.1f}"),
        figure("Engine.run_pass wall, s", passing.wall, "{:.1f}"),
        figure("  of which CPU here, s", passing.cpu, "{:.1f}"),
        figure("  simulator CPU, s", passing.child_cpu, "{:.1f}"),
        figure("pipeline (dry run) wall, s", pipeline.wall, "{:.1f}"),
        figure("dry-run total wall, s", total, "{:.1f}"),
        Figure("total ÷ lower bound", f"{total / (planned / rate):.2f}", note="1.00 is the floor"),
        Figure("achieved requests/s", f"{sent / passing.wall:.1f}", note=f"limit {rate:g}"),
        figure("429s", stats["rate_limited"], "{:.0f}", "0", lambda v: v == 0),
        figure("series evaluated", len(result.series), "{:.0f}"),
        Figure("findings", f"{len(outcome.findings)}",
               note=", ".join(f"{n} {s}" for s, n in states.most_common())),
        figure("notifications that would be sent", would_send, "{:.0f}"),
        figure("failed requests", len(result.failures), "{:.0f}", "0", lambda v: v == 0),
        figure("peak RSS of this process, MB", peak_rss_mb(), "{:.0f}"),
    ])


# --------------------------------------------------------------------------- main


def load(args: argparse.Namespace) -> RuleSet:
    if args.rule_files is None:
        return RuleSet(tuple(mixed_rules()))
    settings = simulator_settings("http://127.0.0.1:9")
    return load_rules(sorted(Path().glob(args.rule_files)), settings)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--eval-customers", type=int, default=100)
    parser.add_argument("--at", default="2025-03-12T15:37:00Z", help="'now' of part 1")
    parser.add_argument("--repeat", type=int, default=3,
                        help="timed runs of part 1; the least CPU time is printed")
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--rule-files", help="a glob of rule files instead of the mixed set")
    parser.add_argument("--skip-pass", action="store_true", help="part 1 only")
    args = parser.parse_args()
    rules = load(args)
    print(machine_note())
    throughput(rules.rules, args.eval_customers, parse_instant(args.at, time.time()),
               args.repeat)
    if not args.skip_pass:
        asyncio.run(dry_run_pass(args, rules))


if __name__ == "__main__":
    main()

"""``alertd backtest``'s replay CPU: customers judged together at each instant (what the
command does) against one customer, one instant at a time (how it replayed before), on the
README tour's data and rules.

Usage::

    python bench/backtest.py [--since 30d] [--customers 40] [--rule-files 'rules/*.yaml']
                             [--skip-before] [--command] [--profile]

The README tour's command is ``alertd backtest --since 30d`` against ``alertd simulate``
(40 customers, 90 days, seed 1) with the example rules (``rules/*.yaml``) and ``customers:
{all: true}``. This bench starts that simulator in a child process, fetches the histories once
through the command's own path (:func:`alertd.commands.backtest.prepare`), then times, in this
process (``time.process_time``: CPU, not wall, since the machine is shared):

- **after**: :func:`alertd.backtest.replay_all` per rule, as the command runs it (a rule's
  customers judged together at each instant, :mod:`alertd.backtest.batching`);
- **before**: each (rule, customer) alone, :func:`~alertd.backtest.history.history_of`,
  :func:`~alertd.backtest.evaluating.evaluations` (one ``evaluate_many`` per instant, of that
  customer's series) and :func:`~alertd.backtest.replaying.lifecycle_changes` — what
  :func:`~alertd.backtest.replaying.replay_changes` does. Its series are today's (an anomaly
  rule's handed as columns, :func:`~alertd.backtest.history.reads_columns`), so this
  isolates batching; the code before both changes is measured by running the command of an
  older checkout (``--command`` here, ``PYTHONPATH`` pointing at the older tree);
- the notification replay and the report, once per path, and whether the two reports (JSON and
  text) are identical, which they must be.

Printed per rule and in all: series-instants judged (one series' findings at one evaluated
instant; the same count for both paths), CPU seconds before and after, and series-instants per
CPU second. ``--command`` also runs the tour's command itself in a child process against the
same simulator and prints its CPU seconds (fetching and start-up included; the issue saw about
100 s before batching). ``--profile`` prints where the after path's time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alertd import conditions
from alertd.backtest import (
    Change,
    Replayed,
    ReplayFailure,
    ReplayWindow,
    RuleFrame,
    evaluations,
    firings_of,
    lifecycle_changes,
    replay_all,
    within_data,
)
from alertd.backtest.history import history_of
from alertd.clock import SystemClock
from alertd.commands.backtest import Prepared, prepare, replay_window, report_of
from alertd.commands.backtest_report import backtest_json, backtest_text
from alertd.commands.output import dumps
from alertd.rules.schema import Rule
from alertd.service.open import Collaborators, open_services
from alertd.service.world import load_world
from alertd.sim.testing import API_KEY, SimulatorProcess
from bench.common import Stopwatch, machine_note, print_profile

ROOT = Path(__file__).resolve().parent.parent
TOUR = "alertd backtest --since 30d"


def tour_config(folder: Path, url: str, rule_files: str) -> Path:
    """The README tour's configuration (tests/test_tour.py writes the same)."""
    config = folder / "alertd.yaml"
    config.write_text(
        f'stripe: {{api_base: "{url}", api_key: {API_KEY}}}\n'
        f"state: {{path: {folder / 'alertd.db'}}}\n"
        'server: {listen: ""}\n'
        f'rule_files: ["{rule_files}"]\n'
        "customers: {all: true}\n"
        "receivers:\n  - name: ops\n    email: {to: [ops@example.com]}\n"
        "route: {receiver: ops}\n")
    return config


async def fetched(config: Path, since: str) -> tuple[Prepared, ReplayWindow]:
    world = load_world(config)
    now = SystemClock().now()
    window = replay_window(since, None, now, world.settings.stripe.freshness_lag)
    async with open_services(world, Collaborators(SystemClock()), deliver=False) as services:
        prepared = await prepare(services.lanes[0].engine, window, None, None, None)
    return prepared, within_data(window, prepared.histories.refreshed_at)


@dataclass(slots=True)
class RuleRun:
    rule: Rule
    judged: int = 0
    before: float = 0.0
    after: float = 0.0


def one_at_a_time(rule: Rule, prepared: Prepared, window: ReplayWindow, run: RuleRun
                  ) -> tuple[list[Change], list[ReplayFailure]]:
    """``rule`` replayed one customer, one instant at a time; counts series-instants."""
    changes: list[Change] = []
    failures: list[ReplayFailure] = []
    frame = RuleFrame.of(rule, window)
    for customer in prepared.by_rule[rule.name]:
        try:
            history = history_of(frame, customer, prepared.histories.rows[(rule.name,
                                                                           customer.id)])
            steps = evaluations(history, customer, window)
            run.judged += sum(len(findings) for _, findings in steps)
            changes += lifecycle_changes(rule, steps, window)
        except Exception as exc:
            failures.append(ReplayFailure(rule.name, customer.id,
                                          f"{type(exc).__name__}: {exc}"))
    return changes, failures


def merged(parts: Sequence[tuple[Sequence[Change], Sequence[ReplayFailure]]],
           window: ReplayWindow) -> Replayed:
    """Per-rule replays as one, in :func:`replay_all`'s order."""
    changes = sorted((c for part, _ in parts for c in part),
                     key=lambda c: (c.at, c.finding.key.rule, c.finding.key.customer,
                                    c.finding.key.group))
    failures = tuple(f for _, part in parts for f in part)
    return Replayed(tuple(firings_of(changes, window.since)), tuple(changes), failures)


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:,.0f}" if seconds > 0 else "-"


def print_rules(runs: Sequence[RuleRun], notify: tuple[float, float], before: bool) -> None:
    print(f"\n{'rule':<26} {'kind':<9} {'series-instants':>15} {'before s':>9} "
          f"{'after s':>8} {'before /s':>10} {'after /s':>10}")
    for run in runs:
        kind = conditions.kind_of(run.rule).type
        print(f"{run.rule.name:<26} {kind:<9} {run.judged:>15,} "
              f"{run.before if before else float('nan'):>9.2f} {run.after:>8.2f} "
              f"{rate(run.judged, run.before) if before else '-':>10} "
              f"{rate(run.judged, run.after):>10}")
    judged = sum(r.judged for r in runs)
    total_before = sum(r.before for r in runs) + notify[0]
    total_after = sum(r.after for r in runs) + notify[1]
    print(f"{'notifications + report':<26} {'':<9} {'':>15} "
          f"{notify[0] if before else float('nan'):>9.2f} {notify[1]:>8.2f}")
    print(f"{'replay in all':<26} {'':<9} {judged:>15,} "
          f"{total_before if before else float('nan'):>9.2f} {total_after:>8.2f} "
          f"{rate(judged, total_before) if before else '-':>10} "
          f"{rate(judged, total_after):>10}")


def run_command(config: Path, since: str) -> tuple[float, float]:
    """The tour's command in a child process: (CPU seconds, wall seconds)."""
    started = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.perf_counter()
    subprocess.run([sys.executable, "-m", "alertd", "backtest", "--since", since, "-c",
                    str(config)], cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    ended = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (ended.ru_utime - started.ru_utime) + (ended.ru_stime - started.ru_stime)
    return cpu, time.perf_counter() - wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--since", default="30d", help="replay from (default: 30d, the tour's)")
    parser.add_argument("--customers", type=int, default=40, help="simulator customers")
    parser.add_argument("--rule-files", default=str(ROOT / "rules" / "*.yaml"))
    parser.add_argument("--skip-before", action="store_true",
                        help="time the batched replay only")
    parser.add_argument("--command", action="store_true",
                        help="also run the tour's command itself and print its CPU")
    parser.add_argument("--profile", action="store_true", help="profile the batched replay")
    args = parser.parse_args()
    print(machine_note())
    with SimulatorProcess(customers=args.customers, days=90, seed=1) as sim, \
            tempfile.TemporaryDirectory() as folder:
        config = tour_config(Path(folder), sim.url, args.rule_files)
        prepared, window = asyncio.run(fetched(config, args.since))
        print(f"{len(prepared.rules)} rules, {args.customers} customers, "
              f"{(window.until - window.since) / 86400:.1f} days replayed "
              f"({prepared.histories.requests} Stripe requests fetched once)")
        runs = [RuleRun(rule) for rule in prepared.rules]
        profiler = cProfile.Profile() if args.profile else None
        before_parts, after_parts = [], []
        for run in runs:  # before and after rule by rule, so both see about the same load
            if not args.skip_before:
                with Stopwatch() as watch:
                    before_parts.append(one_at_a_time(run.rule, prepared, window, run))
                run.before = watch.cpu
            with Stopwatch() as watch:
                if profiler is not None:
                    profiler.enable()
                replayed = replay_all([run.rule], prepared.by_rule, prepared.histories.rows,
                                      window)
                if profiler is not None:
                    profiler.disable()
            run.after = watch.cpu
            after_parts.append((replayed.changes, replayed.failures))
        with Stopwatch() as after_notify:
            after = report_of(prepared, merged(after_parts, window), window)
            after_text = (dumps(backtest_json(after, 0)), backtest_text(after, 0))
        notify = (0.0, after_notify.cpu)
        if not args.skip_before:
            with Stopwatch() as before_notify:
                before = report_of(prepared, merged(before_parts, window), window)
                before_text = (dumps(backtest_json(before, 0)), backtest_text(before, 0))
            notify = (before_notify.cpu, after_notify.cpu)
        print_rules(runs, notify, not args.skip_before)
        print(f"\n{len(after.firings)} firings, {len(after.notifications)} notifications, "
              f"{len(after.failures)} failures")
        if not args.skip_before:
            same = before_text == after_text
            print(f"reports identical (JSON and text), before vs after: "
                  f"{'yes' if same else 'NO'}")
        print(machine_note())
        if args.command:
            cpu, wall = run_command(config, args.since)
            print(f"\n{TOUR} (the README tour's command, child process): {cpu:.1f} CPU s, "
                  f"{wall:.1f} s wall; {machine_note()}")
        if profiler is not None:
            print_profile(profiler, 25)


if __name__ == "__main__":
    main()

"""Crossing → notification latency for 100,000 customers in one 100 requests/s budget: the
deadline scheduler against polling everyone round-robin (issue 13, item 2).

Usage::

    python bench/latency.py [--customers 100000] [--rate 100] [--every 3600] [--tick 30]
                            [--start 6] [--end 20] [--seed 1] [--safety 3]

The account: ``--customers`` simulated customers (:class:`alertd.sim.generator.UsageGenerator`,
its default incident mix), one rule ``tokens-over-quota``: today's tokens (UTC day) ``>=`` the
customer's ``daily_token_quota`` metadata, ``every: --every``. The day is the second of an
incident block, so about 1.4 % of the customers have an ``overuse`` incident that day (3–6 h
between 08:00 and 18:00 UTC adding 1.3–1.8 × the quota); everyone else stays below 60 % of
the quota by construction, many far below (utilisation 35–100 % of that, drops, stops), a few
near it (spikes take a day to ~92 %). Run from ``--start`` to ``--end`` o'clock UTC.

**What is real.** The usage: every customer's visible running day total at any instant, from
the generator's slots (:meth:`~alertd.sim.generator.UsageGenerator.arrivals`: 15-minute slots
published when they end, late parts later), never materialising an event. The rule (the rule
schema), its evaluator (``threshold``'s :meth:`evaluate` on the series a read returns) and the
alert lifecycle (:func:`alertd.alerts.apply`). The deadline arithmetic
(:mod:`alertd.deadlines`) and the scheduler's book (:class:`alertd.service.schedule.DeadlineBook`
— ``admit``, ``take`` with the daemon's per-tick budget of ``rate × tick`` requests,
``observe`` — the calls the daemon makes at every tick).

**What is simulated.** Time: a virtual clock, discrete events, not real seconds (100,000
customers over HTTP in real time would take the whole day). Stripe: a read at ``t`` returns the
visible total at ``t`` without HTTP; requests start exactly ``1 / rate`` apart whenever there
is work, so the budget is never exceeded by construction (in the daemon,
:mod:`alertd.source.ratelimit` paces them). A tick's findings count as notified when its last
request has been answered, as the daemon records a poll's findings at its end. Stripe's
freshness lag is excluded: a crossing's instant is when the data showing it becomes visible.

**Round-robin**, the comparison: every customer in a fixed order, back to back at the full
rate, so each is read every ``customers / rate`` seconds (a single pass); a crossing is counted
as notified at the read that first shows it (generous: a real pass records at its end).

Printed: crossings, detected by each scheduler, p50/p99/max crossing → notification latency
(targets: deadline p99 ≤ 15 min; round-robin's single pass ≥ 17 min at 100,000 customers and
100 requests/s, listing included), requests used ÷ budget, the latency distribution, CPU
seconds and peak RSS.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alertd.alerts import AlertState, Policy, apply, describe
from alertd.conditions.registry import kind_of
from alertd.deadlines import Pacing
from alertd.model import Bucket, Customer, Finding, Series, SeriesKey
from alertd.rules.schema import Rule
from alertd.service.schedule import DeadlineBook
from alertd.sim.generator import UsageGenerator
from alertd.sim.incidents import BLOCK_SECONDS
from alertd.sim.profiles import DAY_SECONDS, SLOT_SECONDS, SLOTS_PER_DAY, TOKENS
from bench.common import figure, machine_note, peak_rss_mb, percentile, print_table

HOUR = 3600
#: A day with incidents: the second day of an incident block (history starts 40 days back).
_BASE_NOW = 1_741_564_800 + 40 * DAY_SECONDS
#: Customers a page of ``GET /v1/customers`` lists, and the general budget's default rate.
PAGE, GENERAL_RATE = 100, 20.0
LATENCY_BANDS = (60, 120, 300, 600, 900, 1800, 3600)


@dataclass(slots=True)
class Account:
    """One simulated account's day: each customer's visible total at every slot end."""

    day: int
    ids: list[str]
    quotas: np.ndarray
    grid: np.ndarray  # (customers, 96) int64: the total visible from the end of slot k
    index: dict[str, int] = field(default_factory=dict)

    def total_at(self, customer: int, instant: float) -> int:
        slots = min(SLOTS_PER_DAY, int((instant - self.day) // SLOT_SECONDS))
        return int(self.grid[customer, slots - 1]) if slots > 0 else 0

    def crossing(self, customer: int) -> int | None:
        """When the visible total first reaches the quota (``None``: not today)."""
        hits = np.flatnonzero(self.grid[customer] >= self.quotas[customer])
        return self.day + (int(hits[0]) + 1) * SLOT_SECONDS if len(hits) else None


def build_account(customers: int, seed: int) -> Account:
    """The generator's day for ``customers`` customers (about 20 s per 100,000)."""
    generator = UsageGenerator(customers=customers, seed=seed, days=40, now=_BASE_NOW)
    start = generator.history_start
    blocks = (_BASE_NOW - start) // BLOCK_SECONDS
    day = start + blocks * BLOCK_SECONDS + DAY_SECONDS
    slot_ends = day + SLOT_SECONDS * np.arange(1, SLOTS_PER_DAY + 1)
    grid = np.zeros((customers, SLOTS_PER_DAY), dtype=np.int64)
    ids, quotas = [], np.zeros(customers, dtype=np.int64)
    for number, profile in enumerate(generator.profiles()):
        arrivals = generator.arrivals(profile.id, TOKENS.id, day, day + DAY_SECONDS)
        seen = np.searchsorted(arrivals.visible_at, slot_ends, side="right")
        grid[number] = np.where(seen > 0, arrivals.totals[np.maximum(seen - 1, 0)], 0)
        ids.append(profile.id)
        quotas[number] = int(profile.metadata["daily_token_quota"])
    return Account(day, ids, quotas, grid, {cid: n for n, cid in enumerate(ids)})


def quota_rule(every: float) -> Rule:
    return Rule.model_validate({
        "name": "tokens-over-quota", "meter": TOKENS.id, "window": "day", "every": every,
        "condition": {"type": "threshold", "op": ">=",
                      "value_from": {"metadata": "daily_token_quota"}}})


@dataclass(slots=True)
class Reader:
    """A read of one customer: the series Stripe would return, the real evaluator, the real
    lifecycle. Keeps each customer's alert state."""

    account: Account
    rule: Rule
    policy: Policy
    states: dict[str, AlertState] = field(default_factory=dict)
    reads: int = 0
    per_customer: Counter[str] = field(default_factory=Counter)

    def read(self, customer: str, at: float, now: int) -> Finding:
        number = self.account.index[customer]
        day = self.account.day
        series = Series(SeriesKey(self.rule.name, customer), TOKENS.id, (), "day", "UTC",
                        (Bucket(day, day + DAY_SECONDS,
                                float(self.account.total_at(number, at)), False),),
                        refreshed_at=int(at))
        who = Customer(customer, metadata={
            "daily_token_quota": str(int(self.account.quotas[number]))})
        finding = kind_of(self.rule).evaluate(self.rule, series, who, now)
        before = self.states.get(customer)
        state, steps = apply(before, finding, self.policy, now)
        self.states[customer] = state
        self.reads += 1
        self.per_customer[customer] += 1
        return replace(finding, state=describe(before, state, steps, finding))


@dataclass(frozen=True, slots=True)
class Run:
    detected: dict[str, float]  # customer → when its first firing finding was recorded
    reads: int
    busy: float  # seconds of the budget used
    per_customer: Counter[str] = field(default_factory=Counter)


def run_deadlines(account: Account, rule: Rule, args: argparse.Namespace) -> Run:
    """The daemon's tick loop on a virtual clock: each tick takes the due customers (the
    book's budget cap), reads them back to back at ``rate``, then books what they showed."""
    pacing = Pacing(safety=args.safety, min_interval=60.0, peak_half_life=86_400.0,
                    freshness_lag=300.0)
    book = DeadlineBook(rule.every, pacing)
    book.admit(account.ids)
    reader = Reader(account, rule, Policy.of(rule))
    rules = {rule.name: rule}
    detected: dict[str, float] = {}
    start, end = account.day + args.start * HOUR, account.day + args.end * HOUR
    now, busy = float(start), 0.0
    while now < end:
        taken = book.take(now, args.rate * args.tick)
        if not taken:
            upcoming = book.next_due()
            skip = 0.0 if upcoming is None else max(0.0, upcoming - now)
            now += args.tick * max(1, math.ceil(skip / args.tick))
            continue
        tick_now = int(now)
        findings = [reader.read(c, now + n / args.rate, tick_now) for n, c in enumerate(taken)]
        recorded = now + len(taken) / args.rate
        busy += len(taken) / args.rate
        book.observe(rules, taken, findings, tick_now, tick_now, requests=len(taken))
        for f in findings:
            if f.active and f.customer not in detected:
                detected[f.customer] = recorded
        now = max(now + args.tick, recorded)
    return Run(detected, reader.reads, busy, reader.per_customer)


def run_round_robin(account: Account, rule: Rule, args: argparse.Namespace,
                    crossings: dict[str, int]) -> Run:
    """Everyone in order at the full rate: customer ``n`` is read at ``start + n / rate +
    k × pass``. Only the crossing customers' reads around their crossing are evaluated (the
    others cannot fire: their reads change no figure here)."""
    reader = Reader(account, rule, Policy.of(rule))
    single_pass = len(account.ids) / args.rate
    start, end = account.day + args.start * HOUR, account.day + args.end * HOUR
    detected: dict[str, float] = {}
    for customer, crossed in crossings.items():
        phase = start + account.index[customer] / args.rate
        read_at = phase + max(0, math.ceil((crossed - phase) / single_pass)) * single_pass
        while read_at < end:
            finding = reader.read(customer, read_at, int(read_at))
            if finding.active:
                detected[customer] = read_at
                break
            read_at += single_pass
    reads = int((end - start) * args.rate)
    return Run(detected, reads, float(end - start))


def latencies(run: Run, crossings: dict[str, int]) -> list[float]:
    return [run.detected[c] - t for c, t in crossings.items() if c in run.detected]


def distribution(values: Sequence[float]) -> str:
    """Counts per latency band: ``≤1m 812 | ≤2m 90 | …``."""
    ordered = sorted(values)
    parts, below = [], 0
    for band in LATENCY_BANDS:
        upto = bisect_left(ordered, band + 1e-9)
        parts.append(f"≤{band // 60}m {upto - below}")
        below = upto
    parts.append(f">{LATENCY_BANDS[-1] // 60}m {len(ordered) - below}")
    return " | ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second")
    parser.add_argument("--every", type=float, default=3600.0, help="the rule's every (s)")
    parser.add_argument("--tick", type=float, default=30.0, help="schedule.tick (s)")
    parser.add_argument("--safety", type=float, default=3.0, help="schedule.safety")
    parser.add_argument("--start", type=int, default=6, help="UTC hour the run starts")
    parser.add_argument("--end", type=int, default=20, help="UTC hour the run ends")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(machine_note())
    cpu, wall = time.process_time(), time.perf_counter()
    account = build_account(args.customers, args.seed)
    built = time.process_time() - cpu
    rule = quota_rule(args.every)
    single_pass = args.customers / args.rate
    listing = math.ceil(args.customers / PAGE) / GENERAL_RATE
    start, end = account.day + args.start * HOUR, account.day + args.end * HOUR
    # Crossings both schedulers can see: after the first full pass, a pass before the end.
    crossings = {cid: t for n, cid in enumerate(account.ids)
                 if (t := account.crossing(n)) is not None
                 and start + single_pass <= t <= end - single_pass}
    cpu_runs = time.process_time()
    deadline = run_deadlines(account, rule, args)
    cpu_deadline = time.process_time() - cpu_runs
    robin = run_round_robin(account, rule, args, crossings)
    hours = args.end - args.start
    budget = hours * HOUR * args.rate
    rows = [
        figure("customers", args.customers, "{:,.0f}"),
        figure("threshold crossings in the run", len(crossings), "{:,.0f}"),
        figure("round-robin single pass, usage reads (min)", single_pass / 60, "{:.1f}"),
        figure("round-robin single pass + customer listing (min)",
               (single_pass + listing) / 60, "{:.1f}", ">= 17 (the premise)",
               lambda v: v >= 17),
    ]
    for name, run in (("deadlines", deadline), ("round-robin", robin)):
        late = latencies(run, crossings)
        rows += [
            figure(f"{name}: crossings detected", len(late), "{:,.0f}",
                   f"{len(crossings):,}", lambda v: v == len(crossings)),
            figure(f"{name}: p50 crossing → notification (min)",
                   percentile(late, 0.5) / 60, "{:.1f}"),
            figure(f"{name}: p99 crossing → notification (min)",
                   percentile(late, 0.99) / 60, "{:.1f}",
                   "<= 15" if name == "deadlines" else "",
                   (lambda v: v <= 15) if name == "deadlines" else None),
            figure(f"{name}: max crossing → notification (min)",
                   max(late, default=math.nan) / 60, "{:.1f}"),
            figure(f"{name}: requests ÷ budget", run.reads / budget, "{:.3f}", "<= 1",
                   lambda v: v <= 1.0 + 1e-9),
        ]
    rows += [
        figure("CPU s: building the day (generator)", built, "{:.1f}"),
        figure("CPU s: deadline run (scheduler + evaluator)", cpu_deadline, "{:.1f}"),
        figure("CPU µs per deadline-run read", cpu_deadline / max(deadline.reads, 1) * 1e6,
               "{:.0f}"),
        figure("wall s (all, under the load above)", time.perf_counter() - wall, "{:.0f}"),
        figure("peak RSS (MB)", peak_rss_mb(), "{:.0f}"),
    ]
    print_table(f"crossing → notification, {args.customers:,} customers, "
                f"{args.rate:g} requests/s, every {args.every:g}s, "
                f"{args.start:02d}:00–{args.end:02d}:00 UTC (virtual clock)", rows)
    print("\nlatency distribution (crossing → notification, freshness lag excluded):")
    for name, run in (("deadlines", deadline), ("round-robin", robin)):
        print(f"  {name:<12} {distribution(latencies(run, crossings))}")
    shares = Counter(_bucket_of(account, n) for n in range(len(account.ids)))
    print(f"\ncustomers by their day total as a share of quota: {dict(sorted(shares.items()))}")
    print("deadline reads per customer over the run, by that share "
          f"(round-robin: {hours * HOUR / single_pass:.0f} each):")
    by_share: dict[str, list[int]] = {}
    for number, customer in enumerate(account.ids):
        by_share.setdefault(_bucket_of(account, number), []).append(
            deadline.per_customer[customer])
    for share, counts in sorted(by_share.items()):
        print(f"  {share:>8}: mean {sum(counts) / len(counts):.1f}, max {max(counts)}")


def _bucket_of(account: Account, customer: int) -> str:
    share = account.grid[customer, -1] / account.quotas[customer]
    return "≥100%" if share >= 1 else f"{int(share * 10) * 10}–{int(share * 10) * 10 + 10}%"


if __name__ == "__main__":
    main()

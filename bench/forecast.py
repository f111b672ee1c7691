"""Forecast quality: projection error after 7, 14 and 21 days, on months with known totals.

Usage comes from the simulator's generator (daily and weekly seasonality, trends, noise and
its injected incidents), so every month's true total is known. For each customer and each
complete calendar month of its history, the ``forecast`` evaluator (the real one, pure, in
process) projects the month's total as of the end of day 7, 14 and 21; the error is
``|projected - actual| / actual``. Budgets are drawn per month at 80–120 % of the actual total,
so about half the months end over budget; the bench also reports whether the forecast flagged
every month that ended over budget (and how many it flagged that did not).

    python bench/forecast.py [--customers 200] [--months 3] [--seed 1]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from datetime import UTC, datetime

from alertd.calendar import next_start
from alertd.conditions import evaluate, needs
from alertd.conditions.series import build_series, data_need
from alertd.model import Customer, DataNeed, UsageQuery
from alertd.rules.schema import Rule
from alertd.sim.generator import UsageGenerator

DAY = 86400
CHECKPOINTS = (7, 14, 21)


def month_starts(history_start: int, now: int) -> list[int]:
    """Every whole UTC month inside ``[history_start + 7 days, now)`` (7 days of rate history)."""
    first = datetime.fromtimestamp(history_start + 7 * DAY, UTC)
    start = next_start(int(first.timestamp()), "month", "UTC")
    months = []
    while next_start(start, "month", "UTC") <= now:
        months.append(start)
        start = next_start(start, "month", "UTC")
    return months


def rule_for(budget: float) -> Rule:
    return Rule.model_validate({
        "name": "monthly-token-budget", "meter": "mtr_sim_tokens", "window": "month",
        "condition": {"type": "forecast", "value": budget, "min_elapsed": "3d",
                      "rate_window": "7d"},
    })


def rows_for(generator: UsageGenerator, need: DataNeed, as_of: int) -> list:  # type: ignore[type-arg]
    query = UsageQuery(need.customer, need.starts_at, need.ends_at, need.granularity,
                       need.timezone, (need.spec,))
    return generator.usage_rows(query, as_of)


def evaluate_month(generator: UsageGenerator, customer: Customer, month: int,
                   rng: random.Random) -> dict[str, object]:
    end = next_start(month, "month", "UTC")
    probe = rule_for(1.0)
    full_need = data_need(probe, customer.id, end - 1, month)
    actual = sum(r.value for r in rows_for(generator, full_need, end + DAY) if r.starts_at < end)
    budget = actual * rng.uniform(0.8, 1.2)
    rule = rule_for(budget)
    result: dict[str, object] = {"actual": actual, "over": actual > budget,
                                 "clearly_over": actual > 1.1 * budget}
    for day in CHECKPOINTS:
        now = month + day * DAY
        need = needs(rule, customer.id, now)[0]
        rows = rows_for(generator, need, now)
        series = build_series(rule, need, rows, now, now=now, freshness_lag=0)[0]
        finding = evaluate(rule, series, customer, now)
        result[f"projected_{day}"] = finding.projected
        result[f"flagged_{day}"] = finding.active
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--days", type=int, default=120)
    args = parser.parse_args()
    generator = UsageGenerator(customers=args.customers, seed=args.seed, days=args.days)
    rng = random.Random(args.seed)
    months = month_starts(generator.history_start, generator.now)
    began = time.perf_counter()
    results = []
    for profile in generator.profiles():
        customer = Customer(profile.id, metadata=dict(profile.metadata))
        for month in months:
            outcome = evaluate_month(generator, customer, month, rng)
            if float(outcome["actual"]) > 0:  # type: ignore[arg-type]
                results.append(outcome)
    elapsed = time.perf_counter() - began
    print(f"forecast quality: {len(results)} customer-months "
          f"({args.customers} customers × {len(months)} months), {elapsed:.1f}s")
    print(f"{'as of':<8}{'median APE':>12}{'p90 APE':>10}{'over budget: flagged':>22}"
          f"{'>10% over: flagged':>20}{'false flags':>13}")
    for day in CHECKPOINTS:
        errors = sorted(abs(float(r[f"projected_{day}"]) - float(r["actual"]))  # type: ignore[arg-type]
                        / float(r["actual"]) for r in results)  # type: ignore[arg-type]
        over = [r for r in results if r["over"]]
        caught = sum(bool(r[f"flagged_{day}"]) for r in over)
        false = sum(bool(r[f"flagged_{day}"]) for r in results if not r["over"])
        clear = [r for r in results if r["clearly_over"]]
        clear_caught = sum(bool(r[f"flagged_{day}"]) for r in clear)
        p90 = errors[int(0.9 * (len(errors) - 1))]
        print(f"day {day:<4}{statistics.median(errors):>12.1%}{p90:>10.1%}"
              f"{f'{caught}/{len(over)}':>22}{f'{clear_caught}/{len(clear)}':>20}{false:>13}")
    print("target: every month that ended over budget flagged by day 21; the error falls as "
          "the month goes on")


if __name__ == "__main__":
    main()

"""Requests per evaluation cycle against their lower bound, for a mixed rule set.

Usage::

    python bench/planner.py [--customers 1000] [--at 2025-03-12T15:37:00Z]

Sixteen rules over three meters (``mtr_sim_tokens`` with dimensions ``model``/``tier`` and
tenant ``user_id``, ``mtr_sim_api_calls`` with ``endpoint``, ``mtr_sim_storage``), every
condition type, hour/day/week/month windows and four time zones, each rule applied to every
customer. One cycle is one pass over all of them: each rule × customer yields its data needs
(:func:`alertd.conditions.needs`), and :func:`alertd.planner.plan` folds them into requests.

Printed, each beside its reference:

* **requests per cycle** and the **lower bound** (:func:`bench.lower_bound.lower_bound`, computed
  independently of the plan); **ratio** = requests ÷ lower bound, target 1.00;
* for scale: one request per need, and requests when only identical specs are shared;
* **planning time**: the first call in this process (cold caches) and the best of five;
* **steady state**: what a poll with a warm bucket cache plans (``--every`` after the previous
  one; :func:`bench.lower_bound.steady_state_needs`) beside the steady-state bound.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alertd import conditions
from alertd.clock import parse_instant
from alertd.model import MeterSpec
from alertd.planner import RequestPlan, plan
from alertd.rules.schema import Rule
from bench.lower_bound import lower_bound, steady_state_needs

TOKENS, CALLS, STORAGE = "mtr_sim_tokens", "mtr_sim_api_calls", "mtr_sim_storage"
NY, BERLIN, KOLKATA = "America/New_York", "Europe/Berlin", "Asia/Kolkata"

RULES: list[dict[str, Any]] = [
    {"name": "tokens-daily-quota", "meter": TOKENS,
     "condition": {"type": "threshold", "op": ">", "value": 1_000_000}},
    {"name": "gpt4-daily", "meter": TOKENS, "filters": {"model": "gpt-4"},
     "condition": {"type": "threshold", "op": ">", "value": 50_000}},
    {"name": "tokens-by-model-spike", "meter": TOKENS, "group_by": ["model"], "window": "hour",
     "condition": {"type": "anomaly", "direction": "up"}},
    {"name": "premium-weekly-change", "meter": TOKENS, "filters": {"tier": "premium"},
     "window": "week", "condition": {"type": "change", "percent": 50}},
    {"name": "tokens-by-tier-forecast", "meter": TOKENS, "group_by": ["tier"], "window": "month",
     "condition": {"type": "forecast", "value": 30_000_000}},
    {"name": "big-user-tokens", "meter": TOKENS, "tenant_filters": {"user_id": "u_42"},
     "condition": {"type": "threshold", "op": ">", "value": 200_000}},
    {"name": "tokens-quota-ny", "meter": TOKENS, "timezone": NY,
     "condition": {"type": "threshold", "value_from": {"metadata": "daily_quota", "percent": 80}}},
    {"name": "gpt4-family-by-tier-ny", "meter": TOKENS, "timezone": NY,
     "filters": {"model": ["gpt-4", "gpt-4o"]}, "group_by": ["tier"],
     "condition": {"type": "change", "compare_to": "last_week", "percent": 40}},
    {"name": "api-calls-hourly", "meter": CALLS, "window": "hour",
     "condition": {"type": "threshold", "op": ">=", "value": 10_000}},
    {"name": "api-calls-by-endpoint-spike", "meter": CALLS, "group_by": ["endpoint"],
     "window": "hour", "condition": {"type": "anomaly"}},
    {"name": "api-calls-stopped", "meter": CALLS,
     "condition": {"type": "absence", "duration": 6 * 3600}},
    {"name": "search-calls-berlin", "meter": CALLS, "timezone": BERLIN,
     "filters": {"endpoint": "/v1/search"},
     "condition": {"type": "threshold", "op": ">", "value": 5_000}},
    {"name": "storage-monthly-budget", "meter": STORAGE, "window": "month",
     "condition": {"type": "forecast", "value": 1e9}},
    {"name": "storage-daily-drop", "meter": STORAGE,
     "condition": {"type": "change", "direction": "down", "percent": 30, "min_volume": 100}},
    {"name": "storage-levels-kolkata", "meter": STORAGE, "timezone": KOLKATA,
     "condition": {"type": "threshold", "levels": {"warning": 5e7, "critical": 8e7}}},
    {"name": "tokens-silent-kolkata", "meter": TOKENS, "window": "hour", "timezone": KOLKATA,
     "condition": {"type": "absence", "duration": 2 * 3600}},
]

def timed(function: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = function()
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--at", default="2025-03-12T15:37:00Z")
    parser.add_argument("--every", type=float, default=300.0,
                        help="seconds between polls, for the steady-state bound (default 300)")
    args = parser.parse_args()
    now = parse_instant(args.at, time.time())
    rules = [Rule.model_validate(raw) for raw in RULES]
    customers = [f"cus_{i:05d}" for i in range(args.customers)]
    needs, needs_time = timed(lambda: [n for rule in rules for customer in customers
                                       for n in conditions.needs(rule, customer, now)])

    result, cold = timed(lambda: plan(needs))
    warm = min(timed(lambda: plan(needs))[1] for _ in range(5))
    bound, bound_time = timed(lambda: lower_bound(needs))
    identical_only = len({(n.customer, n.granularity, n.timezone, n.spec) for n in needs})
    meters = {r.meter for r in rules}
    zones = {r.timezone for r in rules}
    print(f"rules {len(rules)} over {len(meters)} meters, windows "
          f"{sorted({r.window for r in rules})}, time zones {sorted(zones)}, "
          f"conditions {sorted({r.condition.type for r in rules})}")
    print(f"customers {len(customers)}; needs from alertd.conditions.needs ({needs_time:.2f} s)")
    print(f"needs per cycle             {len(needs):>8}")
    print(f"  one request per need      {len(needs):>8}")
    print(f"  identical specs shared    {identical_only:>8}  (before covering and packing)")
    print(f"requests per cycle          {len(result.queries):>8}")
    print(f"lower bound                 {bound:>8}  ({bound_time:.2f} s, independent of plan)")
    print(f"ratio                       {len(result.queries) / bound:>8.2f}  (target 1.00)")
    print(f"requests per customer       {len(result.queries) / len(customers):>8.2f}")
    print(f"planning time, cold         {cold * 1000:>8.1f} ms")
    print(f"planning time, best of 5    {warm * 1000:>8.1f} ms")
    steady = steady_state_needs(needs, now, args.every)
    steady_plan = plan(steady)
    steady_bound = lower_bound(steady)
    print(f"steady state (warm bucket cache, polls every {args.every:.0f} s):")
    print(f"  requests per cycle        {len(steady_plan.queries):>8}")
    print(f"  steady-state bound        {steady_bound:>8}  (lower bound of the cached ranges)")
    print(f"  ratio                     {len(steady_plan.queries) / steady_bound:>8.2f}"
          "  (target 1.00)")
    print(f"  bound ÷ cold bound        {steady_bound / bound:>8.2f}")
    print(f"  requests per customer     {len(steady_plan.queries) / len(customers):>8.2f}")
    _print_first_customer(result, customers[0])
    _print_first_customer(steady_plan, customers[0])


def _print_first_customer(result: RequestPlan, customer: str) -> None:
    print(f"requests of {customer}:")
    for query in result.queries:
        if query.customer == customer:
            specs = ", ".join(_describe(s) for s in query.meters)
            print(f"  {query.window:<5} {query.timezone:<17} {specs}")


def _describe(spec: MeterSpec) -> str:
    parts = [spec.meter or "all meters"]
    parts += [f"{k}={'|'.join(v)}" for k, v in spec.dimension_filters]
    parts += [f"tenant {k}={'|'.join(v)}" for k, v in spec.tenant_filters]
    if spec.group_by:
        parts.append(f"by {'+'.join(spec.group_by)}")
    return " ".join(parts)


if __name__ == "__main__":
    main()

"""Money rules and the rate figures: Stripe requests per poll with and without cost and credit
rules, on the example rules in ``rules/``, against the simulator (in another process).

A poll is one evaluation pass of the real engine (``check --dry-run``'s services). Target: after
the first pass (which reads customers, meters and, with money rules, subscriptions, tiered
prices, credit grants and balance summaries on the general budget), every pass costs exactly
the usage requests it costs without money rules — money rules share the hourly UTC request of
the customer (``customer-spend``, summed over each customer's metered prices, reads each priced
meter in that same request), and prices are cached for ``stripe.billing_refresh``. Also prints
the first pass's general-budget requests per customer (target: subscriptions 1, credit 2,
tiered prices once per distinct price).

    python bench/money.py [--customers 200] [--passes 3]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alertd.clock import SystemClock
from alertd.service.open import Collaborators, open_services
from alertd.service.world import load_world
from alertd.sim.testing import TEST_NOW, SimulatorProcess

ROOT = Path(__file__).resolve().parent.parent
MONEY = ("spend.yaml", "credit.yaml")


def config(folder: Path, url: str, money: bool) -> Path:
    files = [str(p) for p in sorted((ROOT / "rules").glob("*.yaml"))
             if money or p.name not in MONEY]
    path = folder / ("money.yaml" if money else "plain.yaml")
    path.write_text(
        f"stripe: {{api_base: '{url}', api_key: sk_test_bench, freshness_lag: 5m}}\n"
        f"rule_files: {files}\ncustomers: {{all: true}}\n"
        "receivers: [{name: ops, webhook: {url: 'http://127.0.0.1:9/hook'}}]\n"
        "route: {receiver: ops}\n")
    return path


async def passes(path: Path, count: int) -> list[int]:
    found = []
    world = load_world(path)
    async with open_services(world, Collaborators(SystemClock())) as services:
        for _ in range(count):
            found.append((await services.engine.run_pass(TEST_NOW)).requests)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--passes", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, SimulatorProcess(
            customers=args.customers, days=45, now=TEST_NOW, rate=None) as sim:
        plain = asyncio.run(passes(config(Path(folder), sim.url, False), args.passes))
        sim.reset_stats()
        money = asyncio.run(passes(config(Path(folder), sim.url, True), args.passes))
        endpoints = sim.stats()["by_endpoint"]
    print(f"customers {args.customers}, passes {args.passes}")
    print(f"{'':28}{'pass 1':>10}{'later passes':>16}")
    print(f"{'usage rules only':28}{plain[0]:>10}{plain[1:]!s:>16}")
    print(f"{'with spend and credit rules':28}{money[0]:>10}{money[1:]!s:>16}")
    same = money[1:] == plain[1:]
    print(f"later passes equal (target: yes): {'yes' if same else 'NO'}")
    for name in ("subscriptions.list", "prices.retrieve", "credit_balance_summary",
                 "credit_grants.list"):
        total = endpoints.get(name, 0)
        print(f"{name:28}{total:>10} requests ({total / args.customers:.2f} per customer)")


if __name__ == "__main__":
    main()

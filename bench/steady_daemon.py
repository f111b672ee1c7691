"""The bucket cache in steady state with the real daemon: ``alertd run`` against the simulator.

Usage (through ``bench/steady.py``)::

    python bench/steady.py --daemon [--customers 10000] [--cycles 2] [--every 60]

What runs, each in its own process: the simulator (real time, ``--rate`` analytics requests
per sliding second, ``--latency`` per answer), a loopback webhook sink, and ``alertd run`` with
the sixteen-rule mixed set of ``bench/planner.py``, every rule polled every ``--every`` seconds
(accelerated: the default 15 minutes would make a bench of hours) for every customer (the
deadline scheduler off: this measures the cache's cycles), its state and bucket cache in a
SQLite file. The daemon's ``poll done`` log lines say what each poll planned (``queries``),
sent (``requests``) and was answered (``rows``); the first poll warms the cache, each later one
is a steady cycle. Printed per poll, beside the targets: requests ÷ the bound (computed here
as ``bench/steady.py`` does, at the poll's start), rows ÷ warm-up, the daemon's CPU seconds per
1,000 requests and its peak RSS so far (``VmHWM``). Each poll's table is printed as soon as
the poll is done, and every ``--progress`` seconds a line with the daemon's CPU seconds, RSS
and peak RSS so far, so a run stopped early (10,000 customers take hours on a loaded machine)
still says what it measured.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from alertd import conditions
from alertd.clock import SystemClock
from alertd.config.settings import CustomerSelection
from alertd.rules.schema import Rule
from alertd.service.world import stripe_stack
from alertd.sim.testing import API_KEY, SimulatorProcess
from alertd.sinks import serve_posts
from alertd.source.ratelimit import MARGIN
from bench.common import (
    SIM_QUOTA_KEY,
    child_cpu_seconds,
    figure,
    machine_note,
    print_table,
    simulator_settings,
)
from bench.lower_bound import lower_bound, steady_state_needs
from bench.planner import RULES
from bench.steady import figures, title

_POLL = re.compile(r"poll done .*customers=(\d+) requests=(\d+) queries=(\d+) rows=(\d+) "
                   r"failures=(\d+) .*seconds=([\d.]+) budget_idle=([\d.]+)")


@dataclass(frozen=True, slots=True)
class Poll:
    """One ``poll done`` line, with the daemon's CPU seconds and the time when it was read."""

    customers: int
    requests: int
    queries: int
    rows: int
    failures: int
    #: The poll's own wall seconds (``seconds=``: from its start, not the previous poll's end,
    #: so a wait for the scheduler's next tick never counts as the poll's).
    seconds: float
    #: Seconds of the poll the rate budget had a slot free and no request asking for it.
    budget_idle: float
    cpu: float
    at: float
    rss: float


def daemon_rules(every: float) -> list[dict[str, Any]]:
    """The mixed set as a rule file: ``bench/planner.py``'s rules, every ``every`` seconds,
    quotas from the simulator's metadata key. ``api-calls-stopped`` (absence for 6 hours)
    reads hours: the rule loader refuses a silence shorter than a day in day buckets, which
    ``bench/planner.py`` (not going through the loader) leaves as it is."""
    rules = []
    for raw in RULES:
        condition = dict(raw["condition"])
        if "value_from" in condition:
            condition["value_from"] = {**condition["value_from"], "metadata": SIM_QUOTA_KEY}
        rule = {**raw, "condition": condition, "every": f"{every:g}s"}
        if condition["type"] == "absence" and "window" not in raw:
            rule["window"] = "hour"
        rules.append(rule)
    return rules


def write_config(folder: Path, sim: str, sink: str, every: float, rate: float,
                 state_url: str | None = None) -> Path:
    (folder / "rules.yaml").write_text(yaml.safe_dump({"rules": daemon_rules(every)}))
    path = folder / "alertd.yaml"
    path.write_text(yaml.safe_dump({
        "stripe": {"api_base": sim, "api_key": API_KEY, "requests_per_second": rate},
        "state": {"url": state_url} if state_url else {"path": str(folder / "state.db")},
        "server": {"listen": ""}, "rule_files": ["rules.yaml"], "customers": {"all": True},
        "receivers": [{"name": "hooks", "webhook": {"url": f"{sink}/hook"}}],
        "route": {"receiver": "hooks"}, "log_level": "info",
        # Every poll reads every customer: the cache's cycles, not the scheduler's picks.
        "schedule": {"deadlines": False},
    }))
    return path


async def start(config: Path) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTD_")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)  # this checkout's alertd
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "alertd", "run", "-c", str(config),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE, env=env)


def peak_rss_mb(pid: int) -> float:
    """The peak resident set size of a live process so far (``VmHWM``), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def rss_mb(pid: int) -> float:
    """The resident set size of a live process now (``VmRSS``), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def progress(pid: int, every: float, started: float,
                   served: Callable[[], int] | None = None, per_customer: float = 0.0) -> None:
    """A line every ``every`` seconds: the daemon's CPU seconds, RSS and peak RSS so far, and
    (given ``served``, the simulator's usage requests answered so far) about how many
    customers the first poll has read: answers ÷ ``per_customer``, the warm-up's requests per
    customer (its bound ÷ customers), so the RSS slope per customer shows while it runs. The
    simulator counts HTTP answers, a query split into pieces counting each, so this counts
    high by the pieces per query (~1.4 for a cold read of this rule set: 215 answers for 150
    queries at 30 customers)."""
    while True:
        await asyncio.sleep(every)
        done = ""
        if served is not None and per_customer > 0:
            done = f" ~{served() / per_customer:.0f} customers read (warm-up rate),"
        print(f"  [{time.time() - started:6.0f} s] alertd run: CPU {child_cpu_seconds(pid):.0f} s,"
              f"{done} RSS {rss_mb(pid):.0f} MB, peak {peak_rss_mb(pid):.0f} MB; "
              f"{machine_note().split(', ', 1)[1]}", flush=True)


async def polls(proc: asyncio.subprocess.Process, count: int, limit: float,
                starts: list[float], report: Callable[[int, Poll], None] | None = None
                ) -> list[Poll]:
    """The first ``count`` polls the daemon reports, each handed to ``report`` as it comes.
    ``starts`` gets when each began: its end less its own ``seconds``."""
    assert proc.stderr is not None
    found: list[Poll] = []
    deadline = time.monotonic() + limit
    while len(found) < count:
        line = await asyncio.wait_for(proc.stderr.readline(), deadline - time.monotonic())
        if not line:
            raise SystemExit(f"alertd run exited (code {await proc.wait()}) before poll "
                             f"{len(found) + 1}")
        text = line.decode(errors="replace")
        if " error" in text.lower()[:80] or "Traceback" in text:
            print("alertd:", text.rstrip()[:300], file=sys.stderr)
        match = _POLL.search(text)
        if match:
            *numbers, seconds, idle = match.groups()
            at = time.time()
            found.append(Poll(*(int(n) for n in numbers), seconds=float(seconds),
                              budget_idle=float(idle),
                              cpu=child_cpu_seconds(proc.pid), at=at, rss=peak_rss_mb(proc.pid)))
            # This poll's start: in place of the daemon's start for the first, else appended.
            starts[len(found) - 1:] = [at - float(seconds)]
            print(f"  poll {len(found)} done: {numbers[2]} queries, {numbers[3]} rows",
                  flush=True)
            if report is not None:
                report(len(found) - 1, found[-1])
    return found


async def run(args: argparse.Namespace) -> None:
    print(machine_note())
    rules = [Rule.model_validate(r) for r in daemon_rules(args.every)]

    async def ok(_: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    with SimulatorProcess(customers=args.customers, rate=int(args.rate),
                          latency=args.latency) as sim, tempfile.TemporaryDirectory() as tmp:
        async with serve_posts(ok) as sink:
            config = write_config(Path(tmp), sim.url, sink, args.every, args.rate,
                                  args.state_url)
            customers = await _customer_ids(sim.url)
            starts = [time.time()]
            first = int(starts[0])
            warm = lower_bound(steady_state_needs(
                [n for r in rules for c in customers for n in conditions.needs(r, c, first)],
                first, 10**9))
            sim.reset_stats()
            proc = await start(config)
            ticking = asyncio.ensure_future(progress(
                proc.pid, args.progress, starts[0],
                lambda: int(sim.stats()["by_endpoint"].get("meter_usage", 0)),
                warm / max(len(customers), 1)))
            done: list[Poll] = []
            # The simulator's own count of 429s and of seconds over the budget, by arrivals.
            seen = [(0, 0)]

            def report(cycle: int, poll: Poll) -> None:
                done.append(poll)
                stats = sim.stats()
                limited = int(stats["rate_limited"]), int(
                    stats["seconds_over_limit"].get("analytics", 0))
                before, seen[0] = seen[0], limited
                now = int(starts[cycle])
                needs = [n for r in rules for c in customers for n in conditions.needs(r, c, now)]
                since = 10**9 if cycle == 0 else now - int(starts[cycle - 1])
                bound = lower_bound(steady_state_needs(needs, now, since))
                wall = poll.seconds
                cpu_before = done[-2].cpu if len(done) > 1 else 0.0
                table = figures(
                    poll.queries, poll.requests, bound, poll.rows, done[0].rows, wall,
                    poll.cpu - cpu_before, steady=cycle > 0, failures=poll.failures,
                    rss=poll.rss, who="alertd run")
                # Where the time went: the budget's own pace, or slots left unused.
                paced = poll.requests / (args.rate * (1 - MARGIN))
                pace = f"{args.rate * (1 - MARGIN):g}/s"
                table.insert(-3, figure(f"wall at the budget's pace (requests ÷ {pace}), s",
                                        paced, "{:.1f}"))
                table.insert(-3, figure("budget idle (a slot free, no request), s",
                                        poll.budget_idle, "{:.1f}"))
                table.insert(-1, figure("429 answers (simulator, all budgets)",
                                        limited[0] - before[0], "{:d}"))
                table.insert(-1, figure("seconds over the budget (simulator's arrivals)",
                                        limited[1] - before[1], "{:d}", target="0",
                                        check=lambda n: n == 0))
                print_table(title(cycle, poll.customers, wall, "alertd run, "), table)

            try:
                await polls(proc, 1 + args.cycles, args.limit, starts, report)
            finally:
                ticking.cancel()
                if proc.returncode is None:
                    proc.terminate()
                    await proc.wait()


async def _customer_ids(url: str) -> list[str]:
    async with stripe_stack(simulator_settings(url), clock=SystemClock()) as stack:
        return [c.id for c in await stack.directory.customers(CustomerSelection(all=True))]

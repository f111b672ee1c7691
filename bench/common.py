"""What the benchmarks share: the mixed rule set, settings pointing at a simulator, figures
printed beside their targets, and measurements of this process and of a child process.

Benchmarks are scripts, not tests: each prints a table of ``figure | measured | target`` rows
and stops by itself. Run them from the repository root (``python bench/fetch.py``); they put
the root on ``sys.path`` themselves so ``bench.*`` imports work without installing anything.
"""

from __future__ import annotations

import asyncio
import cProfile
import functools
import io
import os
import pstats
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alertd.config.settings import CustomerSelection, Receiver, RootRoute, Settings, StripeSettings
from alertd.rules.schema import Rule
from alertd.sim.testing import API_KEY
from bench.planner import RULES

#: The simulator's customers keep their daily token quota under this metadata key.
SIM_QUOTA_KEY = "daily_token_quota"


def mixed_rules() -> list[Rule]:
    """The sixteen rules of ``bench/planner.py``: 3 meters, every condition type, hour to
    month windows, four time zones.

    A ``value_from`` quota reads the simulator's metadata key (:data:`SIM_QUOTA_KEY`), so the
    rule is evaluated rather than reported as "customer has no such key"; what is fetched and
    planned does not depend on the key.
    """
    rules = []
    for raw in RULES:
        condition = dict(raw["condition"])
        if "value_from" in condition:
            condition["value_from"] = {**condition["value_from"], "metadata": SIM_QUOTA_KEY}
        rules.append(Rule.model_validate({**raw, "condition": condition}))
    return rules


def simulator_settings(
    url: str,
    *,
    rate: float = 100.0,
    state_path: Path | None = None,
    receivers: Sequence[dict[str, Any]] = (),
    route: dict[str, Any] | None = None,
) -> Settings:
    """Settings for an alertd reading the simulator at ``url`` with an analytics budget of
    ``rate`` requests/s; customers default to every customer of the account."""
    return Settings(
        stripe=StripeSettings(api_base=url, api_key=API_KEY, requests_per_second=rate),
        state={"path": state_path} if state_path is not None else {},
        receivers=[Receiver.model_validate(r) for r in receivers],
        route=RootRoute.model_validate(route or {}),
        customers=CustomerSelection(all=True),
        rule_files=[],
    )


# --------------------------------------------------------------------------- figures


@dataclass(frozen=True, slots=True)
class Figure:
    """One printed row. ``ok`` is ``None`` for a figure that has no target; ``note`` is
    printed where the target would be when there is none."""

    name: str
    value: str
    target: str = ""
    ok: bool | None = None
    note: str = ""


def figure(name: str, value: float, fmt: str, target: str = "",
           check: Callable[[float], bool] | None = None) -> Figure:
    """A row whose verdict is ``check(value)``; ``fmt`` formats the value (``"{:.1f}"``)."""
    return Figure(name, fmt.format(value), target, None if check is None else check(value))


def print_table(title: str, figures: Sequence[Figure]) -> None:
    """A compact fixed-width table: name, measured value, target, verdict (ok/MISS)."""
    width = max(len(f.name) for f in figures)
    value_width = max(len(f.value) for f in figures)
    print(f"\n{title}")
    print("-" * min(100, width + value_width + 32))
    for f in figures:
        verdict = {True: "ok", False: "MISS", None: ""}[f.ok]
        target = f"target {f.target}" if f.target else f.note
        print(f"{f.name:<{width}}  {f.value:>{value_width}}  {target:<20} {verdict}".rstrip())


def print_profile(profiler: cProfile.Profile, top: int = 20) -> None:
    """The ``top`` functions by own time (cProfile slows Python code, so compare shares)."""
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    print("\nprofile (cProfile, by own time):")
    print("\n".join(line for line in out.getvalue().splitlines()[4:] if line.strip()))


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile (nearest rank) of ``values``; NaN when there are none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[index]


# --------------------------------------------------------------------------- measurements


def peak_rss_mb() -> float:
    """The peak resident set size of this process so far, in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds a live child process has used (``/proc``; 0 if unknown)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_note() -> str:
    """Cores, load and the core's speed: benchmarks on a shared machine are only as steady as
    its load, and machines differ (one session's core took 1.7 CPU s for :func:`core_speed`'s
    loop where another's took ~0.6), so CPU figures of two sessions compare only beside it."""
    one, five, _ = os.getloadavg()
    return (f"machine: {os.cpu_count()} cores, load average {one:.1f} (1 min) {five:.1f} (5 min),"
            f" a 1M-step Python loop {core_speed() * 1000:.0f} ms of CPU")


@functools.cache
def core_speed() -> float:
    """CPU seconds of a 1,000,000-step pure-Python loop (the best of three, once a process):
    how fast this machine's core runs the interpreter, measured, not read off
    ``/proc/cpuinfo``."""
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        total = 0
        for step in range(1_000_000):
            total += step
        best = min(best, time.process_time() - started)
    return best


@dataclass(slots=True)
class Stopwatch:
    """Wall time, this process's CPU time and a child's CPU time over one phase."""

    child: int | None = None
    wall: float = 0.0
    cpu: float = 0.0
    child_cpu: float = 0.0
    _started: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def __enter__(self) -> Stopwatch:
        self._started = (time.perf_counter(), time.process_time(), child_cpu_seconds(self.child))
        return self

    def __exit__(self, *exc_info: object) -> None:
        wall, cpu, child = self._started
        self.wall = time.perf_counter() - wall
        self.cpu = time.process_time() - cpu
        self.child_cpu = child_cpu_seconds(self.child) - child


async def report_progress(
    done: Callable[[], int], total: int, what: str, every: float = 10.0
) -> None:
    """Prints ``done()`` of ``total`` with the rate and an estimate every ``every`` seconds,
    until cancelled."""
    started = time.perf_counter()
    while True:
        await asyncio.sleep(every)
        count = done()
        elapsed = time.perf_counter() - started
        rate = count / elapsed if elapsed else 0.0
        left = f", about {(total - count) / rate:.0f} s left" if rate and total > count else ""
        print(f"  … {count}/{total} {what} in {elapsed:.0f} s ({rate:.1f}/s{left}); "
              f"RSS {peak_rss_mb():.0f} MB", flush=True)

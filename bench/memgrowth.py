"""What grows per customer in the real daemon: ``alertd run`` in-process under ``tracemalloc``.

Usage::

    python bench/memgrowth.py [--customers 2000] [--first 400] [--second 1200] [--frames 25]
    python bench/memgrowth.py --no-trace          # RSS and /proc/self/smaps only (no slowdown)

What runs: the simulator in a child process (``alertd.sim.testing.SimulatorProcess``) and the
daemon of ``bench/steady_daemon.py`` (its configuration file, the sixteen-rule mixed set,
SQLite state) in this process, as ``alertd run`` runs it (``alertd.gctune.tune`` then
``Daemon(config).run()``). The first poll (the warm-up pass) reads every customer; customers
read are estimated as ``bench/steady_daemon.py`` does (the simulator's usage answers ÷ the
warm-up's answers per customer, ``--per-customer``). At ``--first`` and at ``--second``
customers this takes a snapshot and prints, between the two: RSS, the memory ``tracemalloc``
traces, the ``/proc/self/smaps`` mappings that grew (heap, anonymous arenas, file-backed), the
garbage collector's counts, and the top growers by traceback. RSS growing much more than the
traced memory is memory Python does not see (the C library's arenas, SQLite, OpenSSL).
Then it stops the daemon (SIGTERM, as systemd does).
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import itertools
import os
import re
import signal
import sys
import tempfile
import tracemalloc
import types
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from alertd import gctune
from alertd.service.daemon import Daemon
from alertd.sim.testing import SimulatorProcess
from alertd.sinks import serve_posts
from bench.common import machine_note
from bench.steady_daemon import write_config

_MAPPING = re.compile(r"^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$")


def smaps() -> dict[str, int]:
    """Resident kB of this process by kind of mapping: ``[heap]``, ``anon`` (glibc's thread
    arenas, mmapped blocks, Python's arenas), ``file:NAME`` (libraries, mmapped files)."""
    sizes: dict[str, int] = {}
    name = ""
    for line in Path("/proc/self/smaps").read_text().splitlines():
        match = _MAPPING.match(line)
        if match:
            path = match.group(1).strip()
            name = (path if path.startswith("[") else
                    "anon" if not path else "file:" + Path(path).name)
        elif line.startswith("Rss:"):
            sizes[name] = sizes.get(name, 0) + int(line.split()[1])
    return sizes


#: Per-pass and per-process structures to weigh at each mark (class name -> attributes).
WEIGH = {
    "PassRecorder": ("tally", "_states", "_changed", "_transitions", "_updates"),
    "BoardPass": ("entries",),
    "Board": ("entries", "_ordered"),
    "AlertCensus": ("_states", "_quiet"),
    "PageLearner": ("_rows_per_bucket", "_snapshot"),
    "Written": (),
    "HeldAhead": (),
    "DuePolls": (),
}


def deep_size(root: object, seen: set[int]) -> int:
    """Bytes of ``root`` and what it reaches (not modules, classes, functions), once each."""
    total, stack = 0, [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, (type, types.ModuleType, types.FunctionType,
                                               types.MethodType)):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        if isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            stack.extend(obj)
        else:
            stack.extend(gc.get_referents(obj))
    return total


def weigh(objects: list[object]) -> dict[str, str]:
    found: dict[str, str] = {}
    for obj in objects:
        name = type(obj).__name__
        if name not in WEIGH:
            continue
        parts = []
        for attr in WEIGH[name] or ("",):
            value = getattr(obj, attr, None) if attr else obj
            size = deep_size(value, set())
            length = len(value) if hasattr(value, "__len__") else ""
            notable = getattr(value, "notable", None)
            if notable is not None:
                length = f"notable {len(notable)}"
            parts.append(f"{attr or 'all'}={size / 1024:.0f} kB ({length})")
        found[f"{name}@{id(obj):x}"] = ", ".join(parts)
    return found


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def mallinfo() -> dict[str, int]:
    """glibc's ``mallinfo2`` over every arena, in kB: ``arena`` (bytes from the heap and
    thread arenas), ``hblkhd`` (mmapped blocks), ``uordblks`` (in use), ``fordblks`` (free);
    empty elsewhere."""
    try:
        call = ctypes.CDLL("libc.so.6").mallinfo2
    except (OSError, AttributeError):
        return {}
    call.restype = _MallInfo2
    info = call()
    return {name: getattr(info, name) // 1024 for name in ("arena", "hblkhd", "uordblks",
                                                            "fordblks")}


def pymalloc() -> dict[str, int]:
    """pymalloc's arenas, from ``sys._debugmallocstats`` (written to fd 2): arenas held,
    and kB in allocated blocks, in free blocks and in empty pools."""
    read, write = os.pipe()
    saved = os.dup(2)
    os.dup2(write, 2)
    try:
        sys._debugmallocstats()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(write)
    with os.fdopen(read) as stream:
        text = stream.read()
    found: dict[str, int] = {}
    for label, name in (("arenas allocated current", "arenas"),
                        ("bytes in allocated blocks", "allocated"),
                        ("bytes in available blocks", "available"),
                        ("unused pools", "unused_pools")):
        match = re.search(r"# " + label + r"[^=]*=\s*([\d,]+)", text)
        if match:
            value = int(match.group(1).replace(",", ""))
            found[name] = value // 1024 if name in ("allocated", "available") else value
    return found


def rss_kb(field: str = "VmRSS") -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


@dataclass
class Mark:
    customers: float
    rss: int
    peak: int
    traced: int
    maps: dict[str, int]
    gc_counts: tuple[int, int, int]
    objects: int
    blocks: int
    types: Counter[str]
    weighed: dict[str, str]
    glibc: dict[str, int]
    py: dict[str, int]
    snapshot: tracemalloc.Snapshot | None


def mark(customers: float) -> Mark:
    snapshot = tracemalloc.take_snapshot() if tracemalloc.is_tracing() else None
    traced = tracemalloc.get_traced_memory()[0] if tracemalloc.is_tracing() else 0
    objects = gc.get_objects()
    kinds = Counter(type(o).__qualname__ for o in objects)
    weighed = weigh(objects)
    for name, parts in weighed.items():
        print(f"    {name}: {parts}", flush=True)
    return Mark(customers, rss_kb(), rss_kb("VmHWM"), traced, smaps(), gc.get_count(),
                len(objects), sys.getallocatedblocks(), kinds, weighed, mallinfo(), pymalloc(),
                snapshot)


def report(a: Mark, b: Mark, top: int) -> None:
    per = max(b.customers - a.customers, 1.0) / 1000
    print(f"\n=== {a.customers:.0f} -> {b.customers:.0f} customers read; {machine_note()}")
    print(f"RSS {a.rss / 1024:.1f} -> {b.rss / 1024:.1f} MB "
          f"({(b.rss - a.rss) / 1024 / per:+.2f} MB per 1,000 customers), peak "
          f"{b.peak / 1024:.1f} MB")
    print(f"traced {a.traced / 2**20:.1f} -> {b.traced / 2**20:.1f} MB "
          f"({(b.traced - a.traced) / 2**20 / per:+.2f} MB per 1,000 customers)")
    print(f"gc objects {a.objects} -> {b.objects}, counts {b.gc_counts}, "
          f"garbage {len(gc.garbage)}; allocated blocks {a.blocks} -> {b.blocks} "
          f"({(b.blocks - a.blocks) / per:+.0f} per 1,000 customers)")
    types = b.types.copy()
    types.subtract(a.types)
    print("gc-tracked objects that grew: " + ", ".join(
        f"{name} {n:+d}" for name, n in types.most_common(12) if n > 0))
    print(f"glibc mallinfo2 kB: {a.glibc} -> {b.glibc}")
    print(f"pymalloc: {a.py} -> {b.py}")
    grown = sorted(((b.maps.get(k, 0) - a.maps.get(k, 0), k) for k in set(a.maps) | set(b.maps)),
                   reverse=True)
    print("smaps Rss growth (kB): " + ", ".join(
        f"{k} {d:+d} (now {b.maps.get(k, 0)})" for d, k in grown if abs(d) >= 256))
    if a.snapshot is None or b.snapshot is None:
        return
    filters = [tracemalloc.Filter(False, tracemalloc.__file__)]
    first, second = a.snapshot.filter_traces(filters), b.snapshot.filter_traces(filters)
    print("\n-- top growers by file:line")
    for stat in second.compare_to(first, "lineno")[:top]:
        print(f"  {stat.size_diff / 1024:+9.1f} kB {stat.count_diff:+7d} blocks  "
              f"{stat.traceback[0]}")
    print("\n-- top growers by traceback")
    for stat in second.compare_to(first, "traceback")[:top]:
        print(f"\n  {stat.size_diff / 1024:+9.1f} kB {stat.count_diff:+7d} blocks "
              f"(now {stat.size / 1024:.1f} kB)")
        for line in stat.traceback.format(most_recent_first=True)[:2 * 14]:
            print("    " + line)


async def watch(sim: SimulatorProcess, args: argparse.Namespace, marks: list[Mark]) -> None:
    targets = [args.first, args.second]
    while targets:
        await asyncio.sleep(args.check)
        served = int(sim.stats()["by_endpoint"].get("meter_usage", 0))
        read = served / args.per_customer
        print(f"  ~{read:.0f} customers read, RSS {rss_kb() / 1024:.1f} MB", flush=True)
        if read >= targets[0]:
            targets.pop(0)
            gc.collect()
            marks.append(mark(read))
            if args.trace_late and not tracemalloc.is_tracing():
                tracemalloc.start(args.frames)  # from here: what survives was made since
                marks[-1].snapshot = tracemalloc.take_snapshot()
            print(f"  snapshot at ~{read:.0f} customers", flush=True)
    os.kill(os.getpid(), signal.SIGTERM)


async def main(args: argparse.Namespace) -> None:
    print(machine_note())
    marks: list[Mark] = []

    async def ok(_: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    with SimulatorProcess(customers=args.sim_customers or args.customers, rate=int(args.rate),
                          latency=args.latency) as sim, tempfile.TemporaryDirectory() as tmp:
        async with serve_posts(ok) as sink:
            config = write_config(Path(tmp), sim.url, sink, args.every, args.rate)
            if args.deadlines:
                text = config.read_text().replace("deadlines: false", "deadlines: true")
                config.write_text(text)
            sim.reset_stats()
            gctune.tune()
            if not args.no_trace and not args.trace_late:
                tracemalloc.start(args.frames)
            watcher = asyncio.ensure_future(watch(sim, args, marks))
            code = await Daemon(str(config)).run()
            watcher.cancel()
            print(f"daemon exited {code}")
    for a, b in itertools.pairwise(marks):
        report(a, b, args.top)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--first", type=float, default=400)
    parser.add_argument("--second", type=float, default=1200)
    parser.add_argument("--frames", type=int, default=25)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--every", type=float, default=600.0)
    parser.add_argument("--check", type=float, default=10.0, help="seconds between checks")
    parser.add_argument("--per-customer", type=float, default=6.0,
                        help="usage answers per customer in the warm-up (~5 queries x 1.2)")
    parser.add_argument("--deadlines", action="store_true", help="schedule.deadlines on")
    parser.add_argument("--no-trace", action="store_true", help="RSS and smaps only")
    parser.add_argument("--trace-late", action="store_true",
                        help="start tracemalloc at --first (faster up to there)")
    parser.add_argument("--sim-customers", type=int, default=0,
                        help="customers the simulator has (default --customers)")
    sys.exit(asyncio.run(main(parser.parse_args())))

"""What holds the event loop: every callback of ``bench/fetch.py``'s run timed on the loop
thread's CPU clock, its waits for the GIL measured, the long ones named.

Usage::

    python bench/loop_callbacks.py [--no-sampler] [--gc-freeze] [--switch-interval S]
                                   [fetch.py's arguments, e.g. --customers 200 --latencies 1
                                    --pacing 0]

A load-independent diagnosis of "the loop's timers fire late": a send waits for the rate
budget's timer, so any stretch of loop work longer than a slot (10 ms at 100/s) pushes the
sends behind it. Wall lateness follows the machine's load; the loop thread's own CPU time per
callback (``time.thread_time``) does not, so it tells what the *client* holds the loop with.
A callback can also hold the loop without using its CPU: waiting for the GIL that another
thread of the process holds. Linux's ``/proc/thread-self/schedstat`` says how long the thread
waited for a CPU (runnable); wall − CPU − that is the time it slept, which inside a callback
(sockets are non-blocking) is waiting for the GIL. That too depends little on the load.

How: ``asyncio.Handle._run`` (every callback the loop runs: task steps, timers, I/O
readiness) is wrapped to take the loop thread's CPU clock, the wall clock and schedstat around
it; ``selectors.DefaultSelector.select`` to see how late a ``select`` that timed out returned;
``gc.callbacks`` time every collection on the loop thread (its generation, and the callback it
fell in). Unless ``--no-sampler``, a sampling thread reads the loop thread's stack every
millisecond while a callback runs (it gets the GIL every switch interval, so ~1 sample per
5 ms of a long callback; it competes for the GIL itself, so GIL figures are taken without
it), and each callback of at least :data:`NAMED_MS` is named by its task and the innermost
frames of alertd, httpx, httpcore or the bench it spent most samples in. ``--gc-freeze``
freezes what start-up imported before the run; ``--switch-interval`` sets
``sys.setswitchinterval``. The wrapping is this script's only: fetch.py runs unchanged.

Printed after fetch.py's own tables, for the whole run (phase 1 and 2 alike; ``--pacing 0``
for phase 1 alone): the callbacks and the loop thread's CPU and wall in them, its time
runnable and asleep (the GIL) in them and the callbacks asleep at least 2 / 10 / 20 / 50 ms,
the late selects, the callbacks of at least 2 / 10 / 20 / 50 ms of CPU, the GC collections by
generation (count, total and longest), and the long callbacks grouped by what they were.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import selectors
import sys
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import fetch

THRESHOLDS_MS = (2, 10, 20, 50)
#: Callbacks at least this long (CPU ms) are named: their task, and the samples taken in them.
NAMED_MS = 2.0
SAMPLE_SECONDS = 0.001
OURS = ("alertd/", "bench/", "httpx/", "httpcore/", "h11/", "anyio/")


@dataclass(slots=True)
class Callback:
    cpu: float
    wall: float
    label: str
    gc: float = 0.0  # CPU seconds of garbage collection inside it
    samples: Counter[str] = field(default_factory=Counter)


@dataclass(slots=True)
class Tracker:
    loop_thread: int = 0
    current: Callback | None = None
    long: list[Callback] = field(default_factory=list)
    counts: Counter[int] = field(default_factory=Counter)
    total_cpu: float = 0.0
    callbacks: int = 0
    gc_by_gen: dict[int, list[float]] = field(default_factory=lambda: defaultdict(list))
    gc_started: float = 0.0
    gc_outside: float = 0.0
    total_wall: float = 0.0
    slow_wall: int = 0  # callbacks of >= 10 ms of wall but < 2 ms of CPU
    select_late: list[float] = field(default_factory=list)  # empty selects: wall - timeout
    schedstat: int = -1  # the loop thread's /proc/thread-self/schedstat, open
    asleep: float = 0.0  # seconds callbacks spent neither running nor runnable: GIL waits
    asleep_long: Counter[int] = field(default_factory=Counter)
    runnable: float = 0.0  # seconds callbacks waited for a CPU (the machine's load)


TRACK = Tracker()


def where(frame: FrameType | None) -> str:
    """The innermost two frames of our code or the HTTP stack, and the leaf function."""
    names: list[str] = []
    leaf = frame.f_code.co_name if frame is not None else "?"
    while frame is not None and len(names) < 2:
        path = frame.f_code.co_filename
        if any(part in path for part in OURS) and "loop_callbacks" not in path:
            short = path.rsplit("/", 2)
            names.append(f"{'/'.join(short[-2:])}:{frame.f_code.co_name}")
        frame = frame.f_back
    return " < ".join(names) + f" [{leaf}]"


def sampler(stop: threading.Event) -> None:
    while not stop.is_set():
        time.sleep(SAMPLE_SECONDS)
        current = TRACK.current
        if current is None:
            continue
        frame = sys._current_frames().get(TRACK.loop_thread)
        if TRACK.current is current:
            current.samples[where(frame)] += 1


def on_gc(phase: str, info: dict[str, Any]) -> None:
    if threading.get_ident() != TRACK.loop_thread:
        return
    if phase == "start":
        TRACK.gc_started = time.thread_time()
        return
    spent = time.thread_time() - TRACK.gc_started
    TRACK.gc_by_gen[int(info["generation"])].append(spent)
    if TRACK.current is not None:
        TRACK.current.gc += spent
    else:
        TRACK.gc_outside += spent


def label(handle: asyncio.Handle) -> str:
    callback = getattr(handle, "_callback", None)
    owner = getattr(callback, "__self__", None)
    if isinstance(owner, asyncio.Task):
        coro = owner.get_coro()
        return f"task {getattr(coro, '__qualname__', coro)}"
    return getattr(callback, "__qualname__", repr(callback))


def scheduled() -> tuple[float, float]:
    """The loop thread's seconds on a CPU and waiting for one (Linux schedstat), so far."""
    if TRACK.schedstat < 0:
        return 0.0, 0.0
    running, waiting, _ = os.pread(TRACK.schedstat, 100, 0).split()
    return int(running) / 1e9, int(waiting) / 1e9


def _first_call() -> None:
    TRACK.loop_thread = threading.get_ident()
    with contextlib.suppress(OSError):
        TRACK.schedstat = os.open("/proc/thread-self/schedstat", os.O_RDONLY)


def _record(entry: Callback, handle: asyncio.Handle, queued: float) -> None:
    """Count one callback that has just run (``queued``: the thread's runnable seconds
    before it)."""
    if TRACK.schedstat >= 0:
        runnable = scheduled()[1] - queued
        # Neither on a CPU nor waiting for one: asleep, inside a callback that is the GIL.
        asleep = max(0.0, entry.wall - entry.cpu - runnable)
        TRACK.runnable += runnable
        TRACK.asleep += asleep
        TRACK.asleep_long.update(ms for ms in THRESHOLDS_MS if asleep >= ms / 1000)
    TRACK.total_cpu += entry.cpu
    TRACK.total_wall += entry.wall
    TRACK.slow_wall += entry.wall >= 0.01 and entry.cpu < 0.002
    TRACK.callbacks += 1
    TRACK.counts.update(ms for ms in THRESHOLDS_MS if entry.cpu >= ms / 1000)
    if entry.cpu >= NAMED_MS / 1000:
        entry.label = label(handle)
        TRACK.long.append(entry)


def install() -> None:
    original = asyncio.Handle._run

    def timed(self: asyncio.Handle) -> None:
        if TRACK.loop_thread == 0:
            _first_call()
        entry = Callback(0.0, 0.0, "")
        TRACK.current = entry
        queued = scheduled()[1]
        cpu, wall = time.thread_time(), time.perf_counter()
        try:
            original(self)
        finally:
            entry.cpu = time.thread_time() - cpu
            entry.wall = time.perf_counter() - wall
            TRACK.current = None
            _record(entry, self, queued)

    asyncio.Handle._run = timed  # type: ignore[method-assign]
    select = selectors.DefaultSelector.select

    def timed_select(self: selectors.BaseSelector, timeout: float | None = None
                     ) -> list[tuple[selectors.SelectorKey, int]]:
        began = time.perf_counter()
        ready = select(self, timeout)  # type: ignore[arg-type]
        if not ready and timeout is not None and timeout > 0:
            TRACK.select_late.append(time.perf_counter() - began - timeout)
        return ready

    selectors.DefaultSelector.select = timed_select  # type: ignore[method-assign]
    gc.callbacks.append(on_gc)


def report() -> None:
    print("\nevent-loop callbacks by the loop thread's CPU time (the whole run)")
    print(f"  callbacks {TRACK.callbacks}, loop thread CPU in them {TRACK.total_cpu:.2f} s")
    print(f"  wall in them {TRACK.total_wall:.2f} s; callbacks >= 10 ms of wall with < 2 ms "
          f"of CPU (waiting for the GIL or a CPU): {TRACK.slow_wall}")
    if TRACK.schedstat >= 0:
        print(f"  of that wall: waiting for a CPU (runnable) {TRACK.runnable:.2f} s, asleep "
              f"(waiting for the GIL) {TRACK.asleep:.2f} s; callbacks asleep "
              + " / ".join(f">= {ms} ms" for ms in THRESHOLDS_MS) + ": "
              + " / ".join(str(TRACK.asleep_long[ms]) for ms in THRESHOLDS_MS))
    late = sorted(TRACK.select_late)
    if late:
        print(f"  selects that timed out ({len(late)}), returned late p50 / p99 / most: "
              f"{1000 * late[len(late) // 2]:.1f} / {1000 * late[int(0.99 * (len(late) - 1))]:.1f}"
              f" / {1000 * late[-1]:.1f} ms")
    print("  " + " / ".join(f">= {ms} ms" for ms in THRESHOLDS_MS) + ": "
          + " / ".join(str(TRACK.counts[ms]) for ms in THRESHOLDS_MS))
    for generation in sorted(TRACK.gc_by_gen):
        spent = TRACK.gc_by_gen[generation]
        print(f"  gc gen{generation}: {len(spent)} collections, {sum(spent):.3f} s, longest "
              f"{1000 * max(spent):.1f} ms, >= 10 ms: {sum(s >= 0.01 for s in spent)}")
    print(f"  gc outside callbacks {TRACK.gc_outside:.3f} s; gc.get_threshold() "
          f"{gc.get_threshold()}, frozen {gc.get_freeze_count()}")
    groups: dict[str, list[Callback]] = defaultdict(list)
    for entry in TRACK.long:
        top = entry.samples.most_common(1)
        what = top[0][0] if top else "(no sample)"
        if entry.gc >= 0.5 * entry.cpu:
            what = "garbage collection"
        groups[f"{entry.label} | {what}"].append(entry)
    print(f"  callbacks >= {NAMED_MS:g} ms, by what they spent most samples in:")
    for name, entries in sorted(groups.items(), key=lambda kv: -sum(e.cpu for e in kv[1])):
        cpus = sorted(e.cpu for e in entries)
        gcs = sum(e.gc for e in entries)
        print(f"    {len(entries):4d}× max {1000 * cpus[-1]:6.1f} ms, median "
              f"{1000 * cpus[len(cpus) // 2]:5.1f} ms (gc {1000 * gcs:.0f} ms in all)  {name}")


def main() -> None:
    own = argparse.ArgumentParser(add_help=False)
    own.add_argument("--no-sampler", action="store_true",
                     help="time only (the sampler thread competes for the GIL)")
    own.add_argument("--switch-interval", type=float, default=None)
    own.add_argument("--gc-freeze", action="store_true",
                     help="gc.freeze() once everything is imported, before the run (fetch.py "
                          "itself tunes the collector as `alertd run` does: alertd.gctune)")
    mine, rest = own.parse_known_args()
    sys.argv = ["fetch.py", *rest]
    args = fetch.parse_args()
    if mine.switch_interval is not None:
        sys.setswitchinterval(mine.switch_interval)
    if mine.gc_freeze:
        gc.collect()
        gc.freeze()
    install()
    stop = threading.Event()
    thread = threading.Thread(target=sampler, args=(stop,), daemon=True)
    if not mine.no_sampler:
        thread.start()
    try:
        asyncio.run(fetch.main(args))
    finally:
        stop.set()
        if thread.is_alive():
            thread.join()
        report()


if __name__ == "__main__":
    main()

"""``release`` gives freed heap pages back to the system (glibc), measured on this process;
``one_arena`` keeps a thread's blocks in the main arena (glibc's own ``malloc_stats``)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from alertd.service.trim import release


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_release_gives_a_fragmented_heap_back() -> None:
    assert release()  # glibc here: a no-op elsewhere
    blocks = [bytes(2000) for _ in range(30_000)]  # ~60 MB of malloc'd (not pymalloc) blocks
    kept = blocks[::50]  # one in fifty stays: the heap cannot shrink from its top
    del blocks
    before = rss_kb()
    assert release()
    after = rss_kb()
    assert len(kept) == 600
    assert before - after > 30_000  # most of the ~59 MB freed went back


ARENAS = """
import ctypes, sys, threading
from alertd.service.trim import one_arena
if sys.argv[1] == "one":
    assert one_arena()
def work() -> None:
    kept.extend(bytearray(4000) for _ in range(1000))  # malloc'd, in this thread's arena
kept: list[bytearray] = []
thread = threading.Thread(target=work)
thread.start()
thread.join()
ctypes.CDLL("libc.so.6").malloc_stats()  # one "Arena N:" block per arena, on stderr
"""


def arenas(mode: str) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}  # glibc's own
    done = subprocess.run([sys.executable, "-c", ARENAS, mode], capture_output=True, text=True,
                          check=True, timeout=60, env=env)
    return len(re.findall(r"^Arena \d+:", done.stderr, re.MULTILINE))


def test_one_arena_keeps_a_threads_blocks_in_the_main_arena() -> None:
    if not release():
        # musl or macOS: there is no glibc arena to count, and one_arena is a no-op there by
        # design. The machines CI runs on are Debian (glibc), where this test always runs.
        pytest.skip("not glibc: one_arena does nothing there")
    assert arenas("default") == 2  # the worker thread got an arena of its own
    assert arenas("one") == 1

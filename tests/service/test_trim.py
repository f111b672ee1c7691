"""``release`` gives freed heap pages back to the system (glibc), measured on this process."""

from __future__ import annotations

from pathlib import Path

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

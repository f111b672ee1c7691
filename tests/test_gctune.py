"""alertd.gctune, in a fresh interpreter (the policy is process-wide: the test process's own
collector is left alone)."""

from __future__ import annotations

import json
import subprocess
import sys


def test_tune_raises_the_young_threshold_and_freezes_what_exists() -> None:
    script = (
        "import gc, json\n"
        "from alertd import gctune\n"
        "before = gc.get_threshold()\n"
        "gctune.tune()\n"
        "print(json.dumps([before, gc.get_threshold(), gc.get_freeze_count()]))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True, timeout=60)
    before, after, frozen = json.loads(done.stdout)
    assert after == [10_000, before[1], before[2]]
    assert frozen > 1000  # the interpreter's and alertd's start-up objects

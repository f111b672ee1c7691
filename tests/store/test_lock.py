"""One writer per state file: the daemon's lock keeps a recording ``check`` out."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from alertd.errors import StoreError
from alertd.store.lock import exclusive, lock_path


def test_second_holder_is_refused_until_the_first_lets_go(tmp_path: Path) -> None:
    state = tmp_path / "alertd.db"
    with (
        exclusive(state, "the daemon"),
        pytest.raises(StoreError, match="--dry-run"),
        exclusive(state, "'alertd check'"),
    ):
        pass
    with exclusive(state, "'alertd check'"):
        assert lock_path(state).exists()


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    state = tmp_path / "alertd.db"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pathlib import Path; from alertd.store.lock import exclusive\n"
         f"with exclusive(Path({str(state)!r}), 'x'):\n"
         "    print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(StoreError), exclusive(state, "check"):
            pass
    finally:
        holder.kill()
        holder.wait()
    with exclusive(state, "check"):
        pass

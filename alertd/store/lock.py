"""One writer per state file: an advisory lock beside it.

The daemon holds ``<state>.lock`` for as long as it runs; ``alertd check`` (which records and
delivers) takes it too, so the two never commit alert state or deliver the same outbox rows
at once. ``check --dry-run`` only reads and needs no lock. The lock is ``flock(2)``: the kernel
releases it when the process dies, even by SIGKILL, so a crash never leaves it stale.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alertd.errors import StoreError


def lock_path(state: Path) -> Path:
    return state.with_name(state.name + ".lock")


@contextmanager
def exclusive(state: Path, holder: str) -> Iterator[None]:
    """Hold the state file's lock, or raise :class:`StoreError` naming who must let go."""
    path = lock_path(state)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StoreError(
            f"{state} is in use by another alertd process (a running daemon?); {holder} needs "
            "it alone: use 'alertd check --dry-run', or stop the other process"
        ) from None
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

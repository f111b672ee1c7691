"""One writer per state file: an advisory lock beside it.

The daemon holds ``<state>.lock`` for as long as it runs; ``alertd check`` (which records and
delivers) takes it too, so the two never commit alert state or deliver the same outbox rows
at once. ``check --dry-run`` only reads and needs no lock. The lock is ``flock(2)``: the kernel
releases it when the process dies, even by SIGKILL, so a crash never leaves it stale. The lock
file is ``0600`` whatever the umask, like the state file.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from alertd.errors import StoreError
from alertd.store.schema import FILE_MODE


def lock_path(state: Path) -> Path:
    return state.with_name(state.name + ".lock")


@contextmanager
def exclusive(state: Path, holder: str) -> Iterator[None]:
    """Hold the state file's lock, or raise :class:`StoreError` naming who must let go."""
    path = lock_path(state)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    except OSError as exc:
        raise StoreError(
            f"cannot create the state lock {path}: {exc.strerror or exc}; let alertd write to "
            f"{path.parent} (systemd: StateDirectory=), or change state.path"
        ) from None
    # os.open's mode is filtered by the umask; another user's lock file stays as it is (the
    # flock below still works on it).
    with suppress(OSError):
        os.fchmod(fd, FILE_MODE)
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

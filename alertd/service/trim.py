"""Handing the heap a pass freed back to the system, batch by batch (glibc's ``malloc_trim``).

Why: a pass holds a batch's answers at a time (parsed into numpy columns, the bucket cache's
JSON text, the lifecycle's alerts) and drops them once the batch is judged and committed, so
what Python holds stays flat with the number of customers (``tracemalloc`` over a 240-customer
warm-up: no growth between its first and last thirds but in-flight answers). The process's
RSS still crept up, ~4.5 MB per 1,000 customers of a 10,000-customer warm-up: glibc's
allocator keeps the freed pages of its heap and thread arenas for reuse, and a long pass of
large short-lived blocks leaves them scattered (``/proc/PID/smaps`` of such a run: a 50 MB
``[heap]`` beside ~40 MB of Python's own arenas). ``malloc_trim(0)`` gives every whole free
page back (``madvise``), wherever it lies; it costs well under a millisecond when there is
little to give back and ~85 ms for ~75 MB (measured on this machine), so the poller calls
:func:`release` after every batch (:mod:`alertd.service.polling`). Measured on the
10,000-customer warm-up (``bench/steady.py --daemon``): RSS ~10 MB lower at the same point
of the pass; it does not remove the slope that remains (``bench/README.md``).

Elsewhere (musl, macOS) there is no ``malloc_trim``: :func:`release` does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable


def _trim() -> Callable[[], object] | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: trim(0)


_TRIM = _trim()


def release() -> bool:
    """Gives the heap's free pages back to the system; whether this C library can."""
    if _TRIM is None:
        return False
    _TRIM()
    return True

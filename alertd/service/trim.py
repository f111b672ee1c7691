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

**One arena** (:func:`one_arena`, called by ``alertd run`` before any thread starts): glibc
gives each thread that allocates its own arena, which keeps its own freed pages. The daemon
judges each batch in a worker thread (:meth:`Engine._judge_batch
<alertd.service.engine.Engine._judge_batch>`: numpy's temporaries, the series), so that
thread's arena swung as the loop thread's heap did, beside it: the 10,000-customer steady
cycle's peak RSS rose 135 → 148 MB at 20 ms and 153 → 164 MB at 1 s when judging moved there.
With one arena (``M_ARENA_MAX`` 1; 3,000 customers, 1 s, steady cycle) it peaked at 135 MB
instead of 146, the rate unchanged (93.8 requests/s both); 10,000 customers at 1 s: 164 →
154 MB. Several arenas buy nothing here: the
threads run Python under one interpreter lock, so they seldom allocate at the same instant.
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
#: glibc's ``mallopt`` parameter for the most arenas (``malloc.h``).
M_ARENA_MAX = -8


def one_arena() -> bool:
    """Makes every later thread allocate from the main arena (glibc only; see the module
    doc); whether this C library could. Call before threads start: one that has allocated
    keeps its arena."""
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name or "libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_ARENA_MAX, 1))


def release() -> bool:
    """Gives the heap's free pages back to the system; whether this C library can."""
    if _TRIM is None:
        return False
    _TRIM()
    return True

"""Where large Stripe answers are decoded: a child process, not a thread of the event loop's.

Where it sits: :class:`~alertd.source.http.StripeHTTP` hands every answer of at least
``OFFLOAD_BYTES`` to :meth:`Decoder.run` (JSON, then the caller's parser), and decodes smaller
ones in place.

Why a process: decoding holds the GIL. ``orjson.loads`` of a 5,000-row usage answer (~0.9 MB)
is one C call of ~10 ms that never gives the GIL back, and reading its rows into columns is
mostly C loops over the rows (``map``, ``numpy``) of several ms more. In a worker thread that
CPU left the event loop's callbacks but not its thread: each time the loop let go of the GIL
— every ``select``, ``recv`` and ``send`` does — the decoding thread took it, and the loop got
it back only when that C call ended or after a switch interval (5 ms). Measured on the loop
thread during ``bench/fetch.py``'s phase 1 (``bench/loop_callbacks.py``), the loop's
callbacks took ~3× their CPU time in wall time (waiting for the GIL), hardly any callback used
≥ 10 ms of CPU, yet the budget's timers fired 36–67 ms late at p99 (the README's figures). A
child process has its own GIL: the loop now waits for nothing but its own work (the loop
thread's time asleep inside callbacks, phase 1 at 150 ms: 1.96 → 0.18 s, callbacks asleep
≥ 10 ms 44 → 0; ``bench/README.md``).

What crosses: the body's bytes, the status and the two headers error messages read, out; the
decoded result (for usage answers, numpy columns: ~0.2 ms to pickle), back. The parser must
pickle (a module-level function or an instance of a module-level class, as every parser of
alertd is); one that does not (a closure) is run in a worker thread, as before. One process for
the whole interpreter, shared by every client (one per Stripe account) and stopped with the
last, started on the first large answer (:meth:`Decoder.start` starts it ahead, as the
benchmarks do): decodes take turns, as they did in the thread, and a second would compete with
the event loop for the machine's cores. It is started with ``spawn`` (a fresh interpreter;
``fork`` would copy the loop's threads and state). If it cannot be
started, or dies, large answers are decoded in the worker thread from then on (logged once).

``spawn`` imports the parent's main module in the child (multiprocessing's rule, which
``python -m alertd``, the ``alertd`` command and the benches meet): a script that opens a
:class:`~alertd.source.http.StripeHTTP` must keep its work under ``if __name__ ==
"__main__"``. The child costs its own memory (an interpreter with alertd's source modules,
numpy and httpx imported: ``bench/fetch.py`` prints its peak RSS).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import pickle
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

log = logging.getLogger("alertd.source")

R = TypeVar("R")


def _ready() -> int:
    """The child's process id: a first call that has the process started."""
    import os

    return os.getpid()


def picklable(value: object) -> bool:
    """Whether ``value`` can be sent to the decoding process."""
    try:
        pickle.dumps(value)
    except (pickle.PicklingError, TypeError, AttributeError):
        return False
    return True


class _Shared:
    """The one decoding process of this interpreter and the decoders using it: every
    :class:`StripeHTTP` (one per Stripe account) shares it, so accounts add no processes."""

    def __init__(self) -> None:
        self.pool: ProcessPoolExecutor | None = None
        self.pid: int | None = None
        self.users = 0

    def join(self) -> ProcessPoolExecutor:
        self.users += 1
        if self.pool is None:
            self.pool = ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        return self.pool

    def leave(self, pool: ProcessPoolExecutor) -> ProcessPoolExecutor | None:
        """One user less; the pool to shut down when it was the last one (or the pool is no
        longer the shared one)."""
        if pool is not self.pool:
            return pool
        self.users -= 1
        if self.users > 0:
            return None
        self.pool, self.pid = None, None
        return pool

    def broken(self, pool: ProcessPoolExecutor) -> None:
        """``pool`` failed: the next decoder to join starts a new one."""
        if pool is self.pool:
            self.pool, self.pid, self.users = None, None, 0


_SHARED = _Shared()


class Decoder:
    """Large answers decoded in the interpreter's one decoding process (and a thread for
    what cannot be sent there); see the module doc.

    ``processes=False`` decodes in the thread only (no child process).
    """

    def __init__(self, *, processes: bool = True) -> None:
        self._use_processes = processes
        self._processes: ProcessPoolExecutor | None = None  # the shared pool, once joined
        self._thread: ThreadPoolExecutor | None = None

    @property
    def pid(self) -> int | None:
        """The decoding process's id once started (its CPU is the client's), else ``None``."""
        return _SHARED.pid if self._processes is not None and \
            self._processes is _SHARED.pool else None

    async def start(self) -> None:
        """Start the decoding process now (it is otherwise started on the first large
        answer, which then waits for the interpreter to start)."""
        pool = self._process_pool()
        if pool is None:
            return
        try:
            await self._started(pool)
        except (BrokenProcessPool, OSError) as exc:
            self._give_up(pool, exc)

    async def _started(self, pool: ProcessPoolExecutor) -> None:
        if _SHARED.pid is None or pool is not _SHARED.pool:
            pid = await asyncio.get_running_loop().run_in_executor(pool, _ready)
            if pool is _SHARED.pool:
                _SHARED.pid = pid

    async def run(self, function: Callable[..., R], *args: Any) -> R:
        """``function(*args)`` in the decoding process, or in the thread when a callable of
        ``args`` (the parser) does not pickle or there is no process. ``function`` must be
        module-level and the other ``args`` must pickle (only the callables are checked: a
        body is not pickled twice)."""
        loop = asyncio.get_running_loop()
        sendable = all(picklable(arg) for arg in args if callable(arg))
        pool = self._process_pool() if sendable else None
        if pool is not None:
            try:
                await self._started(pool)
                return await loop.run_in_executor(pool, function, *args)
            except (BrokenProcessPool, OSError) as exc:
                self._give_up(pool, exc)
        if self._thread is None:
            # One thread: decodes take turns.
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="alertd-decode")
        return await loop.run_in_executor(self._thread, function, *args)

    def _process_pool(self) -> ProcessPoolExecutor | None:
        if not self._use_processes:
            return None
        if self._processes is None:
            self._processes = _SHARED.join()
        return self._processes

    def _give_up(self, pool: ProcessPoolExecutor, exc: BaseException) -> None:
        if not self._use_processes:  # several answers saw the same failure
            return
        log.warning("the decoding process failed (%s: %s); large Stripe answers are decoded "
                    "in a thread from now on", type(exc).__name__, exc)
        self._use_processes = False
        _SHARED.broken(pool)
        if self._processes is not None:
            processes, self._processes = self._processes, None
            stale = _SHARED.leave(processes)
            if stale is not None:
                stale.shutdown(wait=False, cancel_futures=True)

    async def aclose(self) -> None:
        """Leave the shared process (stopped, off the loop, when this was its last user) and
        stop the thread."""
        processes, self._processes = self._processes, None
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.shutdown(wait=False, cancel_futures=True)
        if processes is not None:
            last = _SHARED.leave(processes)
            if last is not None:
                await asyncio.to_thread(last.shutdown, True, cancel_futures=True)

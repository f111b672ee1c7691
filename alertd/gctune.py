"""The garbage collector's pace for the long-running daemon.

CPython collects its youngest generation every 700 net allocations of container objects. A
daemon delivering thousands of notifications a second allocates dicts, tuples and coroutines
by the million, nearly all freed by reference counting long before any collection, so those
collections find next to nothing and cost real CPU: ``bench/notify.py`` timed about 600 of
them per 4,000-notification burst, ~80 µs per notification (``gc.callbacks``), a quarter of
delivery's cost. :func:`tune` raises the first threshold to :data:`YOUNG` (the older two stay
CPython's 10) and :func:`gc.freeze` moves what exists when it is called — the imported
modules and their constants; ``alertd run`` calls it before the daemon loads its config — out
of every later collection's walk. Cyclic garbage is
still collected, only in larger, rarer steps: at most :data:`YOUNG` young containers wait for
it. The same policy is common in long-running CPython services (Instagram's ``gc.freeze``
write-up, gunicorn's pre-fork freeze); it changes no result, only when the collector runs.
"""

from __future__ import annotations

import gc

#: Net container allocations between two collections of the youngest generation (CPython's
#: default is 700).
YOUNG = 10_000


def tune() -> None:
    """Collect less often, and never again walk what exists now."""
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG, middle, old)
    gc.collect()
    gc.freeze()

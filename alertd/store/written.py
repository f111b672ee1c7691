"""The notifications this process wrote to the outbox, kept to skip decoding them back.

Where it sits: a store notes each outbox row's :class:`~alertd.model.Notification` beside the
JSON text it wrote for it (:func:`alertd.store.rows.outbox_params`); when the outbox worker
claims the row (``due_deliveries``), :meth:`Written.take` hands that object back instead of
``json.loads`` + ``Notification.from_dict`` — ~40 µs of the ~100 µs a notification cost the
store's thread (issue 16).

Why it is exact: the key is the stored text itself, so a row whose text is not what this
process wrote (another replica's, an ``INSERT OR IGNORE`` that kept an older row, a file
from before a restart) misses and is decoded as always. Only notifications whose decoding
gives back an equal object are kept (:func:`faithful`): every mapping already in key order
(the text is key-sorted, the decoded dicts are in that order) and condition details of plain
JSON scalars (``to_json``'s ``default=str`` and tuples do not come back as they went in).

Bounded: a row is taken out when it is claimed, and at most :data:`CAPACITY` are kept (the
oldest go first; a row that missed is only decoded, never lost).
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Mapping

from alertd.model import Notification

#: Notifications kept at most (a burst of the bench is 4,000).
CAPACITY = 10_000

_SCALARS = (str, int, float, bool, type(None))


def _in_order(mapping: Mapping[str, object]) -> bool:
    keys = list(mapping)
    return keys == sorted(keys)


def _plain(details: Mapping[str, object]) -> bool:
    return _in_order(details) and all(type(v) in _SCALARS for v in details.values())


def faithful(n: Notification) -> bool:
    """``Notification.from_dict(json.loads(to_json(n.to_dict())))`` would equal ``n``, and
    hold its mappings in the same order."""
    if not _in_order(n.group_labels):
        return False
    for a in n.alerts:
        if not (_in_order(a.labels) and _in_order(a.annotations) and _plain(a.details)
                and _in_order(a.customer.metadata)
                and all(type(v) is str for v in a.customer.metadata.values())
                and list(a.dimensions) == sorted(a.dimensions)
                and all(type(b.value) is float and type(b.complete) is bool
                        for b in a.recent)):
            return False
    return True


class Written:
    """Stored JSON text → the :class:`Notification` it was written from (thread-safe: the
    store's threads note and take)."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self._kept: OrderedDict[str, Notification] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._kept)

    def note(self, notification: Notification, text: str) -> None:
        """``text`` is what the row of ``notification`` holds (or will, once committed)."""
        if not faithful(notification):
            return
        with self._lock:
            self._kept[text] = notification
            while len(self._kept) > self.capacity:
                self._kept.popitem(last=False)

    def take(self, text: str) -> Notification:
        """The notification stored as ``text``: the one noted (and forgotten now), or
        decoded."""
        with self._lock:
            kept = self._kept.pop(text, None)
        return kept if kept is not None else Notification.from_dict(json.loads(text))

"""A series' buckets as columns: numpy arrays, with :class:`Bucket` objects made only when read.

Sits inside :class:`alertd.model.Series`: :func:`alertd.conditions.series.build_series` bins
rows straight into arrays and hands them over as :class:`BucketColumns`, which *is* a
``Sequence[Bucket]`` — every reader of ``series.buckets`` (the evaluators, the notification
context, the engine's recent buckets) sees the same buckets as before. An hourly anomaly rule
has ~840 buckets a series, and building those objects cost more than judging them; the anomaly
evaluator reads the arrays instead (:func:`columns_of`) and never makes one.

Contract: the four columns have one length; ``starts``/``ends`` are int64 unix seconds,
``values`` float64, ``complete`` bool. A materialised bucket carries Python ``int``/``float``/
``bool`` (never numpy scalars), and equality and hashing are those of the tuple of buckets, so a
series built from columns equals one built from the same buckets. Columns are never changed
after construction (the arrays are made read-only).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from itertools import repeat
from operator import attrgetter
from typing import overload

import numpy as np

from alertd.model import Bucket

_COLUMNS = (("starts_at", np.int64), ("ends_at", np.int64), ("value", np.float64),
            ("complete", np.bool_))
_FIELDS = tuple(getattr(Bucket, name) for name in ("starts_at", "ends_at", "value", "complete"))


class BucketColumns(Sequence[Bucket]):
    """The buckets of one series, held as arrays; see the module docstring."""

    __slots__ = ("_buckets", "complete", "ends", "starts", "values")

    def __init__(self, starts: np.ndarray, ends: np.ndarray,
                 values: np.ndarray, complete: np.ndarray) -> None:
        if not len(starts) == len(ends) == len(values) == len(complete):
            raise ValueError("bucket columns of different lengths")
        self.starts = _frozen(starts, np.int64)
        self.ends = _frozen(ends, np.int64)
        self.values = _frozen(values, np.float64)
        self.complete = _frozen(complete, np.bool_)
        self._buckets: tuple[Bucket, ...] | None = None

    @classmethod
    def of(cls, buckets: Sequence[Bucket]) -> BucketColumns:
        """The columns of ``buckets`` (themselves, if they already are columns)."""
        if isinstance(buckets, BucketColumns):
            return buckets
        count = len(buckets)
        # ``map`` with an attribute getter reads the buckets at C speed (a backtest's series
        # are tuples of buckets, ~840 an hourly anomaly judgement).
        return cls(*(np.fromiter(map(attrgetter(name), buckets), dtype, count)
                     for name, dtype in _COLUMNS))

    def __len__(self) -> int:
        return len(self.values)

    @overload
    def __getitem__(self, index: int) -> Bucket: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[Bucket, ...]: ...

    def __getitem__(self, index: int | slice) -> Bucket | tuple[Bucket, ...]:
        if isinstance(index, slice):
            if self._buckets is not None:
                return self._buckets[index]
            return _make(self.starts[index], self.ends[index], self.values[index],
                         self.complete[index])
        if self._buckets is not None:
            return self._buckets[index]
        return Bucket(int(self.starts[index]), int(self.ends[index]), float(self.values[index]),
                      bool(self.complete[index]))

    def __iter__(self) -> Iterator[Bucket]:
        return iter(self.buckets())

    def buckets(self) -> tuple[Bucket, ...]:
        """Every bucket, made once and kept."""
        if self._buckets is None:
            self._buckets = _make(*self._columns())
        return self._buckets

    def complete_count(self) -> int:
        """How many buckets are complete (by the freshness rule they are a prefix)."""
        return int(np.count_nonzero(self.complete))

    def _columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return self.starts, self.ends, self.values, self.complete

    def __eq__(self, other: object) -> bool:
        if isinstance(other, BucketColumns):
            return all(np.array_equal(a, b) for a, b in zip(self._columns(), other._columns(),
                                                           strict=True))
        if isinstance(other, tuple):
            return self.buckets() == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.buckets())

    def __repr__(self) -> str:
        return f"BucketColumns({self.buckets()!r})"


def columns_of(buckets: Sequence[Bucket]) -> BucketColumns:
    """``buckets`` as columns (no copy when they are columns already)."""
    return BucketColumns.of(buckets)


def _frozen(column: np.ndarray | Sequence[object], dtype: type[np.generic]
            ) -> np.ndarray:
    array = np.asarray(column, dtype=dtype)
    if array.flags.writeable:
        array = array.view()
        array.flags.writeable = False
    return array


def _make(starts: np.ndarray, ends: np.ndarray, values: np.ndarray,
          complete: np.ndarray) -> tuple[Bucket, ...]:
    """``Bucket(s, e, v, c)`` for each, field by field through the slots' descriptors (a frozen
    dataclass's ``__init__`` costs twice as much), from Python scalars (``tolist``)."""
    buckets = list(map(object.__new__, repeat(Bucket, len(starts))))
    for descriptor, column in zip(_FIELDS, (starts, ends, values, complete), strict=True):
        deque(map(descriptor.__set__, buckets, column.tolist()), maxlen=0)
    return tuple(buckets)

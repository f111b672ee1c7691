"""Deterministic pseudo-randomness for the usage generator: a hash, not a random stream.

Every random choice the simulator makes is a pure function of the seed and of *what* is being
chosen (customer, meter, cell, slot...). Any slot can therefore be computed on its own, in any
order, without generating history first, and the same seed gives the same account on every
machine (the arithmetic is integer SplitMix64; no library RNG whose stream might change).

Bulk noise comes from :class:`NoiseTable`: one table of uniform numbers per seed, read at
``(key + position) mod size``. A per-stream key makes each customer, meter and cell read its own
stretch of the table, so a range of slots costs one gather instead of one hash per value.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import numpy.typing as npt

MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB
_UNIT = 2.0**-53

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def mix(value: int) -> int:
    """SplitMix64's finaliser: a well-spread 64-bit hash of a 64-bit integer."""
    value = (value + _GOLDEN) & MASK64
    value = ((value ^ (value >> 30)) * _M1) & MASK64
    value = ((value ^ (value >> 27)) * _M2) & MASK64
    return value ^ (value >> 31)


def digest(*parts: int) -> int:
    """One 64-bit hash of a sequence of integers (order matters)."""
    state = 0
    for part in parts:
        state = mix(state ^ (part & MASK64))
    return state


def unit(value: int) -> float:
    """A hash mapped to a float in ``[0, 1)``."""
    return (value >> 11) * _UNIT


def uniform(low: float, high: float, *parts: int) -> float:
    """A deterministic float in ``[low, high)`` chosen by ``parts``."""
    return low + (high - low) * unit(digest(*parts))


def choice(count: int, *parts: int) -> int:
    """A deterministic index in ``range(count)`` chosen by ``parts``."""
    return digest(*parts) % count


def mix_array(values: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """:func:`mix` applied element-wise (uint64 arithmetic wraps, as the scalar version masks)."""
    values = values + np.uint64(_GOLDEN)
    values = (values ^ (values >> np.uint64(30))) * np.uint64(_M1)
    values = (values ^ (values >> np.uint64(27))) * np.uint64(_M2)
    result: npt.NDArray[np.uint64] = values ^ (values >> np.uint64(31))
    return result


class NoiseTable:
    """``size`` uniform floats in ``[0, 1)`` derived from ``seed``; read by key and position.

    Use :meth:`for_seed` to share one (immutable) table between generators of the same seed.
    """

    @classmethod
    @lru_cache(maxsize=4)
    def for_seed(cls, seed: int) -> NoiseTable:
        return cls(seed)

    def __init__(self, seed: int, bits: int = 20) -> None:
        self._mask = (1 << bits) - 1
        positions = np.arange(1 << bits, dtype=np.uint64) ^ np.uint64(digest(seed, 0x7AB1E))
        hashed = mix_array(positions)
        self._table: FloatArray = (hashed >> np.uint64(11)).astype(np.float64) * _UNIT
        self._table.flags.writeable = False

    def read(self, key: int, positions: IntArray) -> FloatArray:
        """Uniform floats for ``positions`` (any shape) in the stream named by ``key``."""
        index = (positions + (key & self._mask)) & self._mask
        values: FloatArray = self._table[index]
        return values

    def read_rows(self, keys: list[int], positions: IntArray) -> FloatArray:
        """A ``len(keys) × len(positions)`` block: one row per stream."""
        offsets = np.array([key & self._mask for key in keys], dtype=np.int64)
        index = (positions[np.newaxis, :] + offsets[:, np.newaxis]) & self._mask
        values: FloatArray = self._table[index]
        return values

"""Labelled incidents: the things alert rules should find, placed by the seed.

Time is cut into 7-day *blocks* from the history start. Each (customer, block) holds at most
one incident, with probability ``min(1, rate × 7 / 30)`` (``rate`` = expected incidents per
customer per 30 days). An incident starts in the first 4 days of its block and ends by the
block's end, so one customer's incidents never overlap, and two that add usage (spike or
overuse) are at least 3 days − 2 hours apart: no 25-hour day ever holds two of them.

=========  ==================  ====================  ===========================================
kind       meter               duration              effect (``factor``)
=========  ==================  ====================  ===========================================
spike      any                 1–2 h                 usage of the matching cells × 3–5; half of
                                                     them hit one ``model`` / ``endpoint`` only
drop       any                 6 h – 3 days          usage × 0.05–0.3
stop       any                 4 h – 3 days          usage × 0 (nothing at all)
late       any                 2–12 h                a fraction 0.1–0.3 of each slot's value
                                                     becomes visible only ``delay`` (1–24 h)
                                                     after the slot ends: closed buckets grow
overuse    ``mtr_sim_tokens``  3–6 h within          extra tokens, ``factor`` (1.3–1.8) ×
                               08:00–18:00 UTC       ``daily_token_quota`` in all, spread evenly
=========  ==================  ====================  ===========================================

Why only ``overuse`` crosses ``daily_token_quota``: normal usage of any 25 hours stays at or
below 60 % of it (:mod:`alertd.sim.profiles`). A spike multiplies at most 8 slots by at most
5, adding at most ``4 × 8 × 1.7 / 102.8 ≈ 0.32`` of those 60 %-bounded hours' budget, i.e.
≤ 0.32 × quota (plus rounding), so a spike day stays ≤ ~92 % of the quota. Drops, stops and
late data only lower what is visible. An overuse adds at least 1.3 × the quota by itself, and
lies within 08:00–18:00 UTC, so it falls inside one local day in every zone from UTC−8 to UTC+6.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np

from alertd.clock import iso
from alertd.model import Dimensions
from alertd.sim import hashing
from alertd.sim.profiles import DAY_SECONDS, METERS, SLOT_SECONDS, TOKENS

IncidentKind = Literal["spike", "drop", "stop", "late", "overuse"]
INCIDENT_KINDS: tuple[IncidentKind, ...] = get_args(IncidentKind)

BLOCK_SECONDS = 7 * DAY_SECONDS
_START_WITHIN = 4 * DAY_SECONDS
HOUR = 3600
DEFAULT_WEIGHTS: Mapping[IncidentKind, float] = {
    "spike": 0.3, "drop": 0.15, "stop": 0.15, "late": 0.15, "overuse": 0.25,
}
#: Which meter a non-overuse incident hits: tokens half the time, API calls 30 %, storage 20 %.
_METER_SHARES = (0.5, 0.8, 1.0)
_INCIDENT = 4
#: A float in ``[low, high)`` for one random choice (``stream``) of one incident.
_Between = Callable[[int, float, float], float]


@dataclass(frozen=True, slots=True)
class Incident:
    """One injected, labelled anomaly over ``[starts_at, ends_at)``.

    ``factor`` depends on ``kind``: the multiplier for spike/drop/stop, the late fraction for
    late, the multiple of ``daily_token_quota`` added for overuse. ``dimensions`` restricts a
    spike to the cells with those values (empty = every cell). ``delay`` (late only) is how long
    after a slot ends its late part becomes visible.
    """

    kind: IncidentKind
    customer: str
    meter: str
    starts_at: int
    ends_at: int
    factor: float
    dimensions: Dimensions = ()
    delay: int = 0

    def overlaps(self, starts_at: int, ends_at: int) -> bool:
        return self.starts_at < ends_at and starts_at < self.ends_at

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "customer": self.customer,
            "meter": self.meter,
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
            "starts_at_iso": iso(self.starts_at),
            "ends_at_iso": iso(self.ends_at),
            "factor": self.factor,
            "dimensions": dict(self.dimensions),
            "delay": self.delay,
        }


class IncidentSchedule:
    """Which incident each (customer, block) holds; computed on demand and remembered."""

    def __init__(
        self,
        seed: int,
        history_start: int,
        rate: float,
        weights: Mapping[IncidentKind, float] | None = None,
    ) -> None:
        if rate < 0:
            raise ValueError("incident rate cannot be negative")
        self.seed = seed
        self.history_start = history_start
        self.probability = min(1.0, rate * 7 / 30)
        chosen = dict(DEFAULT_WEIGHTS if weights is None else weights)
        unknown = set(chosen) - set(INCIDENT_KINDS)
        if unknown or sum(chosen.values()) <= 0:
            raise ValueError(f"incident weights need positive shares of {INCIDENT_KINDS}")
        total = sum(chosen.values())
        self._cumulative: list[tuple[float, IncidentKind]] = []
        running = 0.0
        for kind, share in chosen.items():
            running += share / total
            self._cumulative.append((running, kind))
        self._known: dict[tuple[int, int], Incident | None] = {}

    def blocks(self, since: int, until: int) -> range:
        """The blocks overlapping ``[since, until)`` (none before the history start)."""
        first = max(0, (since - self.history_start) // BLOCK_SECONDS)
        last = (until - 1 - self.history_start) // BLOCK_SECONDS
        return range(first, last + 1)

    def for_customer(self, index: int, customer: str, since: int, until: int) -> list[Incident]:
        """The customer's incidents overlapping ``[since, until)``, in time order."""
        found = (self.in_block(index, customer, block) for block in self.blocks(since, until))
        return [i for i in found if i is not None and i.overlaps(since, until)]

    def holders(self, block: int, customers: int) -> list[int]:
        """Indices among the first ``customers`` that hold an incident in ``block``.

        The same first draw as :meth:`in_block`, vectorised over customers, so listing the
        incidents of 10,000 customers costs one hash per customer and block in numpy.
        """
        prefix = hashing.digest(self.seed, _INCIDENT)
        state = hashing.mix_array(np.arange(customers, dtype=np.uint64) ^ np.uint64(prefix))
        for part in (block, 1):
            state = hashing.mix_array(state ^ np.uint64(part))
        draws = (state >> np.uint64(11)).astype(np.float64) * 2.0**-53
        return np.flatnonzero(draws < self.probability).tolist()

    def in_block(self, index: int, customer: str, block: int) -> Incident | None:
        key = (index, block)
        if key not in self._known:
            self._known[key] = self._draw(index, customer, block)
        return self._known[key]

    def _draw(self, index: int, customer: str, block: int) -> Incident | None:
        def between(stream: int, low: float, high: float) -> float:
            return hashing.uniform(low, high, self.seed, _INCIDENT, index, block, stream)

        if between(1, 0.0, 1.0) >= self.probability:
            return None
        roll = between(2, 0.0, 1.0)
        kind = next((k for edge, k in self._cumulative if roll < edge), self._cumulative[-1][1])
        block_start = self.history_start + block * BLOCK_SECONDS
        if kind == "overuse":
            return self._overuse(customer, block_start, between)
        meter_roll = between(3, 0.0, 1.0)
        meter = METERS[next(i for i, edge in enumerate(_METER_SHARES) if meter_roll < edge)]
        starts_at = block_start + _slots(between(4, 0, _START_WITHIN))
        low, high, factor_low, factor_high = _SHAPES[kind]
        ends_at = starts_at + max(SLOT_SECONDS, _slots(between(5, low, high)))
        factor = round(between(6, factor_low, factor_high), 2)
        dimensions: Dimensions = ()
        if kind == "spike" and meter.dimensions and between(7, 0.0, 1.0) < 0.5:
            key, values = meter.dimensions[0]
            dimensions = ((key, values[int(between(8, 0, len(values)))]),)
        delay = _slots(between(9, HOUR, 24 * HOUR)) if kind == "late" else 0
        return Incident(kind, customer, meter.id, starts_at, ends_at, factor, dimensions, delay)

    @staticmethod
    def _overuse(customer: str, block_start: int, between: _Between) -> Incident:
        day = block_start + DAY_SECONDS * int(between(10, 0, 4))
        starts_at = day + 8 * HOUR + HOUR * int(between(11, 0, 5))
        hours = 3 + int(between(12, 0, 4))
        ends_at = min(starts_at + hours * HOUR, day + 18 * HOUR)
        factor = round(between(13, 1.3, 1.8), 2)
        return Incident("overuse", customer, TOKENS.id, starts_at, ends_at, factor)


# kind → (shortest, longest duration in seconds, smallest, largest factor)
_SHAPES: Mapping[IncidentKind, tuple[float, float, float, float]] = {
    "spike": (HOUR, 2 * HOUR + SLOT_SECONDS, 3.0, 5.0),
    "drop": (6 * HOUR, 3 * DAY_SECONDS, 0.05, 0.3),
    "stop": (4 * HOUR, 3 * DAY_SECONDS, 0.0, 0.0),
    "late": (2 * HOUR, 12 * HOUR, 0.1, 0.3),
}


def _slots(seconds: float) -> int:
    """``seconds`` rounded down to whole 15-minute slots."""
    return int(seconds) // SLOT_SECONDS * SLOT_SECONDS

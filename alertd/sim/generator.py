"""The simulator's usage generator: deterministic usage of N customers × 3 meters from a seed.

Nothing is stored per event. The value of a (customer, meter, cell, 15-minute slot) is a pure
function of the seed, so any range is computed on demand, vectorised with numpy::

    value = rint(base × weight(cell) × daily shape × weekday × trend × noise(day, slot, cell))

then incidents (:mod:`alertd.sim.incidents`) multiply, add or delay it. Values are integers,
so every sum is exact. The finest grain is the slot because Stripe's analytics store truncates
event timestamps to 15 minutes; :meth:`UsageGenerator.events` materialises individual events
(timestamps inside the slot) whose values add up exactly to the slots, for brute-force checks.

Visibility: a slot is published when it ends, so at ``as_of`` (Stripe's ``refreshed_at``) the
slots that ended by then are visible, except the late part of a slot under a ``late`` incident,
which shows up ``delay`` seconds after the slot ends. History starts at ``history_start`` (by
default ``days`` whole UTC days before ``now``'s day) and continues past ``now``, so moving the
server's clock forward reveals new usage.

Data flow: ``server`` parses a request into :class:`alertd.model.UsageQuery` → :meth:`usage`
→ :class:`alertd.model.UsageRow` list → ``server`` renders Stripe's JSON.

Why over 400 lines: one deterministic usage model whose factors are one formula, plus the bucket
arithmetic that answers Stripe's queries from it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
import numpy.typing as npt

from alertd import calendar
from alertd.model import Dimensions, Granularity, MeterSpec, UsageQuery, UsageRow
from alertd.sim import hashing
from alertd.sim.hashing import FloatArray, IntArray, NoiseTable
from alertd.sim.incidents import Incident, IncidentKind, IncidentSchedule
from alertd.sim.profiles import (
    CELL_NOISE,
    DAY_NOISE,
    DAY_SECONDS,
    DIURNAL,
    METERS,
    METERS_BY_ID,
    SLOT_NOISE,
    SLOT_SECONDS,
    SLOTS_PER_DAY,
    TREND_SPAN,
    WEEKEND_FACTOR,
    CellTable,
    CustomerProfile,
    Directory,
    MeterDef,
    customer_id,
    customer_index,
)

_DAY_STREAM, _SLOT_STREAM, _CELL_STREAM, _EVENT_STREAM = 11, 12, 13, 14
#: Distance between the noise-table stretches of two cells; larger than any query in slots.
_CELL_STRIDE = 104_729
#: The most cell-slots :meth:`UsageGenerator.events` will materialise.
MAX_EVENT_CELL_SLOTS = 200_000

#: Gives a meter's cells and their visible slot values (computed once per request).
_Visible = Callable[[MeterDef], tuple[CellTable, IntArray]]


@dataclass(frozen=True, slots=True)
class Event:
    """One meter event. ``visible_at`` is when the analytics store starts counting it."""

    identifier: str
    customer: str
    meter: str
    timestamp: int
    value: int
    dimensions: Dimensions
    tenants: Dimensions
    visible_at: int


@dataclass(frozen=True, slots=True, eq=False)
class SlotBlock:
    """Slot values of one customer's meter: ``values[cell, slot]`` for ``first_slot``… .

    ``late[cell, slot]`` is the part of ``values`` that arrives ``delay[slot]`` seconds after
    the slot ends (zero outside late incidents).
    """

    first_slot: int
    cells: CellTable
    values: IntArray
    late: IntArray
    delay: IntArray

    def visible(self, as_of: int) -> IntArray:
        """What the analytics store shows at ``as_of`` (slots are assumed to have ended)."""
        columns = np.arange(self.values.shape[1], dtype=np.int64)
        ends = (columns + self.first_slot + 1) * SLOT_SECONDS
        hidden = ends + self.delay > as_of
        if not hidden.any():
            return self.values
        shown: IntArray = self.values - self.late * hidden[np.newaxis, :]
        return shown


@dataclass(frozen=True, slots=True, eq=False)
class Arrivals:
    """A running total as the analytics store sees it grow: ``totals[i]`` is visible from
    ``visible_at[i]`` on (both sorted)."""

    visible_at: IntArray
    totals: IntArray

    def total_at(self, instant: float) -> int:
        """The total a read at ``instant`` shows."""
        index = int(np.searchsorted(self.visible_at, instant, side="right"))
        return int(self.totals[index - 1]) if index else 0

    def reaches(self, bound: float) -> int | None:
        """The first instant the visible total is at least ``bound`` (``None``: never)."""
        hits = np.flatnonzero(self.totals >= bound)
        return int(self.visible_at[hits[0]]) if len(hits) else None


@lru_cache(maxsize=2048)
def bucket_edges(starts_at: int, ends_at: int, window: Granularity | None, tz: str) -> IntArray:
    """Boundaries of the calendar buckets covering ``[starts_at, ends_at)``, clipped to it."""
    inner = [] if window is None else [
        p.starts_at for p in calendar.periods(starts_at, ends_at, window, tz)[1:]
    ]
    edges = np.array([starts_at, *inner, ends_at], dtype=np.int64)
    edges.flags.writeable = False
    return edges


def _ceil_slot(instant: int) -> int:
    return -(-instant // SLOT_SECONDS)


class UsageGenerator:
    """Customers, meters, incidents and usage of one simulated Stripe account.

    ``customers`` customers ``cus_sim_000001``…; history from ``start`` (default: ``days``
    UTC days before the day of ``now``; ``now`` defaults to the wall clock at construction);
    ``incident_rate`` expected incidents per customer per 30 days, kinds drawn by
    ``incident_weights``.
    """

    def __init__(
        self,
        *,
        customers: int = 50,
        seed: int = 1,
        days: int = 90,
        start: int | None = None,
        now: float | None = None,
        incident_rate: float = 1.0,
        incident_weights: Mapping[IncidentKind, float] | None = None,
    ) -> None:
        if customers < 1 or days < 1:
            raise ValueError("the simulator needs at least one customer and one day of history")
        self.now = int(time.time() if now is None else now)
        self.history_start = (
            self.now // DAY_SECONDS * DAY_SECONDS - days * DAY_SECONDS if start is None else start
        )
        self.customer_count = customers
        self.seed = seed
        self.days = days
        self.directory = Directory(seed, customers, self.history_start)
        self.schedule = IncidentSchedule(seed, self.history_start, incident_rate, incident_weights)
        self._noise = NoiseTable.for_seed(seed)
        self._stream_keys: dict[tuple[int, str], tuple[int, int, int]] = {}

    # ------------------------------------------------------------------ directory

    @property
    def meters(self) -> tuple[MeterDef, ...]:
        return METERS

    def profile(self, customer: str) -> CustomerProfile | None:
        """The customer's profile, or ``None`` if the account has no such customer."""
        index = customer_index(customer, self.customer_count)
        return None if index is None else self.directory.profile(index)

    def profiles(self) -> tuple[CustomerProfile, ...]:
        return self.directory.all_profiles

    def incidents(
        self,
        since: int | None = None,
        until: int | None = None,
        customers: Iterable[str] | None = None,
    ) -> list[Incident]:
        """Incidents overlapping ``[since, until)`` (default: the history up to ``now``)."""
        since = self.history_start if since is None else since
        until = self.now if until is None else until
        found: list[Incident] = []
        if customers is None:
            for block in self.schedule.blocks(since, until):
                for index in self.schedule.holders(block, self.customer_count):
                    incident = self.schedule.in_block(index, customer_id(index), block)
                    if incident is not None and incident.overlaps(since, until):
                        found.append(incident)
        else:
            for profile in (p for p in map(self.profile, customers) if p is not None):
                found.extend(self.schedule.for_customer(profile.index, profile.id, since, until))
        return sorted(found, key=lambda i: (i.starts_at, i.customer, i.meter))

    # ------------------------------------------------------------------ slot values

    def slots(self, profile: CustomerProfile, meter: MeterDef, first: int, end: int) -> SlotBlock:
        """Slot values for slots ``first <= s < end`` (unix seconds / 900)."""
        cells = self.directory.cells(profile.index, meter)
        slots = np.arange(first, end, dtype=np.int64)
        values = self._normal(profile, meter, cells, slots)
        late = np.zeros_like(values)
        delay = np.zeros(len(slots), dtype=np.int64)
        starts = slots * SLOT_SECONDS
        for incident in self.schedule.for_customer(
            profile.index, profile.id, first * SLOT_SECONDS, end * SLOT_SECONDS
        ):
            if incident.meter == meter.id:
                in_range = (starts >= incident.starts_at) & (starts < incident.ends_at)
                self._apply(incident, profile, cells, values, late, delay, in_range, starts)
        return SlotBlock(first, cells, values, late, delay)

    def _keys(self, profile: CustomerProfile, meter: MeterDef) -> tuple[int, int, int]:
        key = (profile.index, meter.id)
        found = self._stream_keys.get(key)
        if found is None:
            number = METERS.index(meter)
            found = self._stream_keys[key] = (
                hashing.digest(self.seed, _DAY_STREAM, profile.index, number),
                hashing.digest(self.seed, _SLOT_STREAM, profile.index, number),
                hashing.digest(self.seed, _CELL_STREAM, profile.index, number),
            )
        return found

    def _normal(
        self, profile: CustomerProfile, meter: MeterDef, cells: CellTable, slots: IntArray
    ) -> IntArray:
        day_key, slot_key, cell_key = self._keys(profile, meter)
        local = slots + profile.home_offset_slots
        local_day = local // SLOTS_PER_DAY
        rate: FloatArray = profile.base[meter.id] * _between(
            DAY_NOISE, self._noise.read(day_key, local_day)
        ) * _between(SLOT_NOISE, self._noise.read(slot_key, slots))
        if meter.seasonal:
            weekend = (local_day + 3) % 7 >= 5  # 1970-01-01, day 0, was a Thursday
            rate *= DIURNAL[local % SLOTS_PER_DAY] * np.where(weekend, WEEKEND_FACTOR, 1.0)
        elapsed = (slots * SLOT_SECONDS - self.history_start) / TREND_SPAN
        rate *= 1.0 + profile.growth * np.clip(elapsed, 0.0, 1.0)
        rate[slots * SLOT_SECONDS < self.history_start] = 0.0
        cell_keys = [cell_key + _CELL_STRIDE * cell for cell in range(len(cells))]
        noise = _between(CELL_NOISE, self._noise.read_rows(cell_keys, slots))
        values: IntArray = np.rint(
            cells.weights[:, np.newaxis] * rate[np.newaxis, :] * noise
        ).astype(np.int64)
        return values

    def _apply(
        self,
        incident: Incident,
        profile: CustomerProfile,
        cells: CellTable,
        values: IntArray,
        late: IntArray,
        delay: IntArray,
        in_range: npt.NDArray[np.bool_],
        starts: IntArray,
    ) -> None:
        if not in_range.any():
            return
        if incident.kind == "overuse":
            values[:, in_range] += _overuse_extra(incident, profile, cells, starts[in_range])
        elif incident.kind == "late":
            late[:, in_range] = np.floor(values[:, in_range] * incident.factor).astype(np.int64)
            delay[in_range] = incident.delay
        else:
            chosen = np.ix_(cells.matching(_as_filters(incident.dimensions)), in_range)
            values[chosen] = np.rint(values[chosen] * incident.factor).astype(np.int64)

    def arrivals(self, customer: str, meter: str, starts_at: int, ends_at: int) -> Arrivals:
        """When the usage of ``customer``'s ``meter`` in the slots of ``[starts_at, ends_at)``
        becomes visible to the analytics store, and how much of it: each slot's on-time part
        at the slot's end, its late part ``delay`` after (:meth:`SlotBlock.visible`, summed
        over cells). Computed from the slots, no event materialised: what a benchmark of many
        customers asks "what would a read at ``t`` show?" (:meth:`Arrivals.total_at`)."""
        profile = self.profile(customer)
        if profile is None:
            raise KeyError(customer)
        first, end = _ceil_slot(starts_at), _ceil_slot(ends_at)
        block = self.slots(profile, METERS_BY_ID[meter], first, end)
        late = block.late.sum(axis=0)
        on_time = block.values.sum(axis=0) - late
        slot_ends = (np.arange(first, end, dtype=np.int64) + 1) * SLOT_SECONDS
        at = np.concatenate([slot_ends, slot_ends + block.delay])
        amounts = np.concatenate([on_time, late])
        order = np.argsort(at, kind="stable")
        return Arrivals(at[order], np.cumsum(amounts[order]))

    # ------------------------------------------------------------------ aggregation

    def usage(self, query: UsageQuery, as_of: int) -> list[RowGroup]:
        """What Stripe's analytics API would return at ``as_of``: calendar buckets of
        ``query.window`` in ``query.timezone`` clipped to the range, every non-zero value, one
        :class:`RowGroup` per meter entry and group-by value. An event counts in the bucket
        holding its timestamp truncated to 15 minutes. The customer must exist."""
        profile = self.profile(query.customer)
        if profile is None:
            raise KeyError(query.customer)
        first = max(_ceil_slot(query.starts_at), _ceil_slot(self.history_start))
        end = min(_ceil_slot(query.ends_at), as_of // SLOT_SECONDS)
        if end <= first:
            return []
        edges = bucket_edges(query.starts_at, query.ends_at, query.window, query.timezone)
        bucket = np.searchsorted(edges, np.arange(first, end) * SLOT_SECONDS, side="right") - 1
        firsts = np.flatnonzero(np.r_[True, np.diff(bucket) != 0])
        layout = _Layout(edges, bucket[firsts], firsts)
        blocks: dict[str, IntArray] = {}

        def visible(meter: MeterDef) -> tuple[CellTable, IntArray]:
            if meter.id not in blocks:
                block = self.slots(profile, meter, first, end)
                blocks[meter.id] = block.visible(as_of)
            return self.directory.cells(profile.index, meter), blocks[meter.id]

        groups: list[RowGroup] = []
        for spec in query.meters or (MeterSpec(None),):
            groups.extend(_groups_for(spec, visible, layout))
        return [group for group in groups if len(group)]

    def usage_rows(self, query: UsageQuery, as_of: int) -> list[UsageRow]:
        """:meth:`usage` as :class:`alertd.model.UsageRow` objects (for tests and tools)."""
        return [row for group in self.usage(query, as_of) for row in group.rows()]

    def summaries(
        self,
        customer: str,
        meter: str,
        start_time: int,
        end_time: int,
        window: Literal["hour", "day"] | None,
        as_of: int,
    ) -> list[tuple[int, int, int]]:
        """Meter Event Summaries (``(start, end, value)``, time order, zeros omitted): UTC
        hours or days, or one summary for the whole range. Unlike the analytics API they count
        events by their exact timestamp, so a range that cuts a slot counts part of it."""
        profile = self.profile(customer)
        meter_def = METERS_BY_ID[meter]
        if profile is None:
            raise KeyError(customer)
        step = {"hour": 3600, "day": DAY_SECONDS, None: end_time - start_time}[window]
        edges = [*range(start_time, end_time, step), end_time]
        totals = np.zeros(len(edges) - 1, dtype=np.int64)
        first, end = _ceil_slot(start_time), min(end_time // SLOT_SECONDS, as_of // SLOT_SECONDS)
        if end > first:
            per_slot = self.slots(profile, meter_def, first, end).visible(as_of).sum(axis=0)
            index = np.searchsorted(edges, np.arange(first, end) * SLOT_SECONDS, side="right") - 1
            np.add.at(totals, index, per_slot)
        # Hour and day windows are aligned, so only a whole-range summary can cut a slot.
        cut = {t // SLOT_SECONDS for t in (start_time, end_time) if t % SLOT_SECONDS}
        for slot in cut:
            totals[0] += self._partial_slot(profile, meter_def, slot, start_time, end_time, as_of)
        return [(edges[i], edges[i + 1], int(v)) for i, v in enumerate(totals.tolist()) if v]

    def _partial_slot(
        self, profile: CustomerProfile, meter: MeterDef, slot: int, start: int, end: int, as_of: int
    ) -> int:
        slot_start = slot * SLOT_SECONDS
        if slot_start >= end or slot_start + SLOT_SECONDS <= start:
            return 0
        events = self.events(profile.id, meter.id, slot_start, slot_start + SLOT_SECONDS)
        return sum(
            e.value for e in events if start <= e.timestamp < end and e.visible_at <= as_of
        )

    # ------------------------------------------------------------------ events

    def events(self, customer: str, meter: str, starts_at: int, ends_at: int) -> list[Event]:
        """Every event with ``starts_at <= timestamp < ends_at`` (small ranges only: at most
        :data:`MAX_EVENT_CELL_SLOTS` cell-slots). Per slot and cell, their values add up to the
        slot value exactly; late parts are separate events with a later ``visible_at``."""
        profile = self.profile(customer)
        if profile is None:
            raise KeyError(customer)
        meter_def = METERS_BY_ID[meter]
        first, end = starts_at // SLOT_SECONDS, _ceil_slot(ends_at)
        cells = self.directory.cells(profile.index, meter_def)
        if (end - first) * len(cells) > MAX_EVENT_CELL_SLOTS:
            raise ValueError("events() is for small ranges; use usage() for aggregates")
        block = self.slots(profile, meter_def, first, end)
        found: list[Event] = []
        for cell, slot in zip(*np.nonzero(block.values), strict=True):
            found.extend(self._split(profile, meter_def, block, int(cell), int(slot)))
        return [e for e in found if starts_at <= e.timestamp < ends_at]

    def _split(
        self, profile: CustomerProfile, meter: MeterDef, block: SlotBlock, cell: int, slot: int
    ) -> list[Event]:
        absolute = block.first_slot + slot
        slot_start = absolute * SLOT_SECONDS
        total, late = int(block.values[cell, slot]), int(block.late[cell, slot])
        seed = hashing.digest(self.seed, _EVENT_STREAM, profile.index, METERS.index(meter), cell,
                              absolute)
        on_time = total - late
        pieces = min(on_time, 1 + seed % 3)
        parts = [on_time // pieces] * pieces if pieces else []
        if parts:
            parts[0] += on_time - sum(parts)
        found = [(part, slot_start + SLOT_SECONDS) for part in parts]
        if late:
            found.append((late, slot_start + SLOT_SECONDS + int(block.delay[slot])))
        dims = tuple(sorted(block.cells.dimensions[cell].items()))
        tenants = tuple(sorted(block.cells.tenants[cell].items()))
        return [
            Event(
                identifier=f"evt_sim_{hashing.mix(seed + n):016x}",
                customer=profile.id,
                meter=meter.id,
                timestamp=slot_start + hashing.mix(seed ^ n) % SLOT_SECONDS,
                value=value,
                dimensions=dims,
                tenants=tenants,
                visible_at=visible_at,
            )
            for n, (value, visible_at) in enumerate(found)
        ]


# ---------------------------------------------------------------------- pure helpers


def _between(bounds: tuple[float, float], unit: FloatArray) -> FloatArray:
    low, high = bounds
    scaled: FloatArray = low + (high - low) * unit
    return scaled


def _as_filters(dimensions: Dimensions) -> tuple[tuple[str, tuple[str, ...]], ...]:
    return tuple((key, (value,)) for key, value in dimensions)


def _overuse_extra(
    incident: Incident, profile: CustomerProfile, cells: CellTable, starts: IntArray
) -> IntArray:
    """The extra tokens of an overuse incident for the given slots (cells × slots).

    ``factor × quota`` tokens in all, the same share in every slot of the incident (the first
    ``total % n`` slots one more), split over cells by their weights (rounding to the heaviest).
    """
    quota = profile.quota(METERS_BY_ID[incident.meter]) or 0
    total = round(incident.factor * quota)
    count = (incident.ends_at - incident.starts_at) // SLOT_SECONDS
    position = (starts - incident.starts_at) // SLOT_SECONDS
    per_slot = total // count + (position < total % count).astype(np.int64)
    extra = np.floor(cells.weights[:, np.newaxis] * per_slot[np.newaxis, :]).astype(np.int64)
    extra[int(np.argmax(cells.weights))] += per_slot - extra.sum(axis=0)
    return extra


@dataclass(frozen=True, slots=True, eq=False)
class RowGroup:
    """The non-zero buckets of one series of a usage answer, as columns (cheap to render).

    ``meter`` is ``None`` for all meters summed; ``dimensions`` holds the group-by values
    (empty when the request had no group-by).
    """

    meter: str | None
    dimensions: Dimensions
    starts: IntArray
    ends: IntArray
    values: IntArray

    def __len__(self) -> int:
        return len(self.values)

    def rows(self) -> list[UsageRow]:
        return [
            UsageRow(start, end, float(value), self.meter, self.dimensions)
            for start, end, value in zip(
                self.starts.tolist(), self.ends.tolist(), self.values.tolist(), strict=True
            )
        ]


@dataclass(frozen=True, slots=True, eq=False)
class _Layout:
    """Where the visible slots fall: bucket ``buckets[i]`` starts at slot column ``firsts[i]``."""

    edges: IntArray
    buckets: IntArray
    firsts: IntArray


def _groups_for(spec: MeterSpec, visible: _Visible, layout: _Layout) -> list[RowGroup]:
    if spec.meter is None:
        total = np.zeros(len(layout.buckets), dtype=np.int64)
        for meter in METERS:
            _, values = visible(meter)
            total += np.add.reduceat(values, layout.firsts, axis=1).sum(axis=0)
        return [_group(None, (), total, layout)]
    cells, values = visible(METERS_BY_ID[spec.meter])
    mask = cells.matching(spec.dimension_filters, spec.tenant_filters)
    if not mask.any():
        return []
    per_bucket = np.add.reduceat(values[mask], layout.firsts, axis=1)
    group_ids, labels = cells.groups(spec.group_by)
    grouped = np.zeros((len(labels), len(layout.buckets)), dtype=np.int64)
    np.add.at(grouped, group_ids[mask], per_bucket)
    return [
        _group(spec.meter, tuple(sorted(label)), series, layout)
        for label, series in zip(labels, grouped, strict=True)
    ]


def _group(
    meter: str | None, dimensions: Dimensions, series: IntArray, layout: _Layout
) -> RowGroup:
    nonzero = series != 0
    buckets = layout.buckets[nonzero]
    return RowGroup(
        meter, dimensions, layout.edges[buckets], layout.edges[buckets + 1], series[nonzero]
    )

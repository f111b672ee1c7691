"""Who the simulated account has: three meters and N customers, each a pure function of the seed.

Meters (fixed, the same for every seed):

=====================  =====================================  ==========  =========================
id                     dimensions                             tenant key  per-customer quota key
=====================  =====================================  ==========  =========================
``mtr_sim_tokens``     ``model`` gpt-4 | gpt-4o-mini |        ``user_id`` ``daily_token_quota``
                       claude-3; ``tier`` standard | premium              (``monthly_token_budget``)
``mtr_sim_api_calls``  ``endpoint`` chat | embeddings |       —           ``daily_api_call_quota``
                       search | images
``mtr_sim_storage``    —                                      —           —
=====================  =====================================  ==========  =========================

Customers ``cus_sim_000001``… have a name, an email (about 1 in 20 has none), a ``plan``
(free 50 %, pro 35 %, enterprise 15 %) and these metadata keys, all decimal strings as Stripe
stores metadata:

* ``plan`` — ``free``, ``pro`` or ``enterprise``.
* ``daily_token_quota`` — tokens per day (free 100k–500k, pro 1M–5M, enterprise 10M–50M).
  **Bound:** without incidents, the tokens of any 25 hours (so of any local calendar day, DST
  days included, in any time zone) stay at or below :data:`QUOTA_SHARE` (60 %) of it; a spike
  adds at most ~32 % of it (see :mod:`alertd.sim.incidents`), so only an ``overuse`` incident
  ever takes a day above the quota.
* ``monthly_token_budget`` — 20 × ``daily_token_quota``. A normal month (at most 31 days at
  60 %) stays below it.
* ``daily_api_call_quota`` — API calls per day, with the same 60 % bound; no incident kind is
  designed to exceed it.

A customer's usage of a meter is split into *cells*, one per combination of dimension values
and tenant (for tokens: 3 models × 2 tiers × 2–5 users). Each cell has a fixed share of the
customer's usage; the generator computes slot values per cell.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

import numpy as np
import numpy.typing as npt

from alertd.model import Customer, Dimensions, Filters
from alertd.sim import hashing
from alertd.sim.hashing import FloatArray, IntArray

SLOT_SECONDS = 900
SLOTS_PER_DAY = 96
DAY_SECONDS = 86_400

#: Normal usage of any 25 hours stays at or below this share of the customer's daily quota.
QUOTA_SHARE = 0.6
MONTHLY_BUDGET_DAYS = 20

# Multiplicative noise ranges (low, high): per customer-day, per slot, per cell and slot.
DAY_NOISE = (0.9, 1.1)
SLOT_NOISE = (0.85, 1.15)
CELL_NOISE = (0.9, 1.1)
NOISE_MAX = DAY_NOISE[1] * SLOT_NOISE[1] * CELL_NOISE[1]

#: Weekend days (local Saturday and Sunday) run at this fraction of a weekday.
WEEKEND_FACTOR = 0.55
#: Trend: usage changes linearly by ``growth`` over this span from the history start, then flat.
TREND_SPAN = 90 * DAY_SECONDS

# Streams: one constant per kind of random choice, so choices never share a hash.
_PROFILE, _USERS, _WEIGHTS = 1, 2, 3

PricePlan = Literal["free", "pro", "enterprise"]


def _diurnal() -> FloatArray:
    """Usage shape over the 96 local quarter-hours: trough at 02:00, peak at 14:00, mean 1."""
    hours = np.arange(SLOTS_PER_DAY, dtype=np.float64) / 4.0
    shape: FloatArray = 1.0 + 0.7 * np.cos(2.0 * math.pi * (hours - 14.0) / 24.0)
    return shape


DIURNAL = _diurnal()
_WINDOW_25H = 100
#: The largest sum of the daily shape over 25 consecutive hours (a DST day is 25 hours).
SHAPE_MAX_25H = float(
    DIURNAL.sum()  # 24 of the 25 hours are a whole day, whatever the start
    + max(np.roll(DIURNAL, -start)[: _WINDOW_25H - SLOTS_PER_DAY].sum()
          for start in range(SLOTS_PER_DAY))
)


@dataclass(frozen=True, slots=True)
class MeterDef:
    """A simulated meter: its dimensions (key → possible values) and optional tenant key."""

    id: str
    display_name: str
    event_name: str
    dimensions: tuple[tuple[str, tuple[str, ...]], ...]
    tenant_key: str | None
    seasonal: bool
    quota_key: str | None

    @property
    def dimension_keys(self) -> tuple[str, ...]:
        return tuple(key for key, _ in self.dimensions)


TOKENS = MeterDef(
    "mtr_sim_tokens", "AI tokens", "ai_tokens",
    (("model", ("gpt-4", "gpt-4o-mini", "claude-3")), ("tier", ("standard", "premium"))),
    "user_id", True, "daily_token_quota",
)
API_CALLS = MeterDef(
    "mtr_sim_api_calls", "API calls", "api_calls",
    (("endpoint", ("chat", "embeddings", "search", "images")),),
    None, True, "daily_api_call_quota",
)
STORAGE = MeterDef("mtr_sim_storage", "Storage (MB)", "storage_mb", (), None, False, None)
METERS: tuple[MeterDef, ...] = (TOKENS, API_CALLS, STORAGE)
METERS_BY_ID: Mapping[str, MeterDef] = {meter.id: meter for meter in METERS}

_QUOTAS: Mapping[str, Mapping[PricePlan, tuple[int, ...]]] = {
    "daily_token_quota": {
        "free": (100_000, 200_000, 500_000),
        "pro": (1_000_000, 2_000_000, 5_000_000),
        "enterprise": (10_000_000, 20_000_000, 50_000_000),
    },
    "daily_api_call_quota": {
        "free": (2_000, 5_000, 10_000),
        "pro": (20_000, 50_000, 100_000),
        "enterprise": (200_000, 500_000, 1_000_000),
    },
}
_STORAGE_BASE: Mapping[PricePlan, tuple[float, float]] = {
    "free": (20, 200), "pro": (500, 5_000), "enterprise": (10_000, 100_000),
}
#: Home UTC offsets (in 15-minute slots) that set where each customer's day peaks.
_HOME_OFFSETS = (-32, -28, -20, -12, 0, 4, 8, 22, 32, 36)
_ADJECTIVES = (
    "Blue", "Bright", "Silver", "North", "Quiet", "Rapid", "Golden", "Clever",
    "Open", "Swift", "Green", "Iron", "Lucky", "Bold", "Clear", "Red",
)
_NOUNS = (
    "Harbor", "Pine", "River", "Falcon", "Summit", "Cedar", "Orbit", "Lantern",
    "Meadow", "Anchor", "Comet", "Forge", "Willow", "Beacon", "Canyon", "Otter",
)
_SUFFIXES = ("Labs", "Inc", "AI", "Systems", "Studio", "Analytics", "Works", "Cloud")


def customer_id(index: int) -> str:
    """``cus_sim_000001`` for index 0."""
    return f"cus_sim_{index + 1:06d}"


def customer_index(customer: str, count: int) -> int | None:
    """The index of a simulated customer id, or ``None`` if it is not one of ``count``."""
    prefix = "cus_sim_"
    digits = customer[len(prefix):]
    if not customer.startswith(prefix) or len(digits) != 6 or not digits.isdigit():
        return None
    index = int(digits) - 1
    return index if 0 <= index < count else None


@dataclass(frozen=True, slots=True)
class CellTable:
    """The cells of one customer's meter: dimension values, tenant values and usage shares."""

    dimensions: tuple[Mapping[str, str], ...]
    tenants: tuple[Mapping[str, str], ...]
    weights: FloatArray = field(compare=False)

    def __len__(self) -> int:
        return len(self.weights)

    def matching(self, filters: Filters, tenant_filters: Filters = ()) -> npt.NDArray[np.bool_]:
        """Which cells pass every filter (a filter with several values accepts any of them)."""
        mask = np.ones(len(self), dtype=np.bool_)
        for key, values in filters:
            mask &= np.array([cell.get(key) in values for cell in self.dimensions])
        for key, values in tenant_filters:
            mask &= np.array([cell.get(key) in values for cell in self.tenants])
        return mask

    def groups(self, keys: tuple[str, ...]) -> tuple[IntArray, tuple[Dimensions, ...]]:
        """Each cell's group index under ``keys`` and the group-by values of each group."""
        labels: dict[Dimensions, int] = {}
        ids = np.empty(len(self), dtype=np.int64)
        for position, cell in enumerate(self.dimensions):
            label = tuple((key, cell[key]) for key in keys)
            ids[position] = labels.setdefault(label, len(labels))
        return ids, tuple(labels)


@dataclass(frozen=True, slots=True)
class CustomerProfile:
    """Everything fixed about one simulated customer."""

    index: int
    id: str
    name: str
    email: str | None
    plan: PricePlan
    created: int
    home_offset_slots: int
    growth: float
    users: tuple[str, ...]
    base: Mapping[str, float] = field(compare=False)
    metadata: Mapping[str, str] = field(compare=False)

    def customer(self) -> Customer:
        return Customer(self.id, self.name, self.email, dict(self.metadata))

    def quota(self, meter: MeterDef) -> int | None:
        """The meter's per-day quota from metadata, if the meter has one."""
        if meter.quota_key is None:
            return None
        return int(self.metadata[meter.quota_key])


class Directory:
    """Customer profiles and cell tables of one seed, built on first use and kept."""

    def __init__(self, seed: int, count: int, history_start: int) -> None:
        self.seed = seed
        self.count = count
        self.history_start = history_start
        self._profiles: dict[int, CustomerProfile] = {}
        self._cells: dict[tuple[int, str], CellTable] = {}
        self._labels: dict[tuple[tuple[str, str], ...], Mapping[str, str]] = {}

    def profile(self, index: int) -> CustomerProfile:
        found = self._profiles.get(index)
        if found is None:
            found = self._profiles[index] = _build_profile(self.seed, index, self.history_start)
        return found

    def cells(self, index: int, meter: MeterDef) -> CellTable:
        key = (index, meter.id)
        found = self._cells.get(key)
        if found is None:
            cells = _build_cells(self.seed, self.profile(index), meter)
            found = self._cells[key] = CellTable(
                tuple(self._shared(labels) for labels in cells.dimensions),
                tuple(self._shared(labels) for labels in cells.tenants),
                cells.weights,
            )
        return found

    def _shared(self, labels: Mapping[str, str]) -> Mapping[str, str]:
        """One mapping per distinct label set: 10,000 customers repeat the same few."""
        return self._labels.setdefault(tuple(labels.items()), labels)

    @cached_property
    def all_profiles(self) -> tuple[CustomerProfile, ...]:
        return tuple(self.profile(index) for index in range(self.count))


def _build_profile(seed: int, index: int, history_start: int) -> CustomerProfile:
    def pick(stream: int, count: int) -> int:
        return hashing.choice(count, seed, _PROFILE, index, stream)

    def between(stream: int, low: float, high: float) -> float:
        return hashing.uniform(low, high, seed, _PROFILE, index, stream)

    plan_roll = pick(1, 20)
    plan: PricePlan = "free" if plan_roll < 10 else "pro" if plan_roll < 17 else "enterprise"
    words = (_ADJECTIVES[pick(2, 16)], _NOUNS[pick(3, 16)], _SUFFIXES[pick(4, 8)])
    slug = "".join(words[:2]).lower()
    growth = between(5, -0.3, 0.6)
    token_quota = _QUOTAS["daily_token_quota"][plan][pick(6, 3)]
    api_quota = _QUOTAS["daily_api_call_quota"][plan][pick(7, 3)]
    users = tuple(
        f"{hashing.digest(seed, _USERS, index, user):016x}"[:11] for user in range(2 + pick(8, 4))
    )
    trend_max = max(1.0, 1.0 + growth)
    base = {
        TOKENS.id: _base_under_quota(token_quota, between(9, 0.35, 1.0), trend_max, 6 * len(users)),
        API_CALLS.id: _base_under_quota(api_quota, between(10, 0.35, 1.0), trend_max, 4),
        STORAGE.id: between(11, *_STORAGE_BASE[plan]),
    }
    metadata = {
        "plan": plan,
        "daily_token_quota": str(token_quota),
        "monthly_token_budget": str(MONTHLY_BUDGET_DAYS * token_quota),
        "daily_api_call_quota": str(api_quota),
    }
    return CustomerProfile(
        index=index,
        id=customer_id(index),
        name=" ".join(words),
        email=None if pick(12, 20) == 0 else f"billing@{slug}{index + 1}.example",
        plan=plan,
        created=history_start - DAY_SECONDS * (30 + pick(13, 700)),
        home_offset_slots=_HOME_OFFSETS[pick(14, len(_HOME_OFFSETS))],
        growth=growth,
        users=users,
        base=base,
        metadata=metadata,
    )


def _base_under_quota(quota: int, utilisation: float, trend_max: float, cells: int) -> float:
    """The mean per-slot rate whose worst 25 hours stay at ``utilisation × 60 %`` of ``quota``.

    Worst case: every noise factor at its maximum, the daily shape's heaviest 25 hours, a
    weekday, the trend at its peak, and every cell-slot rounded up by 0.5.
    """
    rounding = 0.5 * cells * _WINDOW_25H
    return (utilisation * QUOTA_SHARE * quota - rounding) / (trend_max * NOISE_MAX * SHAPE_MAX_25H)


def _build_cells(seed: int, profile: CustomerProfile, meter: MeterDef) -> CellTable:
    axes: list[tuple[str, tuple[str, ...], bool]] = [
        (key, values, False) for key, values in meter.dimensions
    ]
    if meter.tenant_key is not None:
        axes.append((meter.tenant_key, profile.users, True))
    meter_number = METERS.index(meter)
    cells: list[tuple[dict[str, str], dict[str, str]]] = [({}, {})]
    weights = np.ones(1, dtype=np.float64)
    for axis, (key, values, is_tenant) in enumerate(axes):
        shares = np.array([
            0.2 + hashing.uniform(0.0, 1.0, seed, _WEIGHTS, profile.index, meter_number, axis, v)
            for v in range(len(values))
        ])
        # Cell order is the product order: every existing cell expands into one per value.
        cells = [
            (dims, {**tenant, key: value}) if is_tenant else ({**dims, key: value}, tenant)
            for dims, tenant in cells
            for value in values
        ]
        weights = np.outer(weights, shares / shares.sum()).ravel()
    return CellTable(
        dimensions=tuple(dims for dims, _ in cells),
        tenants=tuple(tenant for _, tenant in cells),
        weights=weights,
    )

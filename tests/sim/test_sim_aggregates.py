"""Simulator aggregates over HTTP equal a brute-force sum over the generated events.

The brute force is written independently of the simulator's bucketing: it truncates each event
to its 15-minute slot, finds the slot's local calendar period with ``zoneinfo`` directly, and
clips it to the requested range. Cases cover every window, a 23-hour and a 25-hour day in
New York, +05:30 and +05:45 zones, a range start that is not slot-aligned, filters (plain,
any-of, tenant), group-by and all meters summed.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from alertd.model import Dimensions, MeterSpec, make_filters
from alertd.sim.generator import Event, UsageGenerator
from alertd.sim.profiles import METERS
from alertd.sim.testing import API_KEY, TEST_NOW, running_simulator

Key = tuple[str | None, int, int, Dimensions]
NOV_NOW = int(datetime(2024, 11, 5, 12, tzinfo=UTC).timestamp())  # after NY's 25-hour day


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return int(datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp())


@lru_cache(maxsize=4)
def generator(now: int) -> UsageGenerator:
    return UsageGenerator(customers=4, seed=7, days=40, now=now)


@lru_cache(maxsize=64)
def events(now: int, customer: str, meter: str, starts_at: int, ends_at: int) -> tuple[Event, ...]:
    first_slot = starts_at // 900 * 900
    return tuple(generator(now).events(customer, meter, first_slot, ends_at))


@lru_cache(maxsize=100_000)
def bucket_start(instant: int, window: str, tz: str) -> int:
    local = datetime.fromtimestamp(instant, ZoneInfo(tz))
    if window == "hour":
        return instant - local.minute * 60 - local.second
    day = local.date()
    if window == "week":
        day -= timedelta(days=day.weekday())
    elif window == "month":
        day = day.replace(day=1)
    return midnight(day, tz)


@lru_cache(maxsize=10_000)
def bucket_end(start: int, window: str, tz: str) -> int:
    if window == "hour":
        return start + 3600
    day = datetime.fromtimestamp(start, ZoneInfo(tz)).date()
    if window == "day":
        return midnight(day + timedelta(days=1), tz)
    if window == "week":
        return midnight(day + timedelta(days=7), tz)
    following = date(day.year + day.month // 12, day.month % 12 + 1, 1)
    return midnight(following, tz)


def midnight(day: date, tz: str) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(tz)).timestamp())


def passes(event: Event, spec: MeterSpec) -> bool:
    dims, tenants = dict(event.dimensions), dict(event.tenants)
    return all(dims.get(k) in v for k, v in spec.dimension_filters) and all(
        tenants.get(k) in v for k, v in spec.tenant_filters
    )


def brute_force(
    now: int, customer: str, specs: tuple[MeterSpec, ...], starts_at: int, ends_at: int,
    window: str | None, tz: str, as_of: int,
) -> dict[Key, float]:
    totals: dict[Key, float] = defaultdict(float)
    for spec in specs or (MeterSpec(None),):
        meters = [spec.meter] if spec.meter else [m.id for m in METERS]
        for meter in meters:
            for event in events(now, customer, meter, starts_at, ends_at):
                slot = event.timestamp // 900 * 900
                if event.visible_at > as_of or not starts_at <= slot < ends_at:
                    continue
                if not passes(event, spec):
                    continue
                start, end = starts_at, ends_at
                if window is not None:
                    start = bucket_start(slot, window, tz)
                    end = min(bucket_end(start, window, tz), ends_at)
                    start = max(start, starts_at)
                group = tuple(sorted((k, dict(event.dimensions)[k]) for k in spec.group_by))
                totals[(spec.meter, start, end, group)] += event.value
    return {key: value for key, value in totals.items() if value}


def encode(specs: tuple[MeterSpec, ...]) -> dict[str, str]:
    params: dict[str, str] = {}
    for i, spec in enumerate(specs):
        assert spec.meter is not None
        params[f"meters[{i}][meter]"] = spec.meter
        for kind, filters in (("dimension_filters", spec.dimension_filters),
                              ("tenant_filters", spec.tenant_filters)):
            for key, values in filters:
                for j, value in enumerate(values):
                    params[f"meters[{i}][{kind}][{key}][{j}]"] = value
        for j, key in enumerate(spec.group_by):
            params[f"meters[{i}][dimension_group_by_keys][{j}]"] = key
    return params


def from_rows(rows: list[dict[str, Any]]) -> dict[Key, float]:
    found: dict[Key, float] = {}
    for row in rows:
        key = (row["meter"], row["starts_at"], row["ends_at"],
               tuple(sorted((row["dimensions"] or {}).items())))
        assert key not in found, f"duplicate row {key}"
        found[key] = row["value"]
    return found


TOKENS = "mtr_sim_tokens"
NY = "America/New_York"
# Mar 6 05:07Z (minute-aligned, not slot-aligned) to "now"; Mar 9 is a 23-hour day in New York
# and Mar 10 a Monday.
MARCH = (utc(2025, 3, 6, 5, 7), TEST_NOW)
MONTH_END = (utc(2025, 2, 26), utc(2025, 3, 2, 18, 30))
NOVEMBER = (utc(2024, 11, 1), utc(2024, 11, 5))  # Nov 3 is a 25-hour day in New York

CASES: list[tuple[str, int, tuple[int, int], str | None, str, tuple[MeterSpec, ...]]] = [
    ("utc-day", TEST_NOW, MARCH, "day", "UTC", (MeterSpec(TOKENS),)),
    ("ny-day-23h", TEST_NOW, MARCH, "day", NY, (MeterSpec(TOKENS, group_by=("model",)),)),
    ("ny-hour-23h", TEST_NOW, MARCH, "hour", NY, (MeterSpec("mtr_sim_api_calls"),)),
    ("ny-week", TEST_NOW, MARCH, "week", NY, (MeterSpec(TOKENS, group_by=("model", "tier")),)),
    ("no-window", TEST_NOW, MARCH, None, "UTC", (
        MeterSpec(TOKENS, dimension_filters=make_filters({"tier": "premium"}), group_by=("model",)),
        MeterSpec("mtr_sim_storage"),
    )),
    ("kolkata-hour", TEST_NOW, MARCH, "hour", "Asia/Kolkata", (
        MeterSpec(TOKENS, dimension_filters=make_filters({"model": ["gpt-4", "claude-3"]})),
    )),
    ("kathmandu-day", TEST_NOW, MARCH, "day", "Asia/Kathmandu", (
        MeterSpec("mtr_sim_api_calls", group_by=("endpoint",)),
    )),
    ("all-meters-day", TEST_NOW, MARCH, "day", NY, ()),
    ("kolkata-month", TEST_NOW, MONTH_END, "month", "Asia/Kolkata", (
        MeterSpec(TOKENS), MeterSpec("mtr_sim_api_calls"), MeterSpec("mtr_sim_storage"),
    )),
    ("ny-month", TEST_NOW, MONTH_END, "month", NY, ()),
    ("ny-day-25h", NOV_NOW, NOVEMBER, "day", NY, (MeterSpec(TOKENS, group_by=("tier",)),)),
    ("ny-hour-25h", NOV_NOW, NOVEMBER, "hour", NY, (MeterSpec("mtr_sim_storage"),)),
]


@pytest.mark.parametrize(
    ("now", "span", "window", "tz", "specs"),
    [case[1:] for case in CASES], ids=[case[0] for case in CASES],
)
async def test_aggregates_equal_brute_force(
    now: int, span: tuple[int, int], window: str | None, tz: str, specs: tuple[MeterSpec, ...]
) -> None:
    customer = "cus_sim_000002"
    async with running_simulator(customers=4, seed=7, days=40, now=now) as sim:
        params = {"customer": customer, "starts_at": str(span[0]), "ends_at": str(span[1]),
                  "timezone": tz, **encode(specs)}
        if window:
            params["value_grouping_window"] = window
        async with httpx.AsyncClient(base_url=sim.url, auth=(API_KEY, "")) as client:
            response = await client.get(
                "/v1/billing/analytics/meter_usage", params=params,
                headers={"Stripe-Version": "2025-11-17.preview"},
            )
        assert response.status_code == 200, response.text
        body = response.json()
        found = from_rows(body["rows"]["data"])
        expected = brute_force(now, customer, specs, *span, window, tz, sim.refreshed_at())
    assert found == expected
    assert found, "the case should produce rows"
    assert body["rows"]["total"] == len(found)
    assert body["refreshed_at"] == now - 60


async def test_tenant_filter_equals_brute_force() -> None:
    gen = generator(TEST_NOW)
    profile = gen.profile("cus_sim_000003")
    assert profile is not None
    spec = MeterSpec(
        TOKENS, tenant_filters=make_filters({"user_id": profile.users[0]}), group_by=("model",)
    )
    async with running_simulator(customers=4, seed=7, days=40, now=TEST_NOW) as sim:
        params = {"customer": profile.id, "starts_at": str(MARCH[0]), "ends_at": str(MARCH[1]),
                  "value_grouping_window": "day", **encode((spec,))}
        async with httpx.AsyncClient(base_url=sim.url, auth=(API_KEY, "")) as client:
            response = await client.get(
                "/v1/billing/analytics/meter_usage", params=params,
                headers={"Stripe-Version": "2025-11-17.preview"},
            )
        expected = brute_force(TEST_NOW, profile.id, (spec,), *MARCH, "day", "UTC",
                               sim.refreshed_at())
    assert from_rows(response.json()["rows"]["data"]) == expected
    everyone = brute_force(TEST_NOW, profile.id, (MeterSpec(TOKENS, group_by=("model",)),),
                           *MARCH, "day", "UTC", TEST_NOW - 60)
    assert sum(expected.values()) < sum(everyone.values())


def test_events_add_up_to_slots_and_sit_inside_them() -> None:
    gen = generator(TEST_NOW)
    profile = gen.profile("cus_sim_000001")
    assert profile is not None
    first = utc(2025, 3, 3) // 900
    block = gen.slots(profile, METERS[0], first, first + 96)
    found = gen.events(profile.id, METERS[0].id, first * 900, (first + 96) * 900)
    per_slot: dict[int, int] = defaultdict(int)
    for event in found:
        per_slot[event.timestamp // 900 - first] += event.value
        assert event.visible_at >= (event.timestamp // 900 + 1) * 900
        assert isinstance(event.value, int) and event.value > 0
    assert [per_slot[s] for s in range(96)] == block.values.sum(axis=0).tolist()
    assert len({e.identifier for e in found}) == len(found)

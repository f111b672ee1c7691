"""The usage generator on its own: determinism, shape, incidents and the quota bound."""

from __future__ import annotations

import itertools
import time
from collections import defaultdict
from datetime import UTC, datetime

import numpy as np
import pytest

from alertd import calendar
from alertd.model import MeterSpec, UsageQuery, make_filters
from alertd.sim.generator import UsageGenerator
from alertd.sim.incidents import INCIDENT_KINDS, Incident
from alertd.sim.profiles import METERS_BY_ID, QUOTA_SHARE, TOKENS
from alertd.sim.testing import TEST_NOW

FUTURE = TEST_NOW + 30 * 86_400  # an as_of at which everything, late data included, is visible


def day_query(customer: str, generator: UsageGenerator, tz: str = "UTC") -> UsageQuery:
    start = calendar.floor(generator.history_start + 86_400, "day", tz)
    end = calendar.floor(generator.now, "day", tz)
    return UsageQuery(customer, start, end, "day", tz, (MeterSpec(TOKENS.id),))


def test_same_seed_same_usage_and_another_seed_differs() -> None:
    first, again = (UsageGenerator(customers=3, seed=5, days=20, now=TEST_NOW) for _ in range(2))
    other = UsageGenerator(customers=3, seed=6, days=20, now=TEST_NOW)
    query = UsageQuery("cus_sim_000002", TEST_NOW - 5 * 86_400, TEST_NOW, "hour", "UTC",
                       (MeterSpec(TOKENS.id, group_by=("model",)),))
    assert first.usage_rows(query, TEST_NOW) == again.usage_rows(query, TEST_NOW)
    assert first.usage_rows(query, TEST_NOW) != other.usage_rows(query, TEST_NOW)
    assert first.incidents() == again.incidents()
    assert [p.customer() for p in first.profiles()] == [p.customer() for p in again.profiles()]


def test_customers_have_plans_quotas_and_mostly_emails() -> None:
    generator = UsageGenerator(customers=400, seed=2, days=10, now=TEST_NOW)
    profiles = generator.profiles()
    assert [p.id for p in profiles[:2]] == ["cus_sim_000001", "cus_sim_000002"]
    assert {p.plan for p in profiles} == {"free", "pro", "enterprise"}
    without_email = sum(p.email is None for p in profiles)
    assert 5 <= without_email <= 40  # about 1 in 20
    for profile in profiles:
        quota = int(profile.metadata["daily_token_quota"])
        assert profile.metadata["plan"] == profile.plan
        assert int(profile.metadata["monthly_token_budget"]) == 20 * quota
        assert int(profile.metadata["daily_api_call_quota"]) > 0
        assert 2 <= len(profile.users) <= 5
    assert generator.profile("cus_sim_000401") is None
    assert generator.profile("cus_other") is None


def test_history_starts_days_before_now_and_is_empty_before() -> None:
    generator = UsageGenerator(customers=2, seed=1, days=30, now=TEST_NOW)
    assert generator.history_start == TEST_NOW // 86_400 * 86_400 - 30 * 86_400
    before = UsageQuery("cus_sim_000001", generator.history_start - 5 * 86_400,
                        generator.history_start, None, "UTC", ())
    assert generator.usage(before, TEST_NOW) == []
    after = UsageQuery("cus_sim_000001", generator.history_start, TEST_NOW, None, "UTC", ())
    assert generator.usage_rows(after, TEST_NOW)[0].value > 0


def test_weekly_and_daily_seasonality() -> None:
    generator = UsageGenerator(customers=30, seed=4, days=28, now=TEST_NOW, incident_rate=0)
    weekday: list[float] = []
    weekend: list[float] = []
    by_hour: dict[int, float] = defaultdict(float)
    for profile in generator.profiles():
        block = generator.slots(profile, TOKENS, generator.history_start // 900, TEST_NOW // 900)
        per_slot = block.values.sum(axis=0)
        first_local = generator.history_start // 900 + profile.home_offset_slots
        local = np.arange(len(per_slot)) + first_local
        days = local // 96
        for day in np.unique(days)[1:-1]:
            total = per_slot[days == day].sum() / profile.base[TOKENS.id]
            (weekend if (day + 3) % 7 >= 5 else weekday).append(total)
        for hour in (2, 14):
            by_hour[hour] += per_slot[(local % 96) // 4 == hour].sum() / profile.base[TOKENS.id]
    assert np.mean(weekend) < 0.7 * np.mean(weekday)
    assert by_hour[14] > 3 * by_hour[2]


def test_ten_thousand_customers_answer_without_materialising_history() -> None:
    generator = UsageGenerator(customers=10_000, seed=1, days=90, now=TEST_NOW)
    query = UsageQuery(
        "cus_sim_010000", TEST_NOW - 28 * 86_400, TEST_NOW, "hour", "America/New_York",
        tuple(MeterSpec(m) for m in METERS_BY_ID),
    )
    generator.usage(query, TEST_NOW)  # warm the bucket-edge cache
    started = time.process_time()  # CPU time: a loaded machine does not stretch it
    groups = generator.usage(query, TEST_NOW)
    assert time.process_time() - started < 0.25
    assert sum(len(g) for g in groups) > 28 * 24


# ---------------------------------------------------------------------- incidents


@pytest.fixture(scope="module")
def busy() -> UsageGenerator:
    return UsageGenerator(customers=12, seed=11, days=70, now=TEST_NOW, incident_rate=4.0)


@pytest.fixture(scope="module")
def calm() -> UsageGenerator:
    return UsageGenerator(customers=12, seed=11, days=70, now=TEST_NOW, incident_rate=0.0)


def first_of(generator: UsageGenerator, kind: str) -> Incident:
    return next(i for i in generator.incidents() if i.kind == kind)


def window_total(
    generator: UsageGenerator, incident: Incident, as_of: int = FUTURE, only_matching: bool = True
) -> int:
    profile = generator.profile(incident.customer)
    assert profile is not None
    block = generator.slots(
        profile, METERS_BY_ID[incident.meter], incident.starts_at // 900, incident.ends_at // 900
    )
    matching = block.cells.matching(tuple((k, (v,)) for k, v in incident.dimensions))
    values = block.visible(as_of)
    return int(values[matching if only_matching else ~matching].sum())


def test_every_kind_occurs_and_incidents_never_overlap(busy: UsageGenerator) -> None:
    found = busy.incidents()
    assert {i.kind for i in found} == set(INCIDENT_KINDS)
    by_customer: dict[str, list[Incident]] = defaultdict(list)
    for incident in found:
        by_customer[incident.customer].append(incident)
        assert incident.starts_at % 900 == 0 and incident.ends_at % 900 == 0
        assert incident.starts_at < incident.ends_at
    for incidents in by_customer.values():
        for earlier, later in itertools.pairwise(incidents):
            assert earlier.ends_at <= later.starts_at


def test_incidents_filter_by_range_and_customer(busy: UsageGenerator) -> None:
    everything = busy.incidents()
    some = busy.incidents(TEST_NOW - 20 * 86_400, TEST_NOW, ["cus_sim_000003"])
    assert some == [
        i for i in everything
        if i.customer == "cus_sim_000003" and i.overlaps(TEST_NOW - 20 * 86_400, TEST_NOW)
    ]


def test_spike_multiplies_matching_cells_only(busy: UsageGenerator, calm: UsageGenerator) -> None:
    spike = next(i for i in busy.incidents() if i.kind == "spike" and i.dimensions)
    assert 3.0 <= spike.factor <= 5.0
    assert 3600 <= spike.ends_at - spike.starts_at <= 2 * 3600
    spiked, normal = window_total(busy, spike), window_total(calm, spike)
    assert spiked == pytest.approx(spike.factor * normal, rel=0.02)
    assert window_total(busy, spike, only_matching=False) == window_total(
        calm, spike, only_matching=False
    )


def test_drop_and_stop_lower_usage(busy: UsageGenerator, calm: UsageGenerator) -> None:
    drop, stop = first_of(busy, "drop"), first_of(busy, "stop")
    assert window_total(busy, drop) <= drop.factor * window_total(calm, drop) * 1.05 + 100
    assert window_total(busy, stop) == 0 < window_total(calm, stop)


def test_overuse_adds_factor_times_quota(busy: UsageGenerator, calm: UsageGenerator) -> None:
    overuse = first_of(busy, "overuse")
    profile = busy.profile(overuse.customer)
    assert profile is not None and overuse.meter == TOKENS.id
    extra = window_total(busy, overuse) - window_total(calm, overuse)
    assert extra == round(overuse.factor * int(profile.metadata["daily_token_quota"]))
    start = datetime.fromtimestamp(overuse.starts_at, UTC)
    assert start.hour >= 8
    assert overuse.ends_at <= overuse.starts_at - start.hour * 3600 + 18 * 3600


def test_late_data_arrives_after_its_delay(busy: UsageGenerator, calm: UsageGenerator) -> None:
    late = first_of(busy, "late")
    full = window_total(calm, late)
    cell_slots = 30 * (late.ends_at - late.starts_at) // 900  # each late part is rounded down
    early = window_total(busy, late, as_of=late.ends_at)
    assert full * (1 - late.factor) <= early <= full * (1 - late.factor) + cell_slots
    assert early < full
    assert window_total(busy, late, as_of=late.ends_at + late.delay) == full
    events = busy.events(late.customer, late.meter, late.starts_at, late.starts_at + 900)
    assert {e.visible_at for e in events} == {
        late.starts_at + 900, late.starts_at + 900 + late.delay
    }


# ---------------------------------------------------------------------- the quota bound


@pytest.mark.parametrize("tz", ["UTC", "America/New_York", "Asia/Kolkata"])
def test_only_overuse_days_exceed_the_daily_token_quota(tz: str) -> None:
    generator = UsageGenerator(customers=40, seed=21, days=56, now=TEST_NOW, incident_rate=4.0)
    incidents = generator.incidents()
    counts: dict[str, int] = defaultdict(int)
    for profile in generator.profiles():
        quota = int(profile.metadata["daily_token_quota"])
        mine = [i for i in incidents if i.customer == profile.id and i.meter == TOKENS.id]
        for row in generator.usage_rows(day_query(profile.id, generator, tz), FUTURE):
            touching = [i for i in mine if i.overlaps(row.starts_at, row.ends_at)]
            inside = any(
                i.kind == "overuse" and row.starts_at <= i.starts_at and i.ends_at <= row.ends_at
                for i in touching
            )
            if inside:
                assert row.value > quota
                counts["overuse"] += 1
            elif any(i.kind == "overuse" for i in touching):
                counts["overuse split across two days"] += 1
            else:
                assert row.value <= quota, (profile.id, row)
                if not touching:
                    assert row.value <= QUOTA_SHARE * quota
                counts["spike" if any(i.kind == "spike" for i in touching) else "other"] += 1
    assert counts["overuse"] >= 10 and counts["spike"] >= 5
    if tz != "Asia/Kolkata":  # 08:00-18:00 UTC lies inside one local day from UTC-8 to UTC+5:30
        assert counts["overuse split across two days"] == 0


def test_dimension_filters_select_cells() -> None:
    generator = UsageGenerator(customers=2, seed=1, days=10, now=TEST_NOW)
    base = UsageQuery("cus_sim_000001", TEST_NOW - 86_400, TEST_NOW, None, "UTC",
                      (MeterSpec(TOKENS.id, group_by=("model",)),))
    per_model = {r.dimensions: r.value for r in generator.usage_rows(base, TEST_NOW)}
    only = UsageQuery(base.customer, base.starts_at, base.ends_at, None, "UTC", (
        MeterSpec(TOKENS.id, dimension_filters=make_filters({"model": ["gpt-4", "claude-3"]})),
    ))
    [row] = generator.usage_rows(only, TEST_NOW)
    assert row.value == per_model[(("model", "gpt-4"),)] + per_model[(("model", "claude-3"),)]

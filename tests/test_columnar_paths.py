"""The columnar data path gives exactly the findings the row path gives, on simulator data.

Two paths from one answer of the simulator's generator to findings, for rules of every
condition kind (hour and day anomaly rules in UTC and in a DST zone, with and without
``exclude``; thresholds, changes, forecasts and absences; filters the serving query did not
apply; group-by):

* **rows** — the answer as a tuple of :class:`UsageRow`, through the planner's cut, the bucket
  cache's combine/rebucket/cut and ``build_series``'s loop — the path as it was;
* **columns** — the answer as the analytics source now reads it (``parse_usage_body`` of the
  JSON body: :class:`UsageColumns`), the cache entry as the store decodes it, and every step on
  arrays.

Hypothesis picks the customer, the instant, the row order of the answer (sums add in row order,
so the order is part of what must match), negative corrections, and whether the rows come from a
full read or from a warm cache entry plus the recent hours re-read. Every finding must be equal,
details, message and figures included, and every series' buckets equal.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import replace
from functools import lru_cache
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alertd import conditions
from alertd.bucket_payload import decode_entry, encode_entry
from alertd.buckets import (
    BucketEntry,
    CachePolicy,
    cache_key,
    combine,
    cut,
    fetch_range,
    hourly,
    rebucket,
    updated,
)
from alertd.conditions.series import build_series
from alertd.model import (
    Customer,
    DataNeed,
    Finding,
    MeterSpec,
    Series,
    UsageQuery,
    UsageRow,
)
from alertd.planner import extract_rows, plan
from alertd.rules.schema import Rule
from alertd.sim.generator import UsageGenerator
from alertd.sim.testing import TEST_NOW
from alertd.source.analytics import parse_usage_body
from alertd.usage_columns import UsageColumns

TOKENS, CALLS, STORAGE = "mtr_sim_tokens", "mtr_sim_api_calls", "mtr_sim_storage"
NY = "America/New_York"
HOUR, DAY = 3600, 86_400
FRESHNESS_LAG = 300.0
POLICY = CachePolicy(settle_window=DAY, full_reread_every=7 * DAY)

RULES = [Rule.model_validate(raw) for raw in [
    {"name": "tokens-by-model-spike", "meter": TOKENS, "group_by": ["model"], "window": "hour",
     "condition": {"type": "anomaly", "direction": "up"}},
    {"name": "calls-spike-ny", "meter": CALLS, "group_by": ["endpoint"], "window": "hour",
     "timezone": NY, "condition": {"type": "anomaly", "exclude": [
         {"weekdays": ["sat"]}, {"hours": [2, 5]}, {"dates": ["03-01"]}]}},
    {"name": "gpt4-daily-anomaly-ny", "meter": TOKENS, "filters": {"model": "gpt-4"},
     "timezone": NY, "condition": {"type": "anomaly", "sensitivity": "high"}},
    {"name": "tokens-daily-quota", "meter": TOKENS,
     "condition": {"type": "threshold", "op": ">", "value": 1_000_000}},
    {"name": "gpt4-family-by-tier-ny", "meter": TOKENS, "timezone": NY,
     "filters": {"model": ["gpt-4", "gpt-4o"]}, "group_by": ["tier"],
     "condition": {"type": "change", "compare_to": "last_week", "percent": 40}},
    {"name": "tokens-by-tier-forecast", "meter": TOKENS, "group_by": ["tier"], "window": "month",
     "condition": {"type": "forecast", "value": 30_000_000}},
    {"name": "calls-hourly", "meter": CALLS, "window": "hour",
     "condition": {"type": "threshold", "op": ">=", "value": 10_000}},
    {"name": "calls-stopped", "meter": CALLS, "condition": {"type": "absence"}},
    {"name": "storage-daily-drop", "meter": STORAGE,
     "condition": {"type": "change", "direction": "down", "percent": 30, "min_volume": 100}},
]]


@lru_cache(maxsize=1)
def generator() -> UsageGenerator:
    return UsageGenerator(customers=6, seed=12, days=50, now=TEST_NOW, incident_rate=3.0)


def answer(query: UsageQuery, as_of: int, order: random.Random,
           corrections: int) -> list[UsageRow]:
    """The generator's rows for ``query`` in a shuffled order, ``corrections`` of them turned
    negative (Stripe accepts negative meter events)."""
    rows = generator().usage_rows(query, as_of)
    order.shuffle(rows)
    for index in order.sample(range(len(rows)), min(corrections, len(rows))):
        rows[index] = replace(rows[index], value=-rows[index].value * 0.5)
    return rows


def as_source_reads(rows: Sequence[UsageRow], refreshed_at: int) -> UsageColumns:
    """``rows`` through the JSON body the simulator sends and the analytics source's reader."""
    body: dict[str, Any] = {"refreshed_at": refreshed_at, "rows": {"has_more": False, "data": [
        {"starts_at": r.starts_at, "ends_at": r.ends_at, "value": r.value, "meter": r.meter,
         "dimensions": dict(r.dimensions)} for r in rows]}}
    parsed = parse_usage_body(json.loads(json.dumps(body)), "req_test").rows
    assert isinstance(parsed, UsageColumns)
    return parsed


def judged(rule: Rule, need: DataNeed, rows: Sequence[UsageRow], customer: str, now: int
           ) -> list[tuple[Finding, Series]]:
    out = []
    for series in build_series(rule, need, rows, now - 60, now=now, freshness_lag=FRESHNESS_LAG):
        out.append((conditions.evaluate(rule, series, Customer(customer), now), series))
    return out


def full_read(rule: Rule, need: DataNeed, as_of: int, order: random.Random, corrections: int,
              columns: bool) -> Sequence[UsageRow]:
    """``need``'s rows cut out of a covering query's answer (the query of all rules' needs)."""
    needs = [conditions.needs(r, need.customer, as_of)[0] for r in RULES]
    the_plan = plan(needs)
    query, spec = the_plan.serving(need)
    rows = answer(query, as_of, order, corrections)
    source: Sequence[UsageRow] = as_source_reads(rows, as_of) if columns else tuple(rows)
    return extract_rows(need, spec, source)


def warm_read(need: DataNeed, earlier: int, now: int, seed: int, corrections: int,
              columns: bool) -> Sequence[UsageRow]:
    """``need``'s rows as a warm cache gives them: the entry saved at ``earlier`` (stored and
    read back as the store does), then the unsettled part re-read as hours and summed back."""
    first = full_read_of(need, earlier, seed, corrections, columns)
    entry = updated("key", need, need, None, first, earlier, POLICY)
    if columns:
        stored = decode_entry(cache_key(need), entry.covered_from, entry.covered_to,
                              entry.full_at, encode_entry(entry))
        entry = replace(stored, key="key")
    fetched = fetch_range(need, entry, now, POLICY)
    planned = hourly(fetched, POLICY)
    query = plan([planned]).queries[0]
    rows = answer(query, now, random.Random(seed + 1), corrections)
    source: Sequence[UsageRow] = as_source_reads(rows, now) if columns else tuple(rows)
    fresh = extract_rows(planned, query.meters[0], source)
    if planned != fetched:
        fresh = rebucket(fresh, fetched)
    return cut(need, combine(need, fetched, entry, fresh))


def full_read_of(need: DataNeed, as_of: int, seed: int, corrections: int, columns: bool
                 ) -> Sequence[UsageRow]:
    query = plan([need]).queries[0]
    rows = answer(query, as_of, random.Random(seed), corrections)
    source: Sequence[UsageRow] = as_source_reads(rows, as_of) if columns else tuple(rows)
    return extract_rows(need, query.meters[0], source)


def assert_same(old: list[tuple[Finding, Series]], new: list[tuple[Finding, Series]]) -> None:
    assert len(old) == len(new)
    for (old_finding, old_series), (new_finding, new_series) in zip(old, new, strict=True):
        assert new_finding == old_finding
        assert new_finding.details == old_finding.details
        assert new_finding.message == old_finding.message
        assert new_series.key == old_series.key
        assert tuple(new_series.buckets) == tuple(old_series.buckets)


@lru_cache(maxsize=1)
def during_incidents() -> list[tuple[str, int]]:
    """(customer, instant) an hour and a bit into each incident of the last week."""
    return [(i.customer, i.starts_at + HOUR + 17 * 60)
            for i in generator().incidents(TEST_NOW - 7 * DAY, TEST_NOW - 2 * HOUR)]


#: Any customer at any minute of the last week of the generator's history, or a customer
#: during one of its incidents (so that some findings fire).
CUSTOMER_INSTANTS = st.one_of(
    st.tuples(st.integers(0, 5).map(lambda i: generator().profiles()[i].id),
              st.integers(0, 7 * 24 * 60).map(lambda m: TEST_NOW - 7 * DAY + 60 * m)),
    st.integers(0, 10**6).map(lambda i: during_incidents()[i % len(during_incidents())]),
)


@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(at=CUSTOMER_INSTANTS, seed=st.integers(0, 2**16),
       corrections=st.sampled_from([0, 0, 3]), rule=st.sampled_from(RULES))
def test_a_full_read_gives_the_same_findings_either_way(
        at: tuple[str, int], seed: int, corrections: int, rule: Rule) -> None:
    customer, now = at
    need = conditions.needs(rule, customer, now)[0]
    old = full_read(rule, need, now, random.Random(seed), corrections, columns=False)
    new = full_read(rule, need, now, random.Random(seed), corrections, columns=True)
    assert isinstance(new, UsageColumns) and new == old
    assert_same(judged(rule, need, old, customer, now), judged(rule, need, new, customer, now))


@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(at=CUSTOMER_INSTANTS, seed=st.integers(0, 2**16),
       corrections=st.sampled_from([0, 0, 3]), rule=st.sampled_from(RULES),
       minutes_before=st.integers(5, 3 * 24 * 60))
def test_a_warm_cache_read_gives_the_same_findings_either_way(
        at: tuple[str, int], seed: int, corrections: int, rule: Rule,
        minutes_before: int) -> None:
    customer, now = at
    need = conditions.needs(rule, customer, now)[0]
    earlier = now - 60 * minutes_before
    old = warm_read(need, earlier, now, seed, corrections, columns=False)
    new = warm_read(need, earlier, now, seed, corrections, columns=True)
    assert isinstance(new, UsageColumns) and new == old
    assert_same(judged(rule, need, old, customer, now), judged(rule, need, new, customer, now))


def test_the_paths_are_compared_on_findings_that_fire() -> None:
    """The comparison is worth something only if some findings are active: during the
    generator's incidents (which the strategies above draw from) some are."""
    active = 0
    for customer, now in during_incidents():
        for rule in RULES:
            need = conditions.needs(rule, customer, now)[0]
            rows = full_read(rule, need, now, random.Random(1), 0, columns=True)
            active += sum(f.active for f, _ in judged(rule, need, rows, customer, now))
    assert active > 0


@pytest.mark.parametrize("rows", [
    [],
    [UsageRow(0, 3600, 1.5, "m", (("a", "x"),)), UsageRow(0, 3600, -2.0, None, ())],
])
def test_columns_are_the_rows_they_hold(rows: list[UsageRow]) -> None:
    columns = UsageColumns.of(rows)
    assert columns == rows and columns == tuple(rows) and list(columns) == rows
    key = cache_key(DataNeed("c", MeterSpec("m"), "hour", "UTC", 0, 3600))
    stored = decode_entry(key, 0, 3600, 0, encode_entry(BucketEntry(key, 0, 3600, 0, columns)))
    assert stored.rows == [replace(r, meter="m") for r in rows]


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2), st.integers(0, 2),
                          st.floats(-1e6, 1e6, allow_nan=False)), max_size=30))
def test_summed_adds_each_cell_in_row_order_and_sorts_the_cells(
        rows: list[tuple[int, int, int, float]]) -> None:
    """Against a loop adding one by one; starts that share a bucket but not an end (which no
    answer has, but nothing forbids) included."""
    import numpy as np

    from alertd.usage_columns import summed

    expected: dict[tuple[int, int, int], float] = {}
    for start, length, code, value in rows:
        key = (start * HOUR, start * HOUR + (length + 1) * HOUR, code)
        expected[key] = expected.get(key, 0.0) + value
    names = [(("k", str(code)),) for code in range(3)]
    got = summed(np.asarray([r[0] * HOUR for r in rows], np.int64),
                 np.asarray([r[0] * HOUR + (r[1] + 1) * HOUR for r in rows], np.int64),
                 np.asarray([r[3] for r in rows], np.float64),
                 np.asarray([r[2] for r in rows], np.int64), "m", names)
    assert got == [UsageRow(s, e, v, "m", names[c]) for (s, e, c), v in sorted(expected.items())]

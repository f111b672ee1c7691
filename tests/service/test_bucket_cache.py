"""The bucket cache against the simulator: a warm cache gives exactly the findings of a cold
full read — after late events inside the settle window, after a cancellation that lowers
usage, after a reload that changes a rule's filters, after a restart — while reading only the
settle window from Stripe; ``check --dry-run`` never writes it.

Late events and cancellations are a simulator whose generator adds signed adjustments to the
buckets it answers (visible from the moment they are made), as Stripe does with back-dated
meter events and event cancellations. Each of those tests and the property run on both stores:
a real SQLite file and the PostgreSQL server (``backend``).
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alertd.buckets import CachePolicy
from alertd.clock import SystemClock
from alertd.commands.check import run_check
from alertd.config.settings import Settings
from alertd.model import Finding, MeterSpec, UsageQuery
from alertd.rules.loader import RuleSet
from alertd.rules.schema import Rule
from alertd.service.engine import Engine
from alertd.service.open import bucket_cache
from alertd.service.reads import BATCH_ROWS, BucketCache, next_batch_size
from alertd.service.world import load_world, stripe_stack
from alertd.sim.generator import RowGroup, UsageGenerator, bucket_edges
from alertd.sim.server import Simulator
from alertd.sim.testing import API_KEY, TEST_NOW, running_simulator
from alertd.store.postgres import PostgresStore
from alertd.store.sqlite import SqliteStore

TOKENS = "mtr_sim_tokens"
HOUR = 3600
DAY = 86_400
Dims = tuple[tuple[str, str], ...]
POLICY = CachePolicy(settle_window=DAY, full_reread_every=7 * DAY)


@dataclass(frozen=True)
class Adjustment:
    """``delta`` added to ``customer``'s ``meter`` at ``instant`` with ``dims``, visible from
    ``made_at`` (the first answer as of then or later)."""

    customer: str
    meter: str
    instant: int
    delta: int
    made_at: int
    dims: tuple[tuple[str, str], ...] = (("model", "gpt-4"), ("tier", "standard"))


class AdjustedGenerator(UsageGenerator):
    """The simulator's generator plus late events (positive) and cancellations (negative),
    applied to every series of an answer that holds them, as Stripe would."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.adjustments: list[Adjustment] = []

    def usage(self, query: UsageQuery, as_of: int) -> list[RowGroup]:
        groups = super().usage(query, as_of)
        for adj in self.adjustments:
            if (adj.customer == query.customer and adj.made_at <= as_of
                    and query.starts_at <= adj.instant < min(query.ends_at, as_of)):
                for spec in query.meters or (MeterSpec(None),):
                    groups = _apply(groups, spec, adj, query)
        return [g for g in groups if len(g)]


def _apply(groups: list[RowGroup], spec: MeterSpec, adj: Adjustment, query: UsageQuery
           ) -> list[RowGroup]:
    dims = dict(adj.dims)
    if (spec.meter not in (adj.meter, None) or spec.tenant_filters
            or any(dims.get(k) not in values for k, values in spec.dimension_filters)):
        return groups
    target = {k: dims[k] for k in spec.group_by}
    for i, group in enumerate(groups):
        if group.meter == spec.meter and dict(group.dimensions) == target:
            return [*groups[:i], _adjusted(group, adj, query), *groups[i + 1:]]
    empty = np.zeros(0, dtype=np.int64)
    fresh = RowGroup(spec.meter, tuple(sorted(target.items())), empty, empty, empty)
    return [*groups, _adjusted(fresh, adj, query)]


def _adjusted(group: RowGroup, adj: Adjustment, query: UsageQuery) -> RowGroup:
    edges = bucket_edges(query.starts_at, query.ends_at, query.window, query.timezone)
    i = int(np.searchsorted(edges, adj.instant, side="right")) - 1
    start, end = int(edges[i]), int(edges[i + 1])
    buckets = {int(s): (int(e), int(v)) for s, e, v in
               zip(group.starts, group.ends, group.values, strict=True)}
    old = buckets.get(start, (end, 0))[1]
    buckets[start] = (end, old + adj.delta)
    # Linear, like events: an adjustment changes every bucket holding it by the same amount,
    # whatever the granularity (a cancellation below zero is the test's to avoid).
    kept = sorted((s, e, v) for s, (e, v) in buckets.items() if v != 0)
    return RowGroup(group.meter, group.dimensions,
                    np.array([k[0] for k in kept], dtype=np.int64),
                    np.array([k[1] for k in kept], dtype=np.int64),
                    np.array([k[2] for k in kept], dtype=np.int64))


#: Opens the state store of a test (``async with opened() as store``), the same one each call.
Opener = Callable[[], SqliteStore | PostgresStore]


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    """The store the cache lives in: a SQLite file, or a schema of the PostgreSQL server
    (skipped with the reason where none answers, as ``pg_url`` is)."""
    if request.param == "sqlite":
        return lambda: SqliteStore(tmp_path / "state.db")
    url = request.getfixturevalue("pg_url")
    return lambda: PostgresStore(url)


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    generator = AdjustedGenerator(customers=3, seed=5, days=40, now=TEST_NOW)
    async with Simulator(generator, port=0, now=TEST_NOW) as running:
        yield running


def rule(name: str, window: str, **fields: Any) -> Rule:
    return Rule.model_validate({
        "name": name, "meter": TOKENS, "window": window,
        "condition": {"type": "threshold", "op": ">=", "value": 1e12}, **fields})


RULES = [rule("day", "day"), rule("week-ny", "week", timezone="America/New_York"),
         rule("hour", "hour"), rule("month", "month")]


def settings_for(sim: Simulator) -> Settings:
    return Settings.model_validate({
        "stripe": {"api_base": sim.url, "api_key": API_KEY, "max_retries": 0,
                   "freshness_lag": 0},
        "customers": {"all": True},
    })


async def findings(sim: Simulator, rules: Sequence[Rule], cache: BucketCache | None
                   ) -> tuple[list[tuple[Any, ...]], Engine]:
    """The pass's findings (comparably), and its engine, whose ``cache_counts`` and
    ``queries`` (usage requests planned) say what it read."""
    settings = settings_for(sim)
    async with stripe_stack(settings, clock=SystemClock()) as stack:
        engine = Engine(settings, RuleSet(tuple(rules)), stack.source, stack.directory,
                        cache=cache)
        result = await engine.run_pass(int(sim.now()))
    engine.queries = result.queries  # type: ignore[attr-defined]
    return sorted(_comparable(f) for f in result.findings), engine


def _comparable(finding: Finding) -> tuple[Any, ...]:
    return (finding.rule, finding.customer, finding.state, str(finding.key), finding.value,
            finding.message, repr(finding.figures), finding.period_key)


async def assert_warm_equals_cold(sim: Simulator, rules: Sequence[Rule], cache: BucketCache
                                  ) -> Engine:
    warm, engine = await findings(sim, rules, cache)
    cold, _ = await findings(sim, rules, None)
    assert warm == cold
    return engine


def customer(sim: Simulator, index: int = 0) -> str:
    return sim.generator.profiles()[index].id


async def test_late_events_inside_the_settle_window_are_read(sim: Simulator,
                                                             backend: Opener) -> None:
    async with backend() as store:
        cache = BucketCache(store, POLICY)
        first = await assert_warm_equals_cold(sim, RULES, cache)
        assert first.cache_counts.full == 3 and first.cache_counts.rows_fetched > 0
        sim.advance(HOUR)
        now = int(sim.now())
        before, _ = await findings(sim, RULES, None)
        # Back-dated to yesterday's bucket: only the month rule's series holds it.
        sim.generator.adjustments.append(Adjustment(customer(sim), TOKENS, now - 20 * HOUR,
                                                    5_000_000, now - HOUR))
        second = await assert_warm_equals_cold(sim, RULES, cache)
        after, _ = await findings(sim, RULES, None)
        assert before != after  # the late event changed a finding, and the warm cache saw it
        assert second.cache_counts.full == 0 and second.cache_counts.keys == 9
        # Steady state: every need of a customer in one request (hours, UTC), where the first
        # read needs two (the month read in full) and a read without the cache one per
        # granularity and time zone (hour UTC, day UTC, day New York).
        assert (first.queries, second.queries) == (6, 3)  # type: ignore[attr-defined]
        _, uncached = await findings(sim, RULES, None)
        assert uncached.queries == 9  # type: ignore[attr-defined]


async def test_a_cancellation_that_lowers_usage_lowers_the_value(sim: Simulator,
                                                                 backend: Opener) -> None:
    async with backend() as store:
        cache = BucketCache(store, POLICY)
        month = [rule("month", "month")]
        start, _ = await findings(sim, month, cache)
        sim.advance(600)
        now = int(sim.now())
        who = customer(sim, 1)
        # An hour of yesterday's usage cancelled: the month total drops by exactly that.
        hour = (now - 20 * HOUR) // HOUR * HOUR
        used = sum(r.value for r in sim.generator.usage_rows(UsageQuery(
            who, hour, hour + HOUR, "hour", "UTC", (MeterSpec(TOKENS),)), now)
            if r.dimensions == ())
        assert used > 0
        sim.generator.adjustments.append(
            Adjustment(who, TOKENS, hour, -int(used), now - 600))
        engine = await assert_warm_equals_cold(sim, month, cache)
        assert engine.cache_counts.full == 0
        later, _ = await findings(sim, month, cache)
        value = {f[1]: f[4] for f in later}
        later_cold = {f[1]: f[4] for f in (await findings(sim, month, None))[0]}
        was = {f[1]: f[4] for f in start}
        assert value[who] < was[who]
        assert value[who] == later_cold[who]  # the same drop a cold read sees
        assert all(value[c] >= was[c] for c in value if c != who)


async def test_a_reload_that_changes_filters_reads_the_new_query(sim: Simulator,
                                                                 backend: Opener) -> None:
    async with backend() as store:
        cache = BucketCache(store, POLICY)
        pro = [rule("tier", "month", filters={"tier": "standard"})]
        await findings(sim, pro, cache)
        sim.advance(600)
        same = await assert_warm_equals_cold(sim, [*pro, rule("other", "hour")], cache)
        assert same.cache_counts.full == 0  # the unchanged rule's keys stay warm
        changed = [rule("tier", "month", filters={"tier": ["standard", "premium"]})]
        engine = await assert_warm_equals_cold(sim, changed, cache)
        assert engine.cache_counts.full == 3  # a new query: read in full, not the old rows


async def test_a_restart_warms_from_the_store(sim: Simulator, backend: Opener) -> None:
    async with backend() as store:
        first = await assert_warm_equals_cold(sim, RULES, BucketCache(store, POLICY))
    sim.advance(2 * HOUR)
    async with backend() as store:
        again = await assert_warm_equals_cold(sim, RULES, BucketCache(store, POLICY))
    assert again.cache_counts.full == 0 and first.cache_counts.full == 3
    assert (first.queries, again.queries) == (6, 3)  # type: ignore[attr-defined]


async def test_a_poll_saves_only_the_entries_that_changed(sim: Simulator,
                                                          tmp_path: Path) -> None:
    async with SqliteStore(tmp_path / "state.db") as store:
        cache = BucketCache(store, POLICY)
        await findings(sim, RULES, cache)
        warmed = int(sim.now())
        assert _saved(tmp_path) == {warmed: 9}
        sim.advance(600)  # the same hour: no settled range has moved
        await assert_warm_equals_cold(sim, RULES, cache)
        # The keys whose needs lie inside the settle window (the hour rule's, New York's
        # running week) hold no rows and are read in full each poll, so their full_at moves;
        # the day keys' settled days and hours are as they were, so they stay unwritten.
        assert _saved(tmp_path) == {warmed: 3, warmed + 600: 6}
        sim.advance(HOUR)  # an hour later every settled range has moved on
        await assert_warm_equals_cold(sim, RULES, cache)
        assert _saved(tmp_path) == {warmed + 600 + HOUR: 9}


def _saved(tmp_path: Path) -> dict[int, int]:
    with sqlite3.connect(tmp_path / "state.db") as conn:
        return dict(conn.execute(
            "SELECT saved_at, COUNT(*) FROM usage_buckets GROUP BY saved_at").fetchall())


async def test_a_read_only_cache_reads_but_never_writes(sim: Simulator, tmp_path: Path) -> None:
    async with SqliteStore(tmp_path / "state.db") as store:
        await findings(sim, RULES, BucketCache(store, POLICY, writable=False))
        assert await store.load_buckets(_keys(tmp_path)) == {}
        assert _count(tmp_path) == 0
        await findings(sim, RULES, BucketCache(store, POLICY))
        stored = _count(tmp_path)
        assert stored > 0
        sim.advance(600)
        engine = await assert_warm_equals_cold(
            sim, RULES, BucketCache(store, POLICY, writable=False))
        assert engine.cache_counts.full == 0


def _keys(tmp_path: Path) -> list[str]:
    with sqlite3.connect(tmp_path / "state.db") as conn:
        return [k for (k,) in conn.execute("SELECT key FROM usage_buckets")]


def _count(tmp_path: Path) -> int:
    with sqlite3.connect(tmp_path / "state.db") as conn:
        return int(conn.execute("SELECT COUNT(*) FROM usage_buckets").fetchone()[0])


async def test_check_dry_run_never_writes_the_cache(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    async with running_simulator(customers=3, now=None) as sim:  # check runs at the real time
        await _dry_run_then_check(sim, tmp_path)
    capsys.readouterr()


async def _dry_run_then_check(sim: Simulator, tmp_path: Path) -> None:
    config = tmp_path / "alertd.yaml"
    rules = tmp_path / "rules.yaml"
    rules.write_text(f"rules:\n- name: day\n  meter: {TOKENS}\n  window: day\n"
                     "  condition: {type: threshold, op: '>=', value: 1e12}\n")
    config.write_text(
        f"stripe: {{api_base: '{sim.url}', api_key: {API_KEY}, freshness_lag: 0}}\n"
        f"state: {{path: '{tmp_path / 'state.db'}'}}\n"
        f"rule_files: ['{rules}']\ncustomers: {{all: true}}\n"
        "receivers: [{name: ops, webhook: {url: 'http://127.0.0.1:9/hook'}}]\n"
        "route: {receiver: ops}\n")
    async with SqliteStore(tmp_path / "state.db"):
        pass  # the file exists, so --dry-run opens it (read-only by contract)

    def namespace(dry_run: bool) -> argparse.Namespace:
        return argparse.Namespace(at=None, rule=None, customer=None, format="json",
                                  dry_run=dry_run)

    assert await run_check(load_world(config), namespace(True)) == 0
    assert _count(tmp_path) == 0
    assert await run_check(load_world(config), namespace(False)) == 0
    assert _count(tmp_path) == 3  # one key per customer: the same command does write it


async def test_the_daemon_keeps_the_cache_in_either_store(sim: Simulator,
                                                          backend: Opener) -> None:
    async with backend() as store:
        cache = bucket_cache(settings_for(sim), store, writable=True)
        assert cache is not None and cache.store is store and cache.writable
        off = settings_for(sim).model_copy(update={"stripe": settings_for(sim).stripe.model_copy(
            update={"bucket_cache": False})})
        assert bucket_cache(off, store, writable=True) is None


def test_batches_take_as_many_customers_as_the_row_budget_holds() -> None:
    # The mixed set: a cold warm-up fetches ~5,800 rows a customer; a warm poll fetches ~280
    # and reads ~5,800 from the cache.
    assert next_batch_size(58_000, 0, 10, 50) == BATCH_ROWS // (2 * 5_800) == 4  # 50,000 rows
    assert next_batch_size(2_800, 58_000, 10, 50) == BATCH_ROWS // (2 * 280 + 5_800) == 7
    assert next_batch_size(100, 0, 10, 50) == 50  # never more than the engine's batch
    assert next_batch_size(10**7, 0, 10, 50) == 1  # a customer is never split
    assert next_batch_size(0, 0, 10, 50) == 50  # nothing read (all failed): as many as may be


# --------------------------------------------------------------------------- the property

DIMS = st.tuples(st.tuples(st.just("model"), st.sampled_from(["gpt-4", "claude-3"])),
                 st.tuples(st.just("tier"), st.sampled_from(["standard", "premium"])))
STEP = st.tuples(
    # Time to the next poll: minutes to more than a day (a day key's kept hours then fall in a
    # bucket that has settled since, or the entry's hours start before the window).
    st.integers(min_value=60, max_value=30 * HOUR),
    st.lists(st.tuples(st.integers(0, 2), st.integers(0, 23 * HOUR),
                       st.integers(-10**7, 10**7), DIMS), max_size=3),  # late, cancelled
)


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(STEP, min_size=1, max_size=4))
def test_a_warm_cache_gives_the_findings_of_a_cold_full_read(
    steps: list[tuple[int, list[tuple[int, int, int, Dims]]]], backend: Opener,
) -> None:
    """Whatever the polls' spacing and whatever changes inside the settle window (back-dated
    events, cancellations), every poll's findings with the cache equal a cold full read's —
    rules of every window kept as days and as the hours of their running day, in UTC, in a
    zone a whole number of hours from UTC and in one that is not (Kolkata, UTC+5:30)."""
    asyncio.run(_property(steps, backend))


async def _property(steps: list[tuple[int, list[tuple[int, int, int, Dims]]]], backend: Opener
                    ) -> None:
    generator = AdjustedGenerator(customers=3, seed=7, days=40, now=TEST_NOW)
    rules = [*RULES, rule("models", "month", group_by=["model"]),
             rule("standard", "month", filters={"tier": "standard"}),
             rule("kolkata", "day", timezone="Asia/Kolkata"), rule("week-utc", "week")]
    async with Simulator(generator, port=0, now=TEST_NOW) as sim, backend() as store:
        await store.prune_buckets(2**62)  # each example starts from an empty cache
        cache = BucketCache(store, POLICY)
        await assert_warm_equals_cold(sim, rules, cache)
        for advance, changes in steps:
            sim.advance(advance)
            now = int(sim.now())
            generator.adjustments += [
                Adjustment(customer(sim, who), TOKENS, now - back, delta, 0, dims)
                for who, back, delta, dims in changes]
            await assert_warm_equals_cold(sim, rules, cache)

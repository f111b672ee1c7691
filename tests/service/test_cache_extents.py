"""A batch planned from the cache's extents, its rows loaded only when it is judged
(alertd.service.reads, alertd.buckets.serves), against the simulator and a real store."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from alertd import conditions
from alertd.bucket_payload import encode_entry
from alertd.buckets import BucketEntry, BucketExtent, extent_of
from alertd.errors import StoreError
from alertd.model import DataNeed, UsageRow
from alertd.planner import plan
from alertd.service.reads import BatchReads, BucketCache, load_entries, prepare
from alertd.sim.server import Simulator
from alertd.store import schema
from alertd.store.base import BucketStore
from alertd.store.sqlite import SqliteStore
from alertd.usage_columns import UsageColumns
from tests.service.test_bucket_cache import (
    HOUR,
    POLICY,
    RULES,
    Opener,
    assert_warm_equals_cold,
    backend,  # noqa: F401  (a fixture)
    findings,
    sim,  # noqa: F401  (a fixture)
)


def batch_needs(sim: Simulator) -> list[DataNeed]:  # noqa: F811
    now = int(sim.now())
    return [conditions.needs(rule, p.id, now)[0]
            for rule in RULES for p in sim.generator.profiles()]


async def planned_after_a_poll(sim: Simulator, store: BucketStore  # noqa: F811
                               ) -> tuple[BucketCache, BatchReads, int]:
    """A cache warmed by one poll, and the next poll's batch (10 minutes on) planned."""
    cache = BucketCache(store, POLICY)
    await findings(sim, RULES, cache)
    sim.advance(600)
    now = int(sim.now())
    return cache, await prepare(cache, batch_needs(sim), now), now


async def test_a_batch_is_planned_from_extents_and_holds_rows_once_loaded(
        sim: Simulator, backend: Opener) -> None:  # noqa: F811
    async with backend() as store:
        cache, reads, _ = await planned_after_a_poll(sim, store)
        from_cache = [k for k in reads.hulls if reads.from_cache(k)]
        assert from_cache and set(reads.extents) == set(reads.hulls)
        assert all(isinstance(e, BucketExtent) for e in reads.extents.values())
        assert reads.entries == {} and reads.cached_rows == 0  # planned, no rows held yet
        need = next(n for n in batch_needs(sim) if reads.from_cache(reads._keys[n]))
        the_plan = plan(reads.fetch_needs)
        with pytest.raises(StoreError, match="not loaded"):  # never judged on partial rows
            reads.rows_of(need, the_plan, None)  # type: ignore[arg-type]
        await load_entries(cache, reads)
        assert sorted(reads.entries) == sorted(from_cache) and reads.cached_rows > 0
        assert reads.unserved == {}
        for key, entry in reads.entries.items():
            assert extent_of(entry) == reads.extents[key]


async def test_an_entry_replaced_after_planning_is_used_only_if_it_still_serves_else_read_in_full(
        sim: Simulator, backend: Opener) -> None:  # noqa: F811
    async with backend() as store:
        cache, reads, now = await planned_after_a_poll(sim, store)
        served, moved = [k for k in reads.hulls if reads.from_cache(k)][:2]
        stored = await store.load_buckets([served, moved])
        # Another poll re-read one in full meanwhile (same range, later full_at) and cut the
        # other's range short: its rows no longer reach back to where this plan needs them.
        later = replace(stored[served], full_at=stored[served].full_at + 60)
        short = stored[moved]
        cut: BucketEntry = replace(short, covered_from=short.covered_from + 86_400, rows=tuple(
            r for r in _rows(short.rows) if r.starts_at >= short.covered_from + 86_400))
        await store.save_buckets([later, cut], now)
        await load_entries(cache, reads)
        assert reads.entries[served].full_at == later.full_at
        assert moved not in reads.entries and "another range" in reads.unserved[moved]
        need = next(n for n in batch_needs(sim) if reads._keys[n] == moved)
        with pytest.raises(StoreError, match="another range"):
            reads.rows_of(need, plan(reads.fetch_needs), None)  # type: ignore[arg-type]
        # What the engine does with it before judging: a full read of that key alone.
        repaired = reads.repair()
        assert repaired == [reads.hulls[moved]] and not reads.from_cache(moved)
        assert reads.unserved == {} and reads.fetched[moved] == reads.hulls[moved]


def _rows(rows: Sequence[UsageRow]) -> list[UsageRow]:
    return list(UsageColumns.of(rows).rows())


async def test_an_unreadable_entry_is_read_in_full_and_judged_as_a_cold_read(
        sim: Simulator, tmp_path: Path) -> None:  # noqa: F811
    path = tmp_path / "state.db"
    async with SqliteStore(path) as store:
        cache = BucketCache(store, POLICY)
        await findings(sim, RULES, cache)
        with sqlite3.connect(path) as conn:
            damaged = conn.execute("UPDATE usage_buckets SET rows = 'not a payload' "
                                   "WHERE covered_to > covered_from").rowcount
        assert damaged > 0
        sim.advance(600)
        # Planned from the extents (still readable), the rows found unreadable when loaded:
        # those keys are read in full before the batch is judged, not left without a verdict.
        for _ in range(2):  # read-only (check --dry-run): the same each time, nothing dropped
            engine = await assert_warm_equals_cold(sim, RULES, BucketCache(store, POLICY,
                                                                           writable=False))
            assert engine.cache_counts.full == damaged
        engine = await assert_warm_equals_cold(sim, RULES, cache)
        assert engine.cache_counts.full == damaged  # read in full and written again
        with sqlite3.connect(path) as conn:
            assert conn.execute("SELECT COUNT(*) FROM usage_buckets "
                                "WHERE rows = 'not a payload'").fetchone() == (0,)
        sim.advance(600)
        engine = await assert_warm_equals_cold(sim, RULES, cache)
        assert engine.cache_counts.full == 0


async def test_entries_stored_before_the_extent_columns_are_planned_and_rewritten(
        sim: Simulator, tmp_path: Path) -> None:  # noqa: F811
    path = tmp_path / "state.db"
    async with SqliteStore(path) as store:
        cache = BucketCache(store, POLICY)
        await findings(sim, RULES, cache)
        with sqlite3.connect(path) as conn:
            keeping = conn.execute(
                "SELECT COUNT(*) FROM usage_buckets WHERE hours_to > 0").fetchone()[0]
            assert keeping > 0
            # As a file migrated to version 9 has them: the payload says, the columns don't.
            conn.execute("UPDATE usage_buckets SET hours_to = 0, hours_zone = ''")
        sim.advance(600)  # the same hour: without the columns compared, nothing is rewritten
        engine = await assert_warm_equals_cold(sim, RULES, cache)
        assert engine.cache_counts.full == 0
        with sqlite3.connect(path) as conn:
            assert conn.execute("SELECT COUNT(*) FROM usage_buckets "
                                "WHERE hours_to > 0").fetchone()[0] == keeping


async def test_a_version_8_file_gains_the_extent_columns(tmp_path: Path) -> None:
    path = tmp_path / "alertd.db"
    conn = sqlite3.connect(path)
    for statements in schema.MIGRATIONS[:8]:
        for statement in statements:
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 8")
    conn.execute(f"PRAGMA application_id = {schema.APPLICATION_ID}")
    key = '["cus_1","day","UTC","mtr_sim_tokens",[],[],[]]'
    hour = UsageRow(90_000, 90_000 + HOUR, 5.0, "mtr_sim_tokens", ())
    entry = BucketEntry(key, 0, 86_400 + 3_600, 100, (), (hour,), 90_000 + HOUR, "UTC")
    conn.execute("INSERT INTO usage_buckets (key, covered_from, covered_to, full_at, saved_at,"
                 " rows) VALUES (?, ?, ?, ?, ?, ?)", (key, 0, 86_400 + 3_600, 100, 100,
                                                      encode_entry(entry)))
    conn.commit()
    conn.close()
    async with SqliteStore(path) as store:
        assert (await store.load_extents([key]))[key] == BucketExtent(key, 0, 90_000, 100)
        assert (await store.load_buckets([key]))[key].hours_to == 90_000 + HOUR
        await store.save_buckets([entry], 200)
        assert (await store.load_extents([key]))[key] == extent_of(entry)

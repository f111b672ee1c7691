"""The steady state from the first poll after a warm-up on: the warm-up keeps the running
bucket's settled hours (:func:`alertd.service.reads.hours_alongside`), so that poll reads only
the settle window and the time since the warm-up, as every later poll does."""

from __future__ import annotations

from pathlib import Path

from alertd.store.sqlite import SqliteStore
from tests.service.test_bucket_cache import (
    HOUR,
    POLICY,
    BucketCache,
    Simulator,
    assert_warm_equals_cold,
    rule,
    sim,  # noqa: F401  (the fixture)
)


async def test_the_first_poll_after_the_warm_up_reads_what_later_ones_do(
        sim: Simulator, tmp_path: Path) -> None:  # noqa: F811
    rules = [rule("month", "month"), rule("week-ny", "week", timezone="America/New_York")]
    async with SqliteStore(tmp_path / "state.db") as store:
        cache = BucketCache(store, POLICY)
        warm = await assert_warm_equals_cold(sim, rules, cache)
        fetched = []
        for _ in range(3):
            sim.advance(HOUR)
            engine = await assert_warm_equals_cold(sim, rules, cache)
            fetched.append(engine.cache_counts.rows_fetched)
    assert warm.cache_counts.full == 3 and warm.cache_counts.rows_fetched > 0
    # Each poll an hour after the previous one reads the same hours: the settle window and
    # the hour since (never the running day's hours from its midnight).
    assert fetched[0] == fetched[1] == fetched[2] > 0

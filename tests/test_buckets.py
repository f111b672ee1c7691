"""The bucket cache's pure decisions (alertd.buckets) and its table on SQLite and PostgreSQL."""

from __future__ import annotations

import math
import sqlite3
from dataclasses import replace
from pathlib import Path

import numpy as np
import psycopg
import pytest

from alertd.bucket_payload import decode_entry, encode_entry
from alertd.buckets import (
    BucketEntry,
    CachePolicy,
    cache_key,
    combine,
    fetch_range,
    hourly,
    hours_from,
    kept_hours,
    key_needs,
    planned_needs,
    rebucket,
    reread_after,
    settled_before,
    unchanged,
    updated,
)
from alertd.model import DataNeed, MeterSpec, UsageRow
from alertd.store.postgres import PostgresStore
from alertd.store.sqlite import SqliteStore
from alertd.usage_columns import UsageColumns

HOUR = 3600
DAY = 86_400
NOW = 1_741_608_000  # 2025-03-10T12:00Z
POLICY = CachePolicy(settle_window=DAY, full_reread_every=7 * DAY)
SPEC = MeterSpec("mtr_a", (("tier", ("pro",)),), (), ("model",))
NEED = DataNeed("cus_1", SPEC, "day", "UTC", NOW - 30 * DAY - 12 * HOUR, NOW)


def row(start: int, value: float = 1.0) -> UsageRow:
    return UsageRow(start, start + DAY, value, "mtr_a", (("model", "m"),))


def test_the_key_names_everything_that_makes_a_query_distinct() -> None:
    keys = {cache_key(NEED), cache_key(replace(NEED, customer="cus_2")),
            cache_key(replace(NEED, granularity="hour")),
            cache_key(replace(NEED, timezone="Europe/Paris")),
            cache_key(replace(NEED, spec=replace(SPEC, meter="mtr_b"))),
            cache_key(replace(NEED, spec=replace(SPEC, dimension_filters=()))),
            cache_key(replace(NEED, spec=replace(SPEC, tenant_filters=(("u", ("x",)),)))),
            cache_key(replace(NEED, spec=replace(SPEC, group_by=())))}
    assert len(keys) == 8
    assert cache_key(replace(NEED, starts_at=NOW - DAY)) == cache_key(NEED)  # not the range


def test_needs_of_one_key_share_the_hull_of_their_ranges() -> None:
    short = replace(NEED, starts_at=NOW - 2 * DAY, ends_at=NOW + HOUR)
    hull = key_needs([NEED, short])[cache_key(NEED)]
    assert (hull.starts_at, hull.ends_at) == (NEED.starts_at, NOW + HOUR)


def test_the_first_read_is_full_then_only_what_was_not_settled_when_read() -> None:
    assert fetch_range(NEED, None, NOW, POLICY) == NEED
    entry = updated("k", NEED, NEED, None, [row(NOW - 12 * HOUR - 3 * DAY)], NOW, POLICY)
    # Settled: buckets before the start of the day NOW - 24 h falls in (yesterday 00:00).
    assert entry.covered_to == settled_before(NEED, NOW, POLICY) == NOW - 12 * HOUR - DAY
    later = replace(NEED, ends_at=NOW + HOUR)
    assert fetch_range(later, entry, NOW + HOUR, POLICY).starts_at == entry.covered_to
    # Days later (polls failed meanwhile): still from where the entry stopped being final.
    assert fetch_range(later, entry, NOW + 3 * DAY, POLICY).starts_at == entry.covered_to


def test_a_rule_looking_further_back_or_a_due_reread_reads_in_full() -> None:
    entry = BucketEntry("k", NEED.starts_at, NOW - 2 * DAY, NOW, ())
    further = replace(NEED, starts_at=NEED.starts_at - DAY)
    assert fetch_range(further, entry, NOW, POLICY) == further
    due = NOW + math.ceil(reread_after("k", POLICY))
    assert fetch_range(NEED, entry, due, POLICY) == NEED
    assert fetch_range(NEED, entry, due - 1, POLICY) != NEED


def test_full_rereads_are_spread_between_half_and_all_of_the_period() -> None:
    afters = [reread_after(f"key{i}", POLICY) for i in range(200)]
    assert all(3.5 * DAY <= a <= 7 * DAY for a in afters)
    assert max(afters) - min(afters) > 2 * DAY


def test_a_reread_replaces_its_range_and_the_entry_keeps_settled_rows_only() -> None:
    first = NEED.starts_at
    cached = BucketEntry("k", first, NOW - 3 * DAY - 12 * HOUR, NOW - DAY,
                         (row(first), row(NOW - 4 * DAY - 12 * HOUR)))
    fetched = replace(NEED, starts_at=cached.covered_to)
    rows = combine(NEED, fetched, cached, [row(NOW - 12 * HOUR, 5.0)])  # a bucket cancelled
    assert [r.starts_at for r in rows] == [first, NOW - 4 * DAY - 12 * HOUR, NOW - 12 * HOUR]
    entry = updated("k", NEED, fetched, cached, rows, NOW, POLICY)
    assert entry.full_at == NOW - DAY  # a partial read keeps the last full read's time
    assert [r.starts_at for r in entry.rows] == [first, NOW - 4 * DAY - 12 * HOUR]


def test_rows_round_trip_exactly() -> None:
    rows = (row(NOW, 0.1 + 0.2), UsageRow(NOW, NOW + HOUR, 1e300, "mtr_a", ()))
    entry = BucketEntry(cache_key(NEED), 0, NOW + DAY, NOW, rows)
    assert decode_entry(entry.key, 0, NOW + DAY, NOW, encode_entry(entry)).rows == rows
    with pytest.raises(ValueError):
        decode_entry(entry.key, 0, NOW + DAY, NOW, '[["x"]]')


async def test_the_store_keeps_replaces_and_prunes_entries(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    async with SqliteStore(path) as store:
        await _keeps_replaces_and_prunes(store)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE usage_buckets SET rows = 'garbage'")
    async with SqliteStore(path) as store:
        assert await store.load_buckets([cache_key(NEED)]) == {}  # read in full, no failure


async def test_the_postgres_store_keeps_the_same_entries(pg_url: str) -> None:
    async with PostgresStore(pg_url) as store:
        await _keeps_replaces_and_prunes(store)
    with psycopg.connect(pg_url) as conn:
        conn.execute("UPDATE usage_buckets SET rows = '{\"rows\": 3}'")
    async with PostgresStore(pg_url) as store:  # a restart: what was saved, or a full read
        assert await store.load_buckets([cache_key(NEED)]) == {}


async def _keeps_replaces_and_prunes(store: SqliteStore | PostgresStore) -> None:
    entry = BucketEntry(cache_key(NEED), NEED.starts_at, NOW - DAY, NOW, (row(NOW - 5 * DAY),),
                        (hour_row(NOW - DAY + HOUR),), NOW - DAY + 2 * HOUR, "UTC")
    other = replace(entry, key=cache_key(replace(NEED, customer="cus_2")), rows=())
    await store.save_buckets([entry, other], NOW)
    assert await store.load_buckets([entry.key, "nope", entry.key]) == {entry.key: entry}
    await store.save_buckets([replace(entry, rows=(), hours=(), hours_to=0, hours_zone="")],
                             NOW + DAY)
    again = (await store.load_buckets([entry.key]))[entry.key]
    assert (again.rows, again.hours) == ((), ())
    assert await store.prune_buckets(NOW + 1) == 1  # "other" was not saved since
    assert set(await store.load_buckets([entry.key, other.key])) == {entry.key}
    many = [replace(entry, key=cache_key(replace(NEED, customer=f"c{i}"))) for i in range(1200)]
    await store.save_buckets(many, NOW + DAY)  # more keys than one query's chunk
    assert len(await store.load_buckets(e.key for e in many)) == 1200


def hour_row(start: int, value: float = 1.0) -> UsageRow:
    return UsageRow(start, start + HOUR, value, "mtr_a", (("model", "m"),))


def test_the_running_day_keeps_its_settled_hours() -> None:
    yesterday = NOW - 12 * HOUR - DAY  # 00:00 of the day NOW - 24 h falls in
    fetched = replace(NEED, starts_at=yesterday)
    hours = [hour_row(t) for t in range(yesterday, NOW, HOUR)]
    entry = updated(cache_key(NEED), NEED, fetched, None, [], NOW, POLICY, hours, "UTC")
    assert entry.covered_to == yesterday
    # Hours of yesterday that ended before NOW - 24 h (12:00 yesterday) can no longer change.
    assert entry.hours_to == NOW - DAY and entry.hours_zone == "UTC"
    assert [r.starts_at for r in entry.hours] == list(range(yesterday, NOW - DAY, HOUR))
    stored = decode_entry(entry.key, entry.covered_from, entry.covered_to, entry.full_at,
                          encode_entry(entry))
    assert stored == entry
    # The next poll asks only from there, as hours, and puts the kept hours back in front.
    later = replace(NEED, ends_at=NOW + HOUR)
    again = fetch_range(later, entry, NOW + HOUR, POLICY)
    planned = planned_needs({"k": again}, POLICY, {"k": entry})["k"]
    assert (planned.granularity, planned.starts_at, planned.ends_at) == (
        "hour", NOW - DAY, NOW + HOUR)
    fresh = [hour_row(t, 2.0) for t in range(NOW - DAY, NOW + HOUR, HOUR)]
    days = rebucket(list(kept_hours(planned, again, entry)) + fresh, again)
    assert [(r.starts_at, r.value) for r in days] == [(yesterday, 12 + 2 * 12.0),
                                                      (NOW - 12 * HOUR, 2 * 13.0)]


def test_kept_hours_are_used_only_in_the_zone_and_bucket_they_were_read_for() -> None:
    yesterday = NOW - 12 * HOUR - DAY
    fetched = replace(NEED, starts_at=yesterday)
    asked = hourly(fetched, POLICY)
    entry = BucketEntry(cache_key(NEED), NEED.starts_at, yesterday, NOW, (), (hour_row(yesterday),),
                        yesterday + 6 * HOUR, "UTC")
    assert hours_from(asked, fetched, entry).starts_at == yesterday + 6 * HOUR
    assert hours_from(replace(asked, timezone="Asia/Kolkata"), fetched, entry).starts_at \
        == yesterday  # hours of another zone are other hours
    moved = replace(entry, covered_to=yesterday - DAY)  # kept for another bucket
    assert hours_from(asked, fetched, moved) == asked
    assert hours_from(fetched, fetched, entry) == fetched  # not read as hours: days as ever
    assert not kept_hours(asked, fetched, entry)  # nothing was left out of ``asked``
    # An entry without hours (stored before hours were kept) reads the bucket whole.
    stored = f'[[{NOW - 5 * DAY},{NOW - 4 * DAY},1.0,[["model","m"]]]]'  # the former list form
    old = decode_entry(cache_key(NEED), 0, yesterday, NOW, stored)
    assert old.rows == (row(NOW - 5 * DAY),)
    assert old.hours == () and hours_from(asked, fetched, old) == asked
    with pytest.raises(ValueError):
        decode_entry(cache_key(NEED), 0, 0, 0, '{"rows": []}')


def test_recent_day_needs_are_asked_as_hours_and_summed_back() -> None:
    recent = replace(NEED, timezone="America/New_York", starts_at=NOW - 31 * HOUR,
                     ends_at=NOW)  # from yesterday's midnight in New York (UTC-4 today)
    asked = hourly(recent, POLICY)
    assert (asked.granularity, asked.timezone) == ("hour", "UTC")
    assert hourly(NEED, POLICY) == NEED  # a long (full) read stays in days
    kolkata = replace(recent, timezone="Asia/Kolkata")
    assert hourly(kolkata, POLICY).timezone == "Asia/Kolkata"  # half-hour offset: own hours
    hours = [UsageRow(t, t + HOUR, 1.0, "mtr_a", (("model", "m"),))
             for t in range(recent.starts_at, NOW, HOUR)]
    # 2025-03-09 in New York had 23 hours (DST began), then 8 hours of today.
    assert rebucket(hours, recent) == [
        UsageRow(recent.starts_at, NOW - 8 * HOUR, 23.0, "mtr_a", (("model", "m"),)),
        UsageRow(NOW - 8 * HOUR, NOW, 8.0, "mtr_a", (("model", "m"),))]


def test_a_shrunk_need_joins_a_request_made_anyway() -> None:
    full = replace(NEED, spec=replace(SPEC, meter="mtr_b"))
    shrunk = replace(NEED, starts_at=NOW - DAY - 12 * HOUR)
    other_zone = replace(shrunk, timezone="Europe/Berlin")
    planned = planned_needs({"full": full, "shrunk": shrunk, "berlin": other_zone}, POLICY)
    assert planned["full"] == full and planned["shrunk"] == shrunk  # day UTC is asked anyway
    assert planned["berlin"].granularity == "hour"


STORED = BucketEntry(cache_key(NEED), NEED.starts_at, NOW - DAY, NOW - DAY,
                     (row(NOW - 3 * DAY), UsageRow(NOW - 2 * DAY, NOW - DAY, 0.0, "mtr_a", ())),
                     (hour_row(NOW - DAY),), NOW - DAY + HOUR, "UTC")


@pytest.mark.parametrize(("entry", "same"), [
    (STORED, True),
    (replace(STORED, rows=UsageColumns.of(STORED.rows)), True),  # as columns
    (replace(STORED, rows=UsageColumns.of(STORED.rows[::-1]).select(np.array([1, 0]))), True),
    (replace(STORED, key="other"), False),
    (replace(STORED, covered_from=NEED.starts_at + DAY), False),
    (replace(STORED, covered_to=NOW - DAY + HOUR), False),
    (replace(STORED, full_at=NOW), False),
    (replace(STORED, hours_to=NOW - DAY + 2 * HOUR), False),
    (replace(STORED, hours_zone="Asia/Kolkata"), False),
    (replace(STORED, rows=STORED.rows[:1]), False),
    (replace(STORED, rows=(row(NOW - 3 * DAY, 2.0), STORED.rows[1])), False),
    (replace(STORED, rows=(STORED.rows[0], replace(STORED.rows[1], value=-0.0))), False),
    (replace(STORED, rows=(STORED.rows[0], replace(STORED.rows[1], ends_at=NOW))), False),
    (replace(STORED, rows=(STORED.rows[0], replace(STORED.rows[1], dimensions=(("m", "x"),)))),
     False),
    (replace(STORED, hours=()), False),
])
def test_an_entry_is_unchanged_only_if_it_would_store_the_same(entry: BucketEntry,
                                                                 same: bool) -> None:
    assert unchanged(entry, STORED) is same
    assert unchanged(entry, None) is False


def test_an_entry_without_hours_is_unchanged_whatever_its_hours_to() -> None:
    # updated() sets hours_to to covered_to when it keeps no hours; the store keeps none.
    entry = replace(STORED, hours=(), hours_to=STORED.covered_to, hours_zone="")
    assert unchanged(entry, replace(entry, hours_to=0))
    assert unchanged(replace(entry, hours=STORED.hours), entry)  # hours past hours_to: none

"""The bucket cache's stored form (alertd.bucket_payload): version 3 round-trips exactly (NaN
and inf included), version 2 and the former forms still decode, anything else is a
``ValueError`` (the store drops that entry)."""

from __future__ import annotations

import base64
import json
import math
import sqlite3
import struct
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alertd.bucket_payload import _encode_v2, decode_entry, encode_entry
from alertd.buckets import BucketEntry, cache_key
from alertd.model import DataNeed, MeterSpec, UsageRow
from alertd.store.postgres import PostgresStore
from alertd.store.sqlite import SqliteStore

HOUR = 3600
NOW = 1_741_608_000
KEY = cache_key(DataNeed("cus_1", MeterSpec("mtr_a", group_by=("model",)), "hour", "UTC",
                         NOW - 60 * 86_400, NOW))
DIMENSIONS = [(), (("model", "m"),), (("model", "é\"\\"), ("region", "eu")), (("", ""),)]

values = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(
    [0.1 + 0.2, -0.0, 5e-324, 1e300, 2.0**53 + 1])
rows = st.lists(st.builds(lambda start, length, value, dims: UsageRow(
    start, start + length, value, "mtr_a", dims),
    st.integers(-(2**62), 2**62), st.integers(0, 86_400), values,
    st.sampled_from(DIMENSIONS)), max_size=30)


def stored(entry: BucketEntry) -> BucketEntry:
    return decode_entry(entry.key, entry.covered_from, entry.covered_to, entry.full_at,
                        encode_entry(entry))


def bits(rows: Any) -> list[tuple[int, int, bytes, Any]]:
    """Rows with their values as bytes: ``-0.0`` and ``0.0`` differ, as they must."""
    return [(r.starts_at, r.ends_at, struct.pack("<d", r.value), r.dimensions) for r in rows]


@settings(max_examples=200, deadline=None, derandomize=True)
@given(rows, rows, st.integers(1, 48), st.sampled_from(["UTC", "Asia/Kolkata"]),
       st.booleans())
def test_an_entry_comes_back_bit_for_bit(days: list[UsageRow], hours: list[UsageRow],
                                         kept: int, zone: str, as_tuples: bool) -> None:
    entry = BucketEntry(KEY, NOW - 60 * 86_400, NOW - 86_400, NOW, tuple(days), tuple(hours),
                        NOW - 86_400 + kept * HOUR, zone)
    if not as_tuples:  # as the cache hands them over: columns
        entry = stored(entry)
    again = stored(entry)
    assert again == entry
    assert bits(again.rows) == bits(days) and bits(again.hours) == bits(hours)
    assert orjson.loads(encode_entry(entry))["v"] == 3


@settings(max_examples=100, deadline=None, derandomize=True)
@given(st.lists(st.floats() | st.sampled_from([math.nan, -math.nan, math.inf, -math.inf]),
                max_size=20))
def test_values_that_are_not_finite_come_back_bit_for_bit(drawn: list[float]) -> None:
    days = [UsageRow(i * HOUR, (i + 1) * HOUR, v, "mtr_a", DIMENSIONS[i % 4])
            for i, v in enumerate(drawn)]
    again = stored(BucketEntry(KEY, 0, NOW, NOW, tuple(days)))
    assert bits(again.rows) == bits(days)


@settings(max_examples=50, deadline=None, derandomize=True)
@given(rows, rows)
def test_an_entry_without_kept_hours_stores_none(days: list[UsageRow],
                                                  hours: list[UsageRow]) -> None:
    # As updated() makes it when the key is not read as hours: hours_to at covered_to.
    entry = BucketEntry(KEY, 0, NOW, NOW, tuple(days), tuple(hours), NOW, "")
    again = stored(entry)
    assert (again.rows, again.hours, again.hours_to, again.hours_zone) == (
        tuple(days), (), 0, "")


def test_each_dimension_set_is_stored_once() -> None:
    days = tuple(UsageRow(t, t + HOUR, 1.0, "mtr_a", DIMENSIONS[t // HOUR % 3])
                 for t in range(0, 100 * HOUR, HOUR))
    hours = (UsageRow(NOW, NOW + HOUR, 2.0, "mtr_a", DIMENSIONS[3]),
             UsageRow(NOW, NOW + HOUR, 3.0, "mtr_a", DIMENSIONS[1]))
    entry = BucketEntry(KEY, 0, NOW, NOW, days, hours, NOW + HOUR, "UTC")
    payload = orjson.loads(encode_entry(entry))
    assert payload["dims"] == [[list(p) for p in d] for d in DIMENSIONS]
    assert payload["hours"]["dims"] == ["<u2", b64(b"\x03\x00\x01\x00")]
    assert stored(entry) == entry


def test_values_orjson_cannot_write_are_version_3_too() -> None:
    entry = BucketEntry(KEY, 0, NOW, NOW, (UsageRow(0, HOUR, math.inf, "mtr_a", ()),
                                           UsageRow(HOUR, 2 * HOUR, -math.inf, "mtr_a", ())))
    assert orjson.loads(encode_entry(entry))["v"] == 3
    assert stored(entry) == entry


def test_whole_values_constant_widths_and_one_dimension_set_are_stored_narrow() -> None:
    days = tuple(UsageRow(t, t + HOUR, float(t % 7), "mtr_a", DIMENSIONS[1])
                 for t in range(0, 50 * HOUR, HOUR))
    payload = orjson.loads(encode_entry(BucketEntry(KEY, 0, NOW, NOW, days)))["rows"]
    assert payload["starts"][0] == "+<u2" and payload["values"][0] == "<i4"
    assert payload["widths"] == ["=", HOUR] and payload["dims"] == ["=", 0]
    assert stored(BucketEntry(KEY, 0, NOW, NOW, days)) == BucketEntry(KEY, 0, NOW, NOW, days)


@pytest.mark.parametrize("value", [-0.0, 0.5, 2.0**31, -(2.0**31) - 1])
def test_values_int32_cannot_hold_exactly_are_stored_raw(value: float) -> None:
    days = (UsageRow(0, HOUR, 1.0, "mtr_a", ()), UsageRow(HOUR, 2 * HOUR, value, "mtr_a", ()))
    entry = BucketEntry(KEY, 0, NOW, NOW, days)
    assert orjson.loads(encode_entry(entry))["rows"]["values"][0] == "<f8"
    assert bits(stored(entry).rows) == bits(days)


def test_unsorted_starts_are_stored_as_offsets() -> None:
    days = (UsageRow(2 * HOUR, 3 * HOUR, 1.0, "mtr_a", ()), UsageRow(0, HOUR, 2.0, "mtr_a", ()),
            UsageRow(86_400, 86_400 + HOUR, 2.0, "mtr_a", ()))
    entry = BucketEntry(KEY, 0, NOW, NOW, days)
    assert orjson.loads(encode_entry(entry))["rows"]["starts"][0] == "<i4"
    assert stored(entry) == entry


def test_starts_and_widths_past_int32_are_stored_as_int64() -> None:
    days = (UsageRow(-(2**62), 2**62, 1.0, "mtr_a", ()),
            UsageRow(2**62, 2**62 + HOUR, 2.0, "mtr_a", ()),
            UsageRow(-(2**63), 2**63 - 1, 3.0, "mtr_a", ()))
    entry = BucketEntry(KEY, 0, NOW, NOW, days)
    payload = orjson.loads(encode_entry(entry))["rows"]
    assert payload["starts"][0] == payload["widths"][0] == "<i8"
    assert stored(entry) == entry


def test_a_table_of_65536_dimension_sets_stores_its_codes_as_int32() -> None:
    count = 2**16 + 3
    days = tuple(UsageRow(i, i + 1, 1.0, "mtr_a", (("model", str(i)),)) for i in range(count))
    entry = BucketEntry(KEY, 0, NOW, NOW, days)
    payload = orjson.loads(encode_entry(entry))
    assert len(payload["dims"]) == count and payload["rows"]["dims"][0] == "<i4"
    again = stored(entry)
    assert again.rows.dimension_codes.tolist() == list(range(count))  # type: ignore[attr-defined]
    assert again == entry


def test_the_arrays_decoded_are_not_copied_again() -> None:
    days = tuple(UsageRow(t, t + HOUR, t / 3, "mtr_a", ()) for t in range(0, 9 * HOUR, HOUR))
    columns = stored(BucketEntry(KEY, 0, NOW, NOW, days)).rows
    values = columns.values  # type: ignore[attr-defined]
    assert not values.flags.writeable and not values.flags.owndata  # over the decoded bytes


# --------------------------------------------------------------------------- version 2


@settings(max_examples=100, deadline=None, derandomize=True)
@given(rows, rows, st.integers(1, 48))
def test_entries_stored_as_version_2_still_decode(days: list[UsageRow], hours: list[UsageRow],
                                                  kept: int) -> None:
    entry = BucketEntry(KEY, NOW - 60 * 86_400, NOW - 86_400, NOW, tuple(days), tuple(hours),
                        NOW - 86_400 + kept * HOUR, "UTC")
    text = _encode_v2(entry)
    assert orjson.loads(text)["v"] == 2
    again = decode_entry(entry.key, entry.covered_from, entry.covered_to, entry.full_at, text)
    assert again == entry
    assert bits(again.rows) == bits(days) and bits(again.hours) == bits(hours)


def test_what_version_2_wrote_for_values_it_could_not_hold_still_decodes() -> None:
    entry = BucketEntry(KEY, 0, NOW, NOW, (UsageRow(0, HOUR, math.inf, "mtr_a", ()),
                                           UsageRow(HOUR, 2 * HOUR, -math.inf, "mtr_a", ())))
    text = _encode_v2(entry)
    assert "Infinity" in text  # the former object form, stdlib json's
    assert decode_entry(KEY, 0, NOW, NOW, text) == entry


# --------------------------------------------------------------------------- former forms


def former_rows(rows: list[UsageRow]) -> list[list[Any]]:
    """The former encoder's rows (``_plain``): ``[start, end, value, [[key, value], ...]]``."""
    return [[r.starts_at, r.ends_at, r.value, [list(d) for d in r.dimensions]] for r in rows]


@settings(max_examples=100, deadline=None, derandomize=True)
@given(rows, rows, st.booleans())
def test_entries_stored_in_the_former_forms_still_decode(days: list[UsageRow],
                                                         hours: list[UsageRow],
                                                         keeps_hours: bool) -> None:
    if keeps_hours:  # the object form (an entry that kept hours), as json.dumps wrote it
        text = json.dumps({"rows": former_rows(days), "hours": former_rows(hours),
                           "hours_to": NOW + HOUR, "zone": "UTC"}, separators=(",", ":"))
        want = BucketEntry(KEY, 0, NOW, NOW, tuple(days), tuple(hours), NOW + HOUR, "UTC")
    else:  # the list form (no hours)
        text = json.dumps(former_rows(days), separators=(",", ":"))
        want = BucketEntry(KEY, 0, NOW, NOW, tuple(days))
    entry = decode_entry(KEY, 0, NOW, NOW, text)
    assert entry == want and bits(entry.rows) == bits(days)
    assert stored(entry) == want  # the next save writes it as version 3


def test_a_former_payload_decodes_to_its_columns() -> None:
    text = ('[[0,3600,1.5,[["model","m"]]],[0,3600,2,[]],[3600,7200,0.30000000000000004,'
            '[["model","m"]]]]')
    entry = decode_entry(KEY, 0, NOW, NOW, text)
    columns = entry.rows
    assert columns.starts.tolist() == [0, 0, 3600]  # type: ignore[attr-defined]
    assert columns.values.tolist() == [1.5, 2.0, 0.1 + 0.2]  # type: ignore[attr-defined]
    assert columns.dimensions == ((("model", "m"),), ())  # type: ignore[attr-defined]
    assert columns.dimension_codes.tolist() == [0, 1, 0]  # type: ignore[attr-defined]
    assert columns.meters == ("mtr_a",)  # type: ignore[attr-defined]
    assert entry.hours == () and entry.hours_to == 0


# --------------------------------------------------------------------------- damaged payloads


def good(encode: Any = encode_entry) -> dict[str, Any]:
    entry = BucketEntry(KEY, 0, NOW, NOW, (UsageRow(0, HOUR, 1.0, "mtr_a", DIMENSIONS[1]),
                                           UsageRow(HOUR, 3 * HOUR, 0.5, "mtr_a", ())),
                        (UsageRow(NOW, NOW + HOUR, 2.0, "mtr_a", ()),), NOW + HOUR, "UTC")
    payload: dict[str, Any] = orjson.loads(encode(entry))
    return payload


def damaged(change: Any) -> str:
    """A version-2 payload, changed."""
    payload = good(_encode_v2)
    change(payload)
    return json.dumps(payload)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def damaged_v3(change: Any) -> str:
    payload = good()
    change(payload)
    return json.dumps(payload)


def test_the_good_payloads_decode() -> None:
    for payload in (good(), good(_encode_v2)):
        decode_entry(KEY, 0, NOW, NOW, json.dumps(payload))
    assert good()["rows"]["dims"][0] == "<u2" and good()["rows"]["values"][0] == "<f8"


@pytest.mark.parametrize("text", [
    damaged_v3(lambda p: p.update(v=4)),  # no version this module knows
    damaged_v3(lambda p: p["rows"]["starts"].__setitem__(1, "AAA*")),  # not base64
    damaged_v3(lambda p: p["rows"]["starts"].__setitem__(1, "AAAAAAA")),  # bad padding
    damaged_v3(lambda p: p["rows"]["starts"].__setitem__(1, "AAAA\nAAAA")),
    damaged_v3(lambda p: p["rows"]["starts"].__setitem__(1, "AAAAAAé=")),
    damaged_v3(lambda p: p["rows"]["starts"].__setitem__(1, 3)),
    damaged_v3(lambda p: p["rows"]["starts"].__setitem__(1, b64(bytes(2)))),  # 1 of 2
    damaged_v3(lambda p: p["rows"]["starts"].__setitem__(1, b64(bytes(3)))),  # not whole
    damaged_v3(lambda p: p["rows"].update(starts=["<i4", b64(bytes(4)), 0])),  # 1 of 2
    damaged_v3(lambda p: p["rows"]["starts"].__setitem__(2, "0")),  # first no integer
    damaged_v3(lambda p: p["rows"]["starts"].__setitem__(2, 2**63)),
    damaged_v3(lambda p: p["rows"]["starts"].pop()),
    damaged_v3(lambda p: p["rows"]["starts"].__setitem__(0, "<f8")),  # a tag not for starts
    damaged_v3(lambda p: p["rows"]["starts"].__setitem__(0, "=")),
    damaged_v3(lambda p: p["rows"].update(widths=["<i4", b64(bytes(12))])),  # lengths differ
    damaged_v3(lambda p: p["rows"].update(widths=["=", "1"])),
    damaged_v3(lambda p: p["rows"].update(widths=["=", 2**64])),
    damaged_v3(lambda p: p["rows"].update(values=["<i4", b64(bytes(4))])),
    damaged_v3(lambda p: p["rows"].update(values=["<f4", b64(bytes(8))])),
    damaged_v3(lambda p: p["rows"].update(values=["=", 1])),
    damaged_v3(lambda p: p["rows"].update(dims=["<u2", b64(b"\x02\x00\x00\x00")])),  # 2
    damaged_v3(lambda p: p["rows"].update(dims=["<i4", b64(b"\xff" * 4 + bytes(4))])),  # -1
    damaged_v3(lambda p: p["rows"].update(dims=["=", 2])),
    damaged_v3(lambda p: p["rows"].update(dims=["=", -1])),
    damaged_v3(lambda p: p["rows"].update(dims=["<u2"])),
    damaged_v3(lambda p: p["rows"].update(n=3)),
    damaged_v3(lambda p: p["rows"].update(n=-1)),
    damaged_v3(lambda p: p["rows"].update(n="2")),
    damaged_v3(lambda p: p["rows"].pop("widths")),
    damaged_v3(lambda p: p.update(rows=[])),
    damaged_v3(lambda p: p.pop("hours")),
    damaged_v3(lambda p: p.update(dims=[[["model", "m"]], [["model", "m"]]])),
    damaged_v3(lambda p: p.update(hours_to="1")),
    damaged_v3(lambda p: p.update(zone=None)),
])
def test_a_damaged_version_3_payload_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="not a cached bucket entry"):
        decode_entry(KEY, 0, NOW, NOW, text)


@pytest.mark.parametrize("text", [
    "", "garbage", "3", "null", '"text"', "{}", '{"v":2}', '{"v":3,"rows":[]}',
    damaged(lambda p: p["rows"].update(starts=["0"])),
    damaged(lambda p: p["rows"].update(starts=[None])),
    damaged(lambda p: p["rows"].update(starts=[0.5])),
    damaged(lambda p: p["rows"].update(starts=[True])),
    damaged(lambda p: p["rows"].update(starts=[2**63])),
    damaged(lambda p: p["rows"].update(starts=[[0]])),
    damaged(lambda p: p["rows"].update(starts=0)),
    damaged(lambda p: p["rows"].update(ends=[])),  # lengths differ
    damaged(lambda p: p["rows"].update(values=["1"])),
    damaged(lambda p: p["rows"].update(values=[None])),
    damaged(lambda p: p["rows"].update(values=[1e400])),  # inf: never written as version 2
    damaged(lambda p: p["rows"].update(dims=[2])),  # outside the table
    damaged(lambda p: p["rows"].update(dims=[-1])),
    damaged(lambda p: p["rows"].update(dims=[0.0])),
    damaged(lambda p: p["rows"].pop("dims")),
    damaged(lambda p: p.update(rows=[])),
    damaged(lambda p: p.pop("hours")),
    damaged(lambda p: p.update(dims=[[["model", "m"]], [["model", "m"]]])),  # twice
    damaged(lambda p: p.update(dims=[[["model"]]])),
    damaged(lambda p: p.update(dims=[["mo"]])),
    damaged(lambda p: p.update(dims=[[["model", 3]]])),
    damaged(lambda p: p.update(dims={})),
    damaged(lambda p: p.update(hours_to="1")),
    damaged(lambda p: p.update(zone=None)),
    '[["x"]]', '[[0,3600,"1",[]]]', '{"rows":[]}',  # former forms, damaged
])
def test_a_damaged_payload_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="not a cached bucket entry"):
        decode_entry(KEY, 0, NOW, NOW, text)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(st.data(), st.booleans())
def test_a_cut_payload_is_a_value_error(data: st.DataObject, version_3: bool) -> None:
    text = json.dumps(good() if version_3 else good(_encode_v2))
    cut = data.draw(st.integers(0, len(text) - 1))
    with pytest.raises(ValueError):
        decode_entry(KEY, 0, NOW, NOW, text[:cut])


# --------------------------------------------------------------------------- in the stores


async def test_sqlite_reads_a_former_entry_and_rewrites_it(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    entry = BucketEntry(KEY, 0, NOW, NOW, (UsageRow(0, HOUR, 0.1 + 0.2, "mtr_a", ()),))
    async with SqliteStore(path) as store:
        await store.save_buckets([entry], NOW)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE usage_buckets SET rows = ?",
                     (json.dumps(former_rows(list(entry.rows))),))
    async with SqliteStore(path) as store:
        assert await store.load_buckets([KEY]) == {KEY: entry}
        await store.save_buckets([entry], NOW + 1)
    with sqlite3.connect(path) as conn:
        (text,) = conn.execute("SELECT rows FROM usage_buckets").fetchone()
    assert orjson.loads(text)["v"] == 3


async def test_sqlite_reads_a_version_2_entry(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    entry = BucketEntry(KEY, 0, NOW, NOW, (UsageRow(0, HOUR, 0.1 + 0.2, "mtr_a", ()),),
                        (UsageRow(NOW, NOW + HOUR, 4.0, "mtr_a", DIMENSIONS[2]),),
                        NOW + HOUR, "UTC")
    async with SqliteStore(path) as store:
        await store.save_buckets([entry], NOW)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE usage_buckets SET rows = ?", (_encode_v2(entry),))
    async with SqliteStore(path) as store:
        assert await store.load_buckets([KEY]) == {KEY: entry}


async def test_postgres_stores_version_3_and_reads_the_former_forms(pg_url: str) -> None:
    entry = BucketEntry(KEY, 0, NOW, NOW, (UsageRow(0, HOUR, 0.1 + 0.2, "mtr_a", ()),),
                        (UsageRow(NOW, NOW + HOUR, 1e-300, "mtr_a", DIMENSIONS[2]),),
                        NOW + HOUR, "UTC")
    async with PostgresStore(pg_url) as store:
        await store.save_buckets([entry], NOW)
        assert await store.load_buckets([KEY]) == {KEY: entry}
    with psycopg.connect(pg_url) as conn:
        row = conn.execute("SELECT rows FROM usage_buckets").fetchone()
        assert row is not None and orjson.loads(row[0])["v"] == 3
        former = {"rows": former_rows(list(entry.rows)), "hours": former_rows(list(entry.hours)),
                  "hours_to": NOW + HOUR, "zone": "UTC"}
        conn.execute("UPDATE usage_buckets SET rows = %s", (json.dumps(former),))
    async with PostgresStore(pg_url) as store:
        assert await store.load_buckets([KEY]) == {KEY: entry}


async def test_postgres_reads_version_2_and_non_finite_values(pg_url: str) -> None:
    entry = BucketEntry(KEY, 0, NOW, NOW, (UsageRow(0, HOUR, 0.1 + 0.2, "mtr_a", ()),),
                        (UsageRow(NOW, NOW + HOUR, 7.0, "mtr_a", DIMENSIONS[2]),),
                        NOW + HOUR, "UTC")
    async with PostgresStore(pg_url) as store:
        await store.save_buckets([entry], NOW)
    with psycopg.connect(pg_url) as conn:
        conn.execute("UPDATE usage_buckets SET rows = %s", (_encode_v2(entry),))
    other = cache_key(DataNeed("cus_2", MeterSpec("mtr_a"), "day", "UTC", 0, NOW))
    infinite = BucketEntry(other, 0, NOW, NOW, (UsageRow(0, HOUR, -math.inf, "mtr_a", ()),))
    async with PostgresStore(pg_url) as store:
        assert await store.load_buckets([KEY]) == {KEY: entry}
        await store.save_buckets([infinite], NOW)
        assert await store.load_buckets([other]) == {other: infinite}

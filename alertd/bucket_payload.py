"""The bucket cache's stored form: an entry's rows (and kept hours) as one JSON payload.

Where it sits: :mod:`alertd.store.bucket_rows` encodes each :class:`~alertd.buckets.BucketEntry`
a poll saves with :func:`encode_entry` and decodes each one a poll loads with
:func:`decode_entry` (SQLite and PostgreSQL alike: a ``TEXT`` column); the entry's range and
times are columns of their own. Every steady poll reads each key's whole cached history, so
decoding is a large share of a steady poll's CPU (issue 13).

The payload (version 3), columnar, each numeric column one base64 string of raw
little-endian bytes (ASCII, so valid text for PostgreSQL's ``TEXT`` too)::

    {"v": 3, "dims": [[[key, value], ...], ...],
     "rows":  {"n": 4248, "starts": ["<i4", "AAAA...", first], "widths": ["=", 3600],
               "values": ["<i4", "..."], "dims": ["<u2", "..."]},
     "hours": {... the same ...}, "hours_to": 0, "zone": ""}

A column is ``[tag, data]``: ``tag`` the numpy dtype of its bytes, or ``"="`` with ``data`` the
one integer every row has. Starts are offsets from the first (``<i4`` when they fit, else
``<i8``), ends are widths ``end - start`` (``=``, ``<i4`` or ``<i8``), values are ``<i4``
when all are whole and come back bit for bit that way (the usual case: usage summed from
whole-number events), else raw ``<f8`` (NaN and inf included), dimension codes ``<u2`` (``<i4``
for a table of 65,536 sets or more) or ``=``. ``dims`` holds each distinct dimension set once
(shared by ``rows`` and ``hours``); a row's is ``dims[code]``. No meter: it is in the key
(:func:`~alertd.buckets.key_meter`). ``hours_to`` and ``zone`` are ``0`` and ``""`` for an entry
that keeps no hours. Decoding is ``binascii.a2b_base64`` (strict) and ``np.frombuffer`` per
column — read-only arrays over the decoded bytes, which UsageColumns keeps without a copy —
and each column is checked whole: its tag, its length against ``n``, codes inside the table.

Why version 3: version 2 (kept: :func:`_encode_v2`, and its reader) held each column as a JSON
list of numbers, so a decode was orjson parsing every number and ``np.asarray`` of each list —
in a py-spy profile of the daemon (3,000 customers × 16 rules, steady cycle) ~19 % of its CPU
went to decoding the cache, 6.4 % of it SQLite fetching the large ``TEXT`` values. For a key of
60 days of hours in 3 groups (4,248 rows) version 3 decodes in 0.24 ms where version 2 took
1.09 (0.42 vs 1.28 with fractional values), encodes in 0.14 where it took 0.28 (0.19 vs 0.32)
and is 35 % of its bytes (46 kB vs 132 kB; 38 % fractional); a daily key of 177 rows decodes
in 42 µs vs 83 at 47 % of the bytes, but encodes in 52 µs vs 38 (a dozen small numpy passes
to pick the narrow forms; a poll encodes only the entries that changed). Least CPU of 100
rounds, ``bench/cache_codec.py``, load average 0.6–0.7 (``bench/README.md`` has the
figures). Version 2 had replaced the first form (a Python list per row, stdlib ``json``:
~60 % of the daemon's CPU then), which decodes such a key in 11–19 ms.

Entries stored as version 2 or in the former forms still decode (:func:`former_entry`: a
daemon upgrading keeps its cache); the next save of such a key writes it as version 3 — a poll
saves only the entries that changed (:func:`alertd.buckets.unchanged`), so that is the first
poll after its settled range moves on (the next hour, for most keys), at the latest its next
full read. A payload that is none of these gives ``ValueError``: the store drops that entry and
the key is read in full.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import orjson

from alertd.buckets import BucketEntry, key_meter
from alertd.model import Dimensions, UsageRow
from alertd.usage_columns import UsageColumns

VERSION = 3
_NUMPY = orjson.OPT_SERIALIZE_NUMPY
#: Dimension tables of fewer sets than this store their codes as ``<u2``, larger ones ``<i4``.
_NARROW_TABLE = 2**16
_I32 = np.iinfo(np.int32)
_U16 = np.iinfo(np.uint16)
_NO_INTEGERS = np.zeros(0, np.int64)
_NO_INTEGERS.flags.writeable = False
_NO_FLOATS = np.zeros(0, np.float64)
_NO_FLOATS.flags.writeable = False


def encode_entry(entry: BucketEntry) -> str:
    """An entry's rows and kept hours as the stored payload (version 3)."""
    keeps_hours = entry.hours_to > entry.covered_to
    rows = UsageColumns.of(entry.rows)
    hours = UsageColumns.of(entry.hours if keeps_hours else ())
    table, (row_codes, hour_codes) = _shared_table([rows, hours])
    wide = len(table) >= _NARROW_TABLE
    return orjson.dumps({
        "v": VERSION, "dims": table, "rows": _packed(rows, row_codes, wide),
        "hours": _packed(hours, hour_codes, wide),
        "hours_to": entry.hours_to if keeps_hours else 0,
        "zone": entry.hours_zone if keeps_hours else ""}).decode()


def decode_entry(key: str, covered_from: int, covered_to: int, full_at: int, text: str
                 ) -> BucketEntry:
    """The entry :func:`encode_entry` stored (or a former form stored); ``ValueError`` for
    anything else."""
    meter = key_meter(key)
    try:
        payload = _parsed(text)
        version = payload.get("v") if isinstance(payload, dict) else None
        if version == VERSION:
            table = _table(payload["dims"])
            return BucketEntry(key, covered_from, covered_to, full_at,
                               _unpacked(payload["rows"], table, meter),
                               _unpacked(payload["hours"], table, meter),
                               _integer(payload["hours_to"]), _text(payload["zone"]))
        if version == 2:
            table = _table(payload["dims"])
            return BucketEntry(key, covered_from, covered_to, full_at,
                               _columns(payload["rows"], table, meter),
                               _columns(payload["hours"], table, meter),
                               _integer(payload["hours_to"]), _text(payload["zone"]))
        return former_entry(key, covered_from, covered_to, full_at, payload, meter)
    except (TypeError, ValueError, KeyError, OverflowError) as exc:
        raise ValueError(f"not a cached bucket entry: {exc!r}") from None


def _parsed(text: str) -> Any:
    """The payload's JSON; stdlib json reads what orjson refuses (``NaN``, ``Infinity``:
    :func:`_legacy_payload`'s, which version 2 wrote for values it could not hold, or a
    former form's)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


# --------------------------------------------------------------------------- version 3
# A numeric column is ``[tag, data]``: ``tag`` a little-endian numpy dtype and ``data`` the
# column's raw bytes in base64, or ``tag`` "=" and ``data`` the one integer every row has.
# Starts are ``[tag, data, first]``: offsets from the first start (int64 arithmetic wraps, so
# ``first + (start - first)`` is ``start`` whatever the offsets; they are stored as ``<i4``
# when they fit), or ``+<u2``: each the step from the one before. Ends are stored as widths,
# ``end - start``, like offsets.


def _packed(rows: UsageColumns, codes: np.ndarray, wide: bool) -> dict[str, Any]:
    if not len(rows):  # most entries keep no hours
        return _packed_empty()
    first = int(rows.starts[0])
    # Array arithmetic wraps on overflow, silently: exactly what offsets and widths need.
    offsets = rows.starts - np.int64(first)
    widths = rows.ends - rows.starts
    return {"n": len(rows), "starts": [*_starts(offsets), first],
            "widths": _integers(widths, constant=True),
            "values": _floats(rows.values),
            "dims": _integers(codes, constant=True, unsigned=not wide)}


def _packed_empty() -> dict[str, Any]:
    return {"n": 0, "starts": ["<i4", "", 0], "widths": ["<i4", ""], "values": ["<f8", ""],
            "dims": ["<u2", ""]}


def _starts(offsets: np.ndarray) -> list[Any]:
    """Sorted starts a step of at most 65,535 s apart (hourly rows: 0 or 3,600) as
    ``+<u2``, each the step from the one before; else offsets from the first."""
    steps = np.empty_like(offsets)
    steps[:1] = 0
    np.subtract(offsets[1:], offsets[:-1], out=steps[1:])
    narrow = steps.astype("<u2")
    if len(steps) and (narrow == steps).all():  # a negative step is no u2 step
        return ["+<u2", _base64(narrow)]
    return _integers(offsets)


def _integers(column: np.ndarray, constant: bool = False, unsigned: bool = False
              ) -> list[Any]:
    """The narrowest form that holds ``column`` exactly (``unsigned``: codes into a table of
    fewer than 65,536 sets)."""
    if constant and len(column) and (column == column[0]).all():
        return ["=", int(column[0])]
    if unsigned:
        return ["<u2", _base64(column.astype("<u2"))]
    narrow = column.astype("<i4")
    if (narrow == column).all():
        return ["<i4", _base64(narrow)]
    return ["<i8", _base64(column.astype("<i8"))]


def _floats(values: np.ndarray) -> list[str]:
    """Whole values (the usual: usage summed from whole-number events) as ``<i4`` when that
    gives the same bits back (not ``-0.0``, nothing past int32), else the raw ``<f8``."""
    # min and max are NaN if any value is, and NaN is inside no range.
    if len(values) and values.min() >= _I32.min and values.max() <= _I32.max:
        whole = values.astype("<i4")
        if (whole.astype(np.float64).view(np.int64) == values.view(np.int64)).all():
            return ["<i4", _base64(whole)]
    return ["<f8", _base64(values.astype("<f8"))]


def _base64(column: np.ndarray) -> str:
    return binascii.b2a_base64(np.ascontiguousarray(column).data, newline=False).decode()


def _raw(data: str) -> bytes:
    return binascii.a2b_base64(data, strict_mode=True)


def _unpacked(raw: Any, table: list[Dimensions], meter: str | None) -> UsageColumns:
    """Columns of a version-3 ``rows`` or ``hours`` object, each field checked whole."""
    if not isinstance(raw, dict):
        raise TypeError("rows that are no object")
    if raw == _packed_empty():
        return UsageColumns(_NO_INTEGERS, _NO_INTEGERS, _NO_FLOATS, _NO_INTEGERS, (meter,),
                            _NO_INTEGERS, table)
    count = _integer(raw["n"])
    tag, data, first = _list(raw["starts"])
    starts = _unpacked_starts(tag, data, count) + np.int64(_integer(first))
    ends = starts + _unpacked_column(raw["widths"], count, ("=", "<i4", "<i8"))
    codes = _unpacked_column(raw["dims"], count, ("=", "<u2", "<i4"))
    if count and not (codes.min() >= 0 and codes.max() < len(table)):
        raise ValueError("a dimension code outside the table")
    values = _unpacked_column(raw["values"], count, ("<i4", "<f8"))
    return UsageColumns(starts, ends, values.astype(np.float64, copy=False),
                        np.zeros(count, np.int64), (meter,), codes, table)


def _unpacked_starts(tag: Any, data: Any, count: int) -> np.ndarray:
    if tag == "+<u2":
        return np.cumsum(_unpacked_column(["<u2", data], count, ("<u2",)), dtype=np.int64)
    return _unpacked_column([tag, data], count, ("<i4", "<i8"))


def _unpacked_column(raw: Any, count: int, tags: tuple[str, ...]) -> np.ndarray:
    """A ``[tag, data]`` column of ``count`` items, its tag one of ``tags``; read-only arrays
    over the decoded bytes (UsageColumns keeps them as they are)."""
    tag, data = _list(raw)
    if tag not in tags:
        raise ValueError(f"a column of {tag!r}, not of {tags}")
    if tag == "=":
        return np.full(count, _integer(data), np.int64)
    column = np.frombuffer(_raw(_text(data)), tag)
    if len(column) != count:
        raise ValueError(f"a column of {len(column)} items, not {count}")
    return column


# --------------------------------------------------------------------------- version 2


def _encode_v2(entry: BucketEntry) -> str:
    """An entry as version 2 stored it (kept for the bench and for tests of reading it)."""
    keeps_hours = entry.hours_to > entry.covered_to
    rows = UsageColumns.of(entry.rows)
    hours = UsageColumns.of(entry.hours if keeps_hours else ())
    if not (np.isfinite(rows.values).all() and np.isfinite(hours.values).all()):
        return _legacy_payload(entry)  # orjson writes NaN and inf as null; Stripe sends none
    table, (row_codes, hour_codes) = _shared_table([rows, hours])
    return orjson.dumps({
        "v": 2, "dims": table, "rows": _fields(rows, row_codes),
        "hours": _fields(hours, hour_codes), "hours_to": entry.hours_to if keeps_hours else 0,
        "zone": entry.hours_zone if keeps_hours else ""}, option=_NUMPY).decode()


def _shared_table(parts: Sequence[UsageColumns]) -> tuple[list[list[list[str]]],
                                                             list[np.ndarray]]:
    """One table of the dimension sets the parts' rows use (each once), and each part's codes
    into it: a dict look-up per table entry, an array index per row."""
    index: dict[Dimensions, int] = {}
    codes = []
    for part in parts:
        used = np.zeros(len(part.dimensions), bool)
        used[part.dimension_codes] = True
        recode = np.fromiter(
            (index.setdefault(d, len(index)) if u else -1
             for d, u in zip(part.dimensions, used.tolist(), strict=True)),
            np.int64, len(part.dimensions))
        codes.append(recode[part.dimension_codes])
    return [[list(pair) for pair in d] for d in index], codes


def _fields(rows: UsageColumns, codes: np.ndarray) -> dict[str, np.ndarray]:
    # orjson serializes C-contiguous arrays only (a column sliced by a step is not).
    return {"starts": np.ascontiguousarray(rows.starts), "ends": np.ascontiguousarray(rows.ends),
            "values": np.ascontiguousarray(rows.values), "dims": np.ascontiguousarray(codes)}


def _table(raw: Any) -> list[Dimensions]:
    """The dimension sets of ``dims``: lists of ``[key, value]`` string pairs, each set once."""
    table = [tuple(_pair(pair) for pair in _list(entry)) for entry in _list(raw)]
    if len(set(table)) != len(table):
        raise ValueError("a dimension set stored twice")
    return table


def _columns(raw: Any, table: list[Dimensions], meter: str | None) -> UsageColumns:
    """Columns of a version-2 ``rows`` or ``hours`` object, each field checked whole."""
    if not isinstance(raw, dict):
        raise TypeError("rows that are no object")
    codes = _array(raw["dims"], "i")
    if len(codes) and not (codes.min() >= 0 and codes.max() < len(table)):
        raise ValueError("a dimension code outside the table")
    values = _array(raw["values"], "if").astype(np.float64)
    if not np.isfinite(values).all():
        raise ValueError("a value that is not finite")
    return UsageColumns(_array(raw["starts"], "i"), _array(raw["ends"], "i"), values,
                        np.zeros(len(codes), np.int64), (meter,), codes, table)


def _array(raw: Any, kinds: str) -> np.ndarray:
    """A JSON list as a 1-D int64 or float64 array; ``ValueError`` for a list of anything
    else (strings, ``null``, lists: numpy makes them an array of another kind, or refuses)."""
    if not isinstance(raw, list):
        raise TypeError("a field that is no list")
    array = np.asarray(raw)
    if not len(raw):
        return array.astype(np.int64 if kinds == "i" else np.float64)
    if array.ndim != 1 or array.dtype.kind not in kinds or array.dtype.itemsize != 8:
        raise ValueError(f"a field of {array.dtype}, not numbers")
    return array


def _list(raw: Any) -> list[Any]:
    if not isinstance(raw, list):
        raise TypeError("dimensions that are no list")
    return raw


def _pair(raw: Any) -> tuple[str, str]:
    key, value = _list(raw)
    return _text(key), _text(value)


def _integer(raw: Any) -> int:
    if type(raw) is not int:
        raise TypeError("hours_to that is no integer")
    return raw


def _text(raw: Any) -> str:
    if not isinstance(raw, str):
        raise TypeError("a dimension or zone that is no string")
    return raw


# --------------------------------------------------------------------------- former forms


def former_entry(key: str, covered_from: int, covered_to: int, full_at: int, payload: Any,
                  meter: str | None) -> BucketEntry:
    """An entry stored before version 2 (``payload`` parsed): a list of rows (no hours), or
    an object of ``rows``, ``hours``, ``hours_to`` and ``zone``. The former decoder itself
    (``bench/cache_codec.py`` times it with stdlib json as the "before")."""
    if isinstance(payload, list):
        return BucketEntry(key, covered_from, covered_to, full_at,
                           _legacy_columns(payload, meter))
    return BucketEntry(key, covered_from, covered_to, full_at,
                       _legacy_columns(payload["rows"], meter),
                       _legacy_columns(payload["hours"], meter),
                       int(payload["hours_to"]), str(payload["zone"]))


def _legacy_payload(entry: BucketEntry) -> str:
    """An entry in the former object form (stdlib json, which writes NaN and inf): what
    version 2 wrote for the values it cannot hold (version 3 holds them)."""
    return json.dumps({"rows": _plain(entry.rows), "hours": _plain(entry.hours),
                       "hours_to": entry.hours_to, "zone": entry.hours_zone},
                      separators=(",", ":"))


def _plain(rows: Iterable[UsageRow]) -> list[list[Any]]:
    """Rows as ``[start, end, value, [[key, value], ...]]`` lists."""
    return [[r.starts_at, r.ends_at, r.value, [list(d) for d in r.dimensions]] for r in rows]


def _legacy_columns(raw: Any, meter: str | None) -> UsageColumns:
    """Columns of :func:`_plain` lists; each distinct dimension set is read once."""
    if not isinstance(raw, list):
        raise TypeError("not a list")
    if not raw:
        return UsageColumns.empty()
    starts, ends, values, dims = zip(*raw, strict=True)
    table, codes = _legacy_dimension_codes(dims)
    return UsageColumns(_exact(starts, np.int64), _exact(ends, np.int64),
                        _exact(values, np.float64), np.zeros(len(codes), np.int64),
                        (meter,), codes, table)


def _exact(items: Sequence[object], dtype: type[np.generic]) -> np.ndarray:
    """``items`` as a 1-D array of ``dtype``, refusing what is no number (a string, ``None``,
    a list) rather than converting it."""
    if not all(type(item) in (int, float) for item in items):
        raise ValueError("a time or value that is no number")
    return np.asarray(items, dtype)


def _legacy_dimension_codes(dims: Sequence[Any]) -> tuple[list[Dimensions], np.ndarray]:
    """Each row's ``[[key, value], ...]`` read once per distinct set: the sets, each row's."""
    keys = [tuple(map(tuple, d)) for d in dims]
    table: dict[tuple[Any, ...], int] = {}
    codes = np.fromiter((table.setdefault(k, len(table)) for k in keys), np.int64, len(keys))
    return [tuple((str(k), str(x)) for k, x in entry) for entry in table], codes

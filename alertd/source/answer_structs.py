"""The quick reader of a Meter Usage Analytics answer: its bytes straight to columns.

Where it sits: :class:`~alertd.source.http.StripeHTTP` hands the bytes of every 2xx usage
answer to :func:`read_columns` first (through :data:`alertd.source.analytics.READ_ANSWER`);
only when it declines (``None``) is the body decoded with orjson and read by
:func:`~alertd.source.analytics.read_answer`, the careful reader, whose errors name the row
and the field.

How: msgspec decodes and *checks* the answer in one pass in C, against :class:`_Body`: the
expected JSON types and ranges of :func:`~alertd.source.analytics.quick_fields`, as msgspec
types and constraints (integer times in ``[0, MAX_INSTANT)``, a value that is an integer or a
float within ±``MAX_USAGE`` — each checked as the JSON wrote it, so ``10**18 + 1`` is refused
as the careful reader refuses it, not first rounded to ``1e18`` —, a meter that is a string or
``null``, a string or absent ``id``). Anything else — a wrong type, ``NaN`` (not JSON: msgspec
refuses it, as orjson does), a huge integer, the oldest field names (``bucket_value`` …: the
required field is missing), a float time, invalid UTF-8 or a lone surrogate, a repeated row
``id`` — makes it return ``None`` and the careful reader decides, with its clear errors. So
whenever this answers, it answers exactly what the careful reader would (the property test in
``tests/source/test_answer_structs.py`` checks it on generated answers, odd ones included).

A row's ``dimensions`` are kept as the raw JSON text (``msgspec.Raw``) and each distinct text
is decoded once: the rows of one series repeat the same text, so an answer of a few thousand
rows decodes a handful of dimension objects, not one per row. JSON with a key twice keeps its
last value in msgspec as in orjson (checked by the tests).

Why: on the daemon's warm-up (a cold cache, ~1,840 rows per answer) decoding and reading usage
answers was 43 % of its CPU (orjson, then Python passes over the decoded dicts per column:
types, ranges, dimensions, ids). ``bench/decode.py`` on a 1,840-row answer (median CPU per
row, load ~4 on 2 cores): 4.3–4.5 µs careful (orjson alone 1.3–1.9), 2.2–2.6 µs this way;
``bench/fetch.py`` phase 1 at 20 ms: client CPU per 1,000 requests 13.6–13.9 → 8.7–9.3 s with
:func:`~alertd.source.http.request_url` (``bench/README.md``). What is left here is mostly
Python's: the rows to columns (``zip`` over ``astuple``), each row's meter and dimension
text hashed once, and the ids' set; msgspec's decoding is about a third.
"""

from __future__ import annotations

from typing import Annotated, NamedTuple

import msgspec
import numpy as np
from msgspec import UNSET, Meta, Raw, Struct, UnsetType
from msgspec.structs import astuple

from alertd.model import Dimensions
from alertd.source.body import MAX_INSTANT, MAX_USAGE
from alertd.usage_columns import UsageColumns, coded

_Instant = Annotated[int, Meta(ge=0, lt=MAX_INSTANT)]
_BOUND = int(MAX_USAGE)
#: An integer and a float are each bounded as JSON wrote them (see the module doc).
_Value = Annotated[int, Meta(ge=-_BOUND, le=_BOUND)] | Annotated[
    float, Meta(ge=-MAX_USAGE, le=MAX_USAGE)]
_NULL = Raw(b"null")


class _Row(Struct, gc=False):
    starts_at: _Instant
    ends_at: _Instant
    value: _Value
    meter: str | None
    dimensions: Raw = _NULL
    id: str | None = None


class _Rows(Struct, gc=False):
    data: list[_Row]
    has_more: bool
    total: int | None = None


class _Body(Struct, gc=False):
    """Both shapes of an answer: ``rows`` (current) or ``data`` (the guide's)."""

    rows: _Rows | UnsetType = UNSET
    refreshed_at: _Instant | UnsetType | None = UNSET
    data: list[_Row] | UnsetType = UNSET
    data_refreshed_at: _Instant | None = None
    has_more: bool = False


_ANSWER = msgspec.json.Decoder(_Body)
_DIMENSIONS = msgspec.json.Decoder(dict[str, str | None] | None)


class QuickAnswer(NamedTuple):
    """What :func:`read_columns` read: the rows (none when ``has_more``), the freshness, the
    ``has_more`` flag, the rows the answer held and the ``total`` it announced."""

    rows: UsageColumns
    refreshed_at: int | None
    has_more: bool
    held: int
    total: int | None


def read_columns(content: bytes) -> QuickAnswer | None:
    """The answer in ``content`` when it has exactly the expected types and ranges and no
    repeated row ``id``, else ``None`` (then the careful reader reads it)."""
    try:
        body = _ANSWER.decode(content)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    if body.rows is not UNSET:
        if body.refreshed_at is UNSET:
            return None
        data, has_more, refreshed = body.rows.data, body.rows.has_more, body.refreshed_at
        total = body.rows.total if body.rows.total is not None and body.rows.total >= 0 \
            else None
    elif body.data is not UNSET:
        data, has_more, refreshed, total = body.data, body.has_more, body.data_refreshed_at, None
    else:
        return None
    if has_more:
        return QuickAnswer(UsageColumns.empty(), refreshed, True, len(data), total)
    rows = _columns(data)
    if rows is None:
        return None
    return QuickAnswer(rows, refreshed, False, len(rows), total)


def _columns(data: list[_Row]) -> UsageColumns | None:
    """The rows as columns, or ``None`` when a string ``id`` repeats or a ``dimensions`` is
    not an object of strings and nulls. The rows become columns in one C pass (``zip`` over
    ``astuple``: cheaper than one ``map`` per field)."""
    if not data:
        return UsageColumns.empty()
    starts, ends, values, meters, texts, ids = zip(*map(astuple, data), strict=True)
    if len(set(ids)) != len(ids) and not _distinct_strings(ids):
        return None
    count = len(data)
    dimensions = _dimension_codes(texts, count)
    if dimensions is None:
        return None
    meter_table, meter_codes = coded(meters, count)
    return UsageColumns(np.array(starts, np.int64), np.array(ends, np.int64),
                        np.array(values, np.float64), meter_codes, meter_table,
                        dimensions[1], dimensions[0])


def _distinct_strings(ids: tuple[str | None, ...]) -> bool:
    """Whether no string repeats among ``ids`` (rows without an ``id`` never repeat)."""
    strings = [i for i in ids if i is not None]
    return len(set(strings)) == len(strings)


def _dimension_codes(texts: tuple[Raw, ...], count: int
                     ) -> tuple[list[Dimensions], np.ndarray] | None:
    """The distinct dimension sets in order of first appearance and each row's index among
    them, each distinct JSON text decoded once (two texts may be one set: keys in another
    order, a key with ``null``); ``None`` if one is not an object of strings and nulls."""
    text_table, text_codes = coded(map(bytes, texts), count)
    table: dict[Dimensions, int] = {}
    recode = np.empty(len(text_table), np.int64)
    for number, text in enumerate(text_table):
        dimensions = _decoded_dimensions(text)
        if dimensions is None:
            return None
        recode[number] = table.setdefault(dimensions, len(table))
    return list(table), recode[text_codes]


def _decoded_dimensions(text: bytes) -> Dimensions | None:
    try:
        mapping = _DIMENSIONS.decode(text)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    if mapping is None:
        return ()
    return tuple(sorted((key, value) for key, value in mapping.items() if value is not None))

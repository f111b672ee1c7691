"""The Meter Usage Analytics source: ``GET /v1/billing/analytics/meter_usage``.

Where it sits: the engine hands each planned :class:`~alertd.model.UsageQuery` to
:meth:`MeterUsageSource.fetch`, which encodes it in Stripe's form encoding, sends it through
:class:`~alertd.source.http.StripeHTTP` on the ``analytics`` budget, and turns whichever
response shape comes back into one :class:`~alertd.model.UsageResult`.

Pure parts, tested with tables: :func:`uses_array_filters`, :func:`encode_usage_query` (which
refuses, without sending, a query Stripe would reject: unaligned minutes, too many meters or
keys) and :func:`parse_usage_body` (three generations of field names; anything unexpected is a
:class:`~alertd.errors.MalformedResponseError`, never a zero — that includes a value that is
not finite or beyond ±10^18 and a time outside 1970–9999, see :mod:`alertd.source.body`).
Answers run to thousands of rows, so the client first hands an answer's bytes to
:func:`quick_answer` (msgspec, :mod:`alertd.source.answer_structs`: the expected types and
ranges checked in C, straight to columns); an answer it declines is decoded with orjson and
read by :func:`read_answer`, where each row first goes through :func:`quick_fields`, which
only accepts the expected JSON types and ranges; any other row is read by :func:`read_row`,
whose errors name the row and the field. The rows of an answer become columns
(:class:`~alertd.usage_columns.UsageColumns`) with no row object made, so everything after
(the planner's cut, the bucket cache, the series) works on arrays.

A row ``id`` that repeats within one answer is the same row sent twice: only its first copy is
kept (summing both would double the usage), and the source logs the repeated ids with the
``Request-Id``. Rows without an ``id`` (the guide's shape) are all kept.

``has_more: true`` has no documented paging parameter, so it is read as "ask for less" (and
its partial rows are not read, :func:`parse_unless_more`): the time range is cut at bucket
boundaries (in the query's time zone, so buckets stay whole) into as many pieces as the
answer's ``total`` needs pages of the rows it held (two halves when it did not say), and the
pieces are asked concurrently, recursively. A single bucket that still has more rows cannot be
split further and raises :class:`~alertd.errors.IncompleteResponseError`. Better still, a
query expected to pass a page is cut before it is sent (:mod:`alertd.source.pages`).

Why over 400 lines: one endpoint's form encoding and every response shape it returns, which
change together when Stripe changes the endpoint.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import operator
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import Any, Literal, NamedTuple, cast

import numpy as np

from alertd.calendar import periods
from alertd.clock import iso
from alertd.config.settings import StripeSettings
from alertd.errors import (
    ConfigError,
    IncompleteResponseError,
    InvalidRequestError,
)
from alertd.model import Dimensions, Filters, MeterSpec, UsageQuery, UsageResult, UsageRow
from alertd.source.answer_structs import read_columns
from alertd.source.body import MAX_INSTANT, MAX_USAGE, BodyReader
from alertd.source.http import ANALYTICS_ENDPOINT, QuickParser, StripeHTTP
from alertd.source.pages import PageLearner, page_ranges, split_evenly
from alertd.stripe_limits import MAX_METERS, spec_breaches
from alertd.usage_columns import UsageColumns, concatenated

log = logging.getLogger("alertd.source")

PATH = "/v1/billing/analytics/meter_usage"
#: After ``has_more``, the pieces aim at this share of a page each.
FILL = 0.9
#: The first API version whose filter values are arrays (``…[tier][0]=premium``).
ARRAY_FILTERS_SINCE = date(2025, 11, 17)

ArrayFilters = Literal["auto", "always", "never"]
_VERSION = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:\.[a-z]+)?$")


def version_date(api_version: str) -> date:
    """The date of a Stripe API version such as ``2025-11-17.preview``."""
    match = _VERSION.match(api_version.strip())
    if not match:
        raise ConfigError(
            f"stripe.api_version: {api_version!r} is not a Stripe API version "
            "(e.g. 2025-11-17.preview)"
        )
    try:
        return date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:
        raise ConfigError(f"stripe.api_version: {api_version!r} is not a valid date") from None


def uses_array_filters(api_version: str, setting: ArrayFilters) -> bool:
    """Whether filter values go in array form: ``always``/``never``, or ``auto`` by version."""
    if setting == "always":
        return True
    if setting == "never":
        return False
    return version_date(api_version) >= ARRAY_FILTERS_SINCE


# --------------------------------------------------------------------------- request


def check_query(query: UsageQuery, *, array_filters: bool) -> None:
    """Refuse, with :class:`InvalidRequestError`, a query Stripe would reject."""
    for name, instant in (("starts_at", query.starts_at), ("ends_at", query.ends_at)):
        if instant % 60:
            raise InvalidRequestError(
                f"{name}={instant} ({iso(instant)}) is not on a whole minute; Stripe "
                "needs minute-aligned ranges",
                param=name,
            )
    if query.starts_at >= query.ends_at:
        raise InvalidRequestError(
            f"starts_at ({iso(query.starts_at)}) must be before ends_at ({iso(query.ends_at)})",
            param="starts_at",
        )
    _check_meters(query.meters)
    for index, spec in enumerate(query.meters):
        _check_spec(index, spec, array_filters=array_filters)


def _check_meters(meters: tuple[MeterSpec, ...]) -> None:
    if len(meters) > MAX_METERS:
        raise InvalidRequestError(
            f"{len(meters)} meters in one request; Stripe allows at most {MAX_METERS}",
            param="meters",
        )
    ids = [spec.meter for spec in meters]
    if len(set(ids)) != len(ids):
        raise InvalidRequestError(
            "one request names the same meter twice; its rows could not be told apart",
            param="meters",
        )
    if None in ids and len(ids) > 1:
        raise InvalidRequestError(
            "an all-meters spec (meter: none) must be the only one in its request",
            param="meters",
        )


def _check_spec(index: int, spec: MeterSpec, *, array_filters: bool) -> None:
    prefix = f"meters[{index}]"
    if spec.meter is None and (spec.dimension_filters or spec.tenant_filters or spec.group_by):
        raise InvalidRequestError(
            "filters, tenant filters and group-by need a meter; without one every meter of "
            "the customer is summed",
            param=prefix,
        )
    for breach in spec_breaches(group_by=len(spec.group_by),
                                dimension_filters=len(spec.dimension_filters),
                                tenant_filters=len(spec.tenant_filters)):
        raise InvalidRequestError(f"meter {spec.meter}: {breach.message()}",
                                  param=f"{prefix}[{breach.param}]")
    if not array_filters:
        _check_single_values(prefix, spec)


def _check_single_values(prefix: str, spec: MeterSpec) -> None:
    for field, filters in (
        ("dimension_filters", spec.dimension_filters),
        ("tenant_filters", spec.tenant_filters),
    ):
        for key, values in filters:
            if len(values) != 1:
                raise InvalidRequestError(
                    f"filter {key!r} has {len(values)} values, which needs array filters: "
                    "use stripe.api_version 2025-11-17.preview or later, or "
                    "stripe.array_filters: always",
                    param=f"{prefix}[{field}][{key}]",
                )


def encode_usage_query(query: UsageQuery, *, array_filters: bool) -> list[tuple[str, str]]:
    """The query string of ``query`` in Stripe's form encoding, in the order Stripe's SDK
    sends it: ``customer``, ``starts_at``, ``ends_at``, each ``meters[i]`` (meter, group-by
    keys, dimension filters, tenant filters), ``value_grouping_window``, ``timezone``.

    ``timezone`` is left out when it is ``UTC`` (Stripe's default). A single all-meters spec
    (``meter=None``) sends no ``meters`` at all. Raises :class:`InvalidRequestError` for a
    query Stripe would reject (see :func:`check_query`).
    """
    check_query(query, array_filters=array_filters)
    params = [
        ("customer", query.customer),
        ("starts_at", str(query.starts_at)),
        ("ends_at", str(query.ends_at)),
    ]
    for index, spec in enumerate(query.meters):
        params += _encode_spec(f"meters[{index}]", spec, array_filters=array_filters)
    if query.window is not None:
        params.append(("value_grouping_window", query.window))
    if query.timezone != "UTC":
        params.append(("timezone", query.timezone))
    return params


def _encode_spec(prefix: str, spec: MeterSpec, *, array_filters: bool) -> list[tuple[str, str]]:
    if spec.meter is None:
        return []
    params = [(f"{prefix}[meter]", spec.meter)]
    params += [
        (f"{prefix}[dimension_group_by_keys][{j}]", key) for j, key in enumerate(spec.group_by)
    ]
    params += _encode_filters(f"{prefix}[dimension_filters]", spec.dimension_filters,
                              array_filters=array_filters)
    params += _encode_filters(f"{prefix}[tenant_filters]", spec.tenant_filters,
                              array_filters=array_filters)
    return params


def _encode_filters(prefix: str, filters: Filters, *, array_filters: bool
                    ) -> list[tuple[str, str]]:
    if not array_filters:
        return [(f"{prefix}[{key}]", values[0]) for key, values in filters]
    return [
        (f"{prefix}[{key}][{j}]", value)
        for key, values in filters
        for j, value in enumerate(values)
    ]


# --------------------------------------------------------------------------- response


class UsageBody(NamedTuple):
    """One analytics answer, read: its rows, freshness, ``has_more``, and the ids of rows it
    sent more than once (each dropped after its first copy)."""

    rows: UsageColumns
    refreshed_at: int | None
    has_more: bool
    repeated: tuple[str, ...] = ()


class Answered(NamedTuple):
    """An answer as the source reads it (:func:`read_answer`): the body, the rows it held
    (read or not: an answer with ``has_more`` tells a page's size so) and the ``total`` rows
    it announced, when it did."""

    body: UsageBody
    held: int
    total: int | None


def parse_usage_body(body: Any, request_id: str | None) -> UsageBody:
    """``(rows, refreshed_at, has_more, repeated)`` from either response shape.

    Current shape: ``{"refreshed_at", "rows": {"data": [...], "has_more"}}``. The guide's:
    ``{"data": [...], "data_refreshed_at", "has_more"?}``. Rows use ``starts_at``/``ends_at``/
    ``value``/``meter`` or the oldest ``bucket_start_time``/``bucket_end_time``/
    ``bucket_value``/``meter_id``. The guide's shape may lack ``data_refreshed_at`` (its own
    example does) and ``has_more``: that reads as ``None`` (unknown freshness, which the engine
    treats as stale) and ``False``. Anything else missing or of the wrong type raises
    :class:`MalformedResponseError`; ``refreshed_at: null`` is unknown freshness too. A row
    whose ``id`` an earlier row of the body had is left out and its id listed in ``repeated``.
    """
    reader = BodyReader("meter usage response", request_id)
    body = reader.mapping(body, "the body")
    if "rows" in body:
        container = reader.mapping(body["rows"], "rows")
        for name, document in (("refreshed_at", body), ("has_more", container)):
            if name not in document:
                raise reader.malformed(f"'{name}' is missing")
        refreshed = reader.optional_instant(body["refreshed_at"], "refreshed_at")
    elif "data" in body:
        container = body
        refreshed = reader.optional_instant(body.get("data_refreshed_at"), "data_refreshed_at")
    else:
        raise reader.malformed("neither 'rows' nor 'data' is in the body")
    data = reader.items(container.get("data"), "the rows' 'data'")
    has_more = reader.flag(container.get("has_more", False), "'has_more'")
    rows, repeated = read_rows(reader, data)
    return UsageBody(rows, refreshed, has_more, repeated)


#: One row's fields: starts_at, ends_at, value, meter, dimensions.
RowFields = tuple[int, int, float, str | None, Dimensions]


def read_rows(reader: BodyReader, data: list[Any]) -> tuple[UsageColumns, tuple[str, ...]]:
    """The rows of ``data`` as columns, without those whose string ``id`` came before (and
    the ids so left out). No row object is made: each row's fields go straight to columns.

    The quick reader takes the common rows; anything it does not expect (the oldest field
    names, a float time, a wrong type) goes to the careful one, which names what is wrong."""
    known: dict[tuple[Any, ...], Dimensions] = {}
    columns = column_fields(data, known)
    if columns is not None and _distinct_ids(data):
        return UsageColumns.from_lists(*columns), ()
    fields = [quick_fields(raw, known) or _fields_of(read_row(reader, raw, index))
              for index, raw in enumerate(data)]
    fields, repeated = _first_copies(fields, data)
    if not fields:
        return UsageColumns.empty(), repeated
    starts, ends, values, meters, dimensions = zip(*fields, strict=True)
    return UsageColumns.from_lists(starts, ends, values, meters, dimensions), repeated


#: The fields of every row of an answer, one list per field (values already as floats).
ColumnFields = tuple[list[int], list[int], Sequence[float], list["str | None"], list[Dimensions]]
_NO_METER = type(None)


def column_fields(data: list[Any], known: dict[tuple[Any, ...], Dimensions]
                  ) -> ColumnFields | None:
    """The fields of every row, field by field, when *every* row has exactly the types and
    ranges :func:`quick_fields` accepts, else ``None`` (then rows are read one by one).

    The same promise as :func:`quick_fields`, for a whole answer: whenever this returns
    columns, they are the fields :func:`quick_fields` returns row by row. Checked column by
    column (the types of a column as one set, its range by its least and greatest value,
    ``NaN`` through numpy), it costs a fraction of reading the rows one at a time.
    """
    if not data or set(map(type, data)) != {dict}:
        return None
    try:
        starts = list(map(_STARTS, data))
        ends = list(map(_ENDS, data))
        values = list(map(_VALUES, data))
        meters = list(map(_METERS, data))
    except KeyError:
        return None
    if set(map(type, starts)) != {int} or set(map(type, ends)) != {int}:
        return None
    if not set(map(type, values)) <= {int, float} or not set(map(type, meters)) <= {
            str, _NO_METER}:
        return None
    if min(starts) < 0 or max(starts) >= MAX_INSTANT or min(ends) < 0 \
            or max(ends) >= MAX_INSTANT:
        return None
    try:
        floats = np.array(values, dtype=np.float64)
    except OverflowError:  # an integer beyond any float
        return None
    # Without NaN, min and max are exact, and compare integers with the bound exactly.
    if np.isnan(floats).any() or min(values) < -MAX_USAGE or max(values) > MAX_USAGE:
        return None
    dimensions = [_quick_dimensions(raw.get("dimensions"), known) for raw in data]
    if None in dimensions:
        return None
    return (starts, ends, cast(Sequence[float], floats), meters,
            cast(list[Dimensions], dimensions))


_STARTS = operator.itemgetter("starts_at")
_ENDS = operator.itemgetter("ends_at")
_VALUES = operator.itemgetter("value")
_METERS = operator.itemgetter("meter")


def _distinct_ids(data: list[Any]) -> bool:
    """Whether no string ``id`` repeats (rows without one never do), checked at once."""
    ids = [raw.get("id") for raw in data]
    strings = [i for i in ids if type(i) is str] if set(map(type, ids)) != {str} else ids
    return len(set(strings)) == len(strings)


def parse_unless_more(body: Any, request_id: str | None) -> UsageBody:
    """:func:`parse_usage_body`, except that the rows of an answer saying ``has_more: true``
    are not read: the source drops them and asks for pieces of the range instead, and on a
    cold read such answers hold most of the rows received (reading them was most of the
    client's CPU). The answer is still read for its freshness and shape."""
    return read_answer(body, request_id).body


def read_answer(body: Any, request_id: str | None) -> Answered:
    """:func:`parse_unless_more` with the rows the answer held and the ``total`` it said."""
    without, held = _without_rows_if_more(body)
    parsed = parse_usage_body(without, request_id)
    if not held:
        held = len(parsed.rows)
    return Answered(parsed, held, _total(without))


def quick_answer(content: bytes, request_id: str | None) -> Answered | None:
    """:func:`read_answer` of the body in ``content`` when the quick reader
    (:func:`~alertd.source.answer_structs.read_columns`) takes it whole, else ``None``."""
    quick = read_columns(content)
    if quick is None:
        return None
    return Answered(UsageBody(quick.rows, quick.refreshed_at, quick.has_more), quick.held,
                    quick.total)


#: How the source reads an answer: :func:`quick_answer` first, :func:`read_answer` if not.
READ_ANSWER = QuickParser(read_answer, quick_answer)


def _total(body: Any) -> int | None:
    inner = body.get("rows") if type(body) is dict else None
    total = inner.get("total") if type(inner) is dict else None
    return total if type(total) is int and total >= 0 else None


def _without_rows_if_more(body: Any) -> tuple[Any, int]:
    """``body`` with an empty ``data`` list if it says ``has_more: true`` (and the rows its
    list held), else ``(body, 0)``."""
    if type(body) is not dict:
        return body, 0
    inner = body.get("rows")
    if type(inner) is dict:
        more = inner.get("has_more") is True and "data" in inner
        return ({**body, "rows": {**inner, "data": []}}, _length(inner["data"])) if more \
            else (body, 0)
    if "rows" not in body and body.get("has_more") is True and "data" in body:
        return {**body, "data": []}, _length(body["data"])
    return body, 0


def _length(data: Any) -> int:
    return len(data) if type(data) is list else 0


def _fields_of(row: UsageRow) -> RowFields:
    return row.starts_at, row.ends_at, row.value, row.meter, row.dimensions


def _first_copies(fields: list[RowFields], data: list[Any]
                  ) -> tuple[list[RowFields], tuple[str, ...]]:
    """``fields`` without the rows whose string ``id`` (read from the raw ``data``) came
    before."""
    seen: set[str] = set()
    repeated: list[str] = []
    kept: list[RowFields] = []
    for row, raw in zip(fields, data, strict=True):
        row_id = raw.get("id")
        if type(row_id) is str:
            if row_id in seen:
                repeated.append(row_id)
                continue
            seen.add(row_id)
        kept.append(row)
    return (kept, tuple(repeated)) if repeated else (fields, ())


#: Tells a missing ``meter`` (maybe the oldest ``meter_id`` is there) from ``meter: null``.
_ABSENT: Any = object()


def quick_row(raw: Any, known: dict[tuple[Any, ...], Dimensions]) -> UsageRow | None:
    """:func:`quick_fields` as a row."""
    fields = quick_fields(raw, known)
    return None if fields is None else UsageRow(*fields)


def quick_fields(raw: Any, known: dict[tuple[Any, ...], Dimensions]) -> RowFields | None:
    """``raw``'s fields when it has exactly the expected JSON types, else ``None``.

    Expected: an object with integer ``starts_at``/``ends_at`` in ``[0, MAX_INSTANT)``, an
    integer or float ``value`` (not a bool) within ±``MAX_USAGE`` (so not ``NaN``), a ``meter``
    that is a string or ``null``, and ``dimensions`` absent, ``null`` or an object whose values
    are strings or ``null``. Whenever this returns fields, :func:`read_row` returns a row of
    the same fields; ``None`` promises nothing: the row may still be valid.

    ``known`` maps the ``dimensions`` items already read in this body to their
    :data:`Dimensions`, so rows of one series share one tuple and it is sorted once.
    """
    if type(raw) is not dict:
        return None
    starts = raw.get("starts_at")
    ends = raw.get("ends_at")
    value = raw.get("value")
    meter = raw.get("meter", _ABSENT)
    # ``type(x) is int`` rather than isinstance: it also turns bools away.
    if type(starts) is not int or type(ends) is not int:
        return None
    if type(value) is not float and type(value) is not int:
        return None
    # Chained comparisons are false for NaN, and exact (no overflow) for huge integers.
    if not (-MAX_USAGE <= value <= MAX_USAGE and 0 <= starts < MAX_INSTANT
            and 0 <= ends < MAX_INSTANT):
        return None
    if meter is not None and type(meter) is not str:
        return None
    dimensions = _quick_dimensions(raw.get("dimensions"), known)
    if dimensions is None:
        return None
    return starts, ends, float(value), meter, dimensions


def _quick_dimensions(raw: Any, known: dict[tuple[Any, ...], Dimensions]) -> Dimensions | None:
    if raw is None:
        return ()
    if type(raw) is not dict:
        return None
    items = tuple(raw.items())
    try:
        # Only checked items are ever stored, and a JSON value equals a stored string or
        # null only if it is one, so a hit needs no second check.
        dimensions = known.get(items)
    except TypeError:  # an unhashable value (a list, an object): not a dimension value
        return None
    if dimensions is not None:
        return dimensions
    pairs = []
    for key, value in items:
        if type(value) is str:
            pairs.append((key, value))
        elif value is not None:
            return None
    pairs.sort()
    known[items] = dimensions = tuple(pairs)
    return dimensions


def read_row(reader: BodyReader, raw: Any, index: int) -> UsageRow:
    """Row ``index`` of the body, any generation of field names; anything missing or of the
    wrong type raises :class:`MalformedResponseError` naming the row and the field."""
    where = f"row {index}"
    item = reader.mapping(raw, where)
    starts = reader.instant(_field(item, "starts_at", "bucket_start_time"), f"{where} start")
    ends = reader.instant(_field(item, "ends_at", "bucket_end_time"), f"{where} end")
    value = reader.number(_field(item, "value", "bucket_value"), f"{where} value")
    if "meter" not in item and "meter_id" not in item:
        raise reader.malformed(f"{where} has no meter")
    meter = reader.optional_text(_field(item, "meter", "meter_id"), f"{where} meter")
    return UsageRow(starts, ends, value, meter, _dimensions(reader, item.get("dimensions"), where))


def _dimensions(reader: BodyReader, raw: Any, where: str) -> Dimensions:
    if raw is None:
        return ()
    pairs = []
    for key, value in reader.mapping(raw, f"{where} dimensions").items():
        if value is None:
            continue  # an event without this dimension: the key is simply absent
        pairs.append((key, reader.text(value, f"{where} dimension {key!r}")))
    return tuple(sorted(pairs))


def _field(item: dict[str, Any], name: str, oldest: str) -> Any:
    return item[name] if name in item else item.get(oldest)


# --------------------------------------------------------------------------- splitting


def split_point(query: UsageQuery) -> int | None:
    """The bucket boundary nearest the middle of the query's range, or ``None`` if the range
    is one bucket (or has no buckets: ``window=None``)."""
    if query.window is None:
        return None
    inside = [
        period.starts_at
        for period in periods(query.starts_at, query.ends_at, query.window, query.timezone)
        if query.starts_at < period.starts_at < query.ends_at
    ]
    if not inside:
        return None
    return inside[len(inside) // 2]


@dataclass(frozen=True, slots=True)
class _Fetched:
    rows: UsageColumns
    refreshed_at: int | None
    requests: int
    request_ids: tuple[str, ...]

    def __add__(self, other: _Fetched) -> _Fetched:
        known = [r for r in (self.refreshed_at, other.refreshed_at) if r is not None]
        return _Fetched(
            concatenated([self.rows, other.rows]),
            min(known) if known else None,
            self.requests + other.requests,
            self.request_ids + other.request_ids,
        )


class MeterUsageSource:
    """Reads usage from the Meter Usage Analytics API (``stripe.source: meter_usage``).

    ``pages`` learns how many rows an answer holds and each spec's rows per bucket
    (:mod:`alertd.source.pages`), so a query expected to pass a page is fetched in pieces
    side by side from the start instead of after a wasted ``has_more`` answer.
    """

    def __init__(self, http: StripeHTTP, settings: StripeSettings,
                 pages: PageLearner | None = None) -> None:
        self.http = http
        self.settings = settings
        self.array_filters = uses_array_filters(settings.api_version, settings.array_filters)
        self.pages = pages if pages is not None else PageLearner()

    async def fetch(self, query: UsageQuery) -> UsageResult:
        """All rows of ``query``: in the pieces :func:`~alertd.source.pages.page_ranges`
        expects to fit one answer each, fetched concurrently, each split further while Stripe
        says ``has_more``.

        ``refreshed_at`` is the oldest of the sub-requests'; ``requests`` counts every HTTP
        request spent, retries included.
        """
        ranges = page_ranges(query, self.pages.paging())
        if len(ranges) > 1:
            self.pages.counts.presplit += len(ranges) - 1
        fetched = await self._fetch_pieces(query, ranges)
        paging = self.pages.paging()
        if len(ranges) > 1 and paging.page_rows is not None \
                and len(fetched.rows) <= paging.page_rows:
            self.pages.counts.unneeded += 1
        return UsageResult(
            query=query,
            rows=fetched.rows,
            refreshed_at=fetched.refreshed_at,
            requests=fetched.requests,
            request_ids=fetched.request_ids,
        )

    async def _fetch_pieces(self, query: UsageQuery, ranges: Sequence[tuple[int, int]]
                            ) -> _Fetched:
        """The pieces of ``query`` concurrently, put together in range order; the first
        error once all have ended (none is left running)."""
        if len(ranges) == 1:
            return await self._fetch_range(_with_range(query, *ranges[0]))
        outcomes = await asyncio.gather(
            *(self._fetch_range(_with_range(query, a, b)) for a, b in ranges),
            return_exceptions=True)
        parts: list[_Fetched] = []
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
            parts.append(outcome)
        return functools.reduce(operator.add, parts)

    async def _fetch_range(self, query: UsageQuery) -> _Fetched:
        params = encode_usage_query(query, array_filters=self.array_filters)
        response = await self.http.request(
            PATH, params, budget="analytics", endpoint=ANALYTICS_ENDPOINT, parse=READ_ANSWER
        )
        body, held, total = response.body
        if body.repeated:
            log.warning(
                "repeated usage rows dropped customer=%s count=%d ids=%s request_id=%s",
                query.customer, len(body.repeated), ",".join(sorted(set(body.repeated))[:5]),
                response.request_id,
            )
        ids = (response.request_id,) if response.request_id else ()
        if not body.has_more:
            self.pages.answered(query, body.rows)
            return _Fetched(body.rows, body.refreshed_at, response.attempts, ids)
        self.pages.answered_more(held)
        ranges = more_ranges(query, held, total)
        if len(ranges) < 2:
            raise _incomplete(query, response.request_id)
        self.pages.counts.followups += len(ranges)
        # The partial rows were not read (parse_unless_more): each piece is asked in full.
        spent = _Fetched(UsageColumns.empty(), body.refreshed_at, response.attempts, ids)
        return spent + await self._fetch_pieces(query, ranges)


def more_ranges(query: UsageQuery, held: int, total: int | None
                ) -> tuple[tuple[int, int], ...]:
    """The pieces to ask for after ``query`` was answered ``has_more`` holding ``held`` rows:
    as many as ``total`` rows need pages of ``held`` rows filled to :data:`FILL` (rows are
    not spread evenly over buckets) when the answer said both, else the two halves; one piece
    when the range is a single bucket (or has none). Pure."""
    if query.window is None:
        return ((query.starts_at, query.ends_at),)
    pieces = 2
    if total is not None and held > 0:
        pieces = max(2, math.ceil(total / (FILL * held)))
    return split_evenly(query, pieces)


def _with_range(query: UsageQuery, starts_at: int, ends_at: int) -> UsageQuery:
    return replace(query, starts_at=starts_at, ends_at=ends_at)


def _incomplete(query: UsageQuery, request_id: str | None) -> IncompleteResponseError:
    span = f"[{iso(query.starts_at)}, {iso(query.ends_at)})"
    what = f"the single {query.window} bucket" if query.window else "a range without buckets"
    return IncompleteResponseError(
        f"Stripe has more usage rows for customer {query.customer} than one answer holds "
        f"(has_more) even for {what} {span}; group by fewer or lower-cardinality keys, "
        "or add filters",
        request_id=request_id,
    )

"""The quick row reader agrees with the careful one, row for row and error for error.

:func:`parse_usage_body` reads each row with :func:`quick_row` and hands any row it does not
expect to :func:`read_row`. These tests feed the same rows through both and compare: equal
rows (and value types) when the quick reader answers, and exactly today's error (type,
message, ``Request-Id``) when a row is malformed.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest

from alertd.errors import MalformedResponseError
from alertd.model import Dimensions, UsageRow
from alertd.source.analytics import (
    column_fields,
    parse_usage_body,
    quick_fields,
    quick_row,
    read_row,
)
from alertd.source.body import BodyReader

JAN_1 = 1735689600
JAN_2 = JAN_1 + 86400
REQUEST_ID = "req_rows"


def current_body(rows: list[Any]) -> dict[str, Any]:
    return {"object": "billing.analytics.meter_usage", "refreshed_at": JAN_1,
            "rows": {"object": "list", "has_more": False, "data": rows}}


def guide_body(rows: list[Any]) -> dict[str, Any]:
    return {"data": rows, "data_refreshed_at": JAN_1}


def carefully(rows: list[Any]) -> list[UsageRow]:
    """The rows as the careful reader alone reads them."""
    reader = BodyReader("meter usage response", REQUEST_ID)
    return [read_row(reader, raw, index) for index, raw in enumerate(rows)]


def typed(rows: list[UsageRow]) -> list[tuple[Any, ...]]:
    """Rows with their field types, so ``3 == 3.0`` cannot hide a difference."""
    return [(row, *(type(getattr(row, name)) for name in row.__slots__)) for row in rows]


CURRENT = [
    {"object": "billing.analytics.meter_usage_row", "id": f"mur_{i}", "starts_at": JAN_1,
     "ends_at": JAN_2, "value": value, "meter": "mtr_1",
     "dimensions": {"tier": "pro", "model": model}}
    for i, (value, model) in enumerate([(1500.0, "gpt-4"), (800, "gpt-3.5"), (2.25, "gpt-4")])
]
GUIDE = [{"starts_at": JAN_1, "ends_at": JAN_2, "value": 7, "meter": "mtr_1",
          "dimensions": {"model": "gpt-4"}}]
NULLS = [
    {"starts_at": JAN_1, "ends_at": JAN_2, "value": 3, "meter": None, "dimensions": None},
    {"starts_at": JAN_1, "ends_at": JAN_2, "value": 2.5, "meter": "mtr_1"},
    {"starts_at": JAN_1, "ends_at": JAN_2, "value": 0.0, "meter": "mtr_1", "dimensions": {}},
    {"starts_at": JAN_1, "ends_at": JAN_2, "value": -1, "meter": "mtr_1",
     "dimensions": {"model": None, "tier": "pro", "a": None}},
]
FLOATS = [{"starts_at": JAN_1, "ends_at": JAN_2, "value": value, "meter": "mtr_1"}
          for value in (0.1, 1e-9, 1.5e17, 123456789012345678, -0.0, 2**53 + 1, -7.5)]
OLDEST = [{"bucket_start_time": JAN_1, "bucket_end_time": JAN_2, "bucket_value": 9,
           "meter_id": "mtr_old", "dimensions": {"model": "gpt-4"}}]


@pytest.mark.parametrize(
    ("body", "quick"),
    [
        (current_body(CURRENT), True),
        (guide_body(GUIDE), True),
        ({"data": GUIDE}, True),
        (current_body(NULLS), True),
        (guide_body(FLOATS), True),
        (guide_body(OLDEST), False),
        (current_body(CURRENT + OLDEST + NULLS), None),
    ],
    ids=["current", "guide", "guide-bare", "nulls", "floats", "oldest", "mixed"],
)
def test_both_readers_give_the_same_rows(body: dict[str, Any], quick: bool | None) -> None:
    raw_rows = body["rows"]["data"] if "rows" in body else body["data"]
    rows = parse_usage_body(body, REQUEST_ID).rows
    assert typed(rows) == typed(carefully(raw_rows))
    answered = [quick_row(raw, {}) is not None for raw in raw_rows]
    # The quick reader really is the one answering for the expected shapes, and stays out
    # of the oldest one.
    if quick is not None:
        assert answered == [quick] * len(raw_rows)


STARTS = [{"starts_at": JAN_1}, {"starts_at": float(JAN_1)}, {"starts_at": JAN_1 + 0.5},
          {"starts_at": -3600}, {"starts_at": 10**15},
          {"starts_at": True}, {"starts_at": "2025-01-01"}, {"starts_at": None}, {},
          {"bucket_start_time": JAN_1}, {"starts_at": None, "bucket_start_time": JAN_1}]
ENDS = [{"ends_at": JAN_2}, {"ends_at": float(JAN_2)}, {"ends_at": False}, {},
        {"bucket_end_time": JAN_2}]
VALUES = [{"value": 3}, {"value": 2.5}, {"value": 10**20}, {"value": True}, {"value": "3"},
          {"value": float("nan")}, {"value": -4},
          {"value": None}, {}, {"bucket_value": 4.0}, {"value": None, "bucket_value": 4}]
METERS = [{"meter": "mtr_1"}, {"meter": None}, {"meter": 5}, {}, {"meter_id": "mtr_old"},
          {"meter": None, "meter_id": "mtr_old"}]
DIMENSIONS = [{}, {"dimensions": None}, {"dimensions": {}},
              {"dimensions": {"b": "2", "a": "1"}}, {"dimensions": {"model": None, "t": "p"}},
              {"dimensions": {"model": 4}}, {"dimensions": {"model": True}},
              {"dimensions": {"model": ["x"]}}, {"dimensions": {"m": {"x": "y"}}},
              {"dimensions": ["model"]}, {"dimensions": "model"}]
NOT_OBJECTS = ["row", None, 5, [], [("starts_at", JAN_1)]]


def outcome(read: Callable[..., UsageRow], *args: Any) -> tuple[Any, ...]:
    """What ``read(*args)`` gave: the typed row, or the error's type, message and Request-Id."""
    try:
        return ("row", *typed([read(*args)]))
    except MalformedResponseError as error:
        return ("error", type(error), str(error), error.request_id)


def merged(parts: tuple[Any, ...]) -> dict[str, Any]:
    return {key: value for part in parts for key, value in part.items()}


def all_rows() -> list[Any]:
    product = itertools.product(STARTS, ENDS, VALUES, METERS, DIMENSIONS)
    combined: list[Any] = [merged(parts) for parts in product]
    return combined + NOT_OBJECTS


def only_row(raw: Any) -> UsageRow:
    [row] = parse_usage_body(current_body([raw]), REQUEST_ID)[0]
    return row


def test_every_mix_of_field_types_reads_as_the_careful_reader_reads_it() -> None:
    reader = BodyReader("meter usage response", REQUEST_ID)
    quick_rows = 0
    for raw in all_rows():
        assert outcome(only_row, raw) == outcome(read_row, reader, raw, 0), raw
        quick = quick_row(raw, {})
        if quick is not None:
            quick_rows += 1
            assert typed([quick]) == typed([read_row(reader, raw, 0)]), raw
    # Both readers were really exercised: some rows quick, most (the odd ones) careful.
    assert 0 < quick_rows < len(all_rows()) // 2


def test_a_bad_row_after_quick_ones_is_named_by_its_own_index() -> None:
    bad = {"starts_at": JAN_1, "ends_at": JAN_2, "value": 1, "meter": "mtr_1",
           "dimensions": {"tier": "pro", "model": 4}}
    with pytest.raises(MalformedResponseError) as caught:
        parse_usage_body(current_body([*CURRENT, bad]), REQUEST_ID)
    assert "row 3 dimension 'model' is not a string" in str(caught.value)
    assert caught.value.request_id == REQUEST_ID


@pytest.mark.parametrize("later", [{"model": 4}, {"model": ["gpt-4"]}, {"model": True}])
def test_dimensions_read_earlier_do_not_vouch_for_a_different_value(
    later: dict[str, Any],
) -> None:
    good = {"starts_at": JAN_1, "ends_at": JAN_2, "value": 1, "meter": "mtr_1",
            "dimensions": {"model": "gpt-4"}}
    with pytest.raises(MalformedResponseError, match="row 1 dimension 'model'"):
        parse_usage_body(current_body([good, {**good, "dimensions": later}]), REQUEST_ID)


def test_rows_of_one_series_share_their_dimensions() -> None:
    rows = parse_usage_body(current_body(CURRENT), REQUEST_ID).rows
    gpt4: Dimensions = (("model", "gpt-4"), ("tier", "pro"))
    assert rows[0].dimensions == rows[2].dimensions == gpt4
    assert rows[0].dimensions is rows[2].dimensions


def test_the_column_reader_answers_exactly_when_the_quick_one_takes_every_row() -> None:
    """:func:`column_fields` reads a whole answer column by column; it must answer exactly
    when every row would be read quickly, with the same fields (a good row beside every odd
    one, so one bad row is enough to send the answer to the row-by-row readers)."""
    good = CURRENT[0]
    answered = 0
    for raw in all_rows():
        data = [good, raw]
        quick = [quick_fields(row, {}) for row in data]
        columns = column_fields(data, {})
        assert (columns is not None) == all(q is not None for q in quick), raw
        if columns is not None:
            answered += 1
            starts, ends, values, meters, dimensions = columns
            by_row = list(zip(starts, ends, [float(v) for v in values], meters, dimensions,
                              strict=True))
            assert by_row == quick, raw
    assert 0 < answered < len(all_rows()) // 2


def test_repeated_ids_are_dropped_by_the_column_reader_too() -> None:
    rows = [*CURRENT, CURRENT[1]]
    body = parse_usage_body(current_body(rows), REQUEST_ID)
    assert body.repeated == ("mur_1",)
    assert typed(list(body.rows)) == typed(carefully(CURRENT))

"""The quick reader of an answer's bytes answers exactly what the careful reader would.

:func:`~alertd.source.analytics.quick_answer` (msgspec, :mod:`alertd.source.answer_structs`)
reads a usage answer's bytes straight to columns, or declines; the client then decodes the
body with orjson and reads it with :func:`~alertd.source.analytics.read_answer`. These tests
feed the same bytes to both: whenever the quick reader answers, the careful one answers the
same (rows with their types, the meter and dimension tables, freshness, ``has_more``, the rows
held and the ``total``); and the client's decode with the quick reader first gives the same
outcome as the careful reader alone, errors included (type, message, ``Request-Id``).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alertd.source.analytics import READ_ANSWER, Answered, quick_answer, read_answer
from alertd.source.body import MAX_INSTANT
from alertd.source.http import Answer, _decode, _Decoded
from tests.source.test_analytics_rows import (
    CURRENT,
    FLOATS,
    GUIDE,
    JAN_1,
    JAN_2,
    NULLS,
    OLDEST,
    REQUEST_ID,
    all_rows,
    current_body,
    guide_body,
    typed,
)

HEADERS = httpx.Headers({"Request-Id": REQUEST_ID, "Content-Type": "application/json"})


def described(answered: Answered) -> tuple[Any, ...]:
    """Everything an answer read holds, with the types of its fields and its tables."""
    body = answered.body
    return (typed(list(body.rows)), body.rows.meters, body.rows.dimensions,
            body.refreshed_at, type(body.refreshed_at), body.has_more, body.repeated,
            answered.held, answered.total)


def outcome(decoded: Any) -> tuple[Any, ...]:
    if isinstance(decoded, _Decoded):
        return ("read", *described(decoded.body))
    return (type(decoded).__name__, type(decoded.error), str(decoded.error),
            decoded.error.request_id)


def check_agree(content: bytes) -> bool:
    """Assert both readers agree on ``content``; whether the quick one answered."""
    answer = Answer(200, HEADERS, content)
    careful = _decode(answer, "meter_usage", read_answer)
    quick = quick_answer(content, REQUEST_ID)
    if quick is not None:
        assert isinstance(careful, _Decoded), content
        assert described(quick) == described(careful.body), content
    assert outcome(_decode(answer, "meter_usage", READ_ANSWER)) == outcome(careful), content
    return quick is not None


def encoded(body: Any) -> bytes:
    """JSON as a server might write it: ``NaN`` and ``Infinity`` literals allowed."""
    return json.dumps(body, allow_nan=True).encode()


@pytest.mark.parametrize(
    ("body", "quick"),
    [
        (current_body(CURRENT), True),
        (guide_body(GUIDE), True),
        ({"data": GUIDE}, True),
        (current_body(NULLS), True),
        (guide_body(FLOATS), True),
        (current_body([]), True),
        ({**current_body(CURRENT), "rows": {"has_more": True, "total": 9, "data": CURRENT}},
         True),
        (guide_body(OLDEST), False),
        (current_body(CURRENT + OLDEST + NULLS), False),
        (current_body([*CURRENT, CURRENT[1]]), False),  # a repeated id: the careful reader
        ({"rows": {"has_more": False, "data": CURRENT}}, False),  # no refreshed_at: an error
        ({"refreshed_at": JAN_1, "rows": {"data": CURRENT}}, False),  # no has_more
        ({"refreshed_at": JAN_1}, False),
        ([CURRENT], False),
    ],
    ids=["current", "guide", "guide-bare", "nulls", "floats", "empty", "has-more", "oldest",
         "mixed", "repeated-id", "no-refreshed", "no-has-more", "no-rows", "a-list"],
)
def test_the_quick_reader_answers_the_expected_shapes_and_only_those(
        body: Any, quick: bool) -> None:
    assert check_agree(encoded(body)) is quick


def test_every_mix_of_field_types_beside_a_good_row_reads_as_the_careful_reader_reads_it(
) -> None:
    """The row grid of ``test_analytics_rows``: each odd row next to a good one, both
    shapes."""
    answered = 0
    for raw in all_rows():
        for body in (current_body([CURRENT[0], raw]), guide_body([raw, GUIDE[0]])):
            answered += check_agree(encoded(body))
    assert 0 < answered < len(all_rows())


ROW = ('{"id":"mur_1","starts_at":%d,"ends_at":%d,"value":%s,"meter":"mtr_1",'
       '"dimensions":%s}')


@pytest.mark.parametrize(
    ("text", "quick"),
    [
        (ROW % (JAN_1, JAN_2, "1", '{"model":"a"}'), True),
        (ROW % (JAN_1, JAN_2, "1e-400", "null"), True),
        (ROW % (JAN_1, JAN_2, "1E+5", '{"b":"x","a":null}'), True),
        (ROW % (JAN_1, JAN_2, "1", '{"model":"a","model":"b"}'), True),  # the last is kept
        (ROW % (JAN_1, JAN_2, "1", '{"model":"a","model":null}'), True),
        (ROW % (JAN_1, JAN_2, "1", '{"model":4,"model":"b"}'), False),
        ((ROW % (JAN_1, JAN_2, "1", "null")).replace('"value":1', '"value":1,"value":2'),
         True),
        ((ROW % (JAN_1, JAN_2, "1", "null")).replace('"value":1', '"value":"x","value":2'),
         False),
        (ROW % (JAN_1, JAN_2, "NaN", "null"), False),
        (ROW % (JAN_1, JAN_2, "-Infinity", "null"), False),
        (ROW % (JAN_1, JAN_2, "1e400", "null"), False),
        (ROW % (JAN_1, JAN_2, "1000000000000000000", "null"), True),
        (ROW % (JAN_1, JAN_2, "1000000000000000001", "null"), False),
        (ROW % (JAN_1, JAN_2, "1e18", "null"), True),
        (ROW % (JAN_1, JAN_2, "1.0000000000000002e18", "null"), False),
        (ROW % (JAN_1, JAN_2, "9" * 400, "null"), False),
        (ROW % (JAN_1, JAN_2, "-0.0", "null"), True),
        (ROW % (MAX_INSTANT - 1, JAN_2, "1", "null"), True),
        (ROW % (MAX_INSTANT, JAN_2, "1", "null"), False),
        (ROW % (JAN_1, JAN_2, "1", '{"model":"\\ud800"}'), False),  # a lone surrogate
        (ROW % (JAN_1, JAN_2, "1", '{"model":"caf\\u00e9"}'), True),
        (ROW.replace('"starts_at":%d', '"starts_at":%d.0') % (JAN_1, JAN_2, "1", "null"),
         False),
        (ROW.replace('"mtr_1"', '"\udcff"') % (JAN_1, JAN_2, "1", "null"), False),
    ],
)
def test_odd_json_text_reads_as_the_careful_reader_reads_it(text: str, quick: bool) -> None:
    body = f'{{"refreshed_at":{JAN_1},"rows":{{"has_more":false,"data":[{text}]}}}}'
    content = body.encode("utf-8", "surrogateescape")
    assert check_agree(content) is quick


def test_an_answer_cut_short_or_followed_by_more_text_goes_to_the_careful_reader() -> None:
    whole = encoded(current_body(CURRENT))
    for content in (whole[:-1], whole + b"x", b"\xef\xbb\xbf" + whole, whole[:100]):
        assert check_agree(content) is False


KEYS = st.sampled_from(["model", "tier", "a", "Model"])
INSTANTS = st.one_of(st.integers(0, MAX_INSTANT - 1), st.integers(-5, 5),
                     st.integers(MAX_INSTANT - 2, MAX_INSTANT + 1), st.integers(2**62, 2**66),
                     st.sampled_from([float(JAN_1), JAN_1 + 0.5, True, None, "1"]))
VALUES = st.one_of(st.integers(-10**6, 10**6), st.floats(-1e6, 1e6),
                   st.integers(10**18 - 2, 10**18 + 2), st.integers(-10**18 - 2, -10**18 + 2),
                   st.floats(allow_nan=True, allow_infinity=True),
                   st.sampled_from([10**30, 2**64, -0.0, 1e18, True, "3", None]))
GOOD_DIMENSIONS = st.none() | st.dictionaries(KEYS, st.none() | st.sampled_from(["x", "y"]),
                                              max_size=3)
DIMENSIONS = GOOD_DIMENSIONS | st.sampled_from(
    [{"model": 4}, {"model": ["x"]}, {"model": True}, ["model"], "model", {"m": {"x": "y"}}])
IDS = st.none() | st.text("abc", min_size=1, max_size=2) | st.integers(0, 3)


def rows(good: bool) -> st.SearchStrategy[dict[str, Any]]:
    """Rows of the expected types (``good``), or rows where any field may be odd, missing,
    or under its oldest name."""
    if good:
        return st.fixed_dictionaries(
            {"starts_at": st.integers(0, MAX_INSTANT - 1), "ends_at": st.just(JAN_2),
             "value": st.integers(-10**6, 10**6) | st.floats(-1e6, 1e6),
             "meter": st.none() | st.sampled_from(["mtr_1", "mtr_2"])},
            optional={"dimensions": GOOD_DIMENSIONS,
                      "id": st.text("abcdefgh", min_size=3, max_size=3)})
    return st.fixed_dictionaries(
        {}, optional={"starts_at": INSTANTS, "ends_at": INSTANTS, "value": VALUES,
                      "meter": st.none() | st.sampled_from(["mtr_1", 5]),
                      "dimensions": DIMENSIONS, "id": IDS, "bucket_value": VALUES,
                      "meter_id": st.just("mtr_old"), "bucket_start_time": INSTANTS})


@st.composite
def answers(draw: st.DrawFn) -> Any:
    """Both response shapes, their optional and required fields sometimes missing or odd,
    good rows with now and then an odd one among them."""
    data = draw(st.lists(rows(good=True), max_size=8))
    if draw(st.booleans()):
        data.insert(draw(st.integers(0, len(data))), draw(rows(good=False)))
    flag = st.booleans() | st.sampled_from([None, 1, "true"])
    if draw(st.booleans()):
        inner = draw(st.fixed_dictionaries(
            {}, optional={"has_more": flag, "total": st.integers(-2, 20) | st.just("9"),
                          "object": st.just("list")}))
        body = draw(st.fixed_dictionaries(
            {}, optional={"refreshed_at": INSTANTS, "livemode": st.booleans()}))
        return {**body, "rows": {**inner, "data": data}}
    body = draw(st.fixed_dictionaries(
        {}, optional={"data_refreshed_at": INSTANTS, "has_more": flag}))
    return {**body, "data": data}


@settings(max_examples=400, deadline=None)
@given(answers())
def test_on_generated_answers_the_quick_reader_agrees_with_the_careful_one(body: Any) -> None:
    check_agree(encoded(body))


@settings(max_examples=100, deadline=None)
@given(st.lists(rows(good=True), min_size=1, max_size=8))
def test_answers_of_expected_rows_with_distinct_ids_are_read_quickly(
        data: list[dict[str, Any]]) -> None:
    ids = [row["id"] for row in data if "id" in row]
    expected = len(set(ids)) == len(ids)
    assert check_agree(encoded(current_body(data))) is expected

"""Answers alertd must not believe: numbers that are not finite or absurdly large, times outside
the calendar, and rows sent twice — in both analytics shapes and in event summaries. Each is a
typed :class:`MalformedResponseError` with the ``Request-Id`` (retried like any malformed
answer), or, for repeated ids, the first copy only and a log line; never zeros, never a crash.
"""

from __future__ import annotations

import math
from typing import Any

import httpx
import pytest

from alertd.clock import FakeClock
from alertd.errors import MalformedResponseError
from alertd.model import MeterSpec, UsageQuery, UsageRow
from alertd.source.analytics import MeterUsageSource, parse_usage_body
from alertd.source.summaries import EventSummariesSource, parse_summaries_page

from .fakes import Recorder, make_http, reply

JAN_1 = 1_735_689_600
HOUR = 3600
NUMBERS = [
    (math.nan, "nan"), (math.inf, "inf"), (-math.inf, "-inf"), (1e308, "1e+308"),
    (10**400, "an integer of about 401 digits"), (-(10**19), "-10000000000000000000"),
    (1.0000001e18, "1.0000001e+18"),
]


def row(value: Any = 5.0, **fields: Any) -> dict[str, Any]:
    return {"id": f"mur_{fields.get('starts_at', JAN_1)}", "starts_at": JAN_1,
            "ends_at": JAN_1 + HOUR, "value": value, "meter": "mtr_1", "dimensions": None,
            **fields}


def current(*rows: dict[str, Any]) -> dict[str, Any]:
    return {"refreshed_at": JAN_1 + 7200, "rows": {"has_more": False, "data": list(rows)}}


def guide(*rows: dict[str, Any]) -> dict[str, Any]:
    return {"data": [{k: v for k, v in r.items() if k != "id"} for r in rows],
            "data_refreshed_at": JAN_1 + 7200}


@pytest.mark.parametrize(("value", "shown"), NUMBERS)
@pytest.mark.parametrize("shape", [current, guide])
def test_a_value_arithmetic_cannot_take_is_malformed(value: Any, shown: str, shape: Any) -> None:
    with pytest.raises(MalformedResponseError) as caught:
        parse_usage_body(shape(row(), row(value, starts_at=JAN_1 + HOUR)), "req_bad")
    assert caught.value.request_id == "req_bad"
    assert f"row 1 value is {shown}, not a usage value" in str(caught.value)


@pytest.mark.parametrize("value", [-5.0, -1e18, 1e18, 0, 10**17])
def test_negative_and_large_but_sane_values_are_read(value: Any) -> None:
    [read] = parse_usage_body(current(row(value)), "req_ok").rows
    assert read.value == float(value)


@pytest.mark.parametrize("field", ["starts_at", "ends_at", "refreshed_at"])
@pytest.mark.parametrize("instant", [-3600, 10**15, 1e300, math.inf])
def test_a_time_outside_the_calendar_is_malformed(field: str, instant: Any) -> None:
    body = current(row())
    (body if field == "refreshed_at" else body["rows"]["data"][0])[field] = instant
    with pytest.raises(MalformedResponseError) as caught:
        parse_usage_body(body, "req_time")
    assert caught.value.request_id == "req_time"
    named = {"starts_at": "row 0 start", "ends_at": "row 0 end", "refreshed_at": "refreshed_at"}
    assert f"{named[field]} is " in str(caught.value)


def test_a_repeated_row_id_is_counted_once() -> None:
    first, second = row(100.0), row(7.0, starts_at=JAN_1 + HOUR, ends_at=JAN_1 + 2 * HOUR)
    body = parse_usage_body(current(first, second, dict(first), dict(first)), "req_dup")
    assert body.rows == [UsageRow(JAN_1, JAN_1 + HOUR, 100.0, "mtr_1"),
                         UsageRow(JAN_1 + HOUR, JAN_1 + 2 * HOUR, 7.0, "mtr_1")]
    assert body.repeated == (first["id"], first["id"])


def test_rows_without_ids_are_all_kept() -> None:
    assert len(parse_usage_body(guide(row(), row()), None).rows) == 2


def query() -> UsageQuery:
    return UsageQuery("cus_1", JAN_1, JAN_1 + 2 * HOUR, "hour", "UTC", (MeterSpec("mtr_1"),))


async def test_the_source_retries_a_nan_answer_and_logs_repeated_rows(
    caplog: pytest.LogCaptureFixture,
) -> None:
    answers = [reply(text='{"refreshed_at": 1735696800, "rows": {"has_more": false, "data": '
                          '[{"id": "a", "starts_at": 1735689600, "ends_at": 1735693200, '
                          '"value": NaN, "meter": "mtr_1"}]}}', request_id="req_nan"),
               reply(current(row(), row()), request_id="req_dup")]
    app = Recorder(lambda request: answers.pop(0))
    async with make_http(app, FakeClock(), max_retries=1) as http:
        result = await MeterUsageSource(http, http.settings).fetch(query())
    assert result.rows == (UsageRow(JAN_1, JAN_1 + HOUR, 5.0, "mtr_1"),)
    assert result.requests == 2
    assert "value is nan" in caplog.text and "req_nan" in caplog.text
    assert "repeated usage rows dropped customer=cus_1 count=1" in caplog.text
    assert "request_id=req_dup" in caplog.text


async def test_the_source_gives_up_on_an_answer_that_stays_unusable() -> None:
    text = ('{"refreshed_at": 1735696800, "rows": {"has_more": false, "data": [{"id": "a", '
            '"starts_at": 1735689600, "ends_at": 1735693200, "value": 1' + "0" * 400
            + ', "meter": "mtr_1"}]}}')
    app = Recorder(lambda request: reply(text=text, request_id="req_big"))
    async with make_http(app, FakeClock(), max_retries=2) as http:
        with pytest.raises(MalformedResponseError) as caught:
            await MeterUsageSource(http, http.settings).fetch(query())
    assert caught.value.request_id == "req_big" and len(app.requests) == 3


def summary(summary_id: str, value: Any, start: int = JAN_1) -> dict[str, Any]:
    return {"id": summary_id, "object": "billing.meter_event_summary", "aggregated_value": value,
            "start_time": start, "end_time": start + HOUR, "meter": "mtr_1"}


@pytest.mark.parametrize(("value", "shown"), NUMBERS)
def test_an_unusable_summary_value_is_malformed(value: Any, shown: str) -> None:
    with pytest.raises(MalformedResponseError) as caught:
        parse_summaries_page({"data": [summary("s1", value)], "has_more": False}, "req_s",
                             "mtr_1")
    assert caught.value.request_id == "req_s"
    assert f"aggregated_value is {shown}" in str(caught.value)


async def test_a_summary_repeated_across_pages_is_counted_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pages = [{"object": "list", "data": [summary("s1", 4.0), summary("s2", 6.0, JAN_1 + HOUR)],
              "has_more": True},
             {"object": "list", "data": [summary("s2", 6.0, JAN_1 + HOUR)], "has_more": False}]

    def app(request: httpx.Request) -> httpx.Response:
        return reply(pages.pop(0), request_id=f"req_page{2 - len(pages)}")

    async with make_http(app, FakeClock(), source="event_summaries") as http:
        result = await EventSummariesSource(http, http.settings).fetch(query())
    assert [r.value for r in result.rows] == [4.0, 6.0]
    assert "repeated event summaries dropped customer=cus_1 count=1 ids=s2" in caplog.text
    assert "request_id=req_page2" in caplog.text

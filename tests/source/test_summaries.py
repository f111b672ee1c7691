"""Meter event summaries (GA fallback): UTC alignment, paging, what it cannot serve."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from alertd.clock import FakeClock
from alertd.errors import InvalidRequestError, MalformedResponseError
from alertd.model import MeterSpec, UsageQuery, make_filters
from alertd.source.summaries import EventSummariesSource, aligned_range, parse_summaries_page

from .fakes import Recorder, make_http, reply

JAN_1 = 1735689600
HOUR = 3600
DAY = 86400


def query(*meters: str | None, starts_at: int = JAN_1, ends_at: int = JAN_1 + DAY,
          window: Any = "hour", timezone: str = "UTC", specs: tuple[MeterSpec, ...] = ()
          ) -> UsageQuery:
    all_specs = specs or tuple(MeterSpec(m) for m in meters)
    return UsageQuery("cus_1", starts_at, ends_at, window, timezone, all_specs)


class Summaries:
    """Stripe's event summaries for hourly buckets, ``page`` items at most per answer."""

    def __init__(self, hours: int, value: float = 1.0) -> None:
        self.hours = hours
        self.value = value

    def __call__(self, request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params.multi_items())
        meter = request.url.path.split("/")[4]
        start = int(params["start_time"])
        items = [
            {"id": f"mtrusg_{meter}_{i}", "object": "billing.meter_event_summary",
             "aggregated_value": self.value * i, "start_time": start + i * HOUR,
             "end_time": start + (i + 1) * HOUR, "meter": meter, "livemode": False}
            for i in range(self.hours)
        ]
        after = params.get("starting_after")
        first = 0 if after is None else int(after.rsplit("_", 1)[1]) + 1
        limit = int(params["limit"])
        page = items[first:first + limit]
        return reply({"object": "list", "url": request.url.path, "data": page,
                      "has_more": first + limit < len(items)},
                     request_id=f"req_{meter}_{first}")


async def test_pages_with_starting_after_until_has_more_is_false() -> None:
    app = Recorder(Summaries(hours=250))
    q = query("mtr_1", ends_at=JAN_1 + 250 * HOUR)
    async with make_http(app, FakeClock()) as http:
        result = await EventSummariesSource(http, http.settings).fetch(q)
        assert http.budgets.general.stats().acquired == 3
        assert http.budgets.analytics.stats().acquired == 0
    assert [r.url.path for r in app.requests] == ["/v1/billing/meters/mtr_1/event_summaries"] * 3
    assert app.params(0) == [
        ("customer", "cus_1"), ("start_time", str(JAN_1)),
        ("end_time", str(JAN_1 + 250 * HOUR)), ("value_grouping_window", "hour"),
        ("limit", "100"),
    ]
    assert app.params(1)[-1] == ("starting_after", "mtrusg_mtr_1_99")
    assert app.params(2)[-1] == ("starting_after", "mtrusg_mtr_1_199")
    assert len(result.rows) == 250
    assert result.rows[3].starts_at == JAN_1 + 3 * HOUR
    assert result.rows[3].value == 3.0
    assert {r.meter for r in result.rows} == {"mtr_1"}
    assert result.refreshed_at is None
    assert result.requests == 3
    assert result.request_ids == ("req_mtr_1_0", "req_mtr_1_100", "req_mtr_1_200")
    assert result.query == q


async def test_several_meters_are_read_one_after_another() -> None:
    app = Recorder(Summaries(hours=24))
    async with make_http(app, FakeClock()) as http:
        result = await EventSummariesSource(http, http.settings).fetch(query("mtr_a", "mtr_b"))
    assert [r.url.path.split("/")[4] for r in app.requests] == ["mtr_a", "mtr_b"]
    assert [r.meter for r in result.rows] == ["mtr_a"] * 24 + ["mtr_b"] * 24


async def test_the_range_is_widened_to_utc_boundaries_before_sending() -> None:
    app = Recorder(Summaries(hours=1))
    q = query("mtr_1", starts_at=JAN_1 + 5 * HOUR + 1200, ends_at=JAN_1 + DAY + 600,
              window="day")
    async with make_http(app, FakeClock()) as http:
        result = await EventSummariesSource(http, http.settings).fetch(q)
    params = dict(app.params(0))
    assert (params["start_time"], params["end_time"]) == (str(JAN_1), str(JAN_1 + 2 * DAY))
    assert params["value_grouping_window"] == "day"
    assert result.query == q  # the caller's query, not the widened one


@pytest.mark.parametrize(
    ("starts_at", "ends_at", "window", "expected"),
    [
        (JAN_1, JAN_1 + DAY, "day", (JAN_1, JAN_1 + DAY)),
        (JAN_1 + 1, JAN_1 + DAY - 1, "day", (JAN_1, JAN_1 + DAY)),
        (JAN_1 + 90, JAN_1 + 2 * HOUR + 60, "hour", (JAN_1, JAN_1 + 3 * HOUR)),
        (JAN_1 + HOUR, JAN_1 + 2 * HOUR, "hour", (JAN_1 + HOUR, JAN_1 + 2 * HOUR)),
        (JAN_1 + 90, JAN_1 + 150, None, (JAN_1 + 60, JAN_1 + 180)),
        (JAN_1 + 60, JAN_1 + 120, None, (JAN_1 + 60, JAN_1 + 120)),
    ],
)
def test_aligned_range(starts_at: int, ends_at: int, window: Any,
                       expected: tuple[int, int]) -> None:
    assert aligned_range(starts_at, ends_at, window) == expected


async def test_no_window_asks_for_one_total() -> None:
    app = Recorder(Summaries(hours=1))
    async with make_http(app, FakeClock()) as http:
        await EventSummariesSource(http, http.settings).fetch(query("mtr_1", window=None))
    assert "value_grouping_window" not in dict(app.params(0))


@pytest.mark.parametrize(
    ("q", "param", "hint"),
    [
        (query("mtr_1", window="week"), "value_grouping_window", "hour or day"),
        (query("mtr_1", window="month"), "value_grouping_window", "hour or day"),
        (query("mtr_1", timezone="Europe/Berlin"), "timezone", "UTC"),
        (query(None), "meter", "one meter at a time"),
        (query(), "meter", "one meter at a time"),
        (query(specs=(MeterSpec("mtr_1", make_filters({"tier": "pro"})),)),
         "dimension_filters", "cannot filter or group"),
        (query(specs=(MeterSpec("mtr_1", tenant_filters=make_filters({"u": "1"})),)),
         "dimension_filters", "cannot filter or group"),
        (query(specs=(MeterSpec("mtr_1", group_by=("model",)),)),
         "dimension_filters", "cannot filter or group"),
    ],
)
async def test_queries_it_cannot_serve_are_refused_with_advice(
    q: UsageQuery, param: str, hint: str
) -> None:
    app = Recorder(Summaries(hours=1))
    async with make_http(app, FakeClock()) as http:
        with pytest.raises(InvalidRequestError) as caught:
            await EventSummariesSource(http, http.settings).fetch(q)
    assert app.requests == []
    assert caught.value.param == param
    assert hint in str(caught.value)
    assert "stripe.source: meter_usage" in str(caught.value)


GOOD_ITEM = {"id": "mtrusg_1", "aggregated_value": 2.0, "start_time": JAN_1,
             "end_time": JAN_1 + HOUR}


@pytest.mark.parametrize(
    ("body", "hint"),
    [
        ({"data": [GOOD_ITEM]}, "has_more"),
        ({"has_more": False}, "'data' is not a list"),
        ({"data": [{**GOOD_ITEM, "aggregated_value": "2"}], "has_more": False},
         "aggregated_value"),
        ({"data": [{k: v for k, v in GOOD_ITEM.items() if k != "start_time"}],
          "has_more": False}, "start_time"),
        ({"data": [{**GOOD_ITEM, "id": None}], "has_more": False}, "id"),
    ],
)
def test_malformed_pages(body: Any, hint: str) -> None:
    with pytest.raises(MalformedResponseError) as caught:
        parse_summaries_page(body, "req_x", "mtr_1")
    assert caught.value.request_id == "req_x"
    assert hint in str(caught.value)


@pytest.mark.parametrize(
    "page",
    [
        {"data": [], "has_more": True},
        {"data": [GOOD_ITEM], "has_more": True},  # the same cursor again and again
    ],
)
async def test_a_page_that_cannot_advance_is_malformed_not_an_endless_loop(
    page: dict[str, Any]
) -> None:
    app = Recorder(lambda request: reply(page, request_id="req_stuck"))
    async with make_http(app, FakeClock()) as http:
        with pytest.raises(MalformedResponseError) as caught:
            await EventSummariesSource(http, http.settings).fetch(query("mtr_1"))
    assert caught.value.request_id == "req_stuck"
    assert len(app.requests) <= 2

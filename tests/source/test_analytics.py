"""Meter Usage Analytics: Stripe's form encoding, both response shapes, has_more splitting."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from alertd.calendar import floor, next_start
from alertd.clock import FakeClock
from alertd.config.settings import StripeSettings
from alertd.errors import (
    ConfigError,
    IncompleteResponseError,
    InvalidRequestError,
    MalformedResponseError,
    NotFoundError,
)
from alertd.model import MeterSpec, UsageQuery, UsageRow, make_filters
from alertd.source import build_source
from alertd.source.analytics import (
    MeterUsageSource,
    encode_usage_query,
    parse_usage_body,
    split_point,
    uses_array_filters,
)
from alertd.source.summaries import EventSummariesSource

from .fakes import Recorder, make_http, reply, stripe_error

JAN_1 = 1735689600  # 2025-01-01T00:00:00Z
FEB_1 = 1738368000
DAY = 86400
PLAIN = "2025-09-30.preview"
ARRAYS = "2025-11-17.preview"


def query(
    *specs: MeterSpec,
    starts_at: int = JAN_1,
    ends_at: int = FEB_1,
    window: Any = "day",
    timezone: str = "UTC",
    customer: str = "cus_123",
) -> UsageQuery:
    return UsageQuery(customer, starts_at, ends_at, window, timezone, specs)


def spec(
    meter: str | None = "mtr_123",
    filters: dict[str, Any] | None = None,
    tenants: dict[str, Any] | None = None,
    group_by: tuple[str, ...] = (),
) -> MeterSpec:
    return MeterSpec(meter, make_filters(filters), make_filters(tenants), group_by)


def empty_usage(request: httpx.Request) -> httpx.Response:
    return reply({"object": "billing.analytics.meter_usage", "refreshed_at": JAN_1,
                  "rows": {"object": "list", "data": [], "has_more": False}})


async def sent(q: UsageQuery, api_version: str = PLAIN, **stripe: Any) -> list[tuple[str, str]]:
    """The query string alertd actually sends for ``q`` (through a MockTransport)."""
    app = Recorder(empty_usage)
    async with make_http(app, FakeClock(), api_version=api_version, **stripe) as http:
        await MeterUsageSource(http, http.settings).fetch(q)
    [request] = app.requests
    assert request.url.path == "/v1/billing/analytics/meter_usage"
    assert request.headers["Stripe-Version"] == api_version
    return request.url.params.multi_items()


def curl(*pairs: str) -> list[tuple[str, str]]:
    """The ``-d k=v`` pairs of one of the guide's curl examples."""
    return [tuple(p.split("=", 1)) for p in pairs]  # type: ignore[misc]


# --------------------------------------------------------------------------- the guide


SEED_REQUESTS = [
    (  # Fetch usage for a single meter
        query(spec(), timezone="America/New_York"),
        curl("starts_at=1735689600", "ends_at=1738368000", "customer=cus_123",
             "meters[0][meter]=mtr_123", "value_grouping_window=day",
             "timezone=America/New_York"),
    ),
    (  # filtered and grouped by meter dimension
        query(spec(filters={"tier": "premium"}, group_by=("model",))),
        curl("starts_at=1735689600", "ends_at=1738368000", "customer=cus_123",
             "meters[0][meter]=mtr_123", "meters[0][dimension_group_by_keys][0]=model",
             "meters[0][dimension_filters][tier]=premium", "value_grouping_window=day"),
    ),
    (  # filtered by tenant
        query(spec(tenants={"user_id": "a8238bf39a1"})),
        curl("starts_at=1735689600", "ends_at=1738368000", "customer=cus_123",
             "meters[0][meter]=mtr_123", "meters[0][tenant_filters][user_id]=a8238bf39a1",
             "value_grouping_window=day"),
    ),
    (  # across multiple meters
        query(spec("mtr_1", group_by=("model", "tier")), spec("mtr_2", {"region": "us-east"})),
        curl("starts_at=1735689600", "ends_at=1738368000", "customer=cus_123",
             "meters[0][meter]=mtr_1", "meters[0][dimension_group_by_keys][0]=model",
             "meters[0][dimension_group_by_keys][1]=tier", "meters[1][meter]=mtr_2",
             "meters[1][dimension_filters][region]=us-east", "value_grouping_window=day"),
    ),
    (  # usage dashboards
        query(spec(group_by=("model",))),
        curl("starts_at=1735689600", "ends_at=1738368000", "customer=cus_123",
             "meters[0][meter]=mtr_123", "meters[0][dimension_group_by_keys][0]=model",
             "value_grouping_window=day"),
    ),
]


@pytest.mark.parametrize(("q", "expected"), SEED_REQUESTS)
async def test_the_guides_five_requests_parameter_for_parameter(
    q: UsageQuery, expected: list[tuple[str, str]]
) -> None:
    actual = await sent(q, PLAIN)
    assert sorted(actual) == sorted(expected)
    # The guide lists meters[...] in the order the SDK sends them, too.
    assert [p for p in actual if p[0].startswith("meters")] == [
        p for p in expected if p[0].startswith("meters")
    ]
    assert actual[:3] == [("customer", "cus_123"), ("starts_at", "1735689600"),
                          ("ends_at", "1738368000")]


async def test_array_form_in_the_sdks_order() -> None:
    q = query(spec("mtr_1", group_by=("model", "tier")), spec("mtr_2", {"region": ["us-east"]}))
    assert await sent(q, ARRAYS) == [
        ("customer", "cus_123"),
        ("starts_at", "1735689600"),
        ("ends_at", "1738368000"),
        ("meters[0][meter]", "mtr_1"),
        ("meters[0][dimension_group_by_keys][0]", "model"),
        ("meters[0][dimension_group_by_keys][1]", "tier"),
        ("meters[1][meter]", "mtr_2"),
        ("meters[1][dimension_filters][region][0]", "us-east"),
        ("value_grouping_window", "day"),
    ]


def test_array_form_with_several_values_and_tenants() -> None:
    q = query(spec("mtr_1", {"tier": ["pro", "premium"], "model": "gpt-4"},
                   {"user_id": "u1"}, ("region",)), timezone="Asia/Kolkata", window="hour")
    assert encode_usage_query(q, array_filters=True) == [
        ("customer", "cus_123"),
        ("starts_at", "1735689600"),
        ("ends_at", "1738368000"),
        ("meters[0][meter]", "mtr_1"),
        ("meters[0][dimension_group_by_keys][0]", "region"),
        ("meters[0][dimension_filters][model][0]", "gpt-4"),
        ("meters[0][dimension_filters][tier][0]", "premium"),
        ("meters[0][dimension_filters][tier][1]", "pro"),
        ("meters[0][tenant_filters][user_id][0]", "u1"),
        ("value_grouping_window", "hour"),
        ("timezone", "Asia/Kolkata"),
    ]


def test_all_meters_sends_no_meters_param_and_no_window_sends_no_window() -> None:
    q = query(spec(None), window=None)
    assert encode_usage_query(q, array_filters=True) == [
        ("customer", "cus_123"), ("starts_at", str(JAN_1)), ("ends_at", str(FEB_1)),
    ]
    assert encode_usage_query(query(window=None), array_filters=False)[-1][0] == "ends_at"


@pytest.mark.parametrize(
    ("version", "setting", "arrays"),
    [
        ("2025-09-30.preview", "auto", False),
        ("2025-11-16.preview", "auto", False),
        ("2025-11-17.preview", "auto", True),
        ("2026-06-24.preview", "auto", True),
        ("2026-09-30.preview", "auto", True),
        ("2025-12-15.clover", "auto", True),
        ("2024-06-20", "auto", False),
        ("2026-09-30.preview", "never", False),
        ("2025-09-30.preview", "always", True),
        ("not-a-version", "always", True),
    ],
)
def test_uses_array_filters(version: str, setting: Any, arrays: bool) -> None:
    assert uses_array_filters(version, setting) is arrays


@pytest.mark.parametrize("version", ["latest", "2025-13-01.preview", "2025/11/17"])
def test_an_unreadable_version_is_a_config_error(version: str) -> None:
    with pytest.raises(ConfigError, match=r"stripe\.api_version"):
        uses_array_filters(version, "auto")


# --------------------------------------------------------------------------- refused locally


REFUSED = [
    (query(spec(), starts_at=JAN_1 + 30), True, "starts_at", "whole minute"),
    (query(spec(), ends_at=FEB_1 - 1), True, "ends_at", "whole minute"),
    (query(spec(), starts_at=FEB_1, ends_at=JAN_1), True, "starts_at", "before"),
    (query(*(spec(f"mtr_{i}") for i in range(6))), True, "meters", "at most 5"),
    (query(spec("mtr_1"), spec("mtr_1", {"a": "b"})), True, "meters", "same meter twice"),
    (query(spec(None), spec("mtr_1")), True, "meters", "only one"),
    (query(spec(None, {"a": "b"})), True, "meters[0]", "need a meter"),
    (query(spec(group_by=("a", "b", "c"))), True,
     "meters[0][dimension_group_by_keys]", "at most 2"),
    (query(spec(filters={f"k{i}": "v" for i in range(11)})), True,
     "meters[0][dimension_filters]", "at most 10"),
    (query(spec(tenants={f"t{i}": "v" for i in range(4)})), True,
     "meters[0][tenant_filters]", "at most 3"),
    (query(spec(filters={"tier": ["pro", "premium"]})), False,
     "meters[0][dimension_filters][tier]", "array filters"),
    (query(spec(tenants={"user": ["a", "b"]})), False,
     "meters[0][tenant_filters][user]", "array filters"),
]


@pytest.mark.parametrize(("q", "arrays", "param", "hint"), REFUSED)
async def test_requests_stripe_would_reject_are_refused_without_sending(
    q: UsageQuery, arrays: bool, param: str, hint: str
) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        encode_usage_query(q, array_filters=arrays)
    assert caught.value.param == param
    assert hint in str(caught.value)
    app = Recorder(empty_usage)
    async with make_http(app, FakeClock(), api_version=ARRAYS if arrays else PLAIN) as http:
        with pytest.raises(InvalidRequestError):
            await MeterUsageSource(http, http.settings).fetch(q)
    assert app.requests == []


# --------------------------------------------------------------------------- responses


ROWS = [
    UsageRow(JAN_1, JAN_1 + DAY, 1500.0, "mtr_1234567890", (("model", "gpt-4"),)),
    UsageRow(JAN_1, JAN_1 + DAY, 800.0, "mtr_1234567890", (("model", "gpt-3.5-turbo"),)),
    UsageRow(JAN_1 + DAY, JAN_1 + 2 * DAY, 2100.0, "mtr_1234567890", (("model", "gpt-4"),)),
]


def current_row(row: UsageRow) -> dict[str, Any]:
    row_id = f"mur_{row.starts_at}_{row.meter}_{sorted(row.dimensions)}"
    return {"object": "billing.analytics.meter_usage_row", "id": row_id,
            "starts_at": row.starts_at, "ends_at": row.ends_at, "value": row.value,
            "meter": row.meter, "dimensions": dict(row.dimensions)}


def guide_row(row: UsageRow) -> dict[str, Any]:
    return {"starts_at": row.starts_at, "ends_at": row.ends_at, "value": int(row.value),
            "meter": row.meter, "dimensions": dict(row.dimensions)}


def oldest_row(row: UsageRow) -> dict[str, Any]:
    return {"bucket_start_time": row.starts_at, "bucket_end_time": row.ends_at,
            "bucket_value": row.value, "meter_id": row.meter,
            "dimensions": dict(row.dimensions)}


def test_current_shape() -> None:
    body = {"object": "billing.analytics.meter_usage", "livemode": False,
            "refreshed_at": 1735689000,
            "rows": {"url": "/v1/billing/analytics/meter_usage", "has_more": False, "total": 3,
                     "data": [current_row(r) for r in ROWS]}}
    assert parse_usage_body(body, "req_1") == (ROWS, 1735689000, False, ())


def test_guide_shape_as_in_the_seed_document() -> None:
    body = {"data": [guide_row(r) for r in ROWS]}
    assert parse_usage_body(body, "req_1") == (ROWS, None, False, ())
    body_with_freshness = {**body, "data_refreshed_at": 1735689000, "has_more": True}
    assert parse_usage_body(body_with_freshness, None) == (ROWS, 1735689000, True, ())


def test_oldest_field_names() -> None:
    body = {"data": [oldest_row(r) for r in ROWS], "data_refreshed_at": 1735689000}
    assert parse_usage_body(body, "req_1") == (ROWS, 1735689000, False, ())


def test_null_meter_dimensions_and_values() -> None:
    body = {"refreshed_at": None, "rows": {"has_more": False, "data": [
        {"starts_at": JAN_1, "ends_at": JAN_1 + DAY, "value": 3, "meter": None,
         "dimensions": None},
        {"starts_at": JAN_1, "ends_at": JAN_1 + DAY, "value": 2.5, "meter": "mtr_1",
         "dimensions": {"model": None, "tier": "pro"}},
    ]}}
    rows, refreshed, _, _ = parse_usage_body(body, None)
    assert rows == [UsageRow(JAN_1, JAN_1 + DAY, 3.0, None, ()),
                    UsageRow(JAN_1, JAN_1 + DAY, 2.5, "mtr_1", (("tier", "pro"),))]
    assert refreshed is None


GOOD_ROW = {"starts_at": JAN_1, "ends_at": JAN_1 + DAY, "value": 1.0, "meter": "mtr_1",
            "dimensions": {}}


def with_row(**changes: Any) -> dict[str, Any]:
    row = {k: v for k, v in {**GOOD_ROW, **changes}.items() if v is not ...}
    return {"refreshed_at": JAN_1, "rows": {"data": [row], "has_more": False}}


@pytest.mark.parametrize(
    ("body", "hint"),
    [
        ([], "not an object"),
        ({"object": "list"}, "neither 'rows' nor 'data'"),
        ({"rows": []}, "rows is not an object"),
        ({"rows": {"data": "x", "has_more": False}, "refreshed_at": 1}, "not a list"),
        ({"data": {"a": 1}}, "not a list"),
        ({"rows": {"data": [], "has_more": "yes"}, "refreshed_at": 1}, "has_more"),
        ({"rows": {"data": [], "has_more": False}, "refreshed_at": "now"}, "refreshed_at"),
        ({"rows": {"data": []}, "refreshed_at": 1}, "'has_more' is missing"),
        ({"rows": {"data": [], "has_more": False}}, "'refreshed_at' is missing"),
        ({"data": [], "data_refreshed_at": 1.5}, "whole second"),
        ({"rows": {"data": ["row"], "has_more": False}, "refreshed_at": 1},
         "row 0 is not an object"),
        (with_row(value=...), "value is not a number"),
        (with_row(value="12"), "value is not a number"),
        (with_row(value=True), "value is not a number"),
        (with_row(value=None), "value is not a number"),
        (with_row(starts_at=...), "start is not a unix time"),
        (with_row(ends_at="2025-01-02"), "end is not a unix time"),
        (with_row(meter=...), "has no meter"),
        (with_row(meter=5), "meter is not a string"),
        (with_row(dimensions=["model"]), "dimensions is not an object"),
        (with_row(dimensions={"model": 4}), "dimension 'model'"),
    ],
)
def test_malformed_bodies_never_become_zero(body: Any, hint: str) -> None:
    with pytest.raises(MalformedResponseError) as caught:
        parse_usage_body(body, "req_bad")
    assert caught.value.request_id == "req_bad"
    assert hint in str(caught.value)
    assert "req_bad" in str(caught.value)


async def test_a_wrongly_typed_body_is_retried_then_raised_with_its_request_id() -> None:
    app = Recorder(lambda request: reply(with_row(value="lots"), request_id="req_wrong"))
    async with make_http(app, FakeClock(), max_retries=3) as http:
        with pytest.raises(MalformedResponseError) as caught:
            await MeterUsageSource(http, http.settings).fetch(query(spec()))
    assert caught.value.request_id == "req_wrong"
    # The body is read inside the retry loop: a wrong type is retried like an HTML page.
    assert len(app.requests) == 4


async def test_html_through_the_source_is_malformed_with_the_request_id() -> None:
    app = Recorder(lambda request: reply(text="<html>maintenance</html>", request_id="req_h",
                                         headers={"Content-Type": "text/html"}))
    async with make_http(app, FakeClock(), max_retries=1) as http:
        with pytest.raises(MalformedResponseError) as caught:
            await MeterUsageSource(http, http.settings).fetch(query(spec()))
    assert caught.value.request_id == "req_h"
    assert len(app.requests) == 2


async def test_404_suggests_event_summaries() -> None:
    app = Recorder(lambda request: stripe_error(404, "Unrecognized request URL"))
    async with make_http(app, FakeClock()) as http:
        with pytest.raises(NotFoundError, match="event_summaries"):
            await MeterUsageSource(http, http.settings).fetch(query(spec()))


async def test_fetch_returns_one_typed_result() -> None:
    body = {"refreshed_at": 1735689000,
            "rows": {"has_more": False, "data": [current_row(r) for r in ROWS]}}
    answers = [stripe_error(500, type_="api_error"), reply(body, request_id="req_ok")]
    app = Recorder(lambda request: answers.pop(0))
    q = query(spec("mtr_1234567890", group_by=("model",)))
    async with make_http(app, FakeClock()) as http:
        result = await build_source(http, http.settings).fetch(q)
    assert result.query == q
    assert result.rows == tuple(ROWS)
    assert result.refreshed_at == 1735689000
    assert result.requests == 2  # the 500 and its retry
    assert result.request_ids == ("req_ok",)


# --------------------------------------------------------------------------- has_more


class Paged:
    """A Stripe that holds one row per day bucket and at most ``max_rows`` rows per answer.

    Buckets follow local midnights of ``timezone``; ``refreshed`` is what each answer reports.
    """

    def __init__(self, max_rows: int, timezone: str = "UTC", refreshed: list[int] | None = None
                 ) -> None:
        self.max_rows = max_rows
        self.timezone = timezone
        self.refreshed = refreshed or []
        self.ranges: list[tuple[int, int]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params.multi_items())
        starts, ends = int(params["starts_at"]), int(params["ends_at"])
        self.ranges.append((starts, ends))
        rows = []
        bucket = floor(starts, "day", self.timezone)
        while bucket < ends:
            following = next_start(bucket, "day", self.timezone)
            rows.append({"starts_at": max(bucket, starts), "ends_at": following,
                         "value": float(bucket // DAY), "meter": "mtr_1", "dimensions": {}})
            bucket = following
        has_more = len(rows) > self.max_rows
        refreshed = self.refreshed.pop(0) if self.refreshed else JAN_1
        return reply({"refreshed_at": refreshed,
                      "rows": {"has_more": has_more, "data": rows[: self.max_rows]}},
                     request_id=f"req_{len(self.ranges)}")


async def test_has_more_splits_the_range_and_stitches_every_row_once() -> None:
    stripe = Paged(max_rows=2, refreshed=[JAN_1 + 500, JAN_1 + 100, JAN_1 + 300])
    q = query(spec("mtr_1"), starts_at=JAN_1, ends_at=JAN_1 + 4 * DAY)
    async with make_http(stripe, FakeClock()) as http:
        result = await MeterUsageSource(http, http.settings).fetch(q)
    assert stripe.ranges == [
        (JAN_1, JAN_1 + 4 * DAY),
        (JAN_1, JAN_1 + 2 * DAY),
        (JAN_1 + 2 * DAY, JAN_1 + 4 * DAY),
    ]
    assert [r.starts_at for r in result.rows] == [JAN_1 + i * DAY for i in range(4)]
    assert result.requests == 3
    assert result.request_ids == ("req_1", "req_2", "req_3")
    assert result.refreshed_at == JAN_1 + 100  # the oldest seen


async def test_splits_recursively_at_local_midnights_across_dst() -> None:
    tz = "America/New_York"
    start = floor(1741132800, "day", tz)  # 2025-03-05 local midnight; DST starts 03-09
    ends = start
    for _ in range(9):
        ends = next_start(ends, "day", tz)
    stripe = Paged(max_rows=2, timezone=tz)
    q = query(spec("mtr_1"), starts_at=start, ends_at=ends, timezone=tz)
    async with make_http(stripe, FakeClock()) as http:
        result = await MeterUsageSource(http, http.settings).fetch(q)
    for starts_at, ends_at in stripe.ranges:
        for instant in (starts_at, ends_at):
            assert floor(instant, "day", tz) == instant  # every split on a local midnight
    assert len(result.rows) == 9
    assert len({r.starts_at for r in result.rows}) == 9
    assert {r.ends_at - r.starts_at for r in result.rows} == {DAY, DAY - 3600}


async def test_a_single_bucket_with_more_rows_is_incomplete_not_truncated() -> None:
    stripe = Paged(max_rows=0)
    q = query(spec("mtr_1"), starts_at=JAN_1, ends_at=JAN_1 + 4 * DAY)
    async with make_http(stripe, FakeClock()) as http:
        with pytest.raises(IncompleteResponseError) as caught:
            await MeterUsageSource(http, http.settings).fetch(q)
    # Pieces are asked concurrently: both halves, then every single day, all incomplete.
    days = [(JAN_1 + i * DAY, JAN_1 + (i + 1) * DAY) for i in range(4)]
    assert sorted(stripe.ranges) == sorted([(JAN_1, JAN_1 + 4 * DAY), (JAN_1, JAN_1 + 2 * DAY),
                                            (JAN_1 + 2 * DAY, JAN_1 + 4 * DAY), *days])
    # The first day's error, in range order, is the one raised.
    first_day = f"req_{stripe.ranges.index(days[0]) + 1}"
    assert caught.value.request_id == first_day
    assert "single day bucket" in str(caught.value)
    assert caught.value.retryable is False


async def test_has_more_without_buckets_is_incomplete() -> None:
    stripe = Paged(max_rows=0)
    async with make_http(stripe, FakeClock()) as http:
        with pytest.raises(IncompleteResponseError):
            await MeterUsageSource(http, http.settings).fetch(query(spec("mtr_1"), window=None))
    assert len(stripe.ranges) == 1


@pytest.mark.parametrize(
    ("starts_at", "ends_at", "window", "tz", "expected"),
    [
        (JAN_1, JAN_1 + 4 * DAY, "day", "UTC", JAN_1 + 2 * DAY),
        (JAN_1, JAN_1 + 3 * DAY, "day", "UTC", JAN_1 + 2 * DAY),
        (JAN_1, JAN_1 + 2 * DAY, "day", "UTC", JAN_1 + DAY),
        (JAN_1, JAN_1 + DAY, "day", "UTC", None),
        (JAN_1 + 600, JAN_1 + DAY + 600, "day", "UTC", JAN_1 + DAY),  # a partial first bucket
        (JAN_1, JAN_1 + 7200, "hour", "UTC", JAN_1 + 3600),
        (JAN_1, JAN_1 + 7200, "hour", "Asia/Kolkata", JAN_1 + 1800 + 3600),
        (JAN_1, FEB_1, "month", "UTC", None),
        (JAN_1, FEB_1, None, "UTC", None),
    ],
)
def test_split_point(starts_at: int, ends_at: int, window: Any, tz: str,
                     expected: int | None) -> None:
    q = query(spec(), starts_at=starts_at, ends_at=ends_at, window=window, timezone=tz)
    assert split_point(q) == expected


def test_build_source_picks_by_setting() -> None:
    http = make_http(Recorder(empty_usage), FakeClock())
    assert isinstance(build_source(http, StripeSettings()), MeterUsageSource)
    assert isinstance(build_source(http, StripeSettings(source="event_summaries")),
                      EventSummariesSource)

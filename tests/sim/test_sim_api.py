"""The simulator's Stripe endpoints over HTTP: shapes, versions, validation, paging, search and
authentication."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from alertd.sim.server import Simulator
from alertd.sim.testing import API_KEY, TEST_NOW

from .conftest import CURRENT

USAGE = "/v1/billing/analytics/meter_usage"
DAY = 86_400
BASE = {
    "customer": "cus_sim_000001", "starts_at": str(TEST_NOW - 2 * DAY), "ends_at": str(TEST_NOW)
}
MIDNIGHT = TEST_NOW // DAY * DAY
WHOLE_DAYS = {"starts_at": MIDNIGHT - 2 * DAY, "ends_at": MIDNIGHT}


async def usage(
    client: httpx.AsyncClient, version: str = CURRENT, **params: Any
) -> httpx.Response:
    query = {**BASE, **{k: str(v) for k, v in params.items()}}
    return await client.get(USAGE, params=query, headers={"Stripe-Version": version})


def stripe_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["Request-Id"].startswith("req_")
    error: dict[str, Any] = response.json()["error"]
    assert error["message"]
    return error


# ---------------------------------------------------------------------- shapes and versions


@pytest.mark.parametrize("version", ["2025-09-30.preview", "2025-11-17.preview",
                                     "2026-09-30.preview"])
async def test_current_shape(client: httpx.AsyncClient, version: str) -> None:
    response = await usage(client, version, **WHOLE_DAYS, **{"meters[0][meter]": "mtr_sim_tokens",
                                                              "value_grouping_window": "day"})
    body = response.json()
    assert set(body) == {"object", "livemode", "refreshed_at", "rows"}
    assert body["object"] == "billing.analytics.meter_usage" and body["livemode"] is False
    assert body["refreshed_at"] == TEST_NOW - 60
    rows = body["rows"]
    assert rows["object"] == "list" and rows["url"] == USAGE and rows["has_more"] is False
    assert rows["total"] == len(rows["data"]) == 2
    for row in rows["data"]:
        assert row["object"] == "billing.analytics.meter_usage_row"
        assert row["id"].startswith("mtrusgrow_")
        assert isinstance(row["value"], float) and row["value"] > 0
        assert row["meter"] == "mtr_sim_tokens" and row["dimensions"] is None
        assert row["ends_at"] - row["starts_at"] == DAY
    assert response.headers["Stripe-Version"] == version


@pytest.mark.parametrize("version", ["2024-06-20", "2025-03-31.basil", "2025-08-27.basil"])
async def test_guide_shape_before_2025_09_30(client: httpx.AsyncClient, version: str) -> None:
    response = await usage(client, version, **WHOLE_DAYS, **{
                                                "meters[0][meter]": "mtr_sim_tokens",
                                                "meters[0][dimension_filters][tier]": "premium",
                                                "meters[0][dimension_group_by_keys][0]": "model",
                                                "value_grouping_window": "day"})
    body = response.json()
    assert set(body) == {"data", "data_refreshed_at", "has_more"}
    assert body["data_refreshed_at"] == TEST_NOW - 60
    assert len(body["data"]) == 6
    for row in body["data"]:
        assert set(row) == {"starts_at", "ends_at", "value", "meter", "dimensions"}
        assert isinstance(row["value"], int)
        assert set(row["dimensions"]) == {"model"}


async def test_both_shapes_carry_the_same_numbers(client: httpx.AsyncClient) -> None:
    params = {"meters[0][meter]": "mtr_sim_api_calls", "value_grouping_window": "hour",
              "meters[0][dimension_group_by_keys][0]": "endpoint"}
    current = (await usage(client, CURRENT, **params)).json()["rows"]["data"]
    guide = (await usage(client, "2025-03-31.basil", **params)).json()["data"]

    def table(rows: list[dict[str, Any]]) -> dict[tuple[int, str], float]:
        return {(r["starts_at"], r["dimensions"]["endpoint"]): r["value"] for r in rows}

    assert table(current) == table(guide)


async def test_filter_forms_follow_the_version(client: httpx.AsyncClient) -> None:
    array_form = {"meters[0][meter]": "mtr_sim_tokens",
                  "meters[0][dimension_filters][tier][0]": "premium"}
    plain_form = {"meters[0][meter]": "mtr_sim_tokens",
                  "meters[0][dimension_filters][tier]": "premium"}
    new = (await usage(client, "2025-11-17.preview", **array_form)).json()["rows"]["data"]
    old = (await usage(client, "2025-09-30.preview", **plain_form)).json()["rows"]["data"]
    assert [r["value"] for r in new] == [r["value"] for r in old]
    error = stripe_error(await usage(client, "2025-11-17.preview", **plain_form), 400)
    assert error["param"] == "meters[0][dimension_filters][tier]"
    assert "[0]=premium" in error["message"]
    error = stripe_error(await usage(client, "2025-09-30.preview", **array_form), 400)
    assert error["param"] == "meters[0][dimension_filters][tier]"


async def test_array_filter_with_several_values_means_any_of(client: httpx.AsyncClient) -> None:
    grouped = await usage(client, **{"meters[0][meter]": "mtr_sim_tokens",
                                     "meters[0][dimension_group_by_keys][0]": "model"})
    per_model = {r["dimensions"]["model"]: r["value"] for r in grouped.json()["rows"]["data"]}
    both = await usage(client, **{"meters[0][meter]": "mtr_sim_tokens",
                                  "meters[0][dimension_filters][model][0]": "gpt-4",
                                  "meters[0][dimension_filters][model][1]": "claude-3"})
    [row] = both.json()["rows"]["data"]
    assert row["value"] == per_model["gpt-4"] + per_model["claude-3"]


async def test_no_meters_sums_every_meter(client: httpx.AsyncClient) -> None:
    each = await usage(client, **{f"meters[{i}][meter]": m for i, m in enumerate(
        ["mtr_sim_tokens", "mtr_sim_api_calls", "mtr_sim_storage"])})
    every = (await usage(client)).json()["rows"]["data"]
    assert len(every) == 1 and every[0]["meter"] is None and every[0]["dimensions"] is None
    assert every[0]["value"] == sum(r["value"] for r in each.json()["rows"]["data"])


async def test_two_group_by_keys_and_tenant_filter(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    profile = sim.generator.profile("cus_sim_000001")
    assert profile is not None
    grouped = await usage(client, **{"meters[0][meter]": "mtr_sim_tokens",
                                     "meters[0][dimension_group_by_keys][0]": "model",
                                     "meters[0][dimension_group_by_keys][1]": "tier"})
    rows = grouped.json()["rows"]["data"]
    assert {(r["dimensions"]["model"], r["dimensions"]["tier"]) for r in rows} == {
        (m, t) for m in ("gpt-4", "gpt-4o-mini", "claude-3") for t in ("standard", "premium")
    }
    tenants = [await usage(client, **{"meters[0][meter]": "mtr_sim_tokens",
                                      "meters[0][tenant_filters][user_id][0]": user})
               for user in profile.users]
    total = sum(r["value"] for r in rows)
    assert sum(t.json()["rows"]["data"][0]["value"] for t in tenants) == total


async def test_rows_come_shuffled_but_repeatably(client: httpx.AsyncClient) -> None:
    params = {"meters[0][meter]": "mtr_sim_tokens", "value_grouping_window": "hour"}
    first = (await usage(client, **params)).json()["rows"]["data"]
    again = (await usage(client, **params)).json()["rows"]["data"]
    assert first == again
    starts = [r["starts_at"] for r in first]
    assert starts != sorted(starts)


async def test_has_more_returns_the_earliest_rows(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    params = {"meters[0][meter]": "mtr_sim_tokens", "value_grouping_window": "hour"}
    everything = (await usage(client, **params)).json()["rows"]
    sim.configure(max_rows=10)
    limited = (await usage(client, **params)).json()["rows"]
    assert limited["has_more"] is True and len(limited["data"]) == 10
    assert limited["total"] == everything["total"] > 10
    earliest = sorted(r["starts_at"] for r in everything["data"])[:10]
    assert sorted(r["starts_at"] for r in limited["data"]) == earliest


async def test_minute_aligned_start_inside_a_slot_truncates(client: httpx.AsyncClient) -> None:
    # An event at 08:42 counts at 08:30: a range from 08:40 leaves that slot out.
    start = TEST_NOW - DAY + 8 * 3600 + 30 * 60
    whole = await usage(client, starts_at=start, ends_at=start + 3600,
                        **{"meters[0][meter]": "mtr_sim_storage"})
    later = await usage(client, starts_at=start + 600, ends_at=start + 3600,
                        **{"meters[0][meter]": "mtr_sim_storage"})
    slots = await usage(client, starts_at=start + 900, ends_at=start + 3600,
                        **{"meters[0][meter]": "mtr_sim_storage"})
    value = [r.json()["rows"]["data"][0]["value"] for r in (whole, later, slots)]
    assert value[0] > value[1] == value[2]


# ---------------------------------------------------------------------- validation


def fields(count: int, template: str) -> dict[str, str]:
    return {template.format(i=i): "x" for i in range(count)}


TOK = {"meters[0][meter]": "mtr_sim_tokens"}
INVALID: list[tuple[str, dict[str, str], str, str | None]] = [
    ("no customer", {"customer": ""}, "customer", "parameter_missing"),
    ("unknown customer", {"customer": "cus_sim_000099"}, "customer", "resource_missing"),
    ("no starts_at", {"starts_at": ""}, "starts_at", "parameter_missing"),
    ("no ends_at", {"ends_at": ""}, "ends_at", "parameter_missing"),
    ("starts_at not integer", {"starts_at": "abc"}, "starts_at", "parameter_invalid_integer"),
    ("starts_at not minute", {"starts_at": str(TEST_NOW - DAY + 30)}, "starts_at", None),
    ("ends_at not minute", {"ends_at": str(TEST_NOW - 1)}, "ends_at", None),
    ("start after end", {"starts_at": str(TEST_NOW)}, "starts_at", "invalid_time_range"),
    ("six meters", {f"meters[{i}][meter]": "mtr_sim_tokens" for i in range(6)}, "meters", None),
    ("three group-by keys", {**TOK, **fields(3, "meters[0][dimension_group_by_keys][{i}]")},
     "meters[0][dimension_group_by_keys]", None),
    ("eleven dimension filters", {**TOK, **fields(11, "meters[0][dimension_filters][k{i}][0]")},
     "meters[0][dimension_filters]", None),
    ("four tenant filters", {**TOK, **fields(4, "meters[0][tenant_filters][k{i}][0]")},
     "meters[0][tenant_filters]", None),
    ("unknown meter", {"meters[0][meter]": "mtr_nope"}, "meters[0][meter]", "resource_missing"),
    ("meter missing", {"meters[0][dimension_group_by_keys][0]": "model"}, "meters[0][meter]",
     "parameter_missing"),
    ("bad window", {"value_grouping_window": "year"}, "value_grouping_window", None),
    ("bad timezone", {"timezone": "Mars/Olympus_Mons"}, "timezone", None),
    ("unknown parameter", {"colour": "blue"}, "colour", "parameter_unknown"),
    ("unknown spec field", {**TOK, "meters[0][colour]": "blue"}, "meters[0][colour]",
     "parameter_unknown"),
    ("group by a non-dimension", {**TOK, "meters[0][dimension_group_by_keys][0]": "user_id"},
     "meters[0][dimension_group_by_keys][0]", None),
    ("filter on a non-dimension", {**TOK, "meters[0][dimension_filters][region][0]": "eu"},
     "meters[0][dimension_filters][region]", None),
    ("tenant filter on a dimension", {**TOK, "meters[0][tenant_filters][model][0]": "gpt-4"},
     "meters[0][tenant_filters][model]", None),
    ("duplicate hash and value", {"meters[0]": "x", "meters[0][meter]": "y"}, "meters[0][meter]",
     None),
]


@pytest.mark.parametrize(("params", "param", "code"), [c[1:] for c in INVALID],
                         ids=[c[0] for c in INVALID])
async def test_invalid_requests(
    client: httpx.AsyncClient, params: dict[str, str], param: str, code: str | None
) -> None:
    query = {**BASE, **params}
    response = await client.get(USAGE, params={k: v for k, v in query.items() if v != ""})
    error = stripe_error(response, 400)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert error.get("code") == code


async def test_bad_version_header(client: httpx.AsyncClient) -> None:
    response = await client.get(USAGE, params=BASE, headers={"Stripe-Version": "latest"})
    assert stripe_error(response, 400)["code"] == "api_version_invalid"


# ---------------------------------------------------------------------- event summaries


async def summaries(client: httpx.AsyncClient, meter: str = "mtr_sim_tokens",
                    **params: Any) -> httpx.Response:
    query = {"customer": "cus_sim_000001", **{k: str(v) for k, v in params.items()}}
    return await client.get(f"/v1/billing/meters/{meter}/event_summaries", params=query)


async def test_summaries_page_through_every_hour(sim: Simulator, client: httpx.AsyncClient) -> None:
    end = TEST_NOW - 3600
    start = end - DAY
    seen: list[dict[str, Any]] = []
    cursor: dict[str, str] = {}
    while True:
        page = (await summaries(client, start_time=start, end_time=end,
                                value_grouping_window="hour", limit=7, **cursor)).json()
        assert page["object"] == "list" and len(page["data"]) <= 7
        seen.extend(page["data"])
        if not page["has_more"]:
            break
        cursor = {"starting_after": page["data"][-1]["id"]}
    assert len(seen) == 24 and len({s["id"] for s in seen}) == 24
    assert [s["start_time"] for s in seen] == sorted((s["start_time"] for s in seen), reverse=True)
    expected = sim.generator.summaries("cus_sim_000001", "mtr_sim_tokens", start, end, "hour",
                                       sim.refreshed_at())
    assert sorted((s["start_time"], s["end_time"], s["aggregated_value"]) for s in seen) == [
        (a, b, float(v)) for a, b, v in expected
    ]
    item = seen[0]
    assert item["object"] == "billing.meter_event_summary" and item["id"].startswith("mtrusg_")
    assert item["meter"] == "mtr_sim_tokens" and item["livemode"] is False
    back = (await summaries(client, start_time=start, end_time=end, value_grouping_window="hour",
                            limit=3, ending_before=seen[5]["id"])).json()
    assert [s["id"] for s in back["data"]] == [s["id"] for s in seen[2:5]]
    assert back["has_more"] is True


async def test_daily_summaries_add_up_hours(client: httpx.AsyncClient) -> None:
    day_end = TEST_NOW // DAY * DAY
    day = (await summaries(client, start_time=day_end - DAY, end_time=day_end,
                           value_grouping_window="day")).json()["data"]
    hours = (await summaries(client, start_time=day_end - DAY, end_time=day_end,
                             value_grouping_window="hour", limit=100)).json()["data"]
    whole = (await summaries(client, start_time=day_end - DAY, end_time=day_end)).json()["data"]
    assert day[0]["aggregated_value"] == sum(h["aggregated_value"] for h in hours)
    assert whole[0]["aggregated_value"] == day[0]["aggregated_value"]


async def test_summaries_count_exact_timestamps(sim: Simulator, client: httpx.AsyncClient) -> None:
    start, end = TEST_NOW - DAY + 7 * 60, TEST_NOW - DAY + 3 * 3600 + 11 * 60
    [item] = (await summaries(client, "mtr_sim_api_calls", start_time=start,
                              end_time=end)).json()["data"]
    events = sim.generator.events("cus_sim_000001", "mtr_sim_api_calls", start, end)
    assert item["aggregated_value"] == sum(e.value for e in events)


SUMMARY_ERRORS: list[tuple[str, dict[str, Any], int, str | None]] = [
    ("hour not aligned", {"start_time": TEST_NOW - 1800, "end_time": TEST_NOW,
                          "value_grouping_window": "hour"}, 400, "start_time"),
    ("day not UTC aligned", {"start_time": TEST_NOW - DAY, "end_time": TEST_NOW,
                             "value_grouping_window": "day"}, 400, "start_time"),
    ("week window", {"start_time": TEST_NOW - DAY, "end_time": TEST_NOW,
                     "value_grouping_window": "week"}, 400, "value_grouping_window"),
    ("limit zero", {"start_time": TEST_NOW - DAY, "end_time": TEST_NOW, "limit": 0}, 400, "limit"),
    ("limit 101", {"start_time": TEST_NOW - DAY, "end_time": TEST_NOW, "limit": 101}, 400, "limit"),
    ("no start", {"end_time": TEST_NOW}, 400, "start_time"),
    ("unknown cursor", {"start_time": TEST_NOW - DAY, "end_time": TEST_NOW,
                        "starting_after": "mtrusg_nope"}, 400, "starting_after"),
    ("dimension filter", {"start_time": TEST_NOW - DAY, "end_time": TEST_NOW,
                          "dimension_filters[model]": "gpt-4"}, 400, "dimension_filters"),
]


@pytest.mark.parametrize(("params", "status", "param"), [c[1:] for c in SUMMARY_ERRORS],
                         ids=[c[0] for c in SUMMARY_ERRORS])
async def test_summary_errors(
    client: httpx.AsyncClient, params: dict[str, Any], status: int, param: str | None
) -> None:
    assert stripe_error(await summaries(client, **params), status).get("param") == param


async def test_summaries_of_unknown_meter(client: httpx.AsyncClient) -> None:
    response = await summaries(client, "mtr_nope", start_time=TEST_NOW - DAY, end_time=TEST_NOW)
    assert stripe_error(response, 404)["code"] == "resource_missing"


# ---------------------------------------------------------------------- meters and customers


async def test_meters_list_pages_and_retrieve(client: httpx.AsyncClient) -> None:
    first = (await client.get("/v1/billing/meters", params={"limit": 2})).json()
    assert [m["id"] for m in first["data"]] == ["mtr_sim_tokens", "mtr_sim_api_calls"]
    assert first["has_more"] is True and first["object"] == "list"
    rest = (await client.get("/v1/billing/meters", params={
        "limit": 2, "starting_after": "mtr_sim_api_calls"})).json()
    assert [m["id"] for m in rest["data"]] == ["mtr_sim_storage"] and rest["has_more"] is False
    tokens = first["data"][0]
    assert tokens["object"] == "billing.meter" and tokens["display_name"] == "AI tokens"
    assert tokens["status"] == "active" and tokens["default_aggregation"] == {"formula": "sum"}
    assert tokens["dimension_payload_keys"] == ["model", "tier"]
    one = await client.get("/v1/billing/meters/mtr_sim_storage")
    assert one.json()["display_name"] == "Storage (MB)"
    assert stripe_error(await client.get("/v1/billing/meters/mtr_x"), 404)["code"] == (
        "resource_missing"
    )


async def test_customers_list_pages_newest_first(client: httpx.AsyncClient) -> None:
    ids: list[str] = []
    params: dict[str, str] = {"limit": "3"}
    while True:
        page = (await client.get("/v1/customers", params=params)).json()
        ids += [c["id"] for c in page["data"]]
        if not page["has_more"]:
            break
        params["starting_after"] = ids[-1]
    assert ids == ["cus_sim_000004", "cus_sim_000003", "cus_sim_000002", "cus_sim_000001"]
    before = (await client.get("/v1/customers", params={"ending_before": "cus_sim_000001",
                                                         "limit": "2"})).json()
    assert [c["id"] for c in before["data"]] == ["cus_sim_000003", "cus_sim_000002"]
    bad = await client.get("/v1/customers", params={"limit": "500"})
    assert stripe_error(bad, 400)["param"] == "limit"


async def test_customer_retrieve_and_missing(sim: Simulator, client: httpx.AsyncClient) -> None:
    body = (await client.get("/v1/customers/cus_sim_000002")).json()
    profile = sim.generator.profile("cus_sim_000002")
    assert profile is not None
    assert body["object"] == "customer" and body["name"] == profile.name
    assert body["email"] == profile.email and body["metadata"] == dict(profile.metadata)
    assert set(body["metadata"]) == {"plan", "daily_token_quota", "monthly_token_budget",
                                     "daily_api_call_quota"}
    error = stripe_error(await client.get("/v1/customers/cus_missing"), 404)
    assert error["code"] == "resource_missing" and error["param"] == "id"


async def test_customer_email_filter(sim: Simulator, client: httpx.AsyncClient) -> None:
    profile = next(p for p in sim.generator.profiles() if p.email)
    found = (await client.get("/v1/customers", params={"email": profile.email or ""})).json()
    assert [c["id"] for c in found["data"]] == [profile.id]


async def test_search_by_metadata_email_and_name(sim: Simulator, client: httpx.AsyncClient) -> None:
    profiles = sim.generator.profiles()
    plan = profiles[0].plan
    result = (await client.get("/v1/customers/search",
                               params={"query": f"metadata['plan']:'{plan}'"})).json()
    assert result["object"] == "search_result" and result["url"] == "/v1/customers/search"
    assert {c["id"] for c in result["data"]} == {p.id for p in profiles if p.plan == plan}
    target = next(p for p in profiles if p.email)
    both = f"metadata['plan']:'{target.plan}' AND email:'{target.email}'"
    found = (await client.get("/v1/customers/search", params={"query": both})).json()["data"]
    assert [c["id"] for c in found] == [target.id]
    named = (await client.get("/v1/customers/search",
                              params={"query": f"name:'{target.name.upper()}'"})).json()["data"]
    assert target.id in {c["id"] for c in named}


async def test_search_pages(client: httpx.AsyncClient) -> None:
    query = "-metadata['plan']:'nothing'"
    ids: list[str] = []
    params = {"query": query, "limit": "3"}
    while True:
        page = (await client.get("/v1/customers/search", params=params)).json()
        ids += [c["id"] for c in page["data"]]
        if not page["has_more"]:
            assert page["next_page"] is None
            break
        params["page"] = page["next_page"]
    assert sorted(ids) == [f"cus_sim_00000{i}" for i in range(1, 5)]


@pytest.mark.parametrize("query", ["plan:'pro'", "metadata['plan']='pro'", "name:'a' AND",
                                   "name:'a' AND email:'b' OR id:'c'", "id~'cus'"])
async def test_search_refuses_bad_queries(client: httpx.AsyncClient, query: str) -> None:
    response = await client.get("/v1/customers/search", params={"query": query})
    assert stripe_error(response, 400)["param"] == "query"


# ---------------------------------------------------------------------- auth


async def test_authentication(sim: Simulator) -> None:
    async with httpx.AsyncClient(base_url=sim.url) as anonymous:
        missing = await anonymous.get("/v1/customers")
        assert "did not provide an API key" in stripe_error(missing, 401)["message"]
        wrong = await anonymous.get("/v1/customers", auth=("pk_test_nope", ""))
        assert "Invalid API Key" in stripe_error(wrong, 401)["message"]
        bearer = await anonymous.get("/v1/customers",
                                     headers={"Authorization": f"Bearer {API_KEY}"})
        assert bearer.status_code == 200
        live = await anonymous.get("/v1/customers/cus_sim_000001", auth=("sk_live_abcdef", ""))
        assert live.json()["livemode"] is True
        sim.configure(api_keys=frozenset({"sk_test_only_this"}))
        assert (await anonymous.get("/v1/customers", auth=(API_KEY, ""))).status_code == 401
        only = await anonymous.get("/v1/customers", auth=("sk_test_only_this", ""))
        assert only.status_code == 200


async def test_restricted_key_lacks_analytics(sim: Simulator) -> None:
    async with httpx.AsyncClient(base_url=sim.url, auth=("rk_test_no_analytics", "")) as client:
        error = stripe_error(await client.get(USAGE, params=BASE), 403)
        assert "permission" in error["message"]
        assert (await client.get("/v1/customers")).status_code == 200


async def test_account_outside_the_preview_gets_404(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    sim.configure(analytics_preview=False)
    stripe_error(await client.get(USAGE, params=BASE), 404)
    assert (await client.get("/v1/billing/meters")).status_code == 200


async def test_unknown_url_and_unique_request_ids(client: httpx.AsyncClient) -> None:
    stripe_error(await client.get("/v1/nothing/here"), 404)
    ids = {(await client.get("/v1/billing/meters")).headers["Request-Id"] for _ in range(20)}
    assert len(ids) == 20

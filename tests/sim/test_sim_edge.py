"""The simulator's edge: rate limits, statistics, latency, faults, clock, incidents, processes."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import httpx
import pytest

from alertd.sim.faults import Fault
from alertd.sim.generator import RowGroup, UsageGenerator
from alertd.sim.server import Simulator
from alertd.sim.testing import API_KEY, TEST_NOW, SimulatorProcess, running_simulator
from alertd.sim.validate import UsageQuery

USAGE = "/v1/billing/analytics/meter_usage"
DAY = 86_400
PARAMS = {"customer": "cus_sim_000001", "starts_at": str(TEST_NOW - DAY), "ends_at": str(TEST_NOW),
          "meters[0][meter]": "mtr_sim_tokens", "value_grouping_window": "hour"}


async def burst(client: httpx.AsyncClient, path: str, count: int,
                params: dict[str, str] | None = None) -> list[httpx.Response]:
    return list(await asyncio.gather(*(client.get(path, params=params) for _ in range(count))))


# ---------------------------------------------------------------------- rate limits and stats


async def test_rate_limits_are_separate_and_answer_like_stripe(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    sim.configure(analytics_rate=5, general_rate=3)
    analytics = await burst(client, USAGE, 8, PARAMS)
    general = await burst(client, "/v1/customers", 4)
    assert sorted(r.status_code for r in analytics) == [200] * 5 + [429] * 3
    assert sorted(r.status_code for r in general) == [200] * 3 + [429]
    limited = next(r for r in analytics if r.status_code == 429)
    error = limited.json()["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == "rate_limit"
    assert limited.headers["Stripe-Rate-Limited-Reason"] == "endpoint-rate"
    assert "Retry-After" not in limited.headers and limited.headers["Request-Id"]
    over = next(r for r in general if r.status_code == 429)
    assert over.headers["Stripe-Rate-Limited-Reason"] == "global-rate"
    stats = (await client.get("/__stats")).json()
    assert stats["requests"] == 12 and stats["rate_limited"] == 4
    assert stats["ok"] == 8 and stats["errors"] == 4
    assert stats["peak_per_second"] == {"analytics": 8, "general": 4}
    # The burst's over-limit arrivals fall in one whole second (two if it straddles one).
    assert all(stats["seconds_over_limit"][b] in (1, 2) for b in ("analytics", "general"))
    assert stats["by_endpoint"] == {"customers.list": 4, "meter_usage": 8}
    await asyncio.sleep(1.05)  # the sliding window empties
    assert (await client.get(USAGE, params=PARAMS)).status_code == 200


async def test_endpoint_rate_limits_one_endpoint(sim: Simulator, client: httpx.AsyncClient) -> None:
    sim.configure(general_rate=None, endpoint_rate=2)
    customers = await burst(client, "/v1/customers", 3)
    assert sorted(r.status_code for r in customers) == [200, 200, 429]
    assert next(r for r in customers if r.status_code == 429).headers[
        "Stripe-Rate-Limited-Reason"] == "endpoint-rate"
    assert (await client.get("/v1/billing/meters")).status_code == 200


async def test_stats_reset_and_peak_window(sim: Simulator, client: httpx.AsyncClient) -> None:
    await burst(client, "/v1/billing/meters", 3)
    sim.reset_stats()
    assert sim.stats()["requests"] == 0
    await client.get("/v1/billing/meters")
    reset = (await client.post("/__stats/reset")).json()
    assert reset["requests"] == 0 and reset["peak_per_second"] == {"analytics": 0, "general": 0}
    assert reset["seconds_over_limit"] == {"analytics": 0, "general": 0}


async def test_latency_is_added_to_every_response(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    sim.configure(latency=0.15)
    started = time.perf_counter()
    responses = await burst(client, "/v1/billing/meters", 3)
    elapsed = time.perf_counter() - started
    assert 0.15 <= elapsed < 1.0 and all(r.status_code == 200 for r in responses)
    assert sim.stats()["max_in_flight"] == 3


# ---------------------------------------------------------------------- faults


@pytest.mark.parametrize(("status", "kind", "code"), [
    (500, "api_error", None), (503, "api_error", None),
    (409, "invalid_request_error", "lock_timeout"),
    (429, "invalid_request_error", "rate_limit"),
])
async def test_status_faults_for_the_next_requests(
    sim: Simulator, client: httpx.AsyncClient, status: int, kind: str, code: str | None
) -> None:
    sim.add_fault(Fault("status", status=status, count=2, should_retry=True))
    first, second, third = [await client.get(USAGE, params=PARAMS) for _ in range(3)]
    for response in (first, second):
        assert response.status_code == status
        error = response.json()["error"]
        assert error["type"] == kind and error.get("code") == code
        assert response.headers["Stripe-Should-Retry"] == "true"
        assert response.headers["Request-Id"].startswith("req_")
    if status == 429:
        assert first.headers["Stripe-Rate-Limited-Reason"] == "global-rate"
    assert third.status_code == 200


async def test_probability_faults_are_seeded(sim: Simulator, client: httpx.AsyncClient) -> None:
    async def run() -> list[int]:
        sim.clear_faults()
        sim.add_fault(Fault("status", status=500, probability=0.5, seed=3))
        return [(await client.get("/v1/billing/meters")).status_code for _ in range(20)]

    first = await run()
    assert 3 <= first.count(500) <= 17 and first == await run()


async def test_faults_apply_only_to_their_path(sim: Simulator, client: httpx.AsyncClient) -> None:
    sim.add_fault(Fault("status", status=503, path="/v1/customers"))
    assert (await client.get(USAGE, params=PARAMS)).status_code == 200
    assert (await client.get("/v1/customers")).status_code == 503
    assert (await client.get("/v1/customers/cus_sim_000001")).status_code == 503
    sim.clear_faults()
    assert (await client.get("/v1/customers")).status_code == 200


async def test_slow_fault(sim: Simulator, client: httpx.AsyncClient) -> None:
    # The second request is not delayed: well under the fault's 2 s even on a loaded machine.
    sim.add_fault(Fault("slow", delay=2.0, count=1))
    started = time.perf_counter()
    assert (await client.get("/v1/billing/meters")).status_code == 200
    assert time.perf_counter() - started >= 2.0
    started = time.perf_counter()
    await client.get("/v1/billing/meters")
    assert time.perf_counter() - started < 2.0


async def test_malformed_bodies(sim: Simulator, client: httpx.AsyncClient) -> None:
    async def broken(body: str) -> httpx.Response:
        sim.add_fault(Fault("malformed", body=body, count=1))  # type: ignore[arg-type]
        return await client.get(USAGE, params=PARAMS)

    html = await broken("html")
    assert html.status_code == 200 and html.headers["Content-Type"].startswith("text/html")
    assert html.text.startswith("<!DOCTYPE html>")
    truncated = await broken("truncated")
    with pytest.raises(json.JSONDecodeError):
        json.loads(truncated.text)
    rows = (await broken("wrong_types")).json()["rows"]
    assert isinstance(rows["has_more"], str)
    assert all(isinstance(r["value"], str) for r in rows["data"])
    stripped = (await broken("missing_fields")).json()
    assert "refreshed_at" not in stripped and "has_more" not in stripped["rows"]
    assert all("value" not in r and "id" not in r for r in stripped["rows"]["data"])
    assert (await client.get(USAGE, params=PARAMS)).json()["rows"]["data"][0]["value"] > 0


async def test_flapping_alternates(sim: Simulator, client: httpx.AsyncClient) -> None:
    sim.add_fault(Fault("flap", count=6))
    codes = [(await client.get("/v1/billing/meters")).status_code for _ in range(8)]
    assert codes == [503, 200, 503, 200, 503, 200, 200, 200]


async def test_faults_over_http(client: httpx.AsyncClient) -> None:
    added = await client.post("/__faults", json=[
        {"kind": "status", "status": 500, "count": 1},
        {"kind": "slow", "delay": 0.01, "path": "/v1/customers"},
    ])
    assert [f["kind"] for f in added.json()["faults"]] == ["status", "slow"]
    assert (await client.get("/v1/billing/meters")).status_code == 500
    assert len((await client.get("/__faults")).json()["faults"]) == 1
    await client.delete("/__faults")
    assert (await client.get("/__faults")).json() == {"faults": []}
    bad = await client.post("/__faults", json={"kind": "explode"})
    assert bad.status_code == 400 and "kind" in bad.json()["error"]["message"]


# ---------------------------------------------------------------------- clock and incidents


async def test_clock_moves_and_reveals_new_usage(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    clock = (await client.get("/__now")).json()
    assert clock == {"now": TEST_NOW, "frozen": True, "refreshed_at": TEST_NOW - 60,
                     "history_start": sim.generator.history_start}
    later = {**PARAMS, "ends_at": str(TEST_NOW + 6 * 3600)}
    before = (await client.get(USAGE, params=later)).json()["rows"]["data"]
    moved = (await client.post("/__now", json={"advance": 6 * 3600})).json()
    assert moved["refreshed_at"] == TEST_NOW + 6 * 3600 - 60
    after = (await client.get(USAGE, params=later)).json()
    assert after["refreshed_at"] == moved["refreshed_at"]
    # Six more hours; the last holds only its three slots that ended by refreshed_at.
    assert len(after["rows"]["data"]) == len(before) + 6
    sim.set_now(TEST_NOW)
    assert sim.refreshed_at() == TEST_NOW - 60
    await client.post("/__now", json={"now": "2025-03-11T00:00:00Z"})
    assert sim.now() == TEST_NOW + 12 * 3600
    assert (await client.post("/__now", json={"later": 1})).status_code == 400


async def test_late_events_make_a_closed_range_grow() -> None:
    async with running_simulator(customers=3, seed=5, days=40, incident_rate=4.0,
                                 incident_weights={"late": 1.0}) as sim:
        late = sim.generator.incidents()[0]
        assert late.kind == "late"
        params = {"customer": late.customer, "starts_at": str(late.starts_at),
                  "ends_at": str(late.ends_at), "meters[0][meter]": late.meter}
        async with httpx.AsyncClient(base_url=sim.url, auth=(API_KEY, "")) as client:
            sim.set_now(late.ends_at + 60)
            early = (await client.get(USAGE, params=params)).json()["rows"]["data"][0]["value"]
            sim.set_now(late.ends_at + late.delay + 60)
            final = (await client.get(USAGE, params=params)).json()["rows"]["data"][0]["value"]
    assert early < final <= early / (1 - late.factor) + 200


async def test_incidents_endpoint(client: httpx.AsyncClient) -> None:
    everything = (await client.get("/__incidents")).json()["data"]
    assert everything and {"kind", "customer", "meter", "starts_at", "ends_at", "factor",
                           "dimensions", "delay"} <= set(everything[0])
    assert all(i["starts_at"] < TEST_NOW for i in everything)
    first = everything[0]
    mine = (await client.get("/__incidents", params={
        "customer": first["customer"], "kind": first["kind"]})).json()["data"]
    assert first in mine
    assert all(i["customer"] == first["customer"] and i["kind"] == first["kind"] for i in mine)
    recent = (await client.get("/__incidents", params={"since": "10d"})).json()["data"]
    assert all(i["ends_at"] > TEST_NOW - 10 * DAY for i in recent)
    assert (await client.get("/__incidents", params={"kind": "fire"})).status_code == 400


async def test_stop_incident_is_visible_over_http() -> None:
    async with running_simulator(customers=3, seed=8, days=40, incident_rate=4.0,
                                 incident_weights={"stop": 1.0}) as sim:
        stop = sim.generator.incidents()[0]
        async with httpx.AsyncClient(base_url=sim.url, auth=(API_KEY, "")) as client:
            def window(start: int, end: int) -> dict[str, Any]:
                return {"customer": stop.customer, "starts_at": str(start), "ends_at": str(end),
                        "meters[0][meter]": stop.meter}
            during = await client.get(USAGE, params=window(stop.starts_at, stop.ends_at))
            before = await client.get(USAGE, params=window(stop.starts_at - 3600, stop.starts_at))
    assert during.json()["rows"]["data"] == []
    assert before.json()["rows"]["data"][0]["value"] > 0


# ---------------------------------------------------------------------- another process


async def test_simulator_process() -> None:
    async with SimulatorProcess(customers=3, days=5, now=TEST_NOW, rate=50) as process:
        async with httpx.AsyncClient(base_url=process.url, auth=(API_KEY, "")) as client:
            listed = await client.get("/v1/customers")
            assert [c["id"] for c in listed.json()["data"]][-1] == "cus_sim_000001"
            assert (await client.get("/__now")).json()["now"] == TEST_NOW
        assert process.stats()["requests"] == 1
        pid = process.pid
    assert process.pid is None and pid is not None


# ---------------------------------------------------------------------- answers off the loop


class SlowGenerator(UsageGenerator):
    """A generator whose usage answers take until ``release`` is set (at most 10 s)."""

    def __init__(self) -> None:
        super().__init__(customers=2, seed=7, days=3, now=TEST_NOW)
        self.building, self.release = threading.Event(), threading.Event()

    def usage(self, query: UsageQuery, as_of: int) -> list[RowGroup]:
        self.building.set()
        self.release.wait(10)
        return super().usage(query, as_of)


async def test_a_request_is_answered_and_counted_while_an_answer_is_built() -> None:
    generator = SlowGenerator()
    async with Simulator(generator, now=TEST_NOW) as sim, httpx.AsyncClient(
            base_url=sim.url, auth=(API_KEY, ""), timeout=5) as client:
        slow = asyncio.create_task(client.get(USAGE, params=PARAMS))
        assert await asyncio.to_thread(generator.building.wait, 5)
        # On the loop, the build would hold this request (and its arrival stamp) until done.
        customers = await client.get("/v1/customers")
        stats = (await client.get("/__stats")).json()
        assert not slow.done() and customers.status_code == 200
        assert stats["by_endpoint"] == {"customers.list": 1, "meter_usage": 1}
        generator.release.set()
        answered = await slow
        assert answered.status_code == 200
        assert answered.json()["object"] == "billing.analytics.meter_usage"

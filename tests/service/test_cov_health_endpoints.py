"""``/healthz`` and ``/readyz`` over real HTTP for each role the daemon can be in.

A standby replica is ready and names its leader; with several accounts the body says which it
leads; a failing store is the first reason given, before an unfinished or stale poll; a main
loop that stopped beating is a 503. The daemon writes :class:`Health`; here it is set by hand
(the facts, not the daemon) and read back through the server. These branches of
``service/http.py`` were unreached (coverage, December 2026).
"""

from __future__ import annotations

import httpx
import pytest

from alertd.clock import FakeClock
from alertd.service.http import Health, serve
from alertd.service.metrics import Metrics


@pytest.mark.parametrize(("health", "status", "body"), [
    (Health(role="standby", leader="replica-b"), 200, "ready: standby (leader replica-b)\n"),
    (Health(role="standby"), 200, "ready: standby\n"),
    (Health(role="leader", first_poll_done=True, leads="leads eu; standby for us"), 200,
     "ready: leader (leads eu; standby for us)\n"),
    (Health(first_poll_done=True), 200, "ready\n"),
    (Health(stale_reason="Stripe answered 401"), 503,
     "not ready: first poll not finished (Stripe answered 401)\n"),
    (Health(first_poll_done=True, stale_reason="data 2h old"), 503, "not ready: data 2h old\n"),
    (Health(role="standby", store_problem="the state store is damaged"), 503,
     "not ready: the state store is damaged\n"),
    (Health(first_poll_done=True, stale_reason="x", store_problem="store locked"), 503,
     "not ready: store locked\n"),
], ids=["standby names its leader", "standby, leader unknown", "several accounts",
        "single", "first poll failing", "stale", "standby with a failing store",
        "store first"])
async def test_readyz_says_the_role_or_the_first_reason(
    health: Health, status: int, body: str
) -> None:
    async with serve("127.0.0.1:0", Metrics(), health, FakeClock()) as url, \
            httpx.AsyncClient(base_url=url) as client:
        answer = await client.get("/readyz")
    assert (answer.status_code, answer.text) == (status, body)


async def test_healthz_wants_a_recent_beat() -> None:
    clock = FakeClock()
    health = Health(beat_tolerance=60.0)
    async with serve("127.0.0.1:0", Metrics(), health, clock) as url, \
            httpx.AsyncClient(base_url=url) as client:
        never = await client.get("/healthz")
        health.last_beat = clock.now()
        clock.advance(60)
        beating = await client.get("/healthz")
        clock.advance(1)
        stopped = await client.get("/healthz")
    assert (never.status_code, never.text) == (503, "main loop not beating\n")
    assert (beating.status_code, beating.text) == (200, "ok\n")
    assert stopped.status_code == 503

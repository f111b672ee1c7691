"""/metrics, /healthz and /readyz over real loopback HTTP."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from alertd.clock import FakeClock
from alertd.service.http import Health, serve
from alertd.service.metrics import Metrics

CONTRACT_NAMES = {
    "alertd_stripe_requests",
    "alertd_stripe_request_duration_seconds",
    "alertd_stripe_rate_limited",
    "alertd_stripe_refreshed_timestamp_seconds",
    "alertd_rule_evaluations",
    "alertd_rule_last_evaluation_timestamp_seconds",
    "alertd_alerts",
    "alertd_notifications",
    "alertd_outbox_pending",
    "alertd_build_info",
}


async def test_metrics_parse_with_prometheus_parser() -> None:
    metrics = Metrics()
    metrics.on_response("meter_usage", "200", 0.05)
    metrics.on_rate_limited("analytics")
    metrics.rule_evaluations.labels(rule="gpt4-daily", outcome="inactive").inc()
    metrics.notifications.labels(receiver="ops", outcome="delivered").inc()
    clock = FakeClock()
    async with (
        serve("127.0.0.1:0", metrics, Health(), clock) as url,
        httpx.AsyncClient() as client,
    ):
        response = await client.get(f"{url}/metrics")
    assert response.status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    assert set(families) >= CONTRACT_NAMES
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in families.values() for s in f.samples}
    key = ("alertd_stripe_requests_total", (("code", "200"), ("endpoint", "meter_usage")))
    assert samples[key] == 1.0
    assert samples[("alertd_stripe_rate_limited_total", (("budget", "analytics"),))] == 1.0


async def test_health_and_readiness_follow_the_loop() -> None:
    clock = FakeClock()
    health = Health(beat_tolerance=60)
    async with serve("127.0.0.1:0", Metrics(), health, clock) as url, httpx.AsyncClient(
        base_url=url
    ) as client:
        assert (await client.get("/healthz")).status_code == 503
        assert (await client.get("/readyz")).status_code == 503
        health.last_beat = clock.now()
        health.first_poll_done = True
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/readyz")).status_code == 200
        health.stale_reason = "data is 3h old"
        ready = await client.get("/readyz")
        assert ready.status_code == 503 and "3h old" in ready.text
        clock.advance(61)
        assert (await client.get("/healthz")).status_code == 503


async def test_readyz_before_the_first_poll_names_why_polls_fail() -> None:
    # Polls that fail from the start must not hide their reason behind "first poll not
    # finished".
    health = Health(last_beat=0.0, stale_reason="Stripe keeps failing (3 polls in a row)")
    async with (
        serve("127.0.0.1:0", Metrics(), health, FakeClock()) as url,
        httpx.AsyncClient() as client,
    ):
        response = await client.get(f"{url}/readyz")
    assert response.status_code == 503
    assert response.text == ("not ready: first poll not finished "
                             "(Stripe keeps failing (3 polls in a row))\n")

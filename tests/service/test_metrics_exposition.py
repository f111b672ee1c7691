"""/metrics as a scraper sees it on a fresh process: known label values already at 0, no
``*_created`` series, and (where ``promtool`` is installed) ``promtool check metrics`` clean."""

from __future__ import annotations

import shutil
import subprocess

import httpx
import pytest

from alertd.clock import FakeClock
from alertd.service.http import Health, serve
from alertd.service.metrics import BUDGETS, STORE_ERROR_KINDS, Metrics


async def scrape(metrics: Metrics) -> str:
    async with (serve("127.0.0.1:0", metrics, Health(), FakeClock()) as url,
                httpx.AsyncClient() as client):
        response = await client.get(f"{url}/metrics")
    assert response.status_code == 200
    return response.text


async def test_known_label_values_start_at_zero() -> None:
    text = await scrape(Metrics())
    # Before any 429 a rate() over it already has a series, so an alert on it can fire on
    # the first increase rather than on the second.
    for budget in BUDGETS:
        assert f'alertd_stripe_rate_limited_total{{budget="{budget}"}} 0.0' in text
    for kind in STORE_ERROR_KINDS:
        assert f'alertd_store_errors_total{{kind="{kind}"}} 0.0' in text


async def test_no_created_series() -> None:
    metrics = Metrics()
    metrics.on_response("meter_usage", "200", 0.05)
    metrics.notifications.labels(receiver="ops", outcome="delivered").inc()
    text = await scrape(metrics)
    assert "_created" not in text
    assert 'alertd_stripe_requests_total{code="200",endpoint="meter_usage"} 1.0' in text


@pytest.mark.needs_program("promtool")
async def test_promtool_check_metrics_is_clean() -> None:
    metrics = Metrics()
    metrics.on_response("meter_usage", "429", 0.2)
    metrics.on_rate_limited("analytics")
    metrics.rule_evaluations.labels(rule="gpt4-daily", outcome="firing").inc()
    text = await scrape(metrics)
    result = subprocess.run([shutil.which("promtool") or "promtool", "check", "metrics"],
                            input=text, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == "", result

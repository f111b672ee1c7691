"""alertd's ``alertmanager`` preset against a real Alertmanager 0.25, read back from its API.

Alertmanager is the oracle: it computes each alert's ``fingerprint`` itself and refuses label
sets it does not accept, so these tests cannot agree with alertd by construction.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import pytest

from alertd.config.settings import Receiver
from alertd.notify import labelset
from alertd.notify.presets.alertmanager import labels as am_labels
from alertd.notify.templates import Templates
from alertd.notify.webhook import WebhookNotifier
from tests.notify.conftest import make_alert, make_notification
from tests.receivers.alertmanager_process import PROGRAM, Alertmanager, running

pytestmark = pytest.mark.needs_program(PROGRAM)


@pytest.fixture
def alertmanager(tmp_path: Path) -> Any:
    with running(tmp_path) as manager:
        yield manager


def receiver(manager: Alertmanager) -> Receiver:
    return Receiver.model_validate({"name": "am", "webhook": {
        "url": f"{manager.url}/api/v2/alerts", "preset": "alertmanager"}})


def live_alert(**overrides: Any) -> Any:
    now = int(time.time())
    return make_alert(starts_at=now - 600, refreshed_at=now - 60, **overrides)


async def send(manager: Alertmanager, *alerts: Any, external_url: str = "") -> None:
    notification = make_notification(*alerts, created_at=int(time.time()))
    templates = Templates(external_url=external_url)
    async with WebhookNotifier(receiver(manager), templates) as notifier:
        await notifier.send(notification)


def by_rule(manager: Alertmanager) -> dict[str, dict[str, Any]]:
    return {a["labels"]["alertname"]: a for a in manager.alerts()}


async def test_labels_alertmanager_would_refuse_are_mapped_and_accepted(
        alertmanager: Alertmanager) -> None:
    labels = {**live_alert().labels, "team-name": "ml", "cost.center": "42", "9lives": "x"}
    alert = live_alert(labels=labels)
    # The names as written are refused by Alertmanager itself ...
    raw = [{"labels": {"alertname": "raw", **labels}}]
    refused = alertmanager.post(raw)
    assert refused.status_code == 400, refused.text
    assert "invalid label set" in refused.text
    # ... and alertd's preset maps them, so the alert arrives.
    await send(alertmanager, alert)
    stored = by_rule(alertmanager)["gpt4-daily-usage"]
    assert stored["labels"]["team_name"] == "ml"
    assert stored["labels"]["cost_center"] == "42"
    assert stored["labels"]["_9lives"] == "x"
    assert "team-name" not in stored["labels"]
    assert stored["status"]["state"] == "active"


@pytest.mark.parametrize("extra", [
    {},
    {"model": "gpt-4o-mini", "region": "eu-west-1"},
    {"customer_name": "Café Zürich ☕ — 東京"},
    {"note": 'quote " backslash \\ newline \n tab \t'},
    {"a": "", "b": "x"},
])
async def test_fingerprint_is_the_one_alertmanager_computes(
        alertmanager: Alertmanager, extra: dict[str, str]) -> None:
    alert = live_alert(labels={**live_alert().labels, **extra})
    await send(alertmanager, alert)
    stored = by_rule(alertmanager)["gpt4-daily-usage"]
    assert stored["fingerprint"] == labelset.fingerprint(stored["labels"])
    assert stored["fingerprint"] == labelset.fingerprint(am_labels(alert))


async def test_a_resolve_ends_the_alert_in_alertmanager(alertmanager: Alertmanager) -> None:
    alert = live_alert()
    await send(alertmanager, alert)
    assert by_rule(alertmanager)["gpt4-daily-usage"]["status"]["state"] == "active"
    gone = dataclasses.replace(alert, status="resolved", ends_at=int(time.time()) - 1)
    await send(alertmanager, gone)
    # Alertmanager lists active alerts only; a resolved one is no longer among them.
    assert "gpt4-daily-usage" not in by_rule(alertmanager)


async def test_firing_alert_stays_active_past_repeat_interval(
        alertmanager: Alertmanager) -> None:
    # endsAt of a firing alert is one day after the send: longer than any repeat_interval
    # validate accepts for this preset, so a still-firing alert never lapses in between.
    await send(alertmanager, live_alert())
    stored = by_rule(alertmanager)["gpt4-daily-usage"]
    ends = time.mktime(time.strptime(stored["endsAt"][:19], "%Y-%m-%dT%H:%M:%S"))
    assert ends - time.time() + time.timezone > 23 * 3600


async def test_generator_url_is_the_external_url(alertmanager: Alertmanager) -> None:
    await send(alertmanager, live_alert(), external_url="https://alertd.example.com")
    stored = by_rule(alertmanager)["gpt4-daily-usage"]
    assert stored["generatorURL"].startswith("https://alertd.example.com")


async def test_group_key_is_the_one_alertmanager_builds(alertmanager: Alertmanager) -> None:
    from alertd.config.settings import RootRoute
    from alertd.notify.routing import RouteTree

    critical = live_alert(labels={**live_alert().labels, "severity": "critical"})
    await send(alertmanager, critical)
    tree = RouteTree(RootRoute.model_validate({
        "receiver": "blackhole", "group_by": ["alertname"],
        "routes": [{"match": {"severity": "critical"}, "receiver": "blackhole"}]}))
    (destination,) = tree.destinations(am_labels(critical))
    (group,) = alertmanager.groups()
    # Alertmanager does not print the group key in its API, but it is made of exactly these
    # two parts: the route's matchers and the group's labels.
    assert group["labels"] == {"alertname": "gpt4-daily-usage"}
    assert destination.route_key == '{}/{severity="critical"}'
    assert destination.group_key(am_labels(critical)) == (
        '{}/{severity="critical"}:{alertname="gpt4-daily-usage"}')

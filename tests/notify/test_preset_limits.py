"""Each preset's bodies stay inside its service's published limits, with long and non-ASCII
names and many alerts; alertd's own alerts read as such in every channel; ``external_url``
gives every channel its link.

Limits, from each service's documentation: Slack (50 blocks, section text 3,000, header 150,
message text 40,000), PagerDuty Events v2 (``summary`` 1,024, ``source`` required), Discord
(10 embeds; title 256, description 4,096, field value 1,024, footer 2,048, content 2,000, and
6,000 characters over every embed), Teams Workflows (about 28 KB a request, 413 beyond).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from alertd.model import Customer
from alertd.notify.presets import PresetContext, preset
from tests.notify.conftest import make_alert, make_notification

LONG = "Ünïcødé Кириллица 東京 😀 " * 400  # ~10,000 characters, multi-byte
CONTEXT = PresetContext(title="FIRING: " + LONG, external_url="https://alertd.example.com",
                        routing_key="R" * 32)


def crowd(count: int) -> Any:
    alerts = [make_alert(customer=Customer(f"cus_{i}", LONG, None, {}), fingerprint=f"fp{i}",
                         annotations={"summary": LONG}, message=LONG) for i in range(count)]
    return make_notification(*alerts)


def meta(status: str = "firing") -> Any:
    alert = make_alert(customer=Customer("", "", None, {}), rule="alertd-stale-data",
                       fingerprint="fp-meta", value=None, threshold=None, meter=None,
                       meter_name=None, dimensions=(), labels={"alertname": "alertd-stale-data"},
                       annotations={}, status=status,
                       message="usage data is 3h 1m old (stale_after 2h)")
    return make_notification(alert)


def body(name: str, notification: Any) -> Any:
    payload = preset(name)(notification, CONTEXT)[0]
    return payload.body


def strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return [value] if isinstance(value, str) else []


@pytest.mark.parametrize("count", [1, 3, 40])
def test_slack_limits(count: int) -> None:
    message = body("slack", crowd(count))
    blocks = message["attachments"][0]["blocks"]
    assert len(blocks) <= 50
    assert len(blocks[0]["text"]["text"]) <= 150
    assert all(len(b["text"]["text"]) <= 3000 for b in blocks if b["type"] == "section")
    assert len(message["text"]) <= 40_000


@pytest.mark.parametrize("count", [1, 3, 40])
def test_pagerduty_limits(count: int) -> None:
    events = [p.body for p in preset("pagerduty")(crowd(count), CONTEXT)]
    assert len(events) == count
    for event in events:
        assert 0 < len(event["payload"]["source"]) <= 255
        assert len(event["payload"]["summary"]) <= 1024
        assert len(json.dumps(event).encode()) <= 512 * 1024


@pytest.mark.parametrize("count", [1, 3, 10, 40])
def test_discord_limits(count: int) -> None:
    message = body("discord", crowd(count))
    embeds = message["embeds"]
    assert 1 <= len(embeds) <= 10
    assert len(message["content"]) <= 2000
    total = 0
    for embed in embeds:
        assert len(embed["title"]) <= 256 and len(embed.get("description", "")) <= 4096
        assert len(embed["footer"]["text"]) <= 2048
        assert all(len(f["name"]) <= 256 and len(f["value"]) <= 1024 for f in embed["fields"])
        total += len(embed["title"]) + len(embed.get("description", "")) + len(
            embed["footer"]["text"]) + sum(len(f["name"]) + len(f["value"])
                                           for f in embed["fields"])
    assert total <= 6000
    if len(embeds) < count:  # what did not fit is counted, not dropped silently
        assert f"{count - len(embeds)} more" in message["content"]


@pytest.mark.parametrize("count", [1, 3, 20, 40])
def test_teams_limits(count: int) -> None:
    message = body("teams", crowd(count))
    assert len(json.dumps(message, ensure_ascii=False).encode()) <= 28_000
    card = message["attachments"][0]["content"]
    shown = sum(1 for item in card["body"] if item["type"] == "Container")
    assert shown >= 1
    if shown < count:
        assert card["body"][-1]["text"] == f"…and {count - shown} more"


@pytest.mark.parametrize("name", ["slack", "teams", "discord", "pagerduty"])
def test_alertds_own_alerts_have_their_own_wording(name: str) -> None:
    texts = strings(body(name, meta()))
    joined = "\n".join(texts)
    assert "all customers (alertd's own alert)" in joined or name == "pagerduty"
    assert "usage data is 3h 1m old" in joined or name == "pagerduty"
    assert "n/a vs" not in joined and "None" not in joined
    if name == "pagerduty":
        event = body(name, meta())
        assert event["payload"]["source"] == "alertd"
        assert event["payload"]["custom_details"].get("customer", "x") != ""


@pytest.mark.parametrize("name", ["slack", "teams", "discord", "pagerduty",
                                  "alertmanager_webhook", "alertmanager"])
def test_every_channel_links_to_the_external_url(name: str) -> None:
    joined = "\n".join(strings(body(name, crowd(1))))
    assert "https://alertd.example.com" in joined

"""Webhook presets as pure functions: the body each service expects, limits and escaping."""

from __future__ import annotations

import dataclasses

import pytest

from alertd.model import Customer, Notification
from alertd.notify.presets import PRESETS, PresetContext, preset
from alertd.notify.presets.alertmanager import FIRING_VALIDITY
from alertd.notify.presets.pagerduty import severity
from alertd.notify.webhook import dumps

CONTEXT = PresetContext(title="FIRING: Acme used a lot", external_url="https://alertd.example",
                        routing_key="R0UT1NG")


def test_every_configurable_preset_exists() -> None:
    from typing import get_args

    from alertd.config.settings import WebhookPreset

    assert set(PRESETS) == set(get_args(WebhookPreset))
    with pytest.raises(ValueError, match="unknown webhook preset"):
        preset("carrier-pigeon")


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_serialises_deterministically(build, name) -> None:
    notification = build.notification(build.alert(), build.resolved(build.alert()))
    first = [dumps(p.body) for p in PRESETS[name](notification, CONTEXT)]
    again = [dumps(p.body) for p in PRESETS[name](notification, CONTEXT)]
    assert first == again and first


def test_alertmanager_webhook_common_labels_and_end_times(build) -> None:
    firing = build.alert()
    gone = build.resolved(build.alert(customer=build.globex,
                                      labels={**firing.labels, "customer": "cus_globex"}))
    [payload] = preset("alertmanager_webhook")(build.notification(firing, gone), CONTEXT)
    body = payload.body
    assert payload.idempotency_key == "n-0001"
    assert "customer" not in body["commonLabels"]  # differs between the alerts
    assert body["commonLabels"]["team"] == "ml"
    assert [a["endsAt"] for a in body["alerts"]] == ["0001-01-01T00:00:00Z",
                                                    "2025-01-03T16:10:00Z"]
    # generatorURL links to the alert's page on the status page (by alertd's fingerprint).
    assert body["alerts"][0]["generatorURL"] == (
        f"https://alertd.example/alerts/{firing.fingerprint}")


def test_alertmanager_labels_always_carry_alertname(build) -> None:
    alert = build.alert(labels={"team": "ml"})
    [payload] = preset("alertmanager")(build.notification(alert), CONTEXT)
    assert payload.body[0]["labels"] == {"alertname": "gpt4-daily-usage", "team": "ml"}


def test_alertmanager_api_v2_end_times(build) -> None:
    notification = build.notification(build.alert(), build.resolved(build.alert()))
    [payload] = preset("alertmanager")(notification, CONTEXT)
    firing, gone = payload.body
    assert set(firing) == {"labels", "annotations", "startsAt", "endsAt", "generatorURL"}
    assert firing["endsAt"] == "2025-01-04T16:00:00Z"  # created_at + FIRING_VALIDITY
    assert FIRING_VALIDITY == 86400
    assert gone["endsAt"] == "2025-01-03T16:10:00Z"  # the moment it resolved


def test_generic_is_the_notification_itself(build) -> None:
    notification = build.notification(build.alert(), build.resolved(build.alert()))
    [payload] = preset("generic")(notification, CONTEXT)
    assert Notification.from_dict(payload.body) == notification


@pytest.mark.parametrize("name, expected", [
    ("critical", "critical"), ("page", "critical"), ("error", "error"), ("warning", "warning"),
    ("WARN", "warning"), ("info", "info"), ("something-else", "warning"),
])
def test_pagerduty_severity(name, expected) -> None:
    assert severity(name) == expected


def test_pagerduty_trigger_event(build) -> None:
    [payload] = preset("pagerduty")(build.notification(), CONTEXT)
    event = payload.body
    assert payload.idempotency_key is None
    assert event["routing_key"] == "R0UT1NG"
    assert event["dedup_key"] == "fp-cus_acme"
    assert event["payload"]["summary"] == "Acme Analytics Inc. used 5,900,000 tokens"
    assert event["payload"]["source"] == "Acme Analytics Inc. (cus_acme)"
    assert event["payload"]["custom_details"]["threshold"] == 5_000_000
    assert event["client_url"] == "https://alertd.example"


def test_pagerduty_summary_is_cut_to_1024(build) -> None:
    alert = build.alert(annotations={"summary": "x" * 2000})
    [payload] = preset("pagerduty")(build.notification(alert), CONTEXT)
    assert len(payload.body["payload"]["summary"]) == 1024


def test_slack_escapes_text_from_stripe(build) -> None:
    rogue = Customer("cus_rogue", "<!channel> & friends", None)
    alert = build.alert(customer=rogue, annotations={"summary": "<@U123> look"})
    [payload] = preset("slack")(build.notification(alert), CONTEXT)
    text = dumps(payload.body).decode()
    assert "<!channel>" not in text and "&lt;!channel&gt; &amp; friends" in text
    assert "<@U123>" not in text
    attachment = payload.body["attachments"][0]
    assert attachment["color"] == "#c5221f"
    assert attachment["blocks"][0]["type"] == "header"


def test_slack_counts_alerts_beyond_its_limit(build) -> None:
    alerts = [build.alert(fingerprint=f"fp{i}") for i in range(25)]
    [payload] = preset("slack")(build.notification(*alerts), CONTEXT)
    blocks = payload.body["attachments"][0]["blocks"]
    assert len(blocks) == 22  # header, 20 alerts, footer
    assert "…and 5 more alerts" in blocks[-1]["elements"][0]["text"]


def test_discord_embeds_limits_and_no_mentions(build) -> None:
    alerts = [build.alert(fingerprint=f"fp{i}") for i in range(12)]
    [payload] = preset("discord")(build.notification(*alerts), CONTEXT)
    body = payload.body
    assert body["allowed_mentions"] == {"parse": []}
    assert len(body["embeds"]) == 10
    assert body["content"].endswith("(showing 10, 2 more)")
    assert body["embeds"][0]["color"] == 0xC5221F
    assert all(len(e["title"]) <= 256 for e in body["embeds"])


def test_teams_adaptive_card(build) -> None:
    gone = build.resolved(build.alert())
    [payload] = preset("teams")(build.notification(build.alert(), gone), CONTEXT)
    [attachment] = payload.body["attachments"]
    card = attachment["content"]
    assert payload.body["type"] == "message"
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    colours = [c["items"][0]["color"] for c in card["body"][1:]]
    assert colours == ["Attention", "Good"]
    assert card["actions"][0]["url"] == "https://alertd.example"


def test_no_alert_fields_are_lost_in_the_default_body(build) -> None:
    alert = dataclasses.replace(build.alert(), baseline=10.0, projected=20.0)
    [payload] = preset("alertmanager_webhook")(build.notification(alert), CONTEXT)
    extra = payload.body["alertd"]["alerts"][0]
    assert (extra["baseline"], extra["projected"], extra["value"]) == (10.0, 20.0, 5_900_000.0)

"""Microsoft Teams: a Workflows (Power Automate) webhook message carrying an Adaptive Card.

The retired Office 365 connectors took MessageCards; their replacement, the "Post to a channel
when a webhook request is received" workflow, takes this ``{"type": "message", "attachments":
[adaptive card]}`` shape. One container with a fact set per alert, up to :data:`MAX_ALERTS`
and as many as fit in :data:`MAX_BYTES` of JSON (Teams refuses bodies over about 28 KB with
413): the rest are counted in a last line. Texts are cut to :data:`MAX_TEXT` characters. With
``server.external_url`` the card has an "Open alertd" button.
"""

from __future__ import annotations

import json
from typing import Any

from alertd.model import Alert, Notification
from alertd.notify.presets.base import (
    Payload,
    PresetContext,
    comparison,
    customer_label,
    series_label,
    summary,
    truncate,
)

MAX_ALERTS = 20
#: Teams' limit is about 28 KB for the whole request; this leaves room for the envelope.
MAX_BYTES = 26_000
MAX_TEXT = 2000
_COLOURS = {"critical": "Attention", "error": "Attention", "warning": "Warning"}


def _container(alert: Alert) -> dict[str, Any]:
    colour = "Good" if alert.status == "resolved" else _COLOURS.get(alert.severity, "Accent")
    return {
        "type": "Container", "separator": True, "spacing": "Medium",
        "items": [
            {"type": "TextBlock", "text": truncate(summary(alert), MAX_TEXT), "wrap": True,
             "weight": "Bolder", "color": colour},
            {"type": "FactSet", "facts": [
                {"title": title, "value": truncate(value, MAX_TEXT)} for title, value in (
                    ("Customer", customer_label(alert)), ("Rule", alert.rule),
                    ("Series", series_label(alert)), ("Value", comparison(alert)),
                    ("Status", f"{alert.status} · {alert.severity}"))
            ]},
        ],
    }


def _size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False).encode())


def message(notification: Notification, context: PresetContext) -> list[Payload]:
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": truncate(context.title, MAX_TEXT), "wrap": True,
         "size": "Large", "weight": "Bolder"},
    ]
    used = _size(body)
    for alert in notification.alerts[:MAX_ALERTS]:
        container = _container(alert)
        used += _size(container) + 1
        if used > MAX_BYTES:
            break
        body.append(container)
    hidden = len(notification.alerts) - (len(body) - 1)
    if hidden:
        body.append({"type": "TextBlock", "text": f"…and {hidden} more", "isSubtle": True})
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard", "version": "1.4", "msteams": {"width": "Full"}, "body": body,
    }
    if context.external_url:
        card["actions"] = [{"type": "Action.OpenUrl", "title": "Open alertd",
                            "url": context.external_url}]
    attachment = {"contentType": "application/vnd.microsoft.card.adaptive",
                  "contentUrl": None, "content": card}
    return [Payload({"type": "message", "attachments": [attachment]}, notification.id)]

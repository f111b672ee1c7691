"""Microsoft Teams: a Workflows (Power Automate) webhook message carrying an Adaptive Card.

The retired Office 365 connectors took MessageCards; their replacement, the "Post to a channel
when a webhook request is received" workflow, takes this ``{"type": "message", "attachments":
[adaptive card]}`` shape. One container with a fact set per alert, up to :data:`MAX_ALERTS`.
"""

from __future__ import annotations

from typing import Any

from alertd.model import Alert, Notification
from alertd.notify.presets.base import (
    Payload,
    PresetContext,
    comparison,
    customer_label,
    series_label,
    summary,
)

MAX_ALERTS = 20
_COLOURS = {"critical": "Attention", "error": "Attention", "warning": "Warning"}


def _container(alert: Alert) -> dict[str, Any]:
    colour = "Good" if alert.status == "resolved" else _COLOURS.get(alert.severity, "Accent")
    return {
        "type": "Container", "separator": True, "spacing": "Medium",
        "items": [
            {"type": "TextBlock", "text": summary(alert), "wrap": True, "weight": "Bolder",
             "color": colour},
            {"type": "FactSet", "facts": [
                {"title": "Customer", "value": customer_label(alert)},
                {"title": "Rule", "value": alert.rule},
                {"title": "Series", "value": series_label(alert)},
                {"title": "Value", "value": comparison(alert)},
                {"title": "Status", "value": f"{alert.status} · {alert.severity}"},
            ]},
        ],
    }


def message(notification: Notification, context: PresetContext) -> list[Payload]:
    shown = notification.alerts[:MAX_ALERTS]
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": context.title, "wrap": True, "size": "Large",
         "weight": "Bolder"},
        *(_container(a) for a in shown),
    ]
    hidden = len(notification.alerts) - len(shown)
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

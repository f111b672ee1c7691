"""Discord webhooks: one embed per alert (Discord allows ten), coloured by severity.

``allowed_mentions`` is empty, so text taken from Stripe (``@everyone`` in a customer name)
never pings anyone. Embed texts are cut to Discord's limits.
"""

from __future__ import annotations

from typing import Any

from alertd.clock import iso
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
from alertd.notify.templates import colour

MAX_EMBEDS = 10


def _field(name: str, value: str, inline: bool = True) -> dict[str, Any]:
    return {"name": name, "value": truncate(value or "—", 1024), "inline": inline}


def _embed(alert: Alert) -> dict[str, Any]:
    return {
        "title": truncate(f"{alert.status.upper()}: {summary(alert)}", 256),
        "description": truncate(alert.message, 4096) if alert.message else None,
        "color": int(colour(alert.severity, alert.status)[1:], 16),
        "fields": [
            _field("Customer", customer_label(alert)),
            _field("Rule", alert.rule),
            _field("Series", series_label(alert)),
            _field("Value", comparison(alert), inline=False),
        ],
        "timestamp": iso(alert.ends_at if alert.ends_at is not None else alert.starts_at),
        "footer": {"text": f"alertd · {alert.severity} · {alert.fingerprint}"},
    }


def message(notification: Notification, context: PresetContext) -> list[Payload]:
    embeds = [_embed(a) for a in notification.alerts[:MAX_EMBEDS]]
    for embed in embeds:
        if embed["description"] is None:
            del embed["description"]
    content = context.title
    hidden = len(notification.alerts) - len(embeds)
    if hidden:
        content += f" (showing {len(embeds)}, {hidden} more)"
    body = {"username": "alertd", "content": truncate(content, 2000), "embeds": embeds,
            "allowed_mentions": {"parse": []}}
    return [Payload(body, notification.id)]

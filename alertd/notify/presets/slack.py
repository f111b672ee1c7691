"""Slack incoming webhooks: a coloured attachment of Block Kit blocks, one section per alert.

``text`` is the notification line Slack shows in previews. Everything taken from Stripe
(customer names) is escaped, so a customer named ``<!channel>`` cannot ping anyone.
Slack allows 50 blocks a message: beyond :data:`MAX_ALERTS` alerts the rest are counted.
With ``server.external_url`` the footer links there.
"""

from __future__ import annotations

from typing import Any

from alertd.model import Alert, Notification
from alertd.notify.presets.base import (
    Payload,
    PresetContext,
    comparison,
    customer_label,
    link,
    series_label,
    summary,
    truncate,
)
from alertd.notify.templates import colour

MAX_ALERTS = 20


def escape(text: str) -> str:
    """Slack's three control characters (mrkdwn and mentions)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _section(alert: Alert) -> dict[str, Any]:
    marker = "✅" if alert.status == "resolved" else "🔥"
    text = (f"{marker} *{escape(summary(alert))}*\n"
            f"{escape(customer_label(alert))} · `{escape(alert.rule)}` · "
            f"{escape(series_label(alert))}\n{escape(comparison(alert))}")
    return {"type": "section", "text": {"type": "mrkdwn", "text": truncate(text, 3000)}}


def _footer(notification: Notification, hidden: int, context: PresetContext) -> dict[str, Any]:
    text = f"alertd · receiver {escape(notification.receiver)}"
    if link(context):
        text += f" · <{escape(link(context))}|open alertd>"
    if hidden:
        text = f"…and {hidden} more alert{'s' if hidden > 1 else ''} · " + text
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}


def message(notification: Notification, context: PresetContext) -> list[Payload]:
    shown = notification.alerts[:MAX_ALERTS]
    first = notification.alerts[0]
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": truncate(context.title, 150)}},
        *(_section(a) for a in shown),
        _footer(notification, len(notification.alerts) - len(shown), context),
    ]
    body = {
        "text": escape(context.title),
        "attachments": [{"color": colour(first.severity, notification.status),
                         "blocks": blocks}],
    }
    return [Payload(body, notification.id)]

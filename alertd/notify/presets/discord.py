"""Discord webhooks: one embed per alert (Discord allows ten), coloured by severity.

``allowed_mentions`` is empty, so text taken from Stripe (``@everyone`` in a customer name)
never pings anyone. Embed texts are cut to Discord's limits: title 256, description 4096,
field value 1024, footer 2048, content 2000 characters — and 6,000 characters over all
embeds' titles, descriptions, field names and values and footers together
(:data:`MAX_TOTAL`): embeds that would go over are left out and counted in ``content``; a
single embed too long on its own gets a shorter description. With ``server.external_url`` each
embed links there.
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
    link,
    series_label,
    summary,
    truncate,
)
from alertd.notify.templates import colour

MAX_EMBEDS = 10
MAX_TOTAL = 6000


def _field(name: str, value: str, inline: bool = True) -> dict[str, Any]:
    return {"name": name, "value": truncate(value or "—", 1024), "inline": inline}


def _embed(alert: Alert, context: PresetContext, description: int = 4096) -> dict[str, Any]:
    embed = {
        "title": truncate(f"{alert.status.upper()}: {summary(alert)}", 256),
        "description": truncate(alert.message, description) if alert.message else None,
        "color": int(colour(alert.severity, alert.status)[1:], 16),
        "fields": [
            _field("Customer", customer_label(alert)),
            _field("Rule", alert.rule),
            _field("Series", series_label(alert)),
            _field("Value", comparison(alert), inline=False),
        ],
        "timestamp": iso(alert.ends_at if alert.ends_at is not None else alert.starts_at),
        "footer": {"text": truncate(f"alertd · {alert.severity} · {alert.fingerprint}", 2048)},
    }
    if embed["description"] is None:
        del embed["description"]
    if link(context, alert):
        embed["url"] = link(context, alert)
    return embed


def counted(embed: dict[str, Any]) -> int:
    """The characters of ``embed`` that count towards Discord's 6,000."""
    texts = [embed.get("title", ""), embed.get("description", ""),
             embed.get("footer", {}).get("text", "")]
    for field in embed.get("fields", []):
        texts += [field["name"], field["value"]]
    return sum(len(t) for t in texts)


def _fitting(alerts: tuple[Alert, ...], context: PresetContext) -> list[dict[str, Any]]:
    embeds: list[dict[str, Any]] = []
    total = 0
    for alert in alerts[:MAX_EMBEDS]:
        embed = _embed(alert, context)
        if not embeds and counted(embed) > MAX_TOTAL:
            room = len(embed.get("description", "")) - (counted(embed) - MAX_TOTAL)
            embed = _embed(alert, context, description=max(room, 1))
        if total + counted(embed) > MAX_TOTAL:
            break
        embeds.append(embed)
        total += counted(embed)
    return embeds


def message(notification: Notification, context: PresetContext) -> list[Payload]:
    embeds = _fitting(notification.alerts, context)
    hidden = len(notification.alerts) - len(embeds)
    count = f" (showing {len(embeds)}, {hidden} more)" if hidden else ""
    # The count is cut last: it is what says alerts are missing.
    content = truncate(context.title, 2000 - len(count)) + count
    body = {"username": "alertd", "content": content, "embeds": embeds,
            "allowed_mentions": {"parse": []}}
    return [Payload(body, notification.id)]

"""Prometheus Alertmanager formats: the webhook body (alertd's default) and ``/api/v2/alerts``.

The webhook body is Alertmanager's own (``version: "4"``), so receivers written for
Alertmanager accept alertd unchanged; alertd's richer alert data rides along under the extra
key ``alertd``, which such receivers ignore.

``/api/v2/alerts`` receives alerts rather than notifications: Alertmanager then groups, routes
and notifies itself. It treats an alert whose ``endsAt`` has passed as resolved, so a firing
alert is sent with ``endsAt`` one :data:`FIRING_VALIDITY` after the notification: long
enough to outlast ``repeat_interval`` re-sends, short enough that alerts do not stay firing
forever if alertd stops.
"""

from __future__ import annotations

from typing import Any

from alertd.clock import iso
from alertd.model import Alert, Notification
from alertd.notify.presets.base import Payload, PresetContext, string_map
from alertd.notify.templates import common_pairs

#: Alertmanager's spelling of "no end yet" in webhook bodies.
ZERO_TIME = "0001-01-01T00:00:00Z"
FIRING_VALIDITY = 24 * 3600


def labels(alert: Alert) -> dict[str, str]:
    """The alert's labels as strings, always with ``alertname`` (Alertmanager requires it)."""
    return {"alertname": alert.rule, **string_map(alert.labels)}


def _webhook_alert(alert: Alert, context: PresetContext) -> dict[str, Any]:
    return {
        "status": alert.status,
        "labels": labels(alert),
        "annotations": string_map(alert.annotations),
        "startsAt": iso(alert.starts_at),
        "endsAt": iso(alert.ends_at) if alert.ends_at is not None else ZERO_TIME,
        "generatorURL": context.external_url,
        "fingerprint": alert.fingerprint,
    }


def webhook(notification: Notification, context: PresetContext) -> list[Payload]:
    """Alertmanager's webhook body, plus ``alertd`` with the full alerts."""
    alerts = notification.alerts
    body = {
        "version": "4",
        "groupKey": notification.group_key,
        "truncatedAlerts": 0,
        "status": notification.status,
        "receiver": notification.receiver,
        "groupLabels": string_map(notification.group_labels),
        "commonLabels": common_pairs([labels(a) for a in alerts]),
        "commonAnnotations": common_pairs([string_map(a.annotations) for a in alerts]),
        "externalURL": context.external_url,
        "alerts": [_webhook_alert(a, context) for a in alerts],
        "alertd": {"notification_id": notification.id,
                   "alerts": [a.to_dict() for a in alerts]},
    }
    return [Payload(body, notification.id)]


def _posted_alert(alert: Alert, notification: Notification,
                  context: PresetContext) -> dict[str, Any]:
    ends_at = alert.ends_at
    if alert.status == "firing" or ends_at is None:
        ends_at = notification.created_at + FIRING_VALIDITY
    posted = {
        "labels": labels(alert),
        "annotations": string_map(alert.annotations),
        "startsAt": iso(alert.starts_at),
        "endsAt": iso(ends_at),
    }
    if context.external_url:
        posted["generatorURL"] = context.external_url
    return posted


def api_v2(notification: Notification, context: PresetContext) -> list[Payload]:
    """A JSON array of alerts for ``POST /api/v2/alerts``."""
    body = [_posted_alert(a, notification, context) for a in notification.alerts]
    return [Payload(body, notification.id)]

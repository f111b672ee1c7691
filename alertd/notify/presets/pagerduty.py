"""PagerDuty Events API v2: one event per alert, deduplicated by the alert's fingerprint.

A firing alert is a ``trigger`` event and its resolve a ``resolve`` event with the same
``dedup_key``, so PagerDuty opens one incident per alert series and closes it; a repeat or a
retried request merges into the open incident, which is why no ``Idempotency-Key`` is sent.
alertd severities map onto PagerDuty's four (``critical``, ``error``, ``warning``, ``info``).
"""

from __future__ import annotations

from typing import Any

from alertd.clock import iso
from alertd.model import Alert, Notification
from alertd.notify.presets.base import (
    Payload,
    PresetContext,
    customer_label,
    details,
    is_meta,
    string_map,
    summary,
    truncate,
)

_SEVERITIES = {"critical": "critical", "page": "critical", "high": "critical", "error": "error",
               "warning": "warning", "warn": "warning", "info": "info", "low": "info"}


def severity(name: str) -> str:
    return _SEVERITIES.get(name.lower(), "warning")


def _event(alert: Alert, context: PresetContext) -> dict[str, Any]:
    if alert.status == "resolved":
        return {"routing_key": context.routing_key, "event_action": "resolve",
                "dedup_key": alert.fingerprint}
    event: dict[str, Any] = {
        "routing_key": context.routing_key,
        "event_action": "trigger",
        "dedup_key": alert.fingerprint,
        "payload": {
            "summary": truncate(summary(alert), 1024),
            # PagerDuty requires a source: the customer, or alertd itself for its own alerts.
            "source": truncate("alertd" if is_meta(alert) else customer_label(alert), 255),
            "severity": severity(alert.severity),
            "timestamp": iso(alert.starts_at),
            "component": alert.meter_name or alert.meter or "usage",
            "group": alert.rule,
            "class": "usage",
            "custom_details": {**details(alert), "labels": string_map(alert.labels),
                               "annotations": string_map(alert.annotations)},
        },
        "client": "alertd",
    }
    if context.external_url:
        event["client_url"] = context.external_url
        event["links"] = [{"href": context.external_url, "text": "Open alertd"}]
    return event


def events(notification: Notification, context: PresetContext) -> list[Payload]:
    return [Payload(_event(a, context), None) for a in notification.alerts]

"""Prometheus Alertmanager formats: the webhook body (alertd's default) and ``/api/v2/alerts``.

The webhook body is Alertmanager's own (``version: "4"``), so receivers written for
Alertmanager accept alertd unchanged; alertd's richer alert data rides along under the extra
key ``alertd``, which such receivers ignore.

``/api/v2/alerts`` receives alerts rather than notifications: Alertmanager then groups, routes
and notifies itself. It treats an alert whose ``endsAt`` has passed as resolved, so a firing
alert is sent with ``endsAt`` one :data:`FIRING_VALIDITY` after the notification: long
enough to outlast ``repeat_interval`` re-sends, short enough that alerts do not stay firing
forever if alertd stops. That is why, with this preset, ``validate`` refuses
``send_resolved: false`` (Alertmanager would show the alert active for a day after alertd
resolved it) and a ``repeat_interval`` of :data:`FIRING_VALIDITY` or more (Alertmanager would
resolve an alert that is still firing between two re-sends).

Label names in both formats are Prometheus label names, ``[a-zA-Z_][a-zA-Z0-9_]*``:
Alertmanager answers 400 "invalid label set" to anything else. A rule label or dimension
named ``team-name`` or ``cost.center`` is sent as ``team_name``, ``cost_center`` (every other
character becomes ``_``, a leading digit gets a ``_`` in front); where that mapped name is
already taken by a valid one, the valid one is kept. Labels with an empty value are left out,
as Alertmanager itself drops them. ``fingerprint`` is Alertmanager's own
fingerprint of the labels as sent (:mod:`alertd.notify.labelset`), so it equals what
Alertmanager shows for the same alert.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from alertd.clock import iso
from alertd.model import Alert, Notification
from alertd.notify import labelset
from alertd.notify.presets.base import Payload, PresetContext, string_map
from alertd.notify.templates import common_pairs

#: Alertmanager's spelling of "no end yet" in webhook bodies.
ZERO_TIME = "0001-01-01T00:00:00Z"
FIRING_VALIDITY = 24 * 3600


_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_NOT_NAME_CHAR = re.compile(r"[^a-zA-Z0-9_]")


@functools.lru_cache(maxsize=4096)
def _is_label_name(name: str) -> bool:
    """Cached: a deployment has few distinct label names, and each alert shows them all."""
    return _LABEL_NAME.fullmatch(name) is not None


def label_name(name: str) -> str:
    """``name`` as a valid Prometheus label name (itself when it already is one)."""
    if _is_label_name(name):
        return name
    mapped = _NOT_NAME_CHAR.sub("_", name)
    return "_" + mapped if not mapped or mapped[0].isdigit() else mapped


def labels(alert: Alert) -> dict[str, str]:
    """The alert's labels as Alertmanager takes them: strings, valid label names (mapped by
    :func:`label_name`; a valid name wins over a mapped one), always with ``alertname``, and
    none with an empty value (Alertmanager drops those: an empty label is an absent one)."""
    given = {k: v for k, v in {"alertname": alert.rule, **string_map(alert.labels)}.items() if v}
    if all(map(_is_label_name, given)):
        return given  # the common case: nothing to map
    found = {name: value for name, value in given.items() if _is_label_name(name)}
    for name, value in sorted(given.items()):
        found.setdefault(label_name(name), value)
    return found


def alert_page(external_url: str, fingerprint: str) -> str:
    """The alert's page on the status page (``/alerts/{fingerprint}``) under
    ``server.external_url``; empty without one."""
    return f"{external_url.rstrip('/')}/alerts/{fingerprint}" if external_url else ""


def _webhook_alert(alert: Alert, shown: dict[str, str], context: PresetContext
                   ) -> dict[str, Any]:
    """One alert of the webhook body; ``shown`` is its :func:`labels` (made once)."""
    return {
        "status": alert.status,
        "labels": shown,
        "annotations": string_map(alert.annotations),
        "startsAt": iso(alert.starts_at),
        "endsAt": iso(alert.ends_at) if alert.ends_at is not None else ZERO_TIME,
        # alertd's own fingerprint names the alert's status page; "fingerprint" is
        # Alertmanager's hash of the label set.
        "generatorURL": alert_page(context.external_url, alert.fingerprint),
        "fingerprint": labelset.fingerprint(shown),
    }


def webhook(notification: Notification, context: PresetContext) -> list[Payload]:
    """Alertmanager's webhook body, plus ``alertd`` with the full alerts."""
    alerts = notification.alerts
    shown = [labels(a) for a in alerts]
    body = {
        "version": "4",
        "groupKey": notification.group_key,
        "truncatedAlerts": 0,
        "status": notification.status,
        "receiver": notification.receiver,
        "groupLabels": {label_name(k): v for k, v in string_map(notification.group_labels).items()},
        "commonLabels": common_pairs(shown),
        "commonAnnotations": common_pairs([string_map(a.annotations) for a in alerts]),
        "externalURL": context.external_url,
        "alerts": [_webhook_alert(a, s, context) for a, s in zip(alerts, shown, strict=True)],
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
        posted["generatorURL"] = alert_page(context.external_url, alert.fingerprint)
    return posted


def api_v2(notification: Notification, context: PresetContext) -> list[Payload]:
    """A JSON array of alerts for ``POST /api/v2/alerts``."""
    body = [_posted_alert(a, notification, context) for a in notification.alerts]
    return [Payload(body, notification.id)]

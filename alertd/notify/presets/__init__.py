"""Webhook body presets: a notification in, the JSON request bodies a service expects out.

Where it sits: :class:`~alertd.notify.webhook.WebhookNotifier` picks the receiver's preset,
serialises each :class:`Payload` and POSTs it. Presets are pure functions
``(Notification, PresetContext) -> list[Payload]`` (one small interface, one module each):

=======================  ==============================================================
``alertmanager_webhook``  the default: Prometheus Alertmanager's webhook format, v4
``alertmanager``          a JSON array of alerts for an Alertmanager's ``/api/v2/alerts``
``slack``                 an incoming-webhook message: attachment colour and blocks
``pagerduty``             Events API v2, one event per alert, ``dedup_key`` = fingerprint
``teams``                 a Workflows (Power Automate) message with an Adaptive Card
``discord``               a Discord webhook message with one embed per alert
``generic``               alertd's own JSON, ``Notification.to_dict()``
=======================  ==============================================================

A preset that needs several requests (PagerDuty) returns several payloads; the notifier sends
them in order. A payload's ``idempotency_key`` becomes the ``Idempotency-Key`` header.
Only the presets in :data:`TITLED` read ``PresetContext.title``: the notifier renders the
title template for those alone (it was half the CPU of an Alertmanager body).
"""

from __future__ import annotations

from alertd.notify.presets import alertmanager, discord, generic, pagerduty, slack, teams
from alertd.notify.presets.base import Payload, Preset, PresetContext

PRESETS: dict[str, Preset] = {
    "alertmanager_webhook": alertmanager.webhook,
    "alertmanager": alertmanager.api_v2,
    "slack": slack.message,
    "teams": teams.message,
    "discord": discord.message,
    "pagerduty": pagerduty.events,
    "generic": generic.notification,
}

#: The presets that show ``PresetContext.title`` (the others never read it).
TITLED = frozenset({"slack", "teams", "discord"})


def preset(name: str) -> Preset:
    """The preset called ``name`` (the receiver's ``preset`` setting)."""
    if name not in PRESETS:
        raise ValueError(f"unknown webhook preset {name!r} (known: {', '.join(sorted(PRESETS))})")
    return PRESETS[name]


__all__ = ["PRESETS", "TITLED", "Payload", "Preset", "PresetContext", "preset"]

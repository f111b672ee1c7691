"""alertd's own JSON: the notification exactly as the outbox stores it (``to_dict()``)."""

from __future__ import annotations

from alertd.model import Notification
from alertd.notify.presets.base import Payload, PresetContext


def notification(notification: Notification, context: PresetContext) -> list[Payload]:
    return [Payload(notification.to_dict(), notification.id)]

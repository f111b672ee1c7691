"""Build one :class:`~alertd.notify.base.Notifier` per configured receiver.

The daemon and ``check`` both deliver through these; the webhook notifiers share one HTTP
client (a connection pool for all receivers), which this context manager closes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from alertd.clock import Clock
from alertd.config.settings import Settings
from alertd.notify.base import Notifier
from alertd.notify.email import EmailNotifier, SmtpFactory
from alertd.notify.templates import Templates
from alertd.notify.webhook import WebhookNotifier


@asynccontextmanager
async def notifiers(
    settings: Settings,
    *,
    clock: Clock,
    smtp_factory: SmtpFactory | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> AsyncIterator[dict[str, Notifier]]:
    """``{receiver name: notifier}`` for every receiver in ``settings``."""
    templates_dir = settings.templates_dir
    if templates_dir is not None and not templates_dir.is_absolute():
        templates_dir = settings.base_dir / templates_dir
    templates = Templates(templates_dir, external_url=settings.server.external_url)
    async with httpx.AsyncClient(follow_redirects=False, transport=transport) as client:
        built: dict[str, Notifier] = {}
        for receiver in settings.receivers:
            if receiver.email is not None:
                built[receiver.name] = EmailNotifier(
                    receiver, settings.smtp, templates, smtp_factory=smtp_factory
                )
            else:
                built[receiver.name] = WebhookNotifier(
                    receiver, templates, client=client, clock=clock
                )
        yield built

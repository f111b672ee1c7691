"""Build one :class:`~alertd.notify.base.Notifier` per configured receiver.

The daemon and ``check`` both deliver through these; the webhook notifiers share one HTTP
session (a keep-alive connection pool for all receivers, sized to ``concurrency`` requests in
flight per webhook receiver, the outbox's bound), which this context manager closes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from alertd.clock import Clock
from alertd.config.settings import Settings
from alertd.notify.base import Notifier
from alertd.notify.email import EmailNotifier, SmtpFactory
from alertd.notify.outbox import CONCURRENCY
from alertd.notify.templates import Templates
from alertd.notify.webhook import WebhookNotifier, webhook_session


@asynccontextmanager
async def notifiers(
    settings: Settings,
    *,
    clock: Clock,
    smtp_factory: SmtpFactory | None = None,
    concurrency: int = CONCURRENCY,
) -> AsyncIterator[dict[str, Notifier]]:
    """``{receiver name: notifier}`` for every receiver in ``settings``; the HTTP pool holds
    ``concurrency`` connections per webhook receiver (the outbox's groups in flight)."""
    templates_dir = settings.templates_dir
    if templates_dir is not None and not templates_dir.is_absolute():
        templates_dir = settings.base_dir / templates_dir
    templates = Templates(templates_dir, external_url=settings.server.external_url)
    hooks = sum(1 for r in settings.receivers if r.webhook is not None)
    session = webhook_session(max(hooks, 1) * concurrency)
    try:
        built: dict[str, Notifier] = {}
        for receiver in settings.receivers:
            if receiver.email is not None:
                built[receiver.name] = EmailNotifier(
                    receiver, settings.smtp, templates, smtp_factory=smtp_factory
                )
            else:
                built[receiver.name] = WebhookNotifier(
                    receiver, templates, session=session, clock=clock
                )
        yield built
    finally:
        await session.close()

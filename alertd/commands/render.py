"""``alertd render --rule NAME [--receiver NAME]``: preview the notification a rule would send.

Builds a realistic sample (an invented customer whose figures cross the rule's condition) and
renders it exactly as the receiver's notifier would: the email's subject, text and HTML, or the
webhook's JSON body and headers. Nothing is sent. Secrets are not printed: the webhook URL goes
through :func:`~alertd.logs.redact_url` (user-info, query values, Slack/Discord path tokens),
the receiver's own header values and secret body keys (``routing_key``) are masked.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

from alertd.config.settings import Receiver, Settings
from alertd.errors import ConfigError
from alertd.logs import MASK, redact, redact_url
from alertd.model import Notification
from alertd.notify.email import EmailNotifier
from alertd.notify.routing import RouteTree
from alertd.notify.sample import sample_notification
from alertd.notify.signature import HEADER
from alertd.notify.templates import Templates
from alertd.notify.webhook import WebhookNotifier
from alertd.service.world import load_world


def main(args: argparse.Namespace) -> int:
    world = load_world(args.config)
    try:
        rule = world.rules.by_name(args.rule)
    except KeyError as exc:
        raise ConfigError(str(exc.args[0]) if exc.args else f"no rule {args.rule!r}") from None
    receivers = _receivers(world.settings, rule.receivers, args.receiver)
    templates = Templates(_templates_dir(world.settings),
                          external_url=world.settings.server.external_url)
    now = int(time.time())
    routes = RouteTree.from_settings(world.settings)
    account = sample_account(world.settings, rule.accounts)
    labels = sample_notification(rule, "", now=now, account=account).alerts[0].labels
    destinations = {d.receiver: d for d in routes.destinations(labels, rule.receivers)}
    for receiver in receivers:
        notification = sample_notification(rule, receiver.name, now=now, account=account,
                                           destination=destinations.get(receiver.name))
        print(f"=== receiver {receiver.name} ===")
        print(asyncio.run(_render(receiver, world.settings, templates, notification)))
    return 0


def sample_account(settings: Settings, watched: list[str] | None) -> str:
    """The account a preview's alerts belong to: the first the rule watches (``""``
    without ``accounts:``), so routes on ``account`` and ``{{ labels.account }}`` show."""
    names = [account.name for account in settings.accounts]
    return next((name for name in names if watched is None or name in watched), "")


def _templates_dir(settings: Settings) -> Path | None:
    path = settings.templates_dir
    if path is not None and not path.is_absolute():
        path = settings.base_dir / path
    return path


def _receivers(settings: Settings, own: list[str] | None, wanted: str | None) -> list[Receiver]:
    if wanted is not None:
        receiver = settings.receiver(wanted)
        if receiver is None:
            known = ", ".join(r.name for r in settings.receivers) or "none configured"
            raise ConfigError(f"no receiver {wanted!r} (known: {known})")
        return [receiver]
    names = own or ([settings.route.receiver] if settings.route.receiver else [])
    found = [r for r in (settings.receiver(n) for n in names) if r is not None]
    if not found:
        raise ConfigError("no receiver to render for: configure receivers or pass --receiver")
    return found


async def _render(
    receiver: Receiver, settings: Settings, templates: Templates, notification: Notification
) -> str:
    if receiver.email is not None:
        rendered = EmailNotifier(receiver, settings.smtp, templates).render(notification)
        return "\n".join([f"Subject: {rendered.subject}", "", "--- text ---", rendered.text,
                          "--- html ---", rendered.html])
    async with WebhookNotifier(receiver, templates) as notifier:
        return _webhook_text(receiver, notifier, notification)


def _webhook_text(
    receiver: Receiver, notifier: WebhookNotifier, notification: Notification
) -> str:
    parts = []
    for payload, body in notifier.requests(notification):
        headers = notifier.signed_headers(payload, body)
        parts.append(f"POST {redact_url(receiver.webhook.url) if receiver.webhook else ''}")
        parts.extend(f"{k}: {shown_header(k, v)}" for k, v in headers.items())
        parts.append("")
        parts.append(json.dumps(shown_body(json.loads(body)), indent=2, ensure_ascii=False))
    return "\n".join(parts)


#: Headers whose values are not secrets; the receiver's own headers may be (``X-Api-Key``).
PUBLIC_HEADERS = frozenset({"content-type", "user-agent", "idempotency-key",
                            HEADER.lower()})
#: Body keys that hold a secret (PagerDuty's ``routing_key``).
SECRET_KEYS = frozenset({"routing_key", "token", "secret", "password", "api_key"})


def shown_header(name: str, value: str) -> str:
    """A header value as ``render`` prints it: secrets masked."""
    return value if name.lower() in PUBLIC_HEADERS else MASK + "[redacted]"


def shown_body(body: Any) -> Any:
    """A JSON body as ``render`` prints it: secret keys masked, URLs redacted."""
    if isinstance(body, dict):
        return {k: MASK + "[redacted]" if k.lower() in SECRET_KEYS and v else shown_body(v)
                for k, v in body.items()}
    if isinstance(body, list):
        return [shown_body(v) for v in body]
    return redact(body) if isinstance(body, str) else body

"""``groupKey`` and ``fingerprint`` as a real Alertmanager 0.25 writes them in its own webhook
notifications: the oracle for alertd's :mod:`alertd.notify.labelset`.

Alertmanager receives an alert from alertd's ``alertmanager`` preset, routes it through the
same route tree alertd has, and notifies a loopback webhook; the ``groupKey`` and
``fingerprint`` it sends there must be the ones alertd computes for that route and alert.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from alertd.config.settings import RootRoute
from alertd.notify import labelset
from alertd.notify.presets.alertmanager import labels as am_labels
from alertd.notify.routing import RouteTree
from alertd.sinks import serve_posts
from tests.notify.conftest import make_alert
from tests.receivers.alertmanager_process import PROGRAM, running
from tests.receivers.test_real_alertmanager import send

pytestmark = pytest.mark.needs_program(PROGRAM)

CONFIG = """\
route:
  receiver: hook
  group_by: [alertname, customer]
  group_wait: 1s
  routes:
    - match: {{severity: critical}}
      receiver: hook
      group_by: [rule, customer, team_name]
    - match_re: {{team: "ml|ops"}}
      match: {{severity: warning}}
      receiver: hook
receivers:
  - name: hook
    webhook_configs:
      - url: {url}/am
"""

ROUTE = {"receiver": "hook", "group_by": ["alertname", "customer"], "routes": [
    {"match": {"severity": "critical"}, "receiver": "hook",
     "group_by": ["rule", "customer", "team_name"]},
    {"match_re": {"team": "ml|ops"}, "match": {"severity": "warning"}, "receiver": "hook"},
]}


@pytest.mark.parametrize(("severity", "extra"), [
    ("critical", {"team-name": "Zürich ☕ \"core\""}),
    ("warning", {}),
    ("info", {"customer_note": "tab\there"}),
])
async def test_group_key_and_fingerprint_match_alertmanagers(
        tmp_path: Path, severity: str, extra: dict[str, str]) -> None:
    received: list[dict[str, Any]] = []
    arrived = asyncio.Event()

    async def record(request: web.Request) -> web.Response:
        received.append(json.loads(await request.read()))
        arrived.set()
        return web.Response(text="ok")

    now = int(time.time())
    alert = make_alert(starts_at=now - 600, labels={
        **make_alert().labels, "severity": severity, **extra})
    async with serve_posts(record) as url:
        with running(tmp_path, CONFIG.format(url=url)) as manager:
            await send(manager, alert)
            await asyncio.wait_for(arrived.wait(), 30)
    body = received[0]
    sent_labels = am_labels(alert)
    (destination,) = RouteTree(RootRoute.model_validate(ROUTE)).destinations(sent_labels)
    assert body["groupKey"] == destination.group_key(sent_labels)
    assert body["alerts"][0]["fingerprint"] == labelset.fingerprint(sent_labels)

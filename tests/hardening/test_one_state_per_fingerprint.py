"""One webhook message never carries the same fingerprint twice.

An hourly alert that fires in one hour, resolves when the hour ends and fires again in the next
leaves two episodes of one series in its group. Receivers that dedupe by fingerprint (the
Alertmanager format's ``fingerprint``, PagerDuty's ``dedup_key``) would let the resolve close
the new firing. The pipeline runs on a real SQLite file; the message goes to a real loopback
receiver.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from alertd.clock import FakeClock
from alertd.conditions.base import Bound
from alertd.config.settings import Receiver, RootRoute
from alertd.model import Finding, Period, SeriesKey
from alertd.notify.pipeline import Pipeline
from alertd.notify.routing import RouteTree
from alertd.notify.stages import newest_per_fingerprint
from alertd.notify.templates import Templates
from alertd.notify.webhook import WebhookNotifier
from alertd.rules.schema import Rule
from alertd.store.base import GroupEntry
from alertd.store.sqlite import SqliteStore
from tests.notify.conftest import HookSink, hook_server, make_alert

HOUR0 = 1_735_689_600  # 2025-01-01T00:00:00Z
RULE = Rule.model_validate({"name": "hourly", "meter": "mtr_1", "window": "hour",
                            "condition": {"type": "threshold", "op": ">", "value": 100}})
ROUTE: dict[str, Any] = {"receiver": "hooks", "group_by": ["rule"], "group_wait": "30s",
                         "group_interval": "1h", "repeat_interval": "4h"}


def hourly(start: int, value: float) -> Finding:
    return Finding(
        key=SeriesKey("hourly", "cus_1"), meter="mtr_1", dimensions=(),
        window=Period(start, start + 3600), complete=False, value=value, active=value > 100,
        level="warning" if value > 100 else None, state="inactive", message="",
        figures=Bound(100.0), period_key=str(start),
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    async with SqliteStore(tmp_path / "alertd.db") as opened:
        yield opened


async def test_firing_and_resolved_across_an_hour_boundary_send_only_the_newest(
    store: SqliteStore,
) -> None:
    sink = HookSink()
    async with hook_server(sink) as base:
        receiver = Receiver.model_validate({"name": "hooks", "webhook": {"url": base}})
        tree = RouteTree(RootRoute.model_validate(ROUTE))
        pipeline = Pipeline(store, tree, [receiver])
        first = await pipeline.apply([hourly(HOUR0, 150)], {"hourly": RULE}, HOUR0 + 3000,
                                        immediate=True)
        assert [n.status for n in first.notifications] == ["firing"]
        # The next hour: the old hour's episode resolves and a new one fires, both before
        # the group's interval is up, so both wait in the same group.
        await pipeline.apply([hourly(HOUR0 + 3600, 180)], {"hourly": RULE}, HOUR0 + 3660)
        report = await pipeline.flush(HOUR0 + 3000 + 3600)
        (notification,) = report.notifications
        async with WebhookNotifier(receiver, Templates(), clock=FakeClock()) as notifier:
            await notifier.send(notification)

    (request,) = sink.requests
    body = json.loads(request.body)
    alerts = body["alerts"]
    fingerprints = [a["fingerprint"] for a in alerts]
    assert len(fingerprints) == len(set(fingerprints)) == 1
    assert alerts[0]["status"] == "firing"
    assert alerts[0]["startsAt"] == "2025-01-01T01:01:00Z"
    (decision,) = [d for d in report.decisions if d.notification is not None]
    # alerts[].fingerprint is Alertmanager's (of the labels); alertd's own rides under "alertd".
    assert decision.fingerprints == (body["alertd"]["alerts"][0]["fingerprint"],)


def entry(instance: str, fingerprint: str, status: str, starts_at: int) -> GroupEntry:
    alert = make_alert(fingerprint=fingerprint, status=status, starts_at=starts_at)
    return GroupEntry(instance, 1, alert)


@pytest.mark.parametrize(("entries", "kept"), [
    ([entry("a@1", "a", "resolved", 1), entry("a@2", "a", "firing", 2)], ["a@2"]),
    ([entry("a@2", "a", "firing", 2), entry("a@1", "a", "resolved", 1)], ["a@2"]),
    ([entry("a@1", "a", "resolved", 1), entry("a@2", "a", "resolved", 2)], ["a@2"]),
    ([entry("a@1", "a", "resolved", 1), entry("b@1", "b", "firing", 1)], ["a@1", "b@1"]),
    ([entry("a@5", "a", "resolved", 5), entry("a@5b", "a", "firing", 5)], ["a@5b"]),
])
def test_newest_per_fingerprint(entries: list[GroupEntry], kept: list[str]) -> None:
    assert [e.instance for e in newest_per_fingerprint(entries)] == kept

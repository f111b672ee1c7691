"""A real alertd process for the crash tests in ``test_outbox.py`` (run, not imported by pytest).

    python crash_worker.py DB URL MODE [MARKER]

It writes notifications through the real pipeline and SQLite store and delivers them through
the real outbox worker to a loopback HTTP receiver the test runs (``URL/a`` and ``URL/b``).

MODE:
  commit-then-hang   evaluate three firing customers (commit states + outbox rows), create
                     MARKER, then hang: the test kills the process before any delivery.
  deliver            evaluate, then deliver; the test's receiver holds one request open and the
                     test kills the process after the send, before it is marked delivered.
  resume             deliver whatever is pending, then exit 0 (the restart).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import httpx

from alertd.clock import SystemClock
from alertd.conditions.base import Bound
from alertd.config.settings import DeliverySettings, Receiver, RootRoute
from alertd.errors import PermanentDeliveryError, TransientDeliveryError
from alertd.model import Finding, Notification, Period, SeriesKey
from alertd.notify.base import Notifier
from alertd.notify.outbox import Outbox
from alertd.notify.pipeline import Pipeline
from alertd.notify.routing import RouteTree
from alertd.rules.schema import Rule
from alertd.store.sqlite import SqliteStore

RULE = Rule.model_validate({
    "name": "daily-quota", "meter": "mtr_tokens",
    "condition": {"type": "threshold", "value": 1000},
})
ROUTE = RootRoute.model_validate({
    "receiver": "a", "group_by": ["rule", "customer"], "group_wait": "0s",
    "routes": [{"receiver": "a", "continue": True}, {"receiver": "b"}],
})
CUSTOMERS = ("cus_1", "cus_2", "cus_3")
DAY = Period(1_735_689_600, 1_735_776_000)


class LoopbackWebhook:
    """The smallest webhook notifier: POST the notification with its Idempotency-Key."""

    def __init__(self, client: httpx.AsyncClient, url: str) -> None:
        self.client = client
        self.url = url

    async def send(self, notification: Notification) -> None:
        try:
            response = await self.client.post(
                self.url, json=notification.to_dict(),
                headers={"Idempotency-Key": notification.id},
            )
        except httpx.HTTPError as exc:
            raise TransientDeliveryError(f"{self.url}: {exc!r}") from exc
        if response.status_code >= 500 or response.status_code == 429:
            raise TransientDeliveryError(f"{self.url}: HTTP {response.status_code}")
        if response.status_code >= 400:
            raise PermanentDeliveryError(f"{self.url}: HTTP {response.status_code}")


def findings(now: int) -> list[Finding]:
    return [
        Finding(key=SeriesKey(RULE.name, customer), meter="mtr_tokens", dimensions=(),
                window=DAY, complete=False, value=1500.0, active=True, level="warning",
                state="inactive", message="1,500 today > 1,000", figures=Bound(1000.0),
                period_key="2025-01-01")
        for customer in CUSTOMERS
    ]


async def main(db: Path, url: str, mode: str, marker: Path | None) -> int:
    clock = SystemClock()
    receivers = [Receiver.model_validate({"name": n, "webhook": {"url": f"{url}/{n}"}})
                 for n in ("a", "b")]
    settings = DeliverySettings(initial_backoff=0.05, max_backoff=0.2)
    async with SqliteStore(db) as store, httpx.AsyncClient(timeout=30) as client:
        notifiers: dict[str, Notifier] = {
            r.name: LoopbackWebhook(client, f"{url}/{r.name}") for r in receivers
        }
        outbox = Outbox(store, notifiers, settings, clock)
        if mode != "resume":
            pipeline = Pipeline(store, RouteTree(ROUTE), receivers)
            now = int(clock.now())
            await pipeline.apply(findings(now), {RULE.name: RULE}, now, immediate=True)
        if mode == "commit-then-hang":
            assert marker is not None
            marker.write_text("committed")
            await asyncio.Event().wait()  # the test kills us here
        report = await outbox.run_until_idle(timeout=20)
        return 0 if not report.pending and not report.gave_up else 1


if __name__ == "__main__":
    args = sys.argv[1:]
    sys.exit(asyncio.run(main(Path(args[0]), args[1], args[2],
                              Path(args[3]) if len(args) > 3 else None)))

"""A real alertd process for the batched-delivery crash tests (run, not imported by pytest).

    python batch_worker.py STATE URL MODE COUNT

``STATE`` is a SQLite file path or a ``postgresql://`` URL. The receivers, notifiers and
outbox are the daemon's own (:func:`alertd.notify.factory.notifiers`: real webhook notifiers
on the shared aiohttp session, rendered ahead in batches), delivering to ``URL/ops``.

MODE:
  deliver   commit COUNT notifications (one per group), then run the outbox worker as the
            daemon does until killed (the test kills it while a request is held open).
  resume    deliver whatever is pending, then exit 0 (the restart).
"""

from __future__ import annotations

import asyncio
import sys

from alertd.clock import SystemClock
from alertd.config.settings import Settings
from alertd.model import Alert, Customer, Notification, Period
from alertd.notify.factory import notifiers
from alertd.notify.outbox import Outbox
from alertd.store.base import Changes
from alertd.store.postgres import PostgresStore
from alertd.store.sqlite import SqliteStore

NOW = 1_735_689_600


def settings(url: str) -> Settings:
    return Settings(receivers=[{"name": "ops", "webhook": {"url": f"{url}/ops"}}],
                    route={"receiver": "ops"}, rule_files=[],
                    delivery={"initial_backoff": "0.05s", "max_backoff": "0.2s"})


def notification(index: int) -> Notification:
    customer = Customer(f"cus_{index:04d}")
    alert = Alert(
        fingerprint=f"fp{index}", status="firing", rule="quota", severity="warning",
        customer=customer, meter="mtr_1", dimensions=(), window=Period(NOW, NOW + 86400),
        value=150.0, labels={"rule": "quota", "customer": customer.id}, annotations={},
        starts_at=NOW, ends_at=None, refreshed_at=None,
    )
    return Notification(f"n{index:04d}", "ops", "firing", f"g{index}", {"rule": "quota"},
                        (alert,), NOW)


async def main(state: str, url: str, mode: str, count: int) -> int:
    clock = SystemClock()
    # A short claim on PostgreSQL: the restart (another holder) takes the killed one's rows
    # once its claim has run out, as a standby would.
    store: SqliteStore | PostgresStore = (
        PostgresStore(state, claim_seconds=1.0) if state.startswith("postgresql://")
        else SqliteStore(state))
    config = settings(url)
    async with store, notifiers(config, clock=clock) as built:
        outbox = Outbox(store, built, config.delivery, clock)
        if mode == "deliver":
            await store.commit_transitions(
                Changes(outbox=tuple(notification(i) for i in range(count))))
            await outbox.run(asyncio.Event())  # until the test kills us
            return 1
        report = await outbox.run_until_idle(timeout=60)
        return 0 if not report.pending and not report.gave_up else 1


if __name__ == "__main__":
    args = sys.argv[1:]
    sys.exit(asyncio.run(main(args[0], args[1], args[2], int(args[3]))))

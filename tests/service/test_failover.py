"""Two real ``alertd run`` processes on one PostgreSQL database and the simulator: the leader
is SIGKILLed mid-poll and mid-delivery; the standby takes over. Every notification reaches the
receiver (repeats only of the one cut short, under the same Idempotency-Key), no poll ever
comes from both replicas at once, nothing is lost."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import httpx

from alertd.sim.testing import running_simulator
from alertd.store.postgres import PostgresStore
from tests.service.test_daemon import (
    DaemonProcess,
    NotifySocket,
    eventually,
    get,
    hooks_sink,
    metric_samples,
    rule,
    write_config,
)

LEASE = 2.0


def replica_config(folder: Path, name: str, sim_url: str, hook_url: str, pg_url: str) -> Path:
    folder.mkdir()
    rules = [rule(f"tokens{i}", every="1s") for i in range(3)]
    return write_config(
        folder, sim_url, hook_url, rules,
        state={"url": pg_url, "replica": name, "lease": f"{LEASE:g}s", "claim": "4s"},
        route={"receiver": "hooks", "group_by": ["rule", "customer"], "group_wait": "0s",
               "group_interval": "1s", "repeat_interval": "4h"},
        receivers=[{"name": "hooks", "webhook": {"url": f"{hook_url}/alertd",
                                                 "timeout": "2s"}}],
    )


async def readyz(url: str) -> str:
    response = await get(f"{url}/readyz")
    return response.text.strip() if response.status_code == 200 else ""


async def stats(sim_url: str) -> dict[str, Any]:
    async with httpx.AsyncClient() as client:
        data: dict[str, Any] = (await client.get(f"{sim_url}/__stats")).json()
        return data


def polls_by(recent: list[dict[str, Any]], replica: str) -> list[float]:
    return [r["at"] for r in recent
            if r["endpoint"] == "meter_usage" and r["agent"].endswith(f"replica/{replica}")]


async def test_the_standby_takes_over_from_a_killed_leader(
    tmp_path: Path, pg_url: str,
) -> None:
    # Each response takes 0.3 s, so the leader has a poll in flight most of the time; the
    # receiver holds the first request unanswered, so a delivery is in flight too.
    async with running_simulator(customers=2, days=40, now=None, latency=0.3) as sim, \
            hooks_sink(hold=1, delay=30) as hooks, NotifySocket() as notify_a, \
            NotifySocket() as notify_b:
        config_a = replica_config(tmp_path / "a", "a", sim.url, hooks.url, pg_url)
        config_b = replica_config(tmp_path / "b", "b", sim.url, hooks.url, pg_url)
        log_a, log_b = tmp_path / "a.log", tmp_path / "b.log"
        async with DaemonProcess(config_a, notify_a, log_a) as a:
            url_a = await a.server_url()
            await eventually(lambda: readyz(url_a), 20, "replica a ready")
            assert (await readyz(url_a)) == "ready: leader"
            async with DaemonProcess(config_b, notify_b, log_b) as b:
                url_b = await b.server_url()
                assert await eventually(lambda: readyz(url_b), 20, "replica b ready") == \
                    "ready: standby (leader a)"
                await notify_b.next("STATUS=standby (b)")
                # Mid-delivery (the receiver holds a request) and mid-poll (one in flight).
                await eventually(lambda: hooks.arrived, 20, "a delivery in flight")

                async def polling() -> bool:
                    return bool((await stats(sim.url))["in_flight"])

                await eventually(polling, 10, "a poll in flight")
                a.signal(signal.SIGKILL)
                killed_at = time.time()
                assert await a.exit_code() == -signal.SIGKILL
                # What a had sent when it died: the held request, and on a loaded machine
                # maybe one it sent but had not recorded yet. Only these may come again.
                sent_by_a = {h.headers["Idempotency-Key"] for h in hooks.at("/alertd")}
                hooks.release.set()
                async def b_leads() -> bool:
                    return await readyz(url_b) == "ready: leader"

                await eventually(b_leads, 20, "b leads")
                _, samples = metric_samples((await get(f"{url_b}/metrics")).text)
                assert samples[("alertd_leader", (("account", "stripe"),))] == 1
                assert samples[("alertd_lease_generation", (("account", "stripe"),))] == 2

                async def all_delivered() -> bool:
                    async with PostgresStore(pg_url, holder="check") as store:
                        rows = await store.outbox()
                    return len(rows) == 6 and all(r.status == "delivered" for r in rows)

                await eventually(all_delivered, 30, "every notification delivered")
                recent = (await stats(sim.url))["recent"]
                b.signal(signal.SIGTERM)
                assert await b.exit_code() == 0
        async with PostgresStore(pg_url, holder="check") as store:
            ids = {r.id for r in await store.outbox()}
            (lease,) = await store.leases()
    # Every notification reached the receiver; a repeat only of what a had sent before it
    # died (the held request first of all), under the same Idempotency-Key.
    keys = [h.headers["Idempotency-Key"] for h in hooks.at("/alertd")]
    assert set(keys) == ids and len(ids) == 6
    repeated = {k for k in keys if keys.count(k) > 1}
    assert hooks.arrived[0].headers["Idempotency-Key"] in sent_by_a
    assert repeated <= sent_by_a
    assert all(keys.count(k) <= 2 for k in keys)  # at most once by a, once by b
    # Polls: a's all before it died, b's all after it took over; never both at once.
    by_a, by_b = polls_by(recent, "a"), polls_by(recent, "b")
    assert by_a and by_b and max(by_a) < killed_at + 0.5 < min(by_b)
    assert min(by_b) - killed_at <= LEASE + 1 + 1.0  # lease, one poll interval, slack
    assert (lease.holder, lease.generation) == ("b", 2)
    assert "leader lease=stripe replica=b generation=2" in log_b.read_text()

"""Two real ``alertd run`` replicas on one PostgreSQL database watching two Stripe accounts
(one simulator each): they end up leading one account each; when one is SIGKILLed the other
takes both. No account is ever polled by both replicas at once."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from alertd.sim.testing import running_simulator
from alertd.store.postgres import PostgresStore
from tests.service.test_accounts import accounts_config
from tests.service.test_daemon import (
    DaemonProcess,
    NotifySocket,
    eventually,
    get,
    hooks_sink,
    metric_samples,
    rule,
)
from tests.service.test_failover import polls_by, readyz, stats

LEASE = 2.0


def replica_config(folder: Path, name: str, sims: dict[str, str], hook_url: str,
                   pg_url: str) -> Path:
    folder.mkdir()
    return accounts_config(
        folder, sims, hook_url, [rule("tokens", every="1s")],
        state={"url": pg_url, "replica": name, "lease": f"{LEASE:g}s", "claim": "4s"},
        route={"receiver": "hooks", "group_by": ["rule", "customer"], "group_wait": "0s",
               "group_interval": "1s", "repeat_interval": "4h"},
    )


def led(ready: str) -> list[str]:
    """The accounts a ``/readyz`` body says this replica leads."""
    if "(leads " not in ready:
        return []
    named = ready.split("(leads ", 1)[1].split(";")[0].rstrip(")")
    return [] if named == "none" else named.split(", ")


async def test_two_replicas_lead_one_account_each_and_a_survivor_takes_both(
    tmp_path: Path, pg_url: str,
) -> None:
    async with running_simulator(customers=2, days=40, now=None) as eu, \
            running_simulator(customers=2, days=40, now=None) as us, \
            hooks_sink() as hooks, NotifySocket() as notify_a, NotifySocket() as notify_b:
        sims = {"eu": eu.url, "us": us.url}
        config_a = replica_config(tmp_path / "a", "a", sims, hooks.url, pg_url)
        config_b = replica_config(tmp_path / "b", "b", sims, hooks.url, pg_url)
        async with DaemonProcess(config_a, notify_a, tmp_path / "a.log") as a:
            url_a = await a.server_url()
            assert led(await eventually(lambda: readyz(url_a), 20, "a ready")) == ["eu", "us"]
            async with DaemonProcess(config_b, notify_b, tmp_path / "b.log") as b:
                url_b = await b.server_url()

                async def spread() -> bool:
                    mine, theirs = led(await readyz(url_a)), led(await readyz(url_b))
                    return len(mine) == 1 and len(theirs) == 1 and mine != theirs

                await eventually(spread, 30, "one account each")
                ready_b = await readyz(url_b)
                (b_account,) = led(ready_b)
                a_account = "us" if b_account == "eu" else "eu"
                assert ready_b == f"ready: leader (leads {b_account}; standby for {a_account} " \
                                  "(leader a))"
                await notify_b.next(f"STATUS=leader (b; leads {b_account}")
                _, samples = metric_samples((await get(f"{url_b}/metrics")).text)
                assert samples[("alertd_leader", (("account", b_account),))] == 1
                assert samples[("alertd_leader", (("account", a_account),))] == 0
                # Both accounts are polled, each by its own leader.
                await eventually(lambda: hooks.at("/alertd") and len(
                    {h.body["commonLabels"]["account"] for h in hooks.at("/alertd")}) == 2,
                    30, "notifications of both accounts")

                a.signal(signal.SIGKILL)
                killed_at = time.time()
                assert await a.exit_code() == -signal.SIGKILL

                async def b_leads_both() -> bool:
                    return led(await readyz(url_b)) == ["eu", "us"]

                await eventually(b_leads_both, 30, "b leads both")
                took_over = time.time() - killed_at
                sim_of = {"eu": eu, "us": us}

                async def b_polled_it() -> bool:
                    recent = (await stats(sim_of[a_account].url))["recent"]
                    return any(at > killed_at for at in polls_by(recent, "b"))

                await eventually(b_polled_it, 20, "b polls a's account")
                recent = {name: (await stats(sim.url))["recent"] for name, sim in sim_of.items()}
                b.signal(signal.SIGTERM)
                assert await b.exit_code() == 0
        async with PostgresStore(pg_url, holder="check") as store:
            leases = {lease.name: lease for lease in await store.leases()}
            states = await store.load_states()
    # The survivor took over within the lease and a couple of rounds (wall clock, loaded
    # machine: generous).
    assert took_over <= LEASE * 5
    assert "leader lease=stripe:" in (tmp_path / "b.log").read_text()
    assert {leases["stripe:eu"].holder, leases["stripe:us"].holder} == {"b"}
    # Never polled by both at once: every account's polls by one replica come before the
    # other's (a hand-over or a takeover is the only change of hands).
    for name, requests in recent.items():
        by_a, by_b = polls_by(requests, "a"), polls_by(requests, "b")
        assert by_b, name
        if by_a:
            assert max(by_a) < min(by_b), name
    # Both accounts' alerts are in the shared state, apart.
    assert {k.account for k in states if k.rule == "tokens"} == {"eu", "us"}
    assert len({k.fingerprint for k in states if k.rule == "tokens"}) == 4

"""A replica that comes to lead after its start settles what its start skipped
(:mod:`alertd.service.settling`): two replicas on the real PostgreSQL, the configuration rolled
out to one of them first. That one starts as standby (the other leads), so it settles nothing;
when the other stops and it takes the lease over, it resolves the alerts of what the new
configuration dropped — an account, a rule — before its first poll, exactly once."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from alertd.sim.testing import TEST_NOW, running_simulator
from alertd.store.postgres import PostgresStore
from tests.service.test_account_settling import (
    TOKENS,
    alerts_of,
    daemon_on,
    hook_count,
    told,
)
from tests.service.test_accounts import accounts_config
from tests.service.test_daemon import eventually, hooks_sink, rule, write_config

#: Short, so the standby asks for the lease every 2/3 s once the leader has let it go.
LEASE = "2s"


def state(pg_url: str, replica: str) -> dict[str, Any]:
    return {"url": pg_url, "replica": replica, "lease": LEASE}


async def rules_stored(pg_url: str) -> set[tuple[str, str]]:
    """(rule, account) of every stored alert state."""
    async with PostgresStore(pg_url, holder="test") as store:
        return {(k.rule, k.account) for k in await store.load_states()}


async def test_a_standby_taking_over_resolves_an_account_no_longer_watched(
    tmp_path: Path, pg_url: str,
) -> None:
    async with running_simulator(customers=2, days=40, now=TEST_NOW) as sim, \
            hooks_sink() as hooks, AsyncExitStack() as replica_a:
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        old = accounts_config(tmp_path / "a", {"eu": sim.url, "us": sim.url}, hooks.url,
                              [TOKENS], state=state(pg_url, "a"))
        new = accounts_config(tmp_path / "b", {"eu": sim.url}, hooks.url, [TOKENS],
                              state=state(pg_url, "b"))
        a = await replica_a.enter_async_context(daemon_on(old))
        assert a.leads("eu") and a.leads("us")
        await a.poll(("tokens",), account="eu")
        await a.poll(("tokens",), account="us")
        await hook_count(hooks, 2, "one notification per account")
        async with daemon_on(new) as b:  # the new configuration, rolled out to b first
            assert b.leadership is not None and b.leadership.role == "standby"
            assert await rules_stored(pg_url) == {("tokens", "eu"), ("tokens", "us")}
            assert len(told(hooks)) == 2  # a standby's start settles nothing
            await replica_a.aclose()  # a stops (its leases released) to take the new config
            await eventually(lambda: b.leads("eu"), 15, "b taking eu's lease over")
            gone = (await hook_count(hooks, 3, "us's resolve, from b"))[2]
            await eventually(lambda: _only_eu(pg_url), 15, "us's alerts forgotten")
    assert gone.body["status"] == "resolved" and gone.body["commonLabels"]["account"] == "us"
    assert {a[:3] for a in alerts_of(gone)} == {("resolved", c, "us") for c in
                                                 {a[1] for a in alerts_of(told(hooks)[0])}}
    assert len(told(hooks)) == 3  # exactly once: b's start, then its takeover


async def _only_eu(pg_url: str) -> bool:
    return await rules_stored(pg_url) == {("tokens", "eu")}


async def test_a_standby_taking_over_resolves_a_rule_no_longer_configured(
    tmp_path: Path, pg_url: str,
) -> None:
    spend = rule("spend")
    async with running_simulator(customers=2, days=40, now=TEST_NOW) as sim, \
            hooks_sink() as hooks, AsyncExitStack() as replica_a:
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        old = write_config(tmp_path / "a", sim.url, hooks.url, [TOKENS, spend],
                           state=state(pg_url, "a"))
        new = write_config(tmp_path / "b", sim.url, hooks.url, [TOKENS],
                           state=state(pg_url, "b"))
        a = await replica_a.enter_async_context(daemon_on(old))
        await a.poll(("tokens", "spend"))
        await hook_count(hooks, 2, "one notification per rule")  # group_by: [rule]
        async with daemon_on(new) as b:
            assert b.leadership is not None and b.leadership.role == "standby"
            assert len(told(hooks)) == 2
            await replica_a.aclose()
            await eventually(lambda: b.leads(""), 15, "b taking the lease over")
            gone = (await hook_count(hooks, 3, "spend's resolve, from b"))[2]
            assert await rules_stored(pg_url) == {("tokens", "")}
    assert gone.body["status"] == "resolved" and gone.body["commonLabels"]["rule"] == "spend"
    assert len(told(hooks)) == 3

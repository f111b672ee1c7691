"""Several Stripe accounts in one daemon: each account against its own simulator (the same
seed, so both have ``cus_...`` and ``mtr_sim_tokens`` alike), evaluated and recorded apart —
no state, group, notification or cached bucket of one ever lands on the other."""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

from alertd.accounts import account_store
from alertd.alerts import SOURCE_FAILURE, STALE_DATA
from alertd.clock import OffsetClock
from alertd.commands.check import check_accounts
from alertd.errors import StoreError
from alertd.model import SeriesKey
from alertd.service.daemon import Daemon, load_checked
from alertd.service.open import Collaborators, open_services
from alertd.service.systemd import SystemdNotifier
from alertd.sim.server import Simulator
from alertd.sim.testing import API_KEY, TEST_NOW, running_simulator
from alertd.store.base import BucketStore
from alertd.store.postgres import PostgresStore
from alertd.store.sqlite import SqliteStore
from tests.service.test_daemon import (
    Hooks,
    eventually,
    get,
    hooks_sink,
    metric_samples,
    rule,
    write_config,
)

META = {STALE_DATA, SOURCE_FAILURE}


def accounts_config(folder: Path, sims: dict[str, str], hook_url: str,
                    rules: list[dict[str, Any]], **overrides: Any) -> Path:
    """The daemon tests' config, with one account per simulator instead of stripe.api_key."""
    path = write_config(folder, "http://unused.invalid", hook_url, rules, **overrides)
    config = yaml.safe_load(path.read_text())
    del config["stripe"]["api_key"], config["stripe"]["api_base"]
    config["accounts"] = [{"name": name, "api_key": API_KEY, "api_base": url}
                          for name, url in sims.items()]
    path.write_text(yaml.safe_dump(config))
    return path


@dataclass
class Two:
    daemon: Daemon
    eu: Simulator
    us: Simulator
    hooks: Hooks
    folder: Path


@asynccontextmanager
async def two_accounts(tmp_path: Path, rules: list[dict[str, Any]]) -> AsyncIterator[Two]:
    async with running_simulator(customers=3, days=40, now=TEST_NOW) as eu, \
            running_simulator(customers=3, days=40, now=TEST_NOW) as us, \
            hooks_sink() as hooks:
        config = accounts_config(tmp_path, {"eu": eu.url, "us": us.url}, hooks.url, rules)
        daemon = Daemon(config, clock=OffsetClock(TEST_NOW - time.time()),
                        systemd=SystemdNotifier(""))
        async with daemon.running(load_checked(config)):
            yield Two(daemon, eu, us, hooks, tmp_path)


async def test_two_accounts_are_polled_and_recorded_apart(tmp_path: Path) -> None:
    rules = [rule("tokens"), {**rule("eu-calls", meter="mtr_sim_api_calls"),
                              "accounts": ["eu"]}]
    async with two_accounts(tmp_path, rules) as s:
        assert [a.lease for a in s.daemon.accounts] == ["stripe:eu", "stripe:us"]
        url = s.daemon.server_url
        assert (await get(f"{url}/readyz")).status_code == 503  # neither polled yet
        started = s.us.stats()["requests"]  # each checked its rules' meters at start
        eu = await s.daemon.poll(("tokens", "eu-calls"), account="eu")
        eu_requests, us_requests = s.eu.stats()["requests"], s.us.stats()["requests"]
        assert eu_requests > 1 and us_requests == started  # each account asks its own Stripe
        assert (await get(f"{url}/readyz")).status_code == 503  # us not polled yet
        us = await s.daemon.poll(("tokens",), account="us")
        assert s.eu.stats()["requests"] == eu_requests and s.us.stats()["requests"] > 0
        assert (await get(f"{url}/readyz")).status_code == 200

        firing = {name: [f for f in o.findings if f.state == "firing" and f.rule not in META]
                  for name, o in (("eu", eu), ("us", us))}
        assert {f.key.account for f in firing["eu"]} == {"eu"}
        assert {f.key.account for f in firing["us"]} == {"us"}
        assert {f.rule for f in firing["us"]} == {"tokens"}  # eu-calls watches eu only
        # Stale data and source failure are judged per account too.
        assert {(f.rule, f.key.account) for f in us.findings if f.rule in META} == {
            (STALE_DATA, "us"), (SOURCE_FAILURE, "us")}
        # The same customers in both accounts: the same series but for the account.
        eu_tokens = {f.key for f in firing["eu"] if f.rule == "tokens"}
        us_tokens = {f.key for f in firing["us"]}
        assert len(eu_tokens) == 3 and {k.customer for k in eu_tokens} == {
            k.customer for k in us_tokens}
        assert not {k.fingerprint for k in eu_tokens} & {k.fingerprint for k in us_tokens}

        # Notifications: one group per account (group_by [rule] never spans accounts).
        await eventually(lambda: len(s.hooks.at("/alertd")) == 3, what="three notifications")
        bodies = sorted((h.body["commonLabels"]["account"], h.body["commonLabels"]["rule"],
                         len(h.body["alerts"])) for h in s.hooks.at("/alertd"))
        assert bodies == [("eu", "eu-calls", 3), ("eu", "tokens", 3), ("us", "tokens", 3)]
        keys = {h.headers["Idempotency-Key"] for h in s.hooks.at("/alertd")}
        assert len(keys) == 3
        _, samples = metric_samples((await get(f"{url}/metrics")).text)
        assert samples[("alertd_leader", (("account", "eu"),))] == 1
        assert samples[("alertd_leader", (("account", "us"),))] == 1
        assert samples[("alertd_alerts", (("state", "firing"),))] == 9
        # The status page lists both accounts' alerts, each named by its account.
        api = (await get(f"{url}/api/v1/alerts")).json()
        listed = sorted((a["account"], a["rule"]) for a in api["alerts"]
                        if a["state"] == "firing")
        assert listed == sorted([("eu", "tokens")] * 3 + [("eu", "eu-calls")] * 3
                                + [("us", "tokens")] * 3)

    with sqlite3.connect(tmp_path / "alertd.db") as conn:
        cached = [r[0] for r in conn.execute("SELECT key FROM usage_buckets")]
    async with SqliteStore(tmp_path / "alertd.db") as store:
        states = await store.load_states()
        groups = await store.load_groups()
        # Each account's entries read back through its view (the next poll reads only their
        # recent hours): before, the prefixed key hid the meter and every entry was unreadable.
        for name in ("eu", "us"):
            keys = [k.partition("\x1f")[2] for k in cached if k.startswith(f"account={name}")]
            view = cast(BucketStore, account_store(store, name))
            loaded = await view.load_buckets(keys)
            assert sorted(loaded) == sorted(keys) and all(e.rows for e in loaded.values())
            assert sorted(await view.load_extents(keys)) == sorted(keys)
    usage = [k for k in states if k.rule not in META]
    assert sorted((k.account, k.rule) for k in usage) == sorted(
        [("eu", "tokens")] * 3 + [("eu", "eu-calls")] * 3 + [("us", "tokens")] * 3)
    assert all(states[k].status == "firing" for k in usage)
    assert sorted(g.group_labels["account"] for g in groups.values()) == ["eu", "eu", "us"]
    # Each account's cached usage under its own keys (the same customers and meters).
    assert cached and {k.split("\x1f")[0] for k in cached} == {"account=eu", "account=us"}
    assert len([k for k in cached if k.startswith("account=eu")]) > len(
        [k for k in cached if k.startswith("account=us")])  # eu has one more rule


async def test_the_state_of_one_account_survives_a_pass_of_the_other(tmp_path: Path) -> None:
    async with two_accounts(tmp_path, [rule("tokens")]) as s:
        await s.daemon.poll(("tokens",), account="eu")
        await s.daemon.poll(("tokens",), account="us")
        async with SqliteStore(tmp_path / "alertd.db") as store:
            before = await store.load_states()
        assert {k.account for k in before} == {"eu", "us"}
        s.eu.advance(300)
        s.daemon.clock.offset += 300  # type: ignore[attr-defined]
        await s.daemon.poll(("tokens",), account="eu")  # us is not polled: its state stays
        async with SqliteStore(tmp_path / "alertd.db") as store:
            after = await store.load_states()
    assert {k: v for k, v in after.items() if k.account == "us"} == {
        k: v for k, v in before.items() if k.account == "us"}
    eu_before = {k: v for k, v in before.items() if k.account == "eu"}
    eu_after = {k: v for k, v in after.items() if k.account == "eu"}
    assert eu_after.keys() == eu_before.keys() and eu_after != eu_before  # eu moved on


async def test_check_evaluates_every_account(tmp_path: Path) -> None:
    async with running_simulator(customers=2, days=40, now=TEST_NOW) as eu, \
            running_simulator(customers=2, days=40, now=TEST_NOW) as us, \
            hooks_sink() as hooks:
        config = accounts_config(tmp_path, {"eu": eu.url, "us": us.url}, hooks.url,
                                 [rule("tokens")])
        world = load_checked(config)
        async with open_services(world, Collaborators(OffsetClock(TEST_NOW - time.time())),
                                 state=":memory:", deliver=False) as services:
            result, outcome = await check_accounts(services, TEST_NOW, None, None,
                                                   dry_run=True)
    usage = [f for f in result.findings if f.rule == "tokens"]
    assert sorted((f.key.account, f.customer) for f in usage) == sorted(
        (a, c) for a in ("eu", "us") for c in {f.customer for f in usage})
    assert len(usage) == 4
    would = [d for d in outcome.decisions if d.notification is not None]
    assert len(would) == 2  # one group per account
    assert sorted({a.labels["account"] for d in would for a in d.notification.alerts}) == [
        "eu", "us"]


def test_the_first_release_fingerprints_are_unchanged() -> None:
    key = SeriesKey("tokens", "cus_1", (("model", "gpt-4"),))
    # What the first release computed, so stored state and receivers' keys stay valid.
    assert key.fingerprint == hashlib.sha256(
        b"tokens\x1fcus_1\x1fmodel=gpt-4").hexdigest()[:16]
    eu, us = (SeriesKey("tokens", "cus_1", key.group, account) for account in ("eu", "us"))
    assert len({key.fingerprint, eu.fingerprint, us.fingerprint}) == 3


async def test_a_reload_keeps_unchanged_accounts_and_refuses_a_new_one(tmp_path: Path) -> None:
    async with two_accounts(tmp_path, [rule("tokens")]) as s:
        await s.daemon.poll(("tokens",), account="eu")
        before = dict(s.daemon._stripe)
        path = tmp_path / "alertd.yaml"
        config = yaml.safe_load(path.read_text())
        config["accounts"][1]["requests_per_second"] = 7  # us only
        path.write_text(yaml.safe_dump(config))
        assert await s.daemon.reload()
        assert s.daemon._stripe["eu"] is before["eu"]  # one budget, warm cache
        assert s.daemon._stripe["us"] is not before["us"]
        assert s.daemon.services.lane("us").world.settings.stripe.requests_per_second == 7
        assert (await s.daemon.poll(("tokens",), account="us")).recorded
        config["accounts"].append({"name": "apac", "api_key": API_KEY,
                                   "api_base": s.eu.url})
        path.write_text(yaml.safe_dump(config))
        assert not await s.daemon.reload()  # takes a restart
        assert [lane.account.name for lane in s.daemon.services.lanes] == ["eu", "us"]


async def test_a_recording_check_takes_every_accounts_lease(tmp_path: Path, pg_url: str
                                                            ) -> None:
    async with running_simulator(customers=2, days=40, now=TEST_NOW) as eu, \
            running_simulator(customers=2, days=40, now=TEST_NOW) as us, \
            hooks_sink() as hooks:
        config = accounts_config(tmp_path, {"eu": eu.url, "us": us.url}, hooks.url,
                                 [rule("tokens")], state={"url": pg_url, "replica": "check"})
        world = load_checked(config)
        parts = Collaborators(OffsetClock(TEST_NOW - time.time()))
        async with open_services(world, parts, state="db", deliver=False,
                                 lock_holder="this test") as services:
            await check_accounts(services, TEST_NOW, None, None, dry_run=False)
        async with PostgresStore(pg_url, holder="t") as store:
            states = await store.load_states()
            leases = {lease.name: lease for lease in await store.leases()}
            assert {n: (lease.holder, lease.expires_at) for n, lease in leases.items()} == {
                "stripe:eu": ("check", 0), "stripe:us": ("check", 0)}  # released after
            await store.acquire_lease("stripe:us", "replica-b", 60, time.time())
        assert sorted(k.account for k in states if k.rule == "tokens") == [
            "eu", "eu", "us", "us"]
        with pytest.raises(StoreError, match=r"led by replica replica-b \(lease stripe:us\)"):
            async with open_services(world, parts, state="db", deliver=False,
                                     lock_holder="this test"):
                pass

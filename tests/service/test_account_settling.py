"""The stored alerts of accounts a configuration no longer watches, settled at the daemon's
start (:mod:`alertd.service.settling`), on SQLite and on the real PostgreSQL: moving from
``stripe.api_key`` to ``accounts:`` adopts the old alerts into the account that had the key
(their episodes carry on; receivers are told the old label sets resolved, then hear the
adopted alerts under their new labels), and every other gone account's alerts resolve —
through the webhook, never left firing."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from alertd.accounts import Settlement, adoption, heir_of, settlement
from alertd.alerts import AlertState
from alertd.clock import OffsetClock
from alertd.config.settings import Settings
from alertd.errors import ConfigError
from alertd.model import SeriesKey
from alertd.service.daemon import Daemon, load_checked
from alertd.service.systemd import SystemdNotifier
from alertd.sim.testing import API_KEY, TEST_NOW, running_simulator
from alertd.store.postgres import PostgresStore
from alertd.store.sqlite import SqliteStore
from tests.service.test_accounts import accounts_config
from tests.service.test_daemon import Hook, Hooks, eventually, hooks_sink, rule, write_config

TOKENS = {**rule("tokens"), "annotations": {
    "summary": "{{ account or 'one key' }}/{{ labels.account | default('-') }}"}}
FIRING = AlertState(status="firing", level="warning", rank=0, firing_since=100,
                    last_active_at=100, announced_rank=0)


# --------------------------------------------------------------------------- the decision


def settings_of(accounts: list[dict[str, Any]]) -> Settings:
    return Settings.model_validate(
        {"accounts": [{"api_key": API_KEY, **entry} for entry in accounts]}
        if accounts else {"stripe": {"api_key": API_KEY}})


@pytest.mark.parametrize(("stored", "accounts", "expected"), [
    # The first release's alerts, moved to one account: it adopts them.
    ({""}, [{"name": "eu"}], Settlement("eu", ())),
    # Several accounts: the one marked adopts them; without a mark, they resolve.
    ({"", "eu"}, [{"name": "eu"}, {"name": "us", "was_stripe_api_key": True}],
     Settlement("us", ())),
    ({"", "eu"}, [{"name": "eu"}, {"name": "us"}], Settlement(None, ("",))),
    # An account removed from accounts: resolves; watched ones are left alone.
    ({"eu", "us"}, [{"name": "eu"}], Settlement(None, ("us",))),
    ({"", "eu", "us"}, [{"name": "eu"}], Settlement("eu", ("us",))),
    # Back to stripe.api_key: the named accounts' alerts resolve, "" is watched.
    ({"", "eu"}, [], Settlement(None, ("eu",))),
    ({"eu"}, [{"name": "eu"}], Settlement(None, ())),
    (set(), [{"name": "eu"}, {"name": "us"}], Settlement(None, ())),
])
def test_settlement(stored: set[str], accounts: list[dict[str, Any]],
                    expected: Settlement) -> None:
    assert settlement(stored, settings_of(accounts)) == expected


def test_the_heir_is_the_marked_or_only_account() -> None:
    assert heir_of(settings_of([])) is None
    assert heir_of(settings_of([{"name": "eu"}])) == "eu"
    assert heir_of(settings_of([{"name": "eu"}, {"name": "us"}])) is None
    assert heir_of(settings_of([{"name": "eu", "was_stripe_api_key": True},
                                {"name": "us"}])) == "eu"


def test_only_one_account_can_be_marked(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text("rules: []\n")
    path = tmp_path / "alertd.yaml"
    path.write_text(yaml.safe_dump({"rule_files": ["rules.yaml"], "accounts": [
        {"name": n, "api_key": API_KEY, "was_stripe_api_key": True} for n in ("eu", "us")]}))
    with pytest.raises(ConfigError, match=r"alertd.yaml:\d+:\d+: accounts: only one account "
                                          r"can have been stripe.api_key"):
        load_checked(path)


def test_adoption_moves_each_state_and_resolves_the_old_label_sets() -> None:
    old = {SeriesKey("tokens", "cus_1"): FIRING,
           SeriesKey("tokens", "cus_2"): FIRING,
           SeriesKey("tokens", "cus_3"): dataclasses.replace(FIRING, status="pending",
                                                            announced_rank=-1)}
    taken = {SeriesKey("tokens", "cus_2", account="eu")}  # eu has its own state for cus_2
    step = adoption(old, "eu", taken, 500)
    assert step.states == {
        **dict.fromkeys(old),  # every old row is forgotten
        SeriesKey("tokens", "cus_1", account="eu"): FIRING,  # its episode carries on
        SeriesKey("tokens", "cus_3", account="eu"): old[SeriesKey("tokens", "cus_3")]}
    # Receivers knew the announced ones by their old labels: those resolve (not the pending).
    assert sorted((t.kind, t.key.customer, t.at) for t in step.transitions) == [
        ("resolved", "cus_1", 500), ("resolved", "cus_2", 500)]
    assert len(step.updates) == 2


# --------------------------------------------------------------------------- the daemon


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """The ``state:`` overrides of the daemon's config: its SQLite file, or PostgreSQL."""
    if request.param == "sqlite":
        return {}
    return {"state": {"url": request.getfixturevalue("pg_url"), "replica": "a"}}


def open_state(tmp_path: Path, backend: dict[str, Any]) -> SqliteStore | PostgresStore:
    if backend:
        return PostgresStore(backend["state"]["url"], holder="test")
    return SqliteStore(tmp_path / "alertd.db")


async def stored(tmp_path: Path, backend: dict[str, Any]) -> dict[SeriesKey, AlertState]:
    async with open_state(tmp_path, backend) as store:
        return {k: v for k, v in (await store.load_states()).items() if k.rule == "tokens"}


@asynccontextmanager
async def daemon_on(config: Path, later: float = 0.0) -> AsyncIterator[Daemon]:
    """The daemon on ``config``, its clock ``later`` seconds after the simulator's now."""
    daemon = Daemon(config, clock=OffsetClock(TEST_NOW + later - time.time()),
                    systemd=SystemdNotifier(""))
    async with daemon.running(load_checked(config)):
        yield daemon


def mark(config: Path, account: str) -> None:
    """Marks ``account`` as the one that was ``stripe.api_key``."""
    data = yaml.safe_load(config.read_text())
    for entry in data["accounts"]:
        entry["was_stripe_api_key"] = entry["name"] == account
    config.write_text(yaml.safe_dump(data))


def told(hooks: Hooks) -> list[Hook]:
    return hooks.at("/alertd")


async def hook_count(hooks: Hooks, count: int, what: str) -> list[Hook]:
    await eventually(lambda: len(told(hooks)) >= count, what=what)
    return told(hooks)


def alerts_of(hook: Hook) -> list[tuple[str, str, str | None, str]]:
    """(status, customer, account label, summary) of each alert of a webhook body."""
    return sorted((a["status"], a["labels"]["customer"], a["labels"].get("account"),
                   a["annotations"]["summary"]) for a in hook.body["alerts"])


async def first_release_alerts(tmp_path: Path, sim_url: str, hooks: Hooks,
                               backend: dict[str, Any]) -> tuple[Hook, dict[SeriesKey,
                                                                            AlertState]]:
    """One alert per customer firing under ``stripe.api_key``, told and stored."""
    async with daemon_on(write_config(tmp_path, sim_url, hooks.url, [TOKENS],
                                      **backend)) as daemon:
        await daemon.poll(("tokens",))
        (hook,) = await hook_count(hooks, 1, "the firing notification")
    before = await stored(tmp_path, backend)
    assert hook.body["status"] == "firing" and len(before) == len(hook.body["alerts"]) >= 2
    assert {a[2:] for a in alerts_of(hook)} == {(None, "one key/-")}
    return hook, before


async def test_one_account_adopts_the_alerts_of_stripe_api_key(
    tmp_path: Path, backend: dict[str, Any], caplog: pytest.LogCaptureFixture,
) -> None:
    async with running_simulator(customers=3, days=40, now=TEST_NOW) as sim, \
            hooks_sink() as hooks:
        fired, before = await first_release_alerts(tmp_path, sim.url, hooks, backend)
        config = accounts_config(tmp_path, {"eu": sim.url}, hooks.url, [TOKENS], **backend)
        with caplog.at_level(logging.INFO, logger="alertd.daemon"):
            async with daemon_on(config) as daemon:
                # At start, before any poll: the old label sets are told resolved...
                resolved = (await hook_count(hooks, 2, "the resolve"))[1]
                adopted = await stored(tmp_path, backend)
                await daemon.poll(("tokens",), account="eu")
                # ...and the first poll files the adopted alerts, still firing, as eu's.
                again = (await hook_count(hooks, 3, "the adopted alerts"))[2]
        assert "adopted the alerts of the former stripe.api_key account=eu adopted=3 " \
               "kept_own=0 resolved=3" in caplog.text
        async with daemon_on(config):  # settled once: a restart adopts nothing more
            pass
        after = await stored(tmp_path, backend)
    assert resolved.body["status"] == "resolved"
    assert [a["fingerprint"] for a in resolved.body["alerts"]] == [
        a["fingerprint"] for a in fired.body["alerts"]]
    assert [a[:3] for a in alerts_of(resolved)] == [("resolved", c, None)
                                                    for _, c, _, _ in alerts_of(fired)]
    # Every state moved to the same series of eu, unchanged: the episodes carry on.
    assert adopted == {dataclasses.replace(k, account="eu"): v for k, v in before.items()}
    assert again.body["status"] == "firing" and again.body["commonLabels"]["account"] == "eu"
    assert alerts_of(again) == [("firing", c, "eu", "eu/eu") for _, c, _, _ in alerts_of(fired)]
    assert {k.account for k in after} == {"eu"}
    assert {k: v.firing_since for k, v in after.items()} == {
        k: v.firing_since for k, v in adopted.items()}
    assert len(told(hooks)) == 3


@pytest.mark.parametrize("marked", [None, "us"])
async def test_several_accounts_adopt_only_with_a_mark(
    tmp_path: Path, marked: str | None,
) -> None:
    backend: dict[str, Any] = {}
    async with running_simulator(customers=3, days=40, now=TEST_NOW) as sim, \
            hooks_sink() as hooks:
        fired, before = await first_release_alerts(tmp_path, sim.url, hooks, backend)
        config = accounts_config(tmp_path, {"eu": sim.url, "us": sim.url}, hooks.url,
                                 [TOKENS])
        if marked:
            mark(config, marked)
        async with daemon_on(config):
            resolved = (await hook_count(hooks, 2, "the resolve"))[1]
            settled = await stored(tmp_path, backend)
    # Either way the receivers hear that the old label sets are over.
    assert resolved.body["status"] == "resolved"
    assert [a[:2] for a in alerts_of(resolved)] == [("resolved", c)
                                                    for _, c, _, _ in alerts_of(fired)]
    if marked:
        assert settled == {dataclasses.replace(k, account="us"): v for k, v in before.items()}
    else:
        assert settled == {}  # resolved and forgotten; eu and us start afresh at their polls


async def test_an_account_removed_from_accounts_resolves(
    tmp_path: Path, backend: dict[str, Any],
) -> None:
    async with running_simulator(customers=2, days=40, now=TEST_NOW) as sim, \
            hooks_sink() as hooks:
        both = accounts_config(tmp_path, {"eu": sim.url, "us": sim.url}, hooks.url, [TOKENS],
                               **backend)
        async with daemon_on(both) as daemon:
            await daemon.poll(("tokens",), account="eu")
            await daemon.poll(("tokens",), account="us")
            await hook_count(hooks, 2, "one notification per account")
        before = await stored(tmp_path, backend)
        only_eu = accounts_config(tmp_path, {"eu": sim.url}, hooks.url, [TOKENS], **backend)
        async with daemon_on(only_eu):
            gone = (await hook_count(hooks, 3, "us's resolve"))[2]
        after = await stored(tmp_path, backend)
    assert gone.body["status"] == "resolved" and gone.body["commonLabels"]["account"] == "us"
    assert [a[:3] for a in alerts_of(gone)] == [("resolved", c, "us")
                                                for c in sorted({k.customer for k in before})]
    assert after == {k: v for k, v in before.items() if k.account == "eu"}
    assert len(told(hooks)) == 3



async def test_a_resolve_held_by_group_interval_is_sent_when_due_even_after_a_restart(
    tmp_path: Path, backend: dict[str, Any],
) -> None:
    async with running_simulator(customers=2, days=40, now=TEST_NOW) as sim, \
            hooks_sink() as hooks:
        await first_release_alerts(tmp_path, sim.url, hooks, backend)
        config = accounts_config(tmp_path, {"eu": sim.url, "us": sim.url}, hooks.url,
                                 [TOKENS], route={"group_interval": "1h"}, **backend)
        async with daemon_on(config):  # resolved now, but told only an hour after the firing
            assert await stored(tmp_path, backend) == {}
        assert len(told(hooks)) == 1
        async with daemon_on(config, later=3700):  # no "" state is left, only its group
            resolved = (await hook_count(hooks, 2, "the held resolve"))[1]
    assert resolved.body["status"] == "resolved" and len(resolved.body["alerts"]) == 2
    async with open_state(tmp_path, backend) as store:
        assert await store.load_groups() == {}


async def test_going_back_to_stripe_api_key_resolves_the_accounts_alerts(
    tmp_path: Path,
) -> None:
    async with running_simulator(customers=2, days=40, now=TEST_NOW) as sim, \
            hooks_sink() as hooks:
        config = accounts_config(tmp_path, {"eu": sim.url}, hooks.url, [TOKENS])
        async with daemon_on(config) as daemon:
            await daemon.poll(("tokens",), account="eu")
            await hook_count(hooks, 1, "eu's notification")
        one_key = write_config(tmp_path, sim.url, hooks.url, [TOKENS])
        async with daemon_on(one_key) as daemon:
            gone = (await hook_count(hooks, 2, "eu's resolve"))[1]
            assert await stored(tmp_path, {}) == {}
            await daemon.poll(("tokens",))
            fresh = (await hook_count(hooks, 3, "the one key's notification"))[2]
    assert gone.body["status"] == "resolved" and gone.body["commonLabels"]["account"] == "eu"
    assert {a[2:] for a in alerts_of(fresh)} == {(None, "one key/-")}
    assert len(told(hooks)) == 3


async def test_a_held_resolve_survives_a_reload(tmp_path: Path) -> None:
    async with running_simulator(customers=2, days=40, now=TEST_NOW) as sim, \
            hooks_sink() as hooks:
        await first_release_alerts(tmp_path, sim.url, hooks, {})
        config = accounts_config(tmp_path, {"eu": sim.url, "us": sim.url}, hooks.url,
                                 [TOKENS], route={"group_interval": "1h"})
        async with daemon_on(config) as daemon:
            assert await stored(tmp_path, {}) == {} and len(told(hooks)) == 1  # held
            daemon.clock.offset += 3700  # type: ignore[attr-defined]
            assert await daemon.reload()  # the new world flushes it, now that it is due
            resolved = (await hook_count(hooks, 2, "the held resolve"))[1]
    assert resolved.body["status"] == "resolved" and len(resolved.body["alerts"]) == 2

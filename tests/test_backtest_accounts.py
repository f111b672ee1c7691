"""``alertd backtest`` with ``accounts:``: every account replayed through its own Stripe
client (or the one ``--account`` names), each firing and notification naming its account.

Both accounts are simulators of the same seed, so they have the same customers, usage and
incidents: each account's replay must then be the one-key replay of the same data, its keys
carrying the account."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from alertd.clock import FakeClock, iso
from alertd.commands.backtest import run_command
from alertd.errors import ConfigError
from alertd.model import SeriesKey
from alertd.service.world import load_world
from alertd.sim.testing import TEST_NOW, running_simulator
from tests.test_backtest import DAYS, QUOTA_RULE, Terminal, arguments, write_config

INCIDENTS: dict[str, Any] = {"customers": 3, "days": DAYS + 5, "incident_rate": 4.0, "seed": 2,
                           "incident_weights": {"overuse": 1.0, "stop": 1.0}}


def accounts_config(folder: Path, sims: dict[str, str], *,
                    stopped_in: list[str] | None = None) -> Path:
    """test_backtest's config with one account per simulator; ``calls-stopped`` watches
    only ``stopped_in`` when given."""
    path = write_config(folder, "http://unused.invalid")
    config = yaml.safe_load(path.read_text())
    key = config["stripe"].pop("api_key")
    del config["stripe"]["api_base"]
    config["accounts"] = [{"name": name, "api_key": key, "api_base": url}
                          for name, url in sims.items()]
    path.write_text(yaml.safe_dump(config))
    if stopped_in is not None:
        rules = yaml.safe_load(QUOTA_RULE)
        rules["rules"][1]["accounts"] = stopped_in
        (folder / "rules.yaml").write_text(yaml.safe_dump(rules))
    return path


async def backtest(config: Path, **overrides: Any) -> dict[str, Any]:
    out = io.StringIO()
    code = await run_command(load_world(config), arguments(until=iso(TEST_NOW), **overrides),
                             clock=FakeClock(TEST_NOW), stdout=out, stderr=io.StringIO())
    assert code == 0
    document: dict[str, Any] = json.loads(out.getvalue())
    return document


def without_account(entries: list[dict[str, Any]], account: str) -> list[dict[str, Any]]:
    """The entries of ``account``, their ``account`` key removed."""
    return [{k: v for k, v in e.items() if k != "account"} for e in entries
            if e.get("account") == account]


async def test_every_account_is_replayed_and_named(tmp_path: Path) -> None:
    async with running_simulator(**INCIDENTS) as eu, running_simulator(**INCIDENTS) as us:
        (tmp_path / "one").mkdir()
        alone = await backtest(write_config(tmp_path / "one", eu.url))
        eu_alone = eu.stats()["ok"]
        both = await backtest(accounts_config(tmp_path, {"eu": eu.url, "us": us.url}))
        requests = eu.stats()["ok"] - eu_alone + us.stats()["ok"]
        us_usage = us.stats()["by_endpoint"]["meter_usage"]
    assert "account" not in json.dumps(alone)  # one key: the first release's document
    assert alone["firings"] and alone["notifications"]
    assert (both["since"], both["until"]) == (alone["since"], alone["until"])
    assert both["requests"] == requests and us_usage > 0  # each account asks its own Stripe
    assert {f["account"] for f in both["firings"]} == {"eu", "us"}
    assert {n["account"] for n in both["notifications"]} == {"eu", "us"}
    for account in ("eu", "us"):
        # The same data in each account: its replay is the one-key replay of that data...
        assert without_account(both["firings"], account) == alone["firings"]
        told = without_account(both["notifications"], account)
        assert [(n["at"], n["receiver"], n["status"], n["reason"]) for n in told] == [
            (n["at"], n["receiver"], n["status"], n["reason"]) for n in alone["notifications"]]
        # ...with its own series: fingerprints name the account, as the daemon's do.
        for sent, firing in zip((n for n in told if n["status"] == "firing"),
                                without_account(both["firings"], account), strict=False):
            assert sent["fingerprints"] == [
                SeriesKey(firing["rule"], firing["customer"], account=account).fingerprint]
    assert [f["at"] for f in both["firings"]] == sorted(f["at"] for f in both["firings"])


async def test_one_account_with_the_account_flag(tmp_path: Path) -> None:
    async with running_simulator(**INCIDENTS) as eu, running_simulator(**INCIDENTS) as us:
        config = accounts_config(tmp_path, {"eu": eu.url, "us": us.url})
        started = eu.stats()["by_endpoint"].get("meter_usage", 0)
        only_us = await backtest(config, account="us")
        eu_usage = eu.stats()["by_endpoint"].get("meter_usage", 0)
        both = await backtest(config)
    assert eu_usage == started  # eu's usage was never asked for
    assert only_us["firings"] and {f["account"] for f in only_us["firings"]} == {"us"}
    assert only_us["firings"] == [f for f in both["firings"] if f["account"] == "us"]
    assert only_us["notifications"] == [n for n in both["notifications"]
                                        if n["account"] == "us"]


async def test_a_rule_watching_one_account_is_replayed_there_only(tmp_path: Path) -> None:
    async with running_simulator(**INCIDENTS) as eu, running_simulator(**INCIDENTS) as us:
        config = accounts_config(tmp_path, {"eu": eu.url, "us": us.url}, stopped_in=["eu"])
        stopped = await backtest(config, rule=["calls-stopped"])
        out, screen = io.StringIO(), Terminal()
        await run_command(load_world(config), arguments(format="text", until=iso(TEST_NOW)),
                          clock=FakeClock(TEST_NOW), stdout=out, stderr=screen)
    assert stopped["firings"] and {f["account"] for f in stopped["firings"]} == {"eu"}
    lines = out.getvalue().splitlines()
    firings = [line.split() for line in lines[1:lines.index("")]]
    assert {f[3].split("/")[0] for f in firings} == {"eu", "us"}  # CUSTOMER is eu/cus_…
    assert {f[2] for f in firings if f[3].startswith("us/")} == {"token-quota"}
    notices = lines[lines.index("") + 1:-2]
    assert notices[0].split()[:4] == ["AT", "(UTC)", "ACCOUNT", "RECEIVER"]
    assert {n.split()[2] for n in notices[1:]} == {"eu", "us"}
    assert "; 2 accounts (eu, us), 2 rules, 6 customers;" in lines[-1]


async def test_an_unknown_account_is_a_usage_error(tmp_path: Path) -> None:
    config = accounts_config(tmp_path, {"eu": "http://unused.invalid", "us": "http://unused.invalid"})
    with pytest.raises(ConfigError, match=r"--account ap: no such account \(configured "
                                          r"accounts: eu, us\)"):
        await backtest(config, account="ap")
    (tmp_path / "one").mkdir()
    with pytest.raises(ConfigError, match="the config has no accounts: list"):
        await backtest(write_config(tmp_path / "one", "http://unused.invalid"), account="eu")

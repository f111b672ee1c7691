"""One bad rule, customer or Stripe answer never stops the others, end to end: ``check
--dry-run`` against the simulator, and a real ``alertd run`` subprocess delivering to a
loopback webhook while one rule names a customer Stripe does not have and one customer's
answers carry ``NaN``.

Each bad (rule, customer) gets an ``error`` finding that names it; another rule still fires and
its notification is sent; the source-failure alert and ``/readyz`` only follow real, repeated
source failures.
"""

from __future__ import annotations

import argparse
import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from alertd.alerts import SOURCE_FAILURE
from alertd.clock import iso
from alertd.commands.check import run_check
from alertd.service.world import load_world
from alertd.sim.faults import Fault, MalformedBody
from alertd.sim.server import Simulator
from alertd.sim.testing import API_KEY, TEST_NOW, running_simulator
from tests.service.test_daemon import (  # the daemon tests' own helpers: processes, sinks, metrics
    DaemonProcess,
    NotifySocket,
    eventually,
    get,
    hooks_sink,
    log_file,
    metric_samples,
    write_config,
)

__all__ = ["log_file"]  # a fixture, imported for its use below

TOKENS = "mtr_sim_tokens"
GHOST = "cus_ghost_does_not_exist"


def month_rule(name: str, **fields: Any) -> dict[str, Any]:
    """Month to date ``>= 0``: fires for every customer whose usage could be read."""
    return {"name": name, "meter": TOKENS, "window": "month", "every": "2s",
            "condition": {"type": "threshold", "op": ">=", "value": 0}, **fields}


RULES = [month_rule("healthy"), month_rule("ghost", customers=[GHOST])]


def check_config(folder: Path, sim: Simulator, rules: list[dict[str, Any]]) -> Path:
    (folder / "rules.yaml").write_text(yaml.safe_dump({"rules": rules}))
    config = {
        "stripe": {"api_base": sim.url, "api_key": API_KEY, "max_retries": 1,
                   "retry_max_elapsed": "2s"},
        "state": {"path": str(folder / "alertd.db")},
        "rule_files": ["rules.yaml"],
        "customers": {"all": True},
        "receivers": [{"name": "ops", "webhook": {"url": "http://127.0.0.1:9/hook"}}],
        "route": {"receiver": "ops", "group_by": ["rule", "customer"]},
    }
    path = folder / "alertd.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


async def dry_run(config: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, Any]:
    namespace = argparse.Namespace(at=iso(TEST_NOW - 600), rule=None, customer=None,
                                   format="json", dry_run=True)
    code = await run_check(load_world(config), namespace)
    return code, json.loads(capsys.readouterr().out)


def by_state(document: Any, rule: str) -> dict[str, set[str]]:
    states: dict[str, set[str]] = {}
    for finding in document["findings"]:
        if finding["rule"] == rule:
            states.setdefault(finding["state"], set()).add(finding["customer"])
    return states


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with running_simulator(customers=4, days=40, now=TEST_NOW) as running:
        yield running


async def test_check_a_missing_customer_is_an_error_finding_and_the_rest_fires(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, document = await dry_run(check_config(tmp_path, sim, RULES), capsys)
    assert code == 0  # a missing customer is a configuration problem, not a source failure
    customers = {p.id for p in sim.generator.profiles()}
    assert by_state(document, "healthy") == {"firing": customers}
    [ghost] = [f for f in document["findings"] if f["rule"] == "ghost"]
    assert (ghost["customer"], ghost["state"], ghost["value"]) == (GHOST, "error", None)
    assert f"Stripe has no customer {GHOST}" in ghost["message"]
    sent = [n for n in document["notifications"] if n["suppressed_by"] is None]
    assert len(sent) == len(customers) and {n["status"] for n in sent} == {"firing"}
    assert not any(f["rule"] == SOURCE_FAILURE for f in document["findings"])


@pytest.mark.parametrize(("body", "shown"), [
    ("nan", "value is nan"),
    ("huge", "value is 1e+308"),
    ("huge_int", "an integer of about 401 digits"),
])
async def test_check_an_unusable_number_fails_only_its_customer(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str], body: MalformedBody,
    shown: str,
) -> None:
    bad = sim.generator.profiles()[1].id
    sim.add_fault(Fault("malformed", body=body, path="/v1/billing/analytics", customer=bad))
    code, document = await dry_run(check_config(tmp_path, sim, RULES[:1]), capsys)
    assert code == 3  # that customer's answer could not be read: the source failed for it
    others = {p.id for p in sim.generator.profiles()} - {bad}
    assert by_state(document, "healthy") == {"firing": others, "error": {bad}}
    [error] = [f for f in document["findings"] if f["state"] == "error"]
    assert shown in error["message"] and "request_id=req_" in error["message"]
    assert error["value"] is None
    sent = {n["fingerprints"][0] for n in document["notifications"]
            if n["suppressed_by"] is None}
    assert len(sent) == len(others)


async def test_check_repeated_rows_are_counted_once(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = check_config(tmp_path, sim, RULES[:1])
    _, plain = await dry_run(config, capsys)
    sim.add_fault(Fault("malformed", body="duplicate_rows", path="/v1/billing/analytics"))
    code, doubled = await dry_run(config, capsys)
    assert code == 0
    values = {f["customer"]: f["value"] for f in plain["findings"]}
    assert {f["customer"]: f["value"] for f in doubled["findings"]} == values
    assert all(value > 0 for value in values.values())
    assert "repeated usage rows dropped" in caplog.text


# --------------------------------------------------------------------------- the daemon


async def test_daemon_keeps_alerting_while_one_rule_and_one_customer_are_broken(
    tmp_path: Path, log_file: Path,
) -> None:
    async with running_simulator(customers=4, days=40, now=None) as sim, \
            hooks_sink() as hooks, NotifySocket() as notify:
        profiles = [p.id for p in sim.generator.profiles()]
        bad = profiles[1]
        sim.add_fault(Fault("malformed", body="nan", path="/v1/billing/analytics",
                            customer=bad))
        config = write_config(tmp_path, sim.url, hooks.url, RULES)
        async with DaemonProcess(config, notify, log_file) as daemon:
            await notify.next("READY=1")
            url = await daemon.server_url()
            # Each healthy customer's alert is delivered; the broken customer's never is.
            await eventually(lambda: hooks.alerts().count(("healthy", "firing")) == 3,
                             what="the healthy customers' alerts")

            async def errors_counted() -> bool:
                _, samples = metric_samples((await get(f"{url}/metrics")).text)
                return all(samples.get(("alertd_rule_evaluations_total",
                                        (("outcome", "error"), ("rule", rule))), 0) >= 2
                           for rule in ("ghost", "healthy"))

            await eventually(errors_counted, what="error evaluations in the metrics")
            assert (await get(f"{url}/readyz")).status_code == 200
            daemon.signal(signal.SIGTERM)
            assert await daemon.exit_code() == 0
    delivered = [a for hook in hooks.at("/alertd") for a in hook.body["alerts"]]
    assert {a["labels"]["customer"] for a in delivered} == set(profiles) - {bad}
    assert all(a["labels"]["alertname"] == "healthy" for a in delivered)  # no source alert
    log = log_file.read_text()
    assert f"customer unavailable rule=ghost customer={GHOST}" in log
    assert f"usage request failed customer={bad}" in log and "nan" in log

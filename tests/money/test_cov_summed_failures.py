"""A summed cost rule whose usage cannot be read for one customer: that customer's finding is
an ``error`` saying why, and every other customer is judged exactly as without the failure.

``alertd check --dry-run`` against the simulator, with a fault on the analytics requests of one
customer only. This was the unread-answer branch of ``service/summed.py`` no test reached
(coverage, December 2026); the project's bar is that one bad answer never stops the others.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from alertd.clock import iso
from alertd.commands.check import run_check
from alertd.errors import EXIT_OK, EXIT_SOURCE
from alertd.service.world import load_world
from alertd.sim.faults import Fault
from alertd.sim.server import Simulator
from alertd.sim.testing import TEST_NOW
from tests.money.test_summed_e2e import SUMMED, sim, write_config

__all__ = ["sim"]  # the fixture, used by name


async def check(config: Path, capsys: pytest.CaptureFixture[str]
                ) -> tuple[int, dict[str, dict[str, Any]]]:
    """``check --dry-run --format json`` at TEST_NOW: its exit code and findings by customer."""
    namespace = argparse.Namespace(at=iso(TEST_NOW), rule=None, customer=None, format="json",
                                   dry_run=True)
    code = await run_check(load_world(config), namespace)
    findings = json.loads(capsys.readouterr().out)["findings"]
    return code, {f["customer"]: f for f in findings}


async def test_one_customer_unread_leaves_the_others_judged_as_before(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, sim, SUMMED)
    code, before = await check(config, capsys)
    assert code == EXIT_OK
    judged = [c for c, f in before.items() if f["state"] != "error"]
    victim = judged[0]
    sim.add_fault(Fault("status", status=400, path="/v1/billing/analytics", customer=victim))
    code, after = await check(config, capsys)
    assert code == EXIT_SOURCE  # the contract: Stripe failed, and the output is still whole
    assert after.keys() == before.keys()
    assert after[victim]["state"] == "error" and after[victim]["value"] is None
    assert after[victim]["message"].startswith("could not read usage: "), after[victim]
    others = {c: f for c, f in after.items() if c != victim}
    assert others == {c: f for c, f in before.items() if c != victim}
    assert any(f["state"] == "firing" for f in others.values())  # still judged, not skipped

"""``alertd backtest`` when Stripe refuses part of the history: the first Stripe error is what
the user sees (one line, exit 3), not an exception group, and nothing half-done is printed.

Against the simulator with a fault on one customer's analytics requests (coverage, December
2026: the failed-fetch branch of ``commands/backtest.py`` was unreached).
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import pytest

from alertd.cli import report
from alertd.clock import FakeClock, iso
from alertd.commands.backtest import run_command
from alertd.errors import EXIT_SOURCE, SourceError
from alertd.service.world import load_world
from alertd.sim.faults import Fault
from alertd.sim.testing import TEST_NOW, running_simulator

DAY = 86400


async def test_a_refused_history_request_is_one_line_and_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with running_simulator(customers=3, days=8, now=TEST_NOW) as sim:
        (tmp_path / "rules.yaml").write_text(
            "rules:\n  - name: daily\n    meter: mtr_sim_tokens\n"
            "    condition: {type: threshold, value: 1000}\n")
        config = tmp_path / "alertd.yaml"
        config.write_text(
            f"stripe: {{api_base: '{sim.url}', api_key: sk_test_bt, max_retries: 0}}\n"
            f"rule_files: ['{tmp_path / 'rules.yaml'}']\ncustomers: {{all: true}}\n")
        victim = sim.generator.profiles()[2].customer().id
        sim.add_fault(Fault("status", status=400, path="/v1/billing/analytics",
                            customer=victim))
        out, err = io.StringIO(), io.StringIO()
        arguments = argparse.Namespace(since=iso(TEST_NOW - 2 * DAY), until=iso(TEST_NOW),
                                       rule=None, customer=None, format="json")
        with pytest.raises(SourceError) as raised:
            await run_command(load_world(config), arguments, clock=FakeClock(TEST_NOW),
                              stdout=out, stderr=err)
    assert out.getvalue() == ""  # no partial result that looks like a whole one
    assert report(raised.value) == EXIT_SOURCE
    shown = capsys.readouterr().err.splitlines()
    assert len(shown) == 1 and shown[0].startswith("alertd: "), shown
    assert "Injected error 400" in shown[0] and "req_sim" in shown[0]

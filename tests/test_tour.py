"""The README's five-minute tour, command by command in the README's order, against
``alertd simulate`` as a real subprocess: each exits 0 and shows something.

This is the first hour of a new user: a dry run that shows an empty table, an option the
README promises that is refused, or a help text without defaults is a bug here.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()

# The whole tour (a 30-day backtest included) on a loaded 2-core machine: minutes, not seconds.
pytestmark = pytest.mark.timeout(900)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("ALERTD_", "STRIPE_"))}


def alertd(*args: str, cwd: Path, code: int = 0) -> str:
    """What the command printed, standard output then standard error (as a terminal shows)."""
    result = subprocess.run([sys.executable, "-m", "alertd", *args], cwd=cwd, env=env(),
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == code, (args, result.stdout, result.stderr)
    return result.stdout + result.stderr


def alertd_json(*args: str, cwd: Path) -> Any:
    """A ``--format json`` command's document: standard output alone, since a slow machine may
    log a retried request on standard error beside it."""
    result = subprocess.run([sys.executable, "-m", "alertd", *args], cwd=cwd, env=env(),
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def tour(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("tour")
    port = free_port()
    sim = subprocess.Popen([sys.executable, "-m", "alertd", "simulate", "--port", str(port)],
                           env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True)
    assert sim.stdout is not None
    first = sim.stdout.readline()
    assert first.startswith("listening on"), first
    (folder / "alertd.yaml").write_text(f"""\
stripe: {{api_base: "http://127.0.0.1:{port}", api_key: sk_test_tour}}
state: {{path: ./alertd.db}}
server: {{listen: ""}}
rule_files: ["{ROOT}/rules/*.yaml"]
customers: {{all: true}}
receivers:
  - name: ops
    email: {{to: [ops@example.com]}}
route: {{receiver: ops}}
""")
    try:
        yield folder
    finally:
        sim.terminate()
        sim.wait(10)


def test_the_readme_tour_in_order(tour: Path) -> None:
    # 2. Check offline.
    out = alertd("validate", "-c", "alertd.yaml", cwd=tour)
    assert "are valid (7 rule file(s), 12 rule(s) loaded)" in out
    out = alertd("test", *sorted(str(p) for p in (ROOT / "rules" / "tests").glob("*.yaml")),
                 cwd=tour)
    assert re.search(r"\d+ passed, 0 failed", out)
    # 3. Dry-run: the simulator's incidents are under way now, so something fires.
    out = alertd("--dry-run", "-c", "alertd.yaml", cwd=tour)
    assert " firing" in out and "would send" in out
    document = alertd_json("--dry-run", "-c", "alertd.yaml", "--format", "json",
                           cwd=tour)
    firing = [f for f in document["findings"] if f["state"] == "firing"]
    assert firing, "the tour's dry run shows nothing firing"
    yesterday = time.strftime("%Y-%m-%dT18:00:00Z", time.gmtime(time.time() - 86400))
    out = alertd("check", "--dry-run", "--at", yesterday, "-c", "alertd.yaml", cwd=tour)
    assert out.startswith("RULE ") and "evaluated" in out
    rule, customer = firing[0]["rule"], firing[0]["customer"]
    for command in (["check", "--dry-run"], ["--dry-run"]):
        picked = alertd_json(*command, "--rule", rule, "--customer", customer,
                             "--format", "json", "-c", "alertd.yaml", cwd=tour)
        assert picked["findings"] and {f["rule"] for f in picked["findings"]} == {rule}
        assert {f["customer"] for f in picked["findings"]} == {customer}
    out = alertd("--dry-run", "--rule", rule, "-c", "alertd.yaml", cwd=tour)
    header, *rows = out.split("RECEIVER", 1)[1].splitlines()
    assert "RULE" in header and "CUSTOMER" in header
    assert rows and all(rule in row for row in rows if row.strip())
    out = alertd("backtest", "--since", "30d", "-c", "alertd.yaml", cwd=tour)
    assert re.search(r"[1-9]\d* firings", out)
    out = alertd("render", "--rule", "gpt4-daily-usage", "--receiver", "ops",
                 "-c", "alertd.yaml", cwd=tour)
    assert "Subject: [FIRING" in out
    # Silences, as the README shows them.
    out = alertd("silence", "add", "rule=gpt4-daily-usage", "customer=~cus_12.*",
                 "--duration", "4h", "--comment", "migration", "-c", "alertd.yaml", cwd=tour)
    assert out.startswith("added silence") and "warning" not in out
    silence_id = out.split()[2][:6]
    assert "gpt4-daily-usage" in alertd("silence", "list", "-c", "alertd.yaml", cwd=tour)
    assert "expired" in alertd("silence", "expire", silence_id, "-c", "alertd.yaml", cwd=tour)


def test_the_readme_shows_these_commands_in_this_order() -> None:
    order = ["alertd demo", "alertd validate", "alertd test rules/tests", "alertd --dry-run -c",
             "alertd check --dry-run --at", "alertd check --dry-run --rule",
             "alertd backtest --since 30d", "alertd render --rule"]
    places = [README.index(command) for command in order]
    assert places == sorted(places)


def test_a_silence_that_looks_wrong_is_added_with_warnings(tour: Path) -> None:
    out = alertd("silence", "add", "rule=no-such-rule", "--duration", "99999d",
                 "--comment", "typo", "-c", "alertd.yaml", cwd=tour)
    assert "warning: the silence lasts 99999d" in out
    assert "warning: rule=no-such-rule: no rule of that name is loaded" in out


def test_short_form_options_need_dry_run(tour: Path) -> None:
    out = alertd("--rule", "x", "-c", "alertd.yaml", cwd=tour, code=2)
    assert "--rule without a command: use them with --dry-run" in out


def test_simulate_help_describes_every_option_with_its_default(tour: Path) -> None:
    out = alertd("simulate", "--help", cwd=tour).split("options:", 1)[1]
    for option in ("--port", "--customers", "--seed", "--days", "--incident-rate", "--rate",
                   "--latency"):
        line = out[out.index(option):].split("\n  -", 1)[0]
        assert "(default:" in line, line
    assert "(default: 40)" in out  # the demo's and the README's number


def test_validate_without_a_config_file_says_so(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "one.yaml").write_text((ROOT / "rules" / "threshold.yaml").read_text())
    result = subprocess.run([sys.executable, "-m", "alertd", "validate"], cwd=tmp_path,
                            env={**env(), "STRIPE_API_KEY": "sk_test_x"},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "no config file found" in result.stderr
    assert "no config file found: the built-in defaults are valid (1 rule file(s), 2 rule(s) " \
           "loaded)" in result.stdout

"""The shipped unit file: systemd accepts it and rates its exposure at most 1.2.

These run wherever ``systemd-analyze`` is installed (``.ci/run`` installs it); without it they
are skipped with the reason printed, and under ``CI=true`` they fail (``tests/conftest.py``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "alertd.service"
ANALYZE = shutil.which("systemd-analyze") or "systemd-analyze"
needs_analyze = pytest.mark.needs_program("systemd-analyze")


def unit_copy(tmp_path: Path) -> Path:
    # verify checks that ExecStart binaries exist; point them at one that does.
    text = UNIT.read_text().replace("/usr/local/bin/alertd", "/bin/true")
    target = tmp_path / "alertd.service"
    target.write_text(text)
    return target


def test_unit_declares_the_contract() -> None:
    text = UNIT.read_text()
    for line in ("Type=notify", "ExecReload=/bin/kill -HUP $MAINPID", "DynamicUser=yes",
                 "StateDirectory=alertd", "ConfigurationDirectory=alertd", "WatchdogSec=",
                 "LoadCredential=stripe_api_key:", "TimeoutStopSec=", "PrivateMounts=yes"):
        assert line in text


def test_unit_has_no_empty_settings() -> None:
    # An empty assignment (``IPAddressDeny=``) resets a list to nothing: it reads like
    # hardening and is none. Every setting in the unit has a value.
    settings = [line for line in UNIT.read_text().splitlines()
                if line and not line.startswith(("#", "["))]
    empty = [line for line in settings if line.endswith("=")
             and line.split("=", 1)[0] not in ("CapabilityBoundingSet", "AmbientCapabilities")]
    assert empty == []


@needs_analyze
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    result = subprocess.run([ANALYZE, "verify", str(unit_copy(tmp_path))],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "alertd.service" not in result.stderr, result.stderr


@needs_analyze
def test_security_exposure_at_most_1_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [ANALYZE, "security", "--offline=yes", str(unit_copy(tmp_path))],
        capture_output=True, text=True, timeout=60,
    )
    match = re.search(r"Overall exposure level for alertd\.service: ([0-9.]+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 1.2

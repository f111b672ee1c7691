"""``validate`` refuses the two settings that break the Alertmanager contract, at the key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CONFIG = """\
stripe: {api_key: sk_test_123}
rule_files: []
receivers:
  - name: am
    webhook: {url: "http://127.0.0.1:9093/api/v2/alerts", preset: alertmanager}
    send_resolved: false
  - name: hooks
    webhook: {url: "http://127.0.0.1:9000/hook"}
    send_resolved: false
route:
  receiver: hooks
  routes:
    - match: {severity: critical}
      receiver: am
      repeat_interval: 2d
    - match: {severity: info}
      receiver: hooks
      repeat_interval: 2d
"""


def validate(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "alertd.yaml"
    config.write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALERTD_", "STRIPE_"))}
    return subprocess.run([sys.executable, "-m", "alertd", "validate", "-c", str(config)],
                          capture_output=True, text=True, timeout=60, env=env)


def test_send_resolved_false_and_a_day_long_repeat_are_refused(tmp_path: Path) -> None:
    result = validate(tmp_path, CONFIG)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    config = tmp_path / "alertd.yaml"
    assert f"{config}:6:20: send_resolved: false with the alertmanager preset" in lines[0]
    assert f"{config}:15:24: repeat_interval: 48h reaches receiver 'am'" in lines[1]
    # The plain webhook receiver may do both: nothing else is reported.
    assert lines[2:] == ["2 problem(s) found"], lines


def test_without_them_the_config_is_valid(tmp_path: Path) -> None:
    text = CONFIG.replace("    send_resolved: false\n  - name: hooks", "  - name: hooks")
    text = text.replace("      receiver: am\n      repeat_interval: 2d", "      receiver: am")
    result = validate(tmp_path, text)
    assert result.returncode == 0, result.stderr

"""Suite-wide test switches.

``@pytest.mark.needs_program("NAME", …)`` marks a test that runs a real external program
(Alertmanager, promtool, systemd-analyze). Where one is not on ``PATH`` the test is skipped
with the reason printed; under CI (``CI=true``) it errors instead, so a CI image that lost a
program cannot turn those tests into silent skips (``.ci/run`` installs them).
"""

from __future__ import annotations

import os
import shutil

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "needs_program(*names): runs these external programs; skipped where absent, "
        "an error under CI=true",
    )


def missing_programs(item: pytest.Item) -> list[str]:
    names = [n for marker in item.iter_markers("needs_program") for n in marker.args]
    return [name for name in names if shutil.which(name) is None]


def pytest_runtest_setup(item: pytest.Item) -> None:
    missing = missing_programs(item)
    if not missing:
        return
    reason = f"needs {', '.join(missing)} on PATH (not installed)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}; CI must install it (.ci/run)", pytrace=False)
    pytest.skip(reason)

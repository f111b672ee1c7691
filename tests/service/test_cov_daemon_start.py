"""``Daemon.run`` refuses to start on what a user must fix, in-process: exit 2 and the reason
on stderr, nothing polled, nothing written.

The same promises are checked through ``alertd run`` subprocesses in
``tests/hardening/test_config_refusals.py``; these in-process runs are the ones coverage
counts (coverage, December 2026: ``run``'s refusal branches were unreached).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from alertd.errors import EXIT_CONFIG
from alertd.service.daemon import Daemon
from alertd.service.systemd import SystemdNotifier
from alertd.store.lock import exclusive
from tests.service.test_daemon import rule, write_config

# Nothing answers here: a daemon that got as far as polling would fail loudly instead.
NOWHERE = "http://127.0.0.1:9"


@pytest.fixture(autouse=True)
def restored_logging() -> Iterator[None]:
    """``Daemon.run`` configures the root logger for a process; give it back afterwards."""
    root, ours = logging.getLogger(), logging.getLogger("alertd")
    handlers, level, own_level = list(root.handlers), root.level, ours.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    ours.setLevel(own_level)


async def _run(config: Path) -> int:
    return await Daemon(config, systemd=SystemdNotifier("")).run()


async def test_an_invalid_rule_file_is_exit_2_with_every_problem_located(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, NOWHERE, NOWHERE, [rule("tokens")])
    (tmp_path / "rules" / "bad.yaml").write_text(
        "rules:\n  - name: Bad_Name\n    when: daily usage > 5\n")
    assert await _run(config) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "config problem" in err, err
    assert f"{tmp_path}/rules/bad.yaml:2:11: name: use lower-case letters" in err, err
    assert not (tmp_path / "alertd.db").exists()  # refused before the store was opened


async def test_a_port_in_use_is_exit_2_naming_the_port(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = write_config(tmp_path, NOWHERE, NOWHERE, [rule("tokens")],
                              server={"listen": f"127.0.0.1:{port}"})
        assert await _run(config) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "config problem" in err and str(port) in err, err
    assert "Traceback" not in err


async def test_a_state_file_locked_by_another_alertd_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, NOWHERE, NOWHERE, [rule("tokens")])
    with exclusive(tmp_path / "alertd.db", "the other daemon"):
        assert await _run(config) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "state problem" in err and "in use by another alertd process" in err, err

"""Bounded YAML: an alias bomb, a huge or endlessly nested file is refused quickly, located,
by the rule loader, ``validate`` and a reload of the running daemon alike."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from alertd.config.settings import Settings
from alertd.config.validate import validate_config
from alertd.config.yamlpos import MAX_DEPTH, MAX_DOCUMENT_BYTES, MAX_VALUES, load_located
from alertd.errors import ConfigError
from alertd.rules import load_rules
from tests.service.test_daemon import (  # the real-subprocess helpers are reused
    DaemonProcess,
    NotifySocket,
    get,
    hooks_sink,
    live_simulator,
    log_file,
    rule,
    write_config,
)

__all__ = ["log_file"]  # a fixture, used by name

#: Nine levels of nine aliases: 9**9 (387 million) values once expanded.
ALIAS_BOMB = "\n".join(
    ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    + [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    + ["rules: *a9", ""]
)
MERGE_BOMB = "\n".join(
    ["m0: &m0 {a: 1, b: 2, c: 3, d: 4}"]
    + [f"m{i}: &m{i} {{<<: [" + ", ".join([f"*m{i - 1}"] * 8) + "]}" for i in range(1, 12)]
    + ["rules: [{name: a, <<: *m11}]", ""]
)
EXPANDS = (f"this value expands to more than {MAX_VALUES} values once aliases and merge keys "
           "are expanded (an alias bomb?); repeat it less, or write the values out")


def quickly(call: object, *args: object, seconds: float = 2.0) -> ConfigError:
    """The ConfigError ``call(*args)`` raises, within ``seconds`` of this process's CPU time
    (unbounded, these inputs run for minutes or forever; CPU time, not the wall clock, so a
    loaded machine does not fail it)."""
    started = time.process_time()
    with pytest.raises(ConfigError) as caught:
        call(*args)  # type: ignore[operator]
    assert time.process_time() - started < seconds
    return caught.value


@pytest.mark.parametrize(("text", "at"), [(ALIAS_BOMB, "5:5"), (MERGE_BOMB, "6:14")],
                         ids=["aliases", "merge keys"])
def test_an_expansion_bomb_is_refused_quickly_at_the_value_that_explodes(
    text: str, at: str, tmp_path: Path
) -> None:
    """At the smallest value already too large: ``a4`` repeats ``*a3`` (9**4 values) nine
    times; ``m5`` merges a list of eight ``*m4``."""
    (tmp_path / "bomb.yaml").write_text(text)
    error = quickly(load_rules, [tmp_path / "bomb.yaml"], Settings())
    assert [str(p) for p in error.problems] == [f"{tmp_path / 'bomb.yaml'}:{at}: {EXPANDS}"]


def test_flow_nesting_is_bounded_before_the_scanner_goes_quadratic() -> None:
    text = "rules: " + "[" * 200_000 + "]" * 200_000 + "\n"
    [problem] = quickly(load_located, text, "deep.yaml").problems
    # At the bracket that opens level 65 (the first is at column 8).
    assert str(problem) == f"deep.yaml:1:{8 + MAX_DEPTH}: nested more than {MAX_DEPTH} " \
                           "levels deep"


def test_block_nesting_is_bounded_before_python_recursion_is() -> None:
    text = "rules:\n" + "".join("  " * level + "-\n" for level in range(500))
    [problem] = quickly(load_located, text, "deep.yaml").problems
    assert problem.line == MAX_DEPTH + 1 and problem.message == f"nested more than {MAX_DEPTH} " \
                                                               "levels deep"


def test_a_file_larger_than_the_bound_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_text("rules: []\n" + "# padding\n" * (MAX_DOCUMENT_BYTES // 10))
    [problem] = quickly(load_rules, [path], Settings()).problems
    assert str(problem) == (f"{path}:1:1: the file is larger than 1024 KiB "
                            f"({MAX_DOCUMENT_BYTES + 1} bytes or more); split it into several "
                            "files")


def test_a_legitimate_use_of_aliases_is_untouched(tmp_path: Path) -> None:
    rules = ["rules:", "  - &d {name: r-first, meter: m, every: 5m, when: daily usage > 1}"]
    for index in range(300):
        rules += [f"  - name: r{index}", "    <<: *d"]
    (tmp_path / "many.yaml").write_text("\n".join(rules) + "\n")
    assert len(load_rules([tmp_path / "many.yaml"], Settings())) == 301


def test_validate_refuses_an_alias_bomb_in_the_config_itself(tmp_path: Path) -> None:
    (tmp_path / "alertd.yaml").write_text(ALIAS_BOMB.replace("rules: *a9", "rule_files: *a9"))
    [problem] = quickly(_raise_problems, tmp_path / "alertd.yaml").problems
    assert problem.file == str(tmp_path / "alertd.yaml") and problem.message == EXPANDS


def _raise_problems(path: Path) -> None:
    problems = validate_config(path)
    if problems:
        raise ConfigError(problems)


def test_the_validate_command_on_an_alias_bomb_exits_2_in_seconds(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "bomb.yaml").write_text(ALIAS_BOMB)
    (tmp_path / "alertd.yaml").write_text("rule_files: [rules/*.yaml]\n")
    env = {**os.environ, "STRIPE_API_KEY": "sk_test_bounds"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run([sys.executable, "-m", "alertd", "validate", "-c",
                           str(tmp_path / "alertd.yaml")], capture_output=True, text=True,
                          timeout=60, env=env, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert done.returncode == 2 and cpu < 30  # the child's CPU seconds, not the wall clock
    assert f"bomb.yaml:5:5: {EXPANDS}" in done.stderr


async def test_sighup_with_an_alias_bomb_refuses_it_and_stays_responsive(
    tmp_path: Path, log_file: Path,
) -> None:
    async with live_simulator() as sim, hooks_sink() as hooks, NotifySocket() as notify:
        config = write_config(tmp_path, sim.url, hooks.url, [rule("kept")])
        async with DaemonProcess(config, notify, log_file) as daemon:
            await notify.next("READY=1")
            url = await daemon.server_url()
            mark = len(notify.messages)
            (tmp_path / "rules" / "test.yaml").write_text(ALIAS_BOMB)
            daemon.signal(signal.SIGHUP)
            reloading = await notify.next("RELOADING=1", mark)
            ready = await notify.next("READY=1", reloading, timeout=10.0)
            status = notify.messages[ready][1]
            assert status.startswith("STATUS=reload failed: ") and "test.yaml:5:5:" in status
            assert (await get(f"{url}/healthz")).status_code == 200
            # The old rule is still the running one, and it still polls.
            await notify.next("STATUS=1 rules, 2 customers; last poll", ready)
            assert (await get(f"{url}/healthz")).status_code == 200
            daemon.signal(signal.SIGTERM)
            assert await daemon.exit_code() == 0


def test_a_control_character_is_located_not_a_crash() -> None:
    """Found by the loader's fuzz test: PyYAML's reader raises before any mark exists."""
    [problem] = quickly(load_located, "rules:\n  - name: a\x07b\n", "ctl.yaml").problems
    assert str(problem) == "ctl.yaml:2:12: YAML syntax error: character U+0007 is not allowed " \
                           "in YAML"


def test_values_written_out_are_bounded_while_composing() -> None:
    """Under the byte bound, a flat list of 300,000 numbers: refused at the value past the
    bound, without composing the rest."""
    text = "rules: [" + "1, " * 300_000 + "1]\n"
    # About a second of PyYAML composing 50,000 values, more on a busy machine.
    [problem] = quickly(load_located, text, "flat.yaml", seconds=10.0).problems
    assert problem.message == f"more than {MAX_VALUES} values in one file; split it into " \
                              "several files"
    # The document, the key `rules` and the list are three values; items are 3 columns apart.
    assert (problem.line, problem.col) == (1, 9 + 3 * (MAX_VALUES - 3))

"""The command line's error paths, in-process: each bad input is one line on stderr, the
contract's exit code, and nothing written that should not be.

These are the branches of ``cli.py`` and ``commands/`` no test reached (coverage, December
2026); the subprocess tests in ``tests/hardening/test_user_errors.py`` cover the same promise
for the program as a whole but are not counted by coverage.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from alertd.cli import main
from tests.test_cli import ROOT, config


def _errors(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().err.splitlines()


def _silence_rows(tmp_path: Path) -> int:
    with sqlite3.connect(tmp_path / "state.db") as conn:
        return int(conn.execute("SELECT COUNT(*) FROM silences").fetchone()[0])


def test_selection_options_without_a_command_say_how_to_use_them(
    capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--rule", "a", "--format", "json"]) == 2
    assert _errors(capsys) == [
        "alertd: --rule, --format without a command: use them with --dry-run (alertd --dry-run "
        "--rule NAME) or a command (alertd check ...)"]


def test_no_command_prints_the_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "first steps:" in capsys.readouterr().out


def test_a_file_the_system_refuses_is_named_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope_test.yaml"
    assert main(["test", str(missing)]) == 2
    err = _errors(capsys)
    assert len(err) == 1 and str(missing) in err[0], err
    assert "internal error" not in err[0]


@pytest.mark.parametrize(("options", "words"), [
    (["--duration", "soon"], "--duration:"),
    (["--duration=-1h"], "--duration:"),
    (["--start", "yesterday-ish"], "--start"),
    (["--start", "2020-01-01T00:00:00Z", "--duration", "1h"], "already be over"),
], ids=["word", "negative", "bad start", "over before now"])
def test_a_bad_silence_time_is_one_line_and_adds_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], options: list[str], words: str
) -> None:
    cfg = str(config(tmp_path))
    assert main(["silence", "add", "-c", cfg, "rule=daily-token-quota", "--comment", "x",
                 *options]) == 2
    err = _errors(capsys)
    assert len(err) == 1 and words in err[0], err
    assert main(["silence", "list", "-c", cfg, "--all"]) == 0
    assert capsys.readouterr().out.strip() == "no silences"


def test_a_suspicious_silence_is_added_with_warnings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = str(config(tmp_path))
    assert main(["silence", "add", "-c", cfg, "rule=daily-token-quot", "--duration", "400d",
                 "--comment", "typo in the rule, and far too long", "--author", "me"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("added silence ")
    warnings = captured.err.splitlines()
    assert len(warnings) == 2, warnings
    assert warnings[0].startswith("warning: the silence lasts 400d, until ")
    assert "alertd silence expire" in warnings[0]
    assert warnings[1].startswith("warning: rule=daily-token-quot: no rule of that name")
    assert "daily-token-quota" in warnings[1]  # the known names are listed
    assert _silence_rows(tmp_path) == 1


def test_a_silence_for_the_meta_rules_is_not_warned_about(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = str(config(tmp_path))
    assert main(["silence", "add", "-c", cfg, "alertname=alertd-stale-data", "--comment",
                 "known outage"]) == 0
    assert capsys.readouterr().err == ""


def test_a_silence_is_added_even_when_the_rules_cannot_be_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("rules:\n  - name: a\n   when: x\n")
    cfg = str(config(tmp_path, f"'{broken}'"))
    assert main(["silence", "add", "-c", cfg, "rule=whatever", "--comment", "x"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("added silence ") and captured.err == ""
    assert _silence_rows(tmp_path) == 1


def test_expiring_an_ambiguous_or_unknown_silence_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = str(config(tmp_path))
    for n in range(20):  # 20 ids over 16 hex digits: two share a first digit
        assert main(["silence", "add", "-c", cfg, f"customer=cus_{n}", "--comment", "x"]) == 0
    capsys.readouterr()
    with sqlite3.connect(tmp_path / "state.db") as conn:
        ids = [row[0] for row in conn.execute("SELECT id FROM silences")]
    first = next(i[0] for i in ids if sum(j[0] == i[0] for j in ids) > 1)
    assert main(["silence", "expire", "-c", cfg, first]) == 2
    assert "silences; give more of the id" in _errors(capsys)[0]
    assert main(["silence", "expire", "-c", cfg, "zz"]) == 2
    assert _errors(capsys) == ["alertd: no silence with id 'zz' (see 'alertd silence list --all')"]
    assert main(["silence", "list", "-c", cfg]) == 0
    assert capsys.readouterr().out.count("active") == 20  # nothing expired by mistake


def test_render_for_an_unknown_receiver_lists_the_known_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["render", "-c", str(config(tmp_path)), "--rule", "daily-token-quota",
                 "--receiver", "pager"]) == 2
    assert _errors(capsys) == ["alertd: no receiver 'pager' (known: ops, hooks)"]


def test_render_without_any_receiver_says_what_to_configure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "alertd.yaml"
    path.write_text(f"rule_files: ['{ROOT / 'rules' / '*.yaml'}']\n"
                    f"state: {{path: '{tmp_path / 'state.db'}'}}\n")
    assert main(["render", "-c", str(path), "--rule", "daily-token-quota"]) == 2
    assert _errors(capsys) == [
        "alertd: no receiver to render for: configure receivers or pass --receiver"]


def test_render_uses_a_templates_dir_relative_to_the_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "email_subject.txt").write_text("OWN SUBJECT {{ status }}")
    path = config(tmp_path)
    path.write_text(path.read_text() + "templates_dir: mine\n")
    assert main(["render", "-c", str(path), "--rule", "daily-token-quota",
                 "--receiver", "ops"]) == 0
    assert "Subject: OWN SUBJECT firing" in capsys.readouterr().out


def test_state_copy_without_a_destination_says_where_to_give_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["state", "copy", "-c", str(config(tmp_path)), "--from",
                 str(tmp_path / "state.db")]) == 2
    err = _errors(capsys)
    assert len(err) == 1 and "--to postgresql://USER@HOST/DB" in err[0], err


def test_state_copy_from_a_missing_file_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], pg_url: str
) -> None:
    missing = tmp_path / "gone.db"
    assert main(["state", "copy", "-c", str(config(tmp_path)), "--from", str(missing),
                 "--to", pg_url]) == 2
    assert _errors(capsys) == [f"alertd: no state file at {missing}"]
    assert not missing.exists()

"""The command line: exit codes, located errors on stderr, silences, render, help."""

from __future__ import annotations

from pathlib import Path

import pytest

from alertd.cli import build_parser, main

ROOT = Path(__file__).resolve().parent.parent


def config(tmp_path: Path, rules: str = f"'{ROOT / 'rules' / '*.yaml'}'") -> Path:
    path = tmp_path / "alertd.yaml"
    path.write_text(
        f"rule_files: [{rules}]\n"
        f"state: {{path: '{tmp_path / 'state.db'}'}}\n"
        "receivers:\n"
        "  - {name: ops, email: {to: [ops@example.com]}}\n"
        "  - {name: hooks, webhook: {url: 'https://hooks.example.com/x', secret: s}}\n"
        "route: {receiver: ops}\n"
    )
    return path


def test_help_starts_with_the_demo(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "alertd demo" in out
    for command in ("run", "check", "validate", "test", "backtest", "render", "silence",
                    "simulate", "demo"):
        assert command in out


def test_dry_run_flag_before_or_after_config() -> None:
    parser = build_parser()
    assert parser.parse_args(["--dry-run", "-c", "x.yaml"]).config == "x.yaml"
    assert parser.parse_args(["-c", "x.yaml", "check", "--dry-run"]).config == "x.yaml"
    assert parser.parse_args(["check", "-c", "y.yaml"]).config == "y.yaml"


def test_validate_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_cli")  # validate requires a key
    assert main(["validate", "-c", str(config(tmp_path))]) == 0
    assert "valid" in capsys.readouterr().out


def test_validate_reports_every_problem_located(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_cli")
    rules = tmp_path / "bad.yaml"
    rules.write_text(
        "rules:\n"
        "  - name: a\n"
        "    meter: mtr_1\n"
        "    when: 'dayly usage > 5'\n"
        "  - name: b\n"
        "    meter: mtr_1\n"
        "    timezone: Mars/Olympus\n"
        "    condition: {type: threshold, value: 1}\n"
    )
    assert main(["validate", "-c", str(config(tmp_path, f"'{rules}'"))]) == 2
    err = capsys.readouterr().err.splitlines()
    assert any(line.startswith(f"{rules}:4:") and "dayly" in line for line in err), err
    assert any(line.startswith(f"{rules}:7:15:") and "Mars/Olympus" in line for line in err), err
    assert err[-1] == "2 problem(s) found"


def test_secrets_never_printed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "alertd.yaml"
    path.write_text("stripe: {api_key: sk_live_supersecret123, timeout: never}\n")
    assert main(["validate", "-c", str(path)]) == 2
    captured = capsys.readouterr()
    assert "supersecret" not in captured.out + captured.err


def test_silence_lifecycle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = str(config(tmp_path))
    assert main(["silence", "add", "-c", cfg, "rule=gpt4-daily-usage", "customer=~cus_1.*",
                 "--duration", "1h", "--comment", "planned migration"]) == 0
    added = capsys.readouterr().out
    silence_id = added.split()[2]
    assert main(["silence", "list", "-c", cfg]) == 0
    listing = capsys.readouterr().out
    assert silence_id[:12] in listing and "active" in listing and "planned migration" in listing
    assert main(["silence", "expire", "-c", cfg, silence_id[:8]]) == 0
    capsys.readouterr()
    assert main(["silence", "list", "-c", cfg]) == 0
    assert "no active" in capsys.readouterr().out
    assert main(["silence", "list", "-c", cfg, "--all"]) == 0
    assert "expired" in capsys.readouterr().out


def test_silence_bad_matcher_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["silence", "add", "-c", str(config(tmp_path)), "rule~x", "--comment", "x"]) == 2
    assert "not a matcher" in capsys.readouterr().err


@pytest.mark.parametrize(("receiver", "expected"), [("ops", "Subject: [FIRING"),
                                                    ("hooks", "Idempotency-Key:")])
def test_render_previews_each_channel(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], receiver: str, expected: str
) -> None:
    assert main(["render", "-c", str(config(tmp_path)), "--rule", "daily-token-quota",
                 "--receiver", receiver]) == 0
    out = capsys.readouterr().out
    assert expected in out
    if receiver == "hooks":
        assert "Alertd-Signature: t=" in out


def test_render_unknown_rule(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "-c", str(config(tmp_path)), "--rule", "nope"]) == 2
    assert "nope" in capsys.readouterr().err


def test_missing_api_key_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STRIPE_API_KEY", raising=False)
    assert main(["check", "--dry-run", "-c", str(config(tmp_path))]) == 2
    assert "STRIPE_API_KEY" in capsys.readouterr().err

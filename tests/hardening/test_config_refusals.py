"""``validate`` means it will run: what used to pass validate and fail at run time is refused
first, located at FILE:LINE:COL, exit 2; secrets are never quoted."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from alertd.cli import main
from alertd.config.settings import load_settings
from alertd.config.validate import validate_config
from alertd.errors import ConfigError
from alertd.service.world import load_world

KEY = "sk_test_refusals_0123456789"


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No ALERTD_ or STRIPE_ variables from the caller; a key from the environment unless a
    test removes it; files relative to tmp_path."""
    for name in list(os.environ):
        if name.startswith(("ALERTD_", "STRIPE_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("STRIPE_API_KEY", KEY)
    monkeypatch.chdir(tmp_path)


def write(files: dict[str, str | bytes]) -> Path:
    for name, content in files.items():
        path = Path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(textwrap.dedent(content).lstrip("\n"))
    return Path("alertd.yaml")


def problems(config: str, rules: str | None = None, **files: str | bytes) -> list[str]:
    written: dict[str, str | bytes] = {"alertd.yaml": config, **files}
    if rules is not None:
        written["rules/a.yaml"] = rules
    return [str(p) for p in validate_config(write(written))]


RULES_ONLY = "rule_files: [rules/*.yaml]\n"


# --------------------------------------------------------------------------- 1: numbers


def at(text: str, line: int, needle: str) -> str:
    """``LINE:COL`` (1-based) of the first ``needle`` on line ``line`` of ``text``."""
    return f"{line}:{text.splitlines()[line - 1].index(needle) + 1}"


NON_FINITE = {
    "value .inf": ("condition: {type: threshold, value: .inf}", ".inf", "condition.value",
                   "inf"),
    "value -.inf": ("condition: {type: threshold, value: -.inf}", "-.inf", "condition.value",
                    "-inf"),
    "value .nan": ("condition: {type: threshold, value: .nan}", ".nan", "condition.value",
                   "nan"),
    "value 1e400": ("condition: {type: threshold, value: 1e400}", "1e400", "condition.value",
                    "'1e400'"),
    "a level": ("condition: {type: threshold, levels: {warning: 10, critical: .inf}}", ".inf",
                "condition.levels.critical", "inf"),
    "value_from.percent": (
        "condition: {type: threshold, value_from: {metadata: quota, percent: .inf}}", ".inf",
        "condition.value_from.percent", "inf"),
    "change percent": ("condition: {type: change, percent: .nan}", ".nan", "condition.percent",
                       "nan"),
    "change min_volume": ("condition: {type: change, percent: 10, min_volume: .inf}", ".inf",
                          "condition.min_volume", "inf"),
    "anomaly sensitivity": ("condition: {type: anomaly, sensitivity: 1e400}", "1e400",
                            "condition.sensitivity", "'1e400'"),
    "forecast value": ("window: month\n    condition: {type: forecast, value: -.inf}", "-.inf",
                       "condition.value", "-inf"),
    "absence floor": ("condition: {type: absence, duration: 1d, floor: .inf}", ".inf",
                      "condition.floor", "inf"),
}


@pytest.mark.parametrize(("condition", "needle", "field", "got"), NON_FINITE.values(),
                         ids=NON_FINITE.keys())
def test_non_finite_numbers_are_refused_where_they_are_written(
    condition: str, needle: str, field: str, got: str
) -> None:
    rules = f"rules:\n  - name: a\n    meter: m\n    {condition}\n"
    line = len(rules.splitlines())
    assert problems(RULES_ONLY, rules) == [
        f"rules/a.yaml:{at(rules, line, needle)}: {field}: must be a finite number, got {got}"
    ]


def test_a_shorthand_number_too_large_for_a_float_is_refused_at_its_column() -> None:
    rules = f"rules:\n  - name: a\n    when: daily usage > {'9' * 400}\n"
    assert problems(RULES_ONLY, rules) == [
        f"rules/a.yaml:3:25: when: the number {'9' * 20}... is too large"
    ]


@pytest.mark.parametrize(("written", "got"), [(".inf", "inf"), ("10" + "0" * 400, "1" + "0" * 36
                                                                + "...")])
def test_infinite_and_overlong_durations_are_refused(written: str, got: str) -> None:
    rules = f"rules:\n  - name: a\n    when: daily usage > 1\n    every: {written}\n"
    found = problems(RULES_ONLY, rules)
    assert len(found) == 1 and found[0].startswith("rules/a.yaml:4:12: every: a duration is "
                                                   "at most 3650d (ten years), got ")


def test_a_non_finite_setting_is_refused() -> None:
    config = "rule_files: []\nstripe: {requests_per_second: .inf}\n"
    assert problems(config) == [
        f"alertd.yaml:{at(config, 2, '.inf')}: stripe.requests_per_second: must be a finite "
        "number, got inf"
    ]


# --------------------------------------------------------------------------- 2: meter


def test_shorthand_filters_without_a_meter_are_refused_at_the_when() -> None:
    rules = "rules:\n  - name: a\n    when: \"model=gpt-4 daily usage > 10\"\n"
    assert problems(RULES_ONLY, rules) == [
        "rules/a.yaml:3:11: filters: needs a 'meter' (dimensions belong to one meter; a rule "
        "without 'meter:' sums every meter of the customer); add meter: <meter id> or remove "
        "filters"
    ]
    with_meter = "rules:\n  - name: a\n    meter: m\n    when: \"model=gpt-4 daily usage > 10\"\n"
    assert problems(RULES_ONLY, with_meter) == []


# --------------------------------------------------------------------------- 4: secrets


BAD_SECRET_FILES = {
    "empty": (b"", "is empty; it must hold the secret, on one line"),
    "only a newline": (b"\n", "is empty; it must hold the secret, on one line"),
    "two lines": (b"sk_test_first_key\nsk_test_second_key\n",
                  "has more than one line; it must hold only the secret, on one line (its "
                  "content is not shown)"),
    "not UTF-8": (b"sk_test_\xff\xfe\n", "is not UTF-8 text; it must hold only the secret, on "
                                         "one line (its content is not shown)"),
}

SECRET_SETTINGS = {
    "stripe.api_key_file": "stripe: {api_key_file: secret}\n",
    "smtp.password_file": "smtp: {username: u, password_file: secret}\n",
    "webhook.secret_file": (
        "receivers: [{name: h, webhook: {url: 'https://h.example.com', secret_file: secret}}]\n"
        "route: {receiver: h}\n"),
}


@pytest.mark.parametrize(("content", "reason"), BAD_SECRET_FILES.values(),
                         ids=BAD_SECRET_FILES.keys())
@pytest.mark.parametrize("setting", SECRET_SETTINGS.keys())
def test_bad_secret_files_are_refused_without_their_content(
    content: bytes, reason: str, setting: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if setting.startswith("stripe"):
        monkeypatch.delenv("STRIPE_API_KEY")
    config = "rule_files: []\n" + SECRET_SETTINGS[setting]
    assert problems(config, secret=content) == [
        f"alertd.yaml:{at(config, 2, 'secret}')}: {setting}: secret {reason}"
    ]
    assert main(["validate", "-c", "alertd.yaml"]) == 2
    printed = capsys.readouterr()
    assert "sk_test_" not in printed.out + printed.err


def test_run_time_reads_say_what_validate_says(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STRIPE_API_KEY")
    write({"alertd.yaml": "rule_files: []\nstripe: {api_key_file: key}\n",
           "key": "sk_test_first_key\nsk_test_second_key\n"})
    [problem] = validate_config(Path("alertd.yaml"))
    settings = load_settings(Path("alertd.yaml"))
    with pytest.raises(ConfigError) as caught:
        settings.stripe.resolved_api_key()
    assert [p.message for p in caught.value.problems] == [problem.message]
    assert "second" not in str(caught.value)


def test_check_refuses_a_two_line_key_file_without_printing_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("STRIPE_API_KEY")
    write({"alertd.yaml": "rule_files: [rules/*.yaml]\nstripe: {api_key_file: key, "
                          "api_base: 'http://127.0.0.1:9'}\n",
           "key": "sk_test_first_key\nsk_test_second_key\n",
           "rules/a.yaml": "rules:\n  - name: a\n    when: daily usage > 1\n"})
    assert main(["check", "--dry-run", "-c", "alertd.yaml"]) == 2
    err = capsys.readouterr().err
    assert "has more than one line" in err and "sk_test_" not in err


# --------------------------------------------------------------------------- 5: SMTP


NO_RULES = "rule_files: []\n"


def test_clear_text_smtp_auth_is_refused() -> None:
    config = NO_RULES + "smtp: {host: mail.example.com, security: none, username: u}\n"
    assert problems(config) == [
        f"alertd.yaml:{at(config, 2, 'none')}: smtp.security: none with a username would send "
        "the password in clear text; use starttls or tls (for a relay on this machine, set "
        "smtp.allow_insecure_auth: true)"
    ]


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "::1", "127.0.0.53"])
def test_clear_text_auth_to_a_loopback_relay_when_allowed(host: str) -> None:
    config = (f"smtp: {{host: '{host}', security: none, username: u, password: p, "
              "allow_insecure_auth: true}\n")
    assert problems(NO_RULES + config) == []


def test_allow_insecure_auth_is_only_for_loopback() -> None:
    config = NO_RULES + ("smtp: {host: mail.example.com, security: none, username: u, "
                         "allow_insecure_auth: true}\n")
    assert problems(config) == [
        f"alertd.yaml:{at(config, 2, 'allow_')}: smtp.allow_insecure_auth: only allowed when "
        "smtp.host is a loopback address (localhost, 127.0.0.1, ::1), not 'mail.example.com'"
    ]


# --------------------------------------------------------------------------- 6: run-time


def test_missing_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STRIPE_API_KEY")
    assert problems(RULES_ONLY.replace("rules/*.yaml", "")) == [
        "alertd: no Stripe API key: set STRIPE_API_KEY (or ALERTD_STRIPE__API_KEY), or "
        "stripe.api_key_file in the config; a restricted key needs read access to Billing "
        "meters and Customers"
    ]


def test_a_publishable_key_is_refused_wherever_it_comes_from(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    message = ("stripe.api_key: a publishable key (pk_...) cannot read usage; use a secret "
               "(sk_...) or restricted (rk_...) key")
    monkeypatch.delenv("STRIPE_API_KEY")
    config = NO_RULES + "stripe: {api_key: pk_test_abc}\n"
    assert problems(config) == [f"alertd.yaml:{at(config, 2, 'pk_')}: {message}"]
    monkeypatch.setenv("STRIPE_API_KEY", "pk_live_abc")
    assert problems("rule_files: []\n") == [
        "alertd: " + message.replace("stripe.api_key:", "STRIPE_API_KEY:")
    ]


URLS = {
    "api_base ftp": ("stripe: {api_base: 'ftp://api.stripe.com'}", "2:20", "stripe.api_base"),
    "api_base without a scheme": ("stripe: {api_base: api.stripe.com}", "2:20",
                                  "stripe.api_base"),
    "webhook url file": ("receivers: [{name: h, webhook: {url: 'file:///etc/passwd'}}]\n"
                         "route: {receiver: h}", "2:38", "receivers.0.webhook.url"),
    "heartbeat javascript": ("heartbeat: {url: 'javascript:alert(1)'}", "2:18",
                             "heartbeat.url"),
}


@pytest.mark.parametrize(("config", "at", "field"), URLS.values(), ids=URLS.keys())
def test_urls_must_be_http_or_https(config: str, at: str, field: str) -> None:
    assert problems("rule_files: []\n" + config + "\n") == [
        f"alertd.yaml:{at}: {field}: must be an http:// or https:// URL with a host, e.g. "
        "https://hooks.example.com/alertd"
    ]


@pytest.mark.parametrize(("config", "expected"), [
    ("smtp: {port: 0}", "alertd.yaml:2:14: smtp.port: Input should be greater than or equal "
                        "to 1"),
    ("smtp: {port: 70000}", "alertd.yaml:2:14: smtp.port: Input should be less than or equal "
                            "to 65535"),
    ("server: {listen: '127.0.0.1:70000'}", "alertd.yaml:2:18: server.listen: the port must "
                                            "be between 0 and 65535"),
    ("stripe: {api_base: 'https://api.stripe.com:70000'}",
     "alertd.yaml:2:20: stripe.api_base: not a valid URL: Port out of range 0-65535"),
])
def test_ports_out_of_range(config: str, expected: str) -> None:
    assert problems("rule_files: []\n" + config + "\n") == [expected]


def test_a_rule_files_glob_that_matches_nothing_is_an_error() -> None:
    found = problems("rule_files: [rules/*.yaml, rulez/*.yaml]\n",
                     "rules:\n  - name: a\n    when: daily usage > 1\n")
    assert found == [
        "alertd.yaml:1:28: rule_files: 'rulez/*.yaml' matches no file (looked for "
        "rulez/*.yaml); fix the pattern, or write rule_files: [] to run without rules"
    ]
    assert problems("rule_files: []\n") == []  # no rules, said explicitly


@pytest.mark.parametrize("zone", ["Factory", "posix/UTC", "right/UTC", "localtime",
                                  "posixrules", "Mars/Olympus"])
def test_time_zones_stripe_does_not_know_are_refused(zone: str) -> None:
    rules = f"rules:\n  - name: a\n    when: daily usage > 1\n    timezone: '{zone}'\n"
    assert problems(RULES_ONLY, rules) == [
        f"rules/a.yaml:4:15: timezone: unknown time zone {zone!r} (use an IANA name like "
        "America/New_York)"
    ]


def test_validate_exits_2_for_a_run_time_failure(capsys: pytest.CaptureFixture[str]) -> None:
    write({"alertd.yaml": "rule_files: [nothing/*.yaml]\nsmtp: {port: 70000}\n"})
    assert main(["validate", "-c", "alertd.yaml"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == "2 problem(s) found"


def test_validate_without_a_config_file_says_so_and_what_it_loaded(
    capsys: pytest.CaptureFixture[str],
) -> None:
    write({"rules/a.yaml": "rules:\n  - name: a\n    when: daily usage > 1\n"})
    assert main(["validate"]) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith("no config file found (-c, $ALERTD_CONFIG, ")
    assert captured.out == ("no config file found: the built-in defaults are valid (1 rule "
                            "file(s), 1 rule(s) loaded); write alertd.yaml (see "
                            "config.example.yaml) or pass -c CONFIG\n")


# --------------------------------------------------------------------------- 7: precedence


def test_stripe_api_key_in_the_environment_beats_the_file() -> None:
    write({"alertd.yaml": "rule_files: []\nstripe: {api_key: sk_test_from_file}\n"})
    key = load_settings(Path("alertd.yaml")).stripe.resolved_api_key()
    assert key is not None and key.get_secret_value() == KEY


def test_alertd_variables_beat_stripe_api_key_and_the_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write({"alertd.yaml": "rule_files: []\nstripe: {api_key_file: missing}\nlog_level: debug\n",
           "env_key": "sk_test_from_env_file\n"})
    monkeypatch.setenv("ALERTD_STRIPE__API_KEY_FILE", "env_key")
    monkeypatch.setenv("ALERTD_LOG_LEVEL", "error")
    settings = load_settings(Path("alertd.yaml"))
    key = settings.stripe.resolved_api_key()
    assert key is not None and key.get_secret_value() == "sk_test_from_env_file"
    assert settings.log_level == "error"
    assert validate_config(Path("alertd.yaml")) == []  # the file's missing key file is unused


def test_a_secret_and_its_file_together_are_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STRIPE_API_KEY")
    assert problems("rule_files: []\nstripe:\n  api_key: sk_test_a\n  api_key_file: key\n",
                    key="sk_test_b\n") == [
        "alertd.yaml:4:3: stripe: api_key and api_key_file are both set; keep one"
    ]
    monkeypatch.setenv("ALERTD_SMTP__PASSWORD", "p")
    monkeypatch.setenv("ALERTD_SMTP__PASSWORD_FILE", "key")
    monkeypatch.setenv("STRIPE_API_KEY", KEY)
    assert problems("rule_files: []\nsmtp: {password: q}\n", key="p\n") == [
        "alertd: ALERTD_SMTP__PASSWORD and ALERTD_SMTP__PASSWORD_FILE are both set; set one"
    ]


# --------------------------------------------------------------------------- run agrees


def run_daemon(config: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALERTD_", "STRIPE_"))}
    return subprocess.run([sys.executable, "-m", "alertd", "run", "-c", str(config)],
                          capture_output=True, text=True, timeout=60, env=env, check=False)


@pytest.mark.parametrize(("files", "said"), [
    ({"alertd.yaml": "rule_files: [rulez/*.yaml]\nstripe: {api_key: sk_test_x}\n"},
     "alertd.yaml:1:14: rule_files: 'rulez/*.yaml' matches no file"),
    ({"alertd.yaml": "rule_files: []\nstripe: {api_key_file: key}\n",
      "key": "sk_test_first_key\nsk_test_second_key\n"},
     "alertd.yaml:2:24: stripe.api_key_file: key has more than one line"),
], ids=["unmatched glob", "two-line key file"])
def test_the_daemon_refuses_to_start_with_what_validate_refuses(
    files: dict[str, str | bytes], said: str, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("STRIPE_API_KEY")  # it would win over the file's key
    config = write(files)
    assert main(["validate", "-c", str(config)]) == 2
    assert said in capsys.readouterr().err
    done = run_daemon(config.resolve())
    assert done.returncode == 2
    assert said.replace("alertd.yaml", str(config.resolve())) in done.stderr
    assert "sk_test_" not in done.stderr


@pytest.mark.parametrize("command", [["check", "--dry-run"], ["backtest", "--since", "1d"],
                                     ["render", "--rule", "a"]])
def test_check_backtest_and_render_refuse_an_unmatched_rule_files_glob(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # Nothing listens on port 9: a command that got past the configuration would fail on
    # Stripe (exit 3), not refuse the configuration (exit 2).
    config = write({"alertd.yaml": "rule_files: [rules/*.yaml, rulez/*.yaml]\n"
                                   "stripe: {api_base: 'http://127.0.0.1:9'}\n",
                    "rules/a.yaml": "rules:\n  - name: a\n    when: daily usage > 1\n"})
    assert main([*command, "-c", str(config)]) == 2
    err = capsys.readouterr().err
    assert "alertd.yaml:1:28: rule_files: 'rulez/*.yaml' matches no file" in err
    assert "rule_files: []" in err  # how to run without rules, said


def test_an_empty_rule_files_list_is_still_accepted() -> None:
    config = write({"alertd.yaml": "rule_files: []\n"})
    assert load_world(config).rules.rules == ()
    with pytest.raises(ConfigError, match=r"rulez/\*\.yaml' matches no file"):
        load_world(write({"alertd.yaml": "rule_files: [rulez/*.yaml]\n"}))

"""Settings: YAML file, environment overrides, secrets, and located errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from alertd.config.settings import find_config, load_settings
from alertd.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "alertd.yaml"
    path.write_text(text)
    return path


def test_example_config_is_valid() -> None:
    settings = load_settings(ROOT / "config.example.yaml")
    assert settings.stripe.requests_per_second == 100
    assert settings.route.group_wait == 30
    assert {r.name for r in settings.receivers} == {"ops", "owner", "hooks", "chat"}


def test_defaults_without_a_file() -> None:
    settings = load_settings(None)
    assert settings.stripe.api_version == "2025-11-17.preview"
    assert settings.stripe.general_requests_per_second == 20
    assert settings.server.listen == "127.0.0.1:9464"
    assert settings.stripe.freshness_lag == 300


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "stripe:\n  requests_per_second: 50\n  timeout: 10s\n")
    monkeypatch.setenv("ALERTD_STRIPE__REQUESTS_PER_SECOND", "25")
    settings = load_settings(path)
    assert settings.stripe.requests_per_second == 25
    assert settings.stripe.timeout == 10


def test_api_key_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("sk_test_fromfile\n")
    monkeypatch.delenv("STRIPE_API_KEY", raising=False)
    settings = load_settings(write(tmp_path, f"stripe: {{api_key_file: {key_file}}}\n"))
    secret = settings.stripe.resolved_api_key()
    assert secret is not None and secret.get_secret_value() == "sk_test_fromfile"
    assert "sk_test_fromfile" not in repr(settings)
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_env")
    env_only = load_settings(None).stripe.resolved_api_key()
    assert env_only is not None and env_only.get_secret_value() == "sk_test_env"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("stripe:\n  requests_per_secnd: 5\n", "alertd.yaml:2:3: unknown key 'requests_per_secnd'"),
        ("stripe:\n  timeout: soon\n",
         "alertd.yaml:2:12: stripe.timeout: not a duration: 'soon' (use e.g. 30s, 5m, 4h, 7d)"),
        ("stripe:\n  source: graphql\n",
         "alertd.yaml:2:11: stripe.source: Input should be 'meter_usage' or 'event_summaries'"),
        ("receivers:\n  - name: ops\n    email: {to: [a@b.c]}\nroute:\n  receiver: nobody\n",
         "alertd.yaml:5:13: unknown receiver 'nobody'"),
        ("server:\n  listen: nine\n",
         "alertd.yaml:2:11: server.listen: use HOST:PORT, e.g. 127.0.0.1:9464, "
         "or an empty string to disable"),
        ("stripe: [1, 2\n", "alertd.yaml:2:1: YAML syntax error"),
    ],
)
def test_located_errors(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, text))
    rendered = [str(p).replace(str(tmp_path) + "/", "") for p in caught.value.problems]
    assert any(line.startswith(expected) for line in rendered), rendered


def test_every_error_at_once(tmp_path: Path) -> None:
    text = "stripe:\n  timeout: soon\n  bogus: 1\nlog_format: xml\n"
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, text))
    assert [p.line for p in caught.value.problems] == [2, 3, 4]


def test_find_config_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert find_config("given.yaml") == Path("given.yaml")
    monkeypatch.setenv("ALERTD_CONFIG", str(tmp_path / "env.yaml"))
    assert find_config(None) == tmp_path / "env.yaml"

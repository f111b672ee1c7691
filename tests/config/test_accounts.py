"""``accounts:``: several Stripe accounts in one configuration — parsing, keys, per-account
overrides, and every refusal at ``FILE:LINE:COL``, as ``alertd validate`` prints them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from alertd.accounts import accounts_of, rules_for
from alertd.config.settings import load_settings
from alertd.config.validate import validate_config
from alertd.errors import ConfigError
from alertd.rules.loader import load_rules

RULE = {"name": "tokens", "meter": "mtr_1", "condition": {"type": "threshold", "op": ">",
                                                         "value": 10}}


def write(folder: Path, config: dict[str, Any], rules: list[dict[str, Any]] | None = None
          ) -> Path:
    (folder / "rules").mkdir(exist_ok=True)
    (folder / "rules" / "r.yaml").write_text(yaml.safe_dump({"rules": rules or [RULE]},
                                                            sort_keys=False))
    path = folder / "alertd.yaml"
    path.write_text(yaml.safe_dump({"rule_files": ["rules/*.yaml"], **config}, sort_keys=False))
    return path


def problems(path: Path) -> list[str]:
    return [str(p) for p in validate_config(path)]


def test_the_one_key_of_stripe_is_one_account_named_nothing(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, {"stripe": {"api_key": "sk_test_one"}}))
    (account,) = accounts_of(settings)
    assert (account.name, account.lease, account.label) == ("", "stripe", "stripe")
    assert account.settings is settings  # the first release's shape, untouched


def test_each_account_has_its_key_and_its_overrides_over_stripe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "us.key").write_text("sk_test_us\n")
    monkeypatch.setenv("APAC_STRIPE_KEY", "rk_test_apac")  # the environment, not our code
    settings = load_settings(write(tmp_path, {
        "stripe": {"requests_per_second": 80, "api_base": "http://127.0.0.1:1"},
        "accounts": [
            {"name": "eu", "api_key": "sk_test_eu", "requests_per_second": 25},
            {"name": "us", "api_key_file": str(tmp_path / "us.key"),
             "api_base": "http://127.0.0.1:2"},
            {"name": "apac", "api_key_env": "APAC_STRIPE_KEY"},
        ]}))
    eu, us, apac = accounts_of(settings)
    assert [a.lease for a in (eu, us, apac)] == ["stripe:eu", "stripe:us", "stripe:apac"]
    keys = [a.settings.stripe.resolved_api_key() for a in (eu, us, apac)]
    assert [k.get_secret_value() for k in keys if k is not None] == [
        "sk_test_eu", "sk_test_us", "rk_test_apac"]
    # The budget is per account: its own, or stripe:'s.
    assert [a.settings.stripe.requests_per_second for a in (eu, us, apac)] == [25, 80, 80]
    assert [a.settings.stripe.api_base for a in (eu, us, apac)] == [
        "http://127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:1"]
    assert settings.stripe.requests_per_second == 80  # the shared section is not changed


def test_rules_watch_every_account_unless_they_name_some(tmp_path: Path) -> None:
    path = write(tmp_path, {"accounts": [{"name": "eu", "api_key": "sk_test_eu"},
                                         {"name": "us", "api_key": "sk_test_us"}]},
                 [RULE, {**RULE, "name": "eu-only", "accounts": ["eu"]}])
    assert problems(path) == []
    settings = load_settings(path)
    rules = load_rules(settings.rule_paths(), settings)
    assert rules_for(rules, "eu").names() == ("tokens", "eu-only")
    assert rules_for(rules, "us").names() == ("tokens",)
    assert rules_for(rules, "").names() == ("tokens", "eu-only")


def test_a_rule_naming_an_unknown_account_is_refused_at_its_value(tmp_path: Path) -> None:
    path = write(tmp_path, {"accounts": [{"name": "eu", "api_key": "sk_test_eu"}]},
                 [{**RULE, "accounts": ["eu", "mars"]}])
    rules_file = tmp_path / "rules" / "r.yaml"
    line = next(i for i, text in enumerate(rules_file.read_text().splitlines(), 1)
                if "mars" in text)
    col = rules_file.read_text().splitlines()[line - 1].index("mars") + 1
    assert problems(path) == [
        f"{rules_file}:{line}:{col}: accounts: unknown account 'mars' (configured accounts: eu)"]


def test_a_rule_naming_an_account_without_accounts_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, {"stripe": {"api_key": "sk_test_one"}},
                 [{**RULE, "accounts": ["eu"]}])
    (problem,) = problems(path)
    assert "unknown account 'eu'" in problem and "the config has no accounts: list" in problem


@pytest.mark.parametrize(("accounts", "stripe", "expected", "message"), [
    ([{"name": "eu", "api_key": "sk_test_a"}, {"name": "eu", "api_key": "sk_test_b"}], {},
     ("accounts", 1, "name"), "the name 'eu' is used twice"),
    ([{"name": "eu", "api_key": "sk_test_a"}], {"api_key": "sk_test_x"},
     ("stripe", "api_key"), "stripe.api_key: with accounts:, each account names its own key"),
    ([{"name": "eu"}], {}, ("accounts", 0), "set exactly one of api_key, api_key_file or "
                                             "api_key_env (found none)"),
    ([{"name": "eu", "api_key": "sk_test_a", "api_key_env": "X"}], {}, ("accounts", 0),
     "found api_key, api_key_env"),
    ([{"name": "EU!", "api_key": "sk_test_a"}], {}, ("accounts", 0, "name"), "pattern"),
    ([{"name": "eu", "api_key": "pk_test_a"}], {}, ("accounts", 0, "api_key"),
     "a publishable key"),
    ([{"name": "eu", "api_key_env": "ALERTD_TEST_UNSET_KEY"}], {},
     ("accounts", 0, "api_key_env"), "ALERTD_TEST_UNSET_KEY is not set"),
    ([{"name": "eu", "api_key": "sk_test_a", "requests_per_second": 0}], {},
     ("accounts", 0, "requests_per_second"), "greater than 0"),
], ids=["duplicate", "stripe-key-too", "no-key", "two-keys", "bad-name", "publishable",
        "unset-env", "zero-budget"])
def test_account_refusals_are_located(
    tmp_path: Path, accounts: list[dict[str, Any]], stripe: dict[str, Any],
    expected: tuple[Any, ...], message: str,
) -> None:
    path = write(tmp_path, {"stripe": stripe, "accounts": accounts})
    found = problems(path)
    assert len(found) == 1 and message in found[0], found
    file, line, col = found[0].split(":")[:3]
    assert file == str(path) and int(col) >= 1
    text = path.read_text().splitlines()
    # The line pointed at holds the offending key (an entry's first key for the entry).
    key = expected[-1] if isinstance(expected[-1], str) else "name"
    section = expected[0]
    assert f"{key}:" in text[int(line) - 1], (found, text)
    assert any(t.startswith(f"{section}:") for t in text[:int(line)])
    if expected == ("accounts", 1, "name"):  # the second use, not the first
        assert [i for i, t in enumerate(text, 1) if "name: eu" in t][1] == int(line)


def test_accounts_without_a_stripe_key_need_none(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STRIPE_API_KEY", raising=False)
    path = write(tmp_path, {"accounts": [{"name": "eu", "api_key": "sk_test_eu"}]})
    assert problems(path) == []


def test_an_unreadable_key_file_is_a_config_error_at_run_time(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, {"accounts": [
        {"name": "eu", "api_key_file": str(tmp_path / "missing.key")}]}))
    with pytest.raises(ConfigError, match=r"accounts\.eu\.api_key_file: cannot read"):
        accounts_of(settings)

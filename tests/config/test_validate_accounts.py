"""``alertd validate`` trial-renders templates on samples labelled as the daemon labels alerts:
with ``accounts:``, each account's name in the ``account`` label; with one ``stripe.api_key``,
no such label. A genuine template error still fails, naming its file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from alertd.cli import main
from alertd.config.validate import validate_config

# The rule tests' clean environment (no ALERTD_* variables, cwd in tmp_path).
from tests.rules.conftest import clean_environment  # noqa: F401

ACCOUNTS = "accounts: [{name: eu, api_key: sk_test_eu}, {name: us, api_key: sk_test_us}]\n"
ONE_KEY = "stripe: {api_key: sk_test_one}\n"
#: Reads the label without ``| default``: valid exactly when every alert has it.
BODY = '{"desk": "{{ common_labels.account }}", "first": "{{ alerts[0].labels.account }}"}'
SUBJECT = "Usage alert for {{ group_labels.account | upper }}: {{ alerts | length }}\n"


def write(folder: Path, stripe: str, templates: dict[str, str]) -> Path:
    (folder / "templates").mkdir()
    for name, text in templates.items():
        (folder / "templates" / name).write_text(text)
    path = folder / "alertd.yaml"
    path.write_text(
        stripe + "rule_files: []\n"
        "templates_dir: templates\n"
        "receivers:\n"
        f"  - {{name: ops, webhook: {{url: 'https://ops.example.com/x', body: '{BODY}'}}}}\n"
        "  - {name: mail, email: {to: [ops@example.com]}}\n"
        "route: {receiver: ops, group_by: [account, rule]}\n")
    return path


def test_with_accounts_a_template_may_read_the_account_label(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    config = write(tmp_path, ACCOUNTS, {"email_subject.txt": SUBJECT})
    assert validate_config(config) == []
    assert main(["validate", "-c", str(config)]) == 0
    assert "configuration, rules and templates are valid" in capsys.readouterr().out


def test_with_one_key_there_is_no_account_label_as_in_the_daemon(
    tmp_path: Path,
) -> None:
    config = write(tmp_path, ONE_KEY, {"email_subject.txt": SUBJECT})
    found = [str(p) for p in validate_config(config)]
    assert found == [
        f"{config}:5:67: template fails on sample data: 'dict object' has no attribute "
        "'account'",
        f"{tmp_path}/templates/email_subject.txt:1:1: template fails on sample data: "
        "'dict object' has no attribute 'account'",
    ]


def test_with_accounts_a_genuine_error_still_fails_naming_file_and_line(
    tmp_path: Path,
) -> None:
    config = write(tmp_path, ACCOUNTS, {
        "email_subject.txt": SUBJECT,
        "email.txt": "Account {{ common_labels.account }}\n{{ alerts[0].customer.nmae }}\n",
    })
    assert [str(p) for p in validate_config(config)] == [
        f"{tmp_path}/templates/email.txt:2:1: template fails on sample data of account 'eu': "
        "'dict object' has no attribute 'nmae'",
    ]


def test_every_account_is_tried(tmp_path: Path) -> None:
    # Only us's samples reach the bad attribute: eu's pass, us's fail, and say so.
    config = write(tmp_path, ACCOUNTS, {"webhook_title.txt": (
        "{{ status }}\n{% if common_labels.account == 'us' %}{{ alerts[0].nope }}{% endif %}\n")})
    assert [str(p) for p in validate_config(config)] == [
        f"{tmp_path}/templates/webhook_title.txt:2:1: template fails on sample data of "
        "account 'us': 'dict object' has no attribute 'nope'",
    ]

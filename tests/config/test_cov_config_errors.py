"""``alertd validate`` on config files written wrong: one located problem each, exit 2.

The settings checks below were unreached (coverage, December 2026). Writing them found a gap:
``validate`` did not read the status page's ``server.token_file`` / ``server.basic_auth_file``
nor ``state.password_file``, so it called valid a config that ``alertd run`` then refused;
``secret_problems`` now reads them as the daemon does (only where the daemon would).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from alertd.cli import main


@pytest.fixture(autouse=True)
def _api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_config")


def validate(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]
             ) -> tuple[int, list[str]]:
    path = tmp_path / "alertd.yaml"
    path.write_text("rule_files: []\n" + text)
    code = main(["validate", "-c", str(path)])
    return code, capsys.readouterr().err.replace(f"{tmp_path}/", "").splitlines()


CASES = {
    "email and webhook in one receiver": (
        "receivers:\n  - name: a\n    email: {to: [a@example.com]}\n"
        "    webhook: {url: 'https://h.example.com/'}\nroute: {receiver: a}\n",
        "alertd.yaml:3:5: receivers.0: a receiver has exactly one of 'email' or 'webhook'"),
    "an email receiver with nobody": (
        "receivers:\n  - name: a\n    email: {}\nroute: {receiver: a}\n",
        "alertd.yaml:4:12: receivers.0.email: an email receiver needs 'to' addresses or "
        "'to_customer: true'"),
    "two customer selectors": (
        "customers: {all: true, ids: [cus_1]}\n",
        "alertd.yaml:2:12: customers: choose one of 'ids', 'all: true' or 'search'"),
    "two receivers of one name": (
        "receivers:\n  - {name: a, email: {to: [a@example.com]}}\n"
        "  - {name: a, email: {to: [b@example.com]}}\nroute: {receiver: a}\n",
        "receiver names must be unique: ['a']"),
    "receivers without a default route": (
        "receivers:\n  - {name: a, email: {to: [a@example.com]}}\n",
        "alertd.yaml:1:1: route.receiver: a default receiver is required"),
    "no requests at all": (
        "stripe: {requests_per_second: 0}\n",
        "alertd.yaml:2:31: stripe.requests_per_second: Input should be greater than 0"),
}


@pytest.mark.parametrize(("text", "problem"), CASES.values(), ids=CASES.keys())
def test_a_config_written_wrong_is_one_located_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, problem: str
) -> None:
    code, err = validate(tmp_path, text, capsys)
    assert code == 2
    assert len(err) == 2 and problem in err[0] and err[1] == "1 problem(s) found", err


def test_a_config_that_is_a_list_says_it_must_be_a_mapping(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "alertd.yaml"
    path.write_text("- a\n- b\n")
    assert main(["validate", "-c", str(path)]) == 2
    assert f"{path}:1:1: the config file must be a YAML mapping" in capsys.readouterr().err


def test_an_api_key_file_that_is_a_folder_is_located(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STRIPE_API_KEY")
    (tmp_path / "key").mkdir()
    code, err = validate(tmp_path, f"stripe: {{api_key_file: '{tmp_path / 'key'}'}}\n", capsys)
    assert code == 2
    assert err[0] == "alertd.yaml:2:24: stripe.api_key_file: cannot read key: Is a directory"


@pytest.mark.parametrize(("text", "problem"), [
    ("server: {listen: '127.0.0.1:0', basic_auth_file: '{auth}'}\n",
     "alertd.yaml:2:50: server.basic_auth_file: auth must hold USER:PASSWORD on one line "
     "(its content is not shown)"),
    ("server:\n  listen: '127.0.0.1:0'\n  token_file: '{missing}'\n",
     "alertd.yaml:4:15: server.token_file: cannot read missing: No such file or directory"),
    ("state: {url: 'postgresql://u@127.0.0.1/db', password_file: '{missing}'}\n",
     "alertd.yaml:2:60: state.password_file: cannot read missing: No such file or directory"),
], ids=["basic auth without a colon", "missing token file", "missing database password"])
def test_validate_reads_the_secrets_run_would_refuse(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, problem: str
) -> None:
    (tmp_path / "auth").write_text("only-a-user\n")
    filled = text.replace("{auth}", str(tmp_path / "auth")).replace(
        "{missing}", str(tmp_path / "missing"))
    code, err = validate(tmp_path, filled, capsys)
    assert (code, err) == (2, [problem, "1 problem(s) found"])
    assert "only-a-user" not in "\n".join(err)


@pytest.mark.parametrize("text", [
    "server: {listen: '', token_file: '{missing}'}\n",
    "state: {password_file: '{missing}'}\n",
], ids=["no status page", "no database"])
def test_a_secret_nothing_reads_is_not_a_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str
) -> None:
    code, err = validate(tmp_path, text.replace("{missing}", str(tmp_path / "missing")),
                         capsys)
    assert (code, err) == (0, [])


def test_the_status_page_secrets_as_the_daemon_reads_them_are_valid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "auth").write_text("ops:s3cret\n")
    (tmp_path / "token").write_text("t0ken\n")
    code, err = validate(tmp_path, f"server: {{listen: '127.0.0.1:0', basic_auth_file: "
                         f"'{tmp_path / 'auth'}', token_file: '{tmp_path / 'token'}'}}\n", capsys)
    assert (code, err) == (0, [])

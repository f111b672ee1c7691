"""``alertd validate``: settings, rules and templates checked together, offline."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from alertd.config.validate import validate_config

# The rule tests' clean environment (no ALERTD_* variables, cwd in tmp_path), set up first.
from tests.rules.conftest import clean_environment  # noqa: F401


@pytest.fixture(autouse=True)
def api_key(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A key from the environment: validate requires one, these tests are about the rest."""
    request.getfixturevalue("clean_environment")  # first, or it would remove the key
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_validate")

CONFIG = """\
stripe:
  source: meter_usage
rule_files: ["rules/*.yaml"]
templates_dir: templates
receivers:
  - name: ops
    email:
      to: [ops@example.com]
      subject: "[{{ status }}] {{ alertz[0].rule }}"
route: {receiver: ops}
"""

RULES = "rules:\n  - name: a\n    when: daily usage > x\n    receivers: [ops]\n"


def write(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return Path("alertd.yaml")


def test_a_valid_configuration_has_no_problems(tmp_path: Path) -> None:
    config = write(tmp_path, {
        "alertd.yaml": "rule_files: [rules/*.yaml]\n"
                       "receivers: [{name: ops, email: {to: [a@b.c]}}]\n"
                       "route: {receiver: ops}\n",
        "rules/a.yaml": "rules:\n  - name: a\n    when: daily usage > 1\n    receivers: [ops]\n",
    })
    assert validate_config(config) == []


def test_settings_rules_and_templates_together(tmp_path: Path) -> None:
    config = write(tmp_path, {
        "alertd.yaml": CONFIG,
        "rules/a.yaml": RULES,
        "templates/email.txt": "Hello {{ nobody }}\n",
    })
    found = [str(p) for p in validate_config(config)]
    assert found[0].startswith("alertd.yaml:9:34: ") and "'alertz'" in found[0]
    assert found[1] == (
        "rules/a.yaml:3:25: when: expected a number (like 50000, 50_000 or 0.5) at 'x'"
    )
    assert found[2].startswith("templates/email.txt:1:") and "'nobody'" in found[2]
    assert len(found) == 3


def test_rules_are_checked_even_when_the_settings_are_invalid(tmp_path: Path) -> None:
    config = write(tmp_path, {
        "alertd.yaml": CONFIG.replace("  source: meter_usage\n",
                                      "  source: meter_usage\n  colour: red\n"),
        "rules/a.yaml": RULES.replace("[ops]", "[ops, pager]"),
        "templates/email.txt": "Hello {{ nobody }}\n",
    })
    found = [str(p) for p in validate_config(config)]
    assert found[0] == "alertd.yaml:3:3: unknown key 'colour'"
    # Receiver names are read from the raw config: 'ops' is known, 'pager' is not.
    assert found[1:3] == [
        "rules/a.yaml:3:25: when: expected a number (like 50000, 50_000 or 0.5) at 'x'",
        "rules/a.yaml:4:22: receivers: unknown receiver 'pager' (configured receivers: ops)",
    ]
    assert found[3].startswith("templates/email.txt:1:")
    assert len(found) == 4


def test_an_unparsable_config_stops_before_the_rules(tmp_path: Path) -> None:
    config = write(tmp_path, {"alertd.yaml": "stripe: [\n", "rules/a.yaml": RULES})
    assert [str(p) for p in validate_config(config)] == [
        "alertd.yaml:2:1: YAML syntax error: expected the node content, but found '<stream end>'"
    ]


def test_missing_templates_dir(tmp_path: Path) -> None:
    config = write(tmp_path, {"alertd.yaml": "templates_dir: nowhere\nrule_files: []\n"})
    assert [str(p) for p in validate_config(config)] == [
        "alertd.yaml:1:16: templates_dir: 'nowhere' is not a folder"
    ]


def test_without_a_config_file_the_defaults_are_checked(tmp_path: Path) -> None:
    write(tmp_path, {"rules/a.yaml": "rules:\n  - name: a\n    when: daily usage > 1\n"})
    assert validate_config(None) == []
    write(tmp_path, {"rules/b.yaml": "rules:\n  - name: a\n    when: daily usage > 1\n"})
    assert [str(p) for p in validate_config(None)] == [
        "rules/b.yaml:2:11: name: duplicate rule name 'a' (first defined at rules/a.yaml:2)"
    ]


REPO = Path(__file__).resolve().parents[2]
CREDENTIALS = "/run/credentials/alertd.service"


def unit_credentials() -> dict[str, str]:
    """``LoadCredential=NAME:SOURCE`` lines of the systemd unit, as ``{NAME: SOURCE}``."""
    lines = (REPO / "systemd" / "alertd.service").read_text().splitlines()
    pairs = [line.removeprefix("LoadCredential=").split(":", 1)
             for line in lines if line.startswith("LoadCredential=")]
    return dict((name, source) for name, source in pairs)


def test_every_credential_the_example_names_is_loaded_by_the_unit() -> None:
    example = (REPO / "config.example.yaml").read_text()
    named = set(re.findall(CREDENTIALS + r"/([a-z0-9_]+)", example))
    unit = (REPO / "systemd" / "alertd.service").read_text()
    named |= set(re.findall(r"%d/([a-z0-9_]+)", unit))
    assert named and named <= set(unit_credentials())
    # Secrets are read only from credentials: a DynamicUser cannot read root's /etc/alertd.
    assert "secret_file: /etc" not in example


def test_the_example_configuration_is_valid_as_the_systemd_steps_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's steps: config in /etc/alertd, rules copied next to it, one file per
    LoadCredential= line, which systemd exposes under %d (here a folder of tmp_path)."""
    monkeypatch.delenv("STRIPE_API_KEY")
    etc, credentials = tmp_path / "etc", tmp_path / "credentials"
    shutil.copytree(REPO / "rules", etc / "rules")
    credentials.mkdir()
    for name in unit_credentials():
        (credentials / name).write_text(f"sk_live_{name}\n" if "stripe" in name else "s3cret\n")
    example = (REPO / "config.example.yaml").read_text().replace(CREDENTIALS, str(credentials))
    (etc / "alertd.yaml").write_text(example)
    monkeypatch.setenv("ALERTD_STRIPE__API_KEY_FILE", str(credentials / "stripe_api_key"))
    assert validate_config(etc / "alertd.yaml") == []
    # Without the credentials the unit would restart-loop; validate (ExecStartPre) says why.
    (credentials / "smtp_password").unlink()
    assert [p.message for p in validate_config(etc / "alertd.yaml")] == [
        f"smtp.password_file: cannot read {credentials / 'smtp_password'}: No such file or "
        "directory"
    ]

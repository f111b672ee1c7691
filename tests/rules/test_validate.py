"""``alertd validate``: settings, rules and templates checked together, offline."""

from __future__ import annotations

from pathlib import Path

from alertd.validate import validate_config

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
    config = write(tmp_path, {"alertd.yaml": "templates_dir: nowhere\n"})
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


def test_the_example_configuration_is_valid() -> None:
    repo = Path(__file__).resolve().parents[2]
    assert validate_config(repo / "config.example.yaml") == []

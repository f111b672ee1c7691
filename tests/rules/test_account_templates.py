"""The Stripe account in rule templates: ``{{ account }}`` (always defined, ``""`` for the
one account of ``stripe.api_key``) and ``{{ labels.account }}`` (the label, only with
``accounts:``), checked by the loader, rendered on the way out, and shown by ``render``."""

from __future__ import annotations

from pathlib import Path

import pytest

from alertd.alerts import AlertState, build_alert
from alertd.cli import main
from alertd.errors import ConfigError
from alertd.model import Finding, Notification, Period, SeriesKey
from alertd.notify.templates import annotated
from alertd.service.world import load_world

SUMMARY = "{{ account or 'main' }}/{{ labels.account | default('-') }}: {{ customer.id }}"
FIRING = AlertState(status="firing", firing_since=0, announced_rank=0)


def write(folder: Path, summary: str, *, accounts: bool = True) -> Path:
    (folder / "rules.yaml").write_text(
        "rules:\n"
        "  - name: tokens\n"
        "    meter: mtr_1\n"
        "    when: daily usage > 5\n"
        f"    annotations: {{summary: \"{summary}\"}}\n")
    stripe = ("accounts: [{name: eu, api_key: sk_test_eu}, {name: us, api_key: sk_test_us}]\n"
              if accounts else "stripe: {api_key: sk_test_one}\n")
    path = folder / "alertd.yaml"
    path.write_text(
        stripe + "rule_files: [rules.yaml]\n"
        f"state: {{path: '{folder / 'state.db'}'}}\n"
        "receivers:\n"
        "  - {name: ops, webhook: {url: 'https://ops.example.com/x'}}\n"
        "  - {name: eu-desk, webhook: {url: 'https://eu.example.com/x'}}\n"
        "route: {receiver: ops, routes: [{match: {account: eu}, receiver: eu-desk}]}\n")
    return path


def summary_of(config: Path, account: str) -> str:
    """The summary annotation of a firing alert of ``account``, as receivers get it."""
    rule = load_world(config).rules.by_name("tokens")
    finding = Finding(key=SeriesKey("tokens", "cus_1", account=account), meter="mtr_1",
                      dimensions=(), window=Period(0, 86400), complete=True, value=9.0,
                      active=True, level="warning", state="firing", message="9 > 5")
    alert = build_alert(finding, FIRING, rule)
    notification = Notification(id="n", receiver="ops", status="firing", group_key="g",
                                group_labels={}, alerts=(alert,), created_at=0)
    return annotated(notification).alerts[0].annotations["summary"]


@pytest.mark.parametrize(("accounts", "account", "expected"), [
    (True, "eu", "eu/eu: cus_1"),
    (True, "us", "us/us: cus_1"),
    (False, "", "main/-: cus_1"),  # one key: no account label, account is ""
])
def test_account_and_its_label_render_in_annotations(
    tmp_path: Path, accounts: bool, account: str, expected: str,
) -> None:
    assert summary_of(write(tmp_path, SUMMARY, accounts=accounts), account) == expected


def test_the_loader_checks_the_name_and_suggests_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"undefined name 'acount' in template \(did you "
                                          r"mean 'account'\?\)"):
        load_world(write(tmp_path, "{{ acount }}"))


def test_render_previews_the_account_and_its_route(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    config = write(tmp_path, SUMMARY)
    assert main(["render", "-c", str(config), "--rule", "tokens", "--receiver", "eu-desk"]) == 0
    out = capsys.readouterr().out
    # The preview's alerts are the first account's: labelled with it, grouped by it on the
    # route that matches it, their annotations rendered with it.
    assert "=== receiver eu-desk ===" in out
    assert '"groupLabels": {\n    "account": "eu"' in out and "eu/eu: cus_" in out

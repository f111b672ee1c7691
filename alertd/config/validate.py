"""``alertd validate``: the whole configuration checked offline, every problem at once.

Settings, then every rule file the ``rule_files`` globs match, then the notification templates
(the files in ``templates_dir`` and the templates written inline in receivers). Nothing is
contacted: no Stripe, no SMTP, no webhook. When the settings themselves are invalid, the rule
files are still checked with what can be read of the config, so one run shows everything.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from alertd.conditions.money import sums_meters, wants_billing
from alertd.config.settings import ACCOUNT_NAME, Settings, load_settings, secret_problems
from alertd.config.yamlpos import Located, Path_, load_located, read_document
from alertd.errors import ConfigError, Problem
from alertd.notify.presets.am_checks import alertmanager_problems
from alertd.notify.templates import check_templates, source_problems
from alertd.rules.loader import check_rules


@dataclass(frozen=True, slots=True)
class Report:
    """What ``validate`` found: every problem, and what it read."""

    problems: list[Problem]
    rule_files: tuple[str, ...] = ()
    rules: int = 0
    #: How many of them price usage (measure: cost, window: billing_period, credit).
    priced: int = 0
    #: How many of those sum a customer's metered prices (measure: cost without a meter).
    summed: int = 0


def validate_config(config_path: Path | None) -> list[Problem]:
    """Every problem of the config, its rule files and templates, sorted by file and position.

    An empty list means ``alertd run`` would accept this configuration (apart from what only
    Stripe can tell: whether the key works, meters, customers). That includes the secrets (read
    now, as the daemon will read them: a missing API key is a problem) and ``rule_files``: a
    pattern that matches no file is a problem (write ``rule_files: []`` for no rules).
    """
    return validate_report(config_path).problems


def validate_report(config_path: Path | None) -> Report:
    """:func:`validate_config`, with the rule files read and the number of valid rules."""
    doc = _config_doc(config_path)
    problems: list[Problem] = []
    receivers: list[str] | None = None  # None: the names in the settings
    try:
        settings = load_settings(config_path)
        problems += secret_problems(settings, doc or Located("<defaults>", {}, {}))
        problems += alertmanager_problems(settings, doc or Located("<defaults>", {}, {}))
    except ConfigError as exc:
        problems += exc.problems
        fallback = _fallback_settings(doc, config_path) if doc is not None else None
        if doc is None or fallback is None:
            return Report(_sorted(problems))
        settings, receivers = fallback, _receiver_names(doc)
    doc = doc or Located("<defaults>", {}, {})
    problems += unmatched_rule_files(settings, doc)
    paths = settings.rule_paths()
    rules, rule_problems = check_rules(paths, settings, known_receivers=receivers)
    problems += rule_problems
    problems += _template_dir_problems(settings, doc)
    problems += _inline_template_problems(settings, doc)
    priced = sum(1 for rule in rules if wants_billing(rule))
    summed = sum(1 for rule in rules if sums_meters(rule))
    return Report(_sorted(problems), tuple(str(path) for path in paths), len(rules), priced,
                  summed)


def unmatched_rule_files(settings: Settings, doc: Located) -> list[Problem]:
    """Each ``rule_files`` pattern that matches no file.

    An error rather than a warning: such a pattern is nearly always a typo or a missing deploy
    step, and a daemon that starts without the rules it was meant to run looks healthy while
    alerting on nothing. An empty rule set is still possible, said explicitly:
    ``rule_files: []``.
    """
    written = isinstance(doc.data, dict) and "rule_files" in doc.data
    problems = []
    for index, pattern in enumerate(settings.rule_files):
        if settings.rule_paths([pattern]):
            continue
        full = settings.rule_pattern(pattern)
        message = (f"rule_files: {pattern!r} matches no file (looked for {full}); fix the "
                   "pattern, or write rule_files: [] to run without rules")
        if written:
            problems.append(doc.problem(("rule_files", index), message, at_value=True))
        else:
            problems.append(Problem("", 0, 0, message + " (the default; no config file "
                                    "sets rule_files)"))
    return problems


def rule_file_problems(settings: Settings, config_path: Path | None) -> list[Problem]:
    """:func:`unmatched_rule_files` for commands that load the configuration without all of
    ``validate`` (``check``, ``backtest``, ``render``): each unmatched pattern at its place in
    the config file."""
    doc = _config_doc(config_path) or Located(str(config_path), {}, {})
    return unmatched_rule_files(settings, doc)


def _sorted(problems: list[Problem]) -> list[Problem]:
    unique = dict.fromkeys(problems)
    return sorted(unique, key=lambda p: (p.file, p.line, p.col, p.message))


def _config_doc(config_path: Path | None) -> Located | None:
    """The config with positions, for pointing into it; ``None`` when it cannot be read or
    parsed (the settings loader reports why, and rule files are then not checked: where they
    are is unknown)."""
    if config_path is None:
        return Located("<defaults>", {}, {})
    try:
        return load_located(read_document(config_path), str(config_path), collect=[])
    except ConfigError:
        return None


def _fallback_settings(doc: Located, config_path: Path | None) -> Settings | None:
    """Settings holding only what rule checking needs, when the full settings are invalid."""
    raw = doc.data if isinstance(doc.data, dict) else {}
    partial: dict[str, Any] = {
        "base_dir": config_path.parent if config_path is not None else Path("."),
    }
    for key in ("rule_files", "templates_dir"):
        if key in raw:
            partial[key] = raw[key]
    stripe = raw.get("stripe")
    if isinstance(stripe, dict) and "source" in stripe:
        partial["stripe"] = {"source": stripe["source"]}
    # The account names rules may name (their keys are not needed to check rules).
    accounts = raw.get("accounts")
    names = {a.get("name") for a in accounts if isinstance(a, dict)} \
        if isinstance(accounts, list) else set()
    partial["accounts"] = [{"name": n, "api_key_env": "UNUSED"} for n in sorted(
        n for n in names if isinstance(n, str) and re.fullmatch(ACCOUNT_NAME, n))]
    try:
        return Settings(**partial)
    except ValidationError:
        return None


def _receiver_names(doc: Located) -> list[str]:
    receivers = doc.data.get("receivers") if isinstance(doc.data, dict) else None
    if not isinstance(receivers, list):
        return []
    return [r["name"] for r in receivers if isinstance(r, dict) and isinstance(r.get("name"), str)]


def _template_dir_problems(settings: Settings, doc: Located) -> list[Problem]:
    """The notification templates, checked by the module that renders them (same filters,
    same context names, trial renders on sample notifications)."""
    if settings.templates_dir is None:
        return []
    folder = settings.templates_dir
    if not folder.is_absolute():
        folder = settings.base_dir / folder
    if not folder.is_dir():
        message = f"templates_dir: {str(folder)!r} is not a folder"
        return [doc.problem(("templates_dir",), message, at_value=True)]
    return check_templates(folder, _account_names(settings))


def _inline_template_problems(settings: Settings, doc: Located) -> list[Problem]:
    """Email subjects and webhook bodies written in the config are templates too."""
    problems = []
    for path, source in _inline_templates(settings):
        mark = doc.marks.get(path)
        line, col = (mark.value_line, mark.value_col) if mark else (1, 1)
        problems += source_problems(source, file=doc.file, line=line, col=col,
                                    accounts=_account_names(settings))
    return problems


def _account_names(settings: Settings) -> tuple[str, ...]:
    """The names of ``accounts:``: the trial renders' alerts carry each one's ``account``
    label, as the daemon's do (none when one ``stripe.api_key`` is watched)."""
    return tuple(account.name for account in settings.accounts)


def _inline_templates(settings: Settings) -> Iterator[tuple[Path_, str]]:
    for index, receiver in enumerate(settings.receivers):
        if receiver.email is not None and receiver.email.subject is not None:
            yield ("receivers", index, "email", "subject"), receiver.email.subject
        if receiver.webhook is not None and receiver.webhook.body is not None:
            yield ("receivers", index, "webhook", "body"), receiver.webhook.body

"""Rule files in, a frozen :class:`RuleSet` out — or every problem of every file at once.

The first stage of the data flow after settings::

    rules/*.yaml ─► load_rules ─► RuleSet ─► planner

For each file: YAML with positions (:mod:`alertd.config.yamlpos`), ``when:`` shorthand expanded into
``filters``/``window``/``condition`` (:mod:`alertd.rules.shorthand`), each rule validated on
its own by the pydantic schema (so one bad rule does not hide the others' errors), then the
checks the schema cannot make: Stripe's request limits and what the configured source can
serve (:mod:`alertd.rules.limits`), annotation and label templates (:mod:`alertd.templating`),
receivers named in the config, and names unique across all files. Every problem is a
:class:`~alertd.errors.Problem` ``FILE:LINE:COL: message``, at the offending key (unknown or
missing keys, conflicts) or at the value (wrong type or value).

An empty rule set is not an error here: only ``alertd run`` needs rules.

Why over 400 lines (411): one file's stages, read in order, plus the cross-file checks (unique
names, ``accounts:``, receivers) that need every file at once; the per-rule checks already
live in :mod:`alertd.rules.limits` and :mod:`alertd.rules.shorthand`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2.sandbox import SandboxedEnvironment
from pydantic import ValidationError

from alertd.conditions.base import RuleIssue
from alertd.config.settings import Settings
from alertd.config.yamlpos import Located, Path_, load_located, read_document, validation_problems
from alertd.errors import ConfigError, Location, Problem
from alertd.rules.limits import group_by_issue, rule_issues
from alertd.rules.schema import Rule
from alertd.rules.shorthand import ShorthandError, When, parse_when
from alertd.stripe_limits import MAX_GROUP_BY
from alertd.templating import TEMPLATE_NAMES, check_template, template_environment

__all__ = ["TEMPLATE_NAMES", "RuleSet", "check_rules", "load_rules"]

#: Stands in for the condition of a rule whose ``when:`` could not be read, so that the rest
#: of the rule is still validated without a spurious "missing condition".
_PLACEHOLDER_CONDITION = {"type": "threshold", "op": ">", "value": 0}


@dataclass(frozen=True, slots=True)
class RuleSet:
    """Validated rules in file order, and the files they came from."""

    rules: tuple[Rule, ...] = ()
    files: tuple[str, ...] = ()

    def __iter__(self) -> Iterator[Rule]:
        return iter(self.rules)

    def __len__(self) -> int:
        return len(self.rules)

    def names(self) -> tuple[str, ...]:
        return tuple(rule.name for rule in self.rules)

    def by_name(self, name: str) -> Rule:
        """The rule called ``name``; :class:`KeyError` naming the known rules otherwise."""
        for rule in self.rules:
            if rule.name == name:
                return rule
        known = ", ".join(self.names()) or "none"
        raise KeyError(f"no rule named {name!r} (rules: {known})")


def load_rules(paths: Sequence[Path], settings: Settings) -> RuleSet:
    """Load and check every rule file; :class:`ConfigError` lists every problem of every file."""
    rules, problems = check_rules(paths, settings)
    if problems:
        raise ConfigError(problems)
    return rules


def check_rules(
    paths: Sequence[Path],
    settings: Settings,
    *,
    known_receivers: Collection[str] | None = None,
) -> tuple[RuleSet, list[Problem]]:
    """The valid rules and every problem, without raising (for ``alertd validate``).

    ``known_receivers`` overrides the receiver names taken from ``settings`` (validate uses it
    when the settings themselves are invalid).
    """
    if known_receivers is None:
        known_receivers = [receiver.name for receiver in settings.receivers]
    context = _Context(settings, frozenset(known_receivers), template_environment())
    loaded: list[_Loaded] = []
    for path in paths:
        loaded += _load_file(path, context)
    # Merged (`<<: *defaults`) values are checked once per rule that uses them: say it once.
    problems = list(dict.fromkeys(context.problems + _duplicate_names(loaded)))
    return RuleSet(_valid_rules(loaded), tuple(str(path) for path in paths)), problems


def _valid_rules(loaded: Sequence[_Loaded]) -> tuple[Rule, ...]:
    """Rules without problems, leaving out the second and later uses of a name."""
    seen: set[str] = set()
    rules = []
    for item in loaded:
        if item.rule is not None and item.rule.name not in seen:
            rules.append(item.rule)
        if isinstance(item.name, str):
            seen.add(item.name)
    return tuple(rules)


@dataclass(slots=True)
class _Context:
    """What every rule is checked against, and the problems found so far."""

    settings: Settings
    receivers: frozenset[str]
    templates: SandboxedEnvironment
    problems: list[Problem] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Loaded:
    """One rule entry of a file: where it is, its raw name, and the rule if it validated."""

    doc: Located
    at: Path_
    name: object
    rule: Rule | None


# --------------------------------------------------------------------------- files


def _load_file(path: Path, context: _Context) -> list[_Loaded]:
    file = str(path)
    try:
        doc = load_located(read_document(path), file, collect=context.problems)
    except ConfigError as exc:
        context.problems.extend(exc.problems)
        return []
    return [_load_rule(doc, index, raw, context) for index, raw in _rule_entries(doc, context)]


def _rule_entries(doc: Located, context: _Context) -> list[tuple[int, dict[str, Any]]]:
    """The ``rules:`` list of a file, each entry a mapping; problems for everything else."""
    data = doc.data
    problems = context.problems
    if not isinstance(data, dict):
        kind = "empty" if data is None else f"a {type(data).__name__}"
        problems.append(doc.problem((), f"a rule file is a mapping with a 'rules:' list; "
                                        f"this one is {kind}"))
        return []
    for key in data:
        if key != "rules":
            problems.append(doc.problem((key,), f"unknown key {key!r} (a rule file has one "
                                                "top-level key, 'rules')"))
    if "rules" not in data:
        problems.append(doc.problem((), "missing required key 'rules'"))
    entries = data.get("rules") or []
    if not isinstance(entries, list):
        problems.append(doc.problem(("rules",), "rules: expected a list of rules",
                                    at_value=True))
        return []
    result = []
    for index, raw in enumerate(entries):
        if isinstance(raw, dict):
            result.append((index, raw))
        else:
            problems.append(doc.problem(("rules", index), "rules: expected a rule (a mapping "
                                        "with name, condition, ...)", at_value=True))
    return result


# --------------------------------------------------------------------------- one rule


def _load_rule(doc: Located, index: int, raw: dict[str, Any], context: _Context) -> _Loaded:
    at: Path_ = ("rules", index)
    problems: list[Problem] = []
    data, from_when = _expand_when(raw, doc, at, problems)
    if "source" in data:
        # `source` is set by the loader, never written by users.
        problems.append(doc.problem((*at, "source"), "unknown key 'source'"))
    data["source"] = Location(doc.file, doc.marks[at].value_line)
    _cap_group_by(data, doc, at, problems)
    try:
        rule: Rule | None = Rule.model_validate(data)
        failed: frozenset[str] = frozenset()
    except ValidationError as exc:
        problems += validation_problems(exc, doc, at, data=data)
        rule = None
        failed = frozenset(str(e["loc"][0]) for e in exc.errors() if e["loc"])
    checked = rule or _partial_rule(data, failed)
    if checked is not None:
        problems += _checked_problems(checked, doc, at, from_when, failed, context)
    context.problems.extend(problems)
    # A rule that validated with a placeholder condition, or failed a check, is not valid.
    return _Loaded(doc, at, raw.get("name"), None if problems else rule)


#: Checks of a field that also read other fields: skipped when one of those failed to validate.
_READS_ALSO = {"condition": frozenset({"window"}), "window": frozenset({"condition"})}


def _partial_rule(data: Mapping[str, Any], failed: frozenset[str]) -> Rule | None:
    """The rule with its invalid fields left at their defaults, so that the other fields still
    get the checks below; ``None`` when too much is missing (no valid condition)."""
    if "condition" in failed:
        return None
    valid = {key: value for key, value in data.items() if key not in failed}
    valid.setdefault("name", "unnamed")
    try:
        return Rule.model_validate(valid)
    except ValidationError:
        return None


def _checked_problems(
    rule: Rule,
    doc: Located,
    at: Path_,
    from_when: Collection[str],
    failed: frozenset[str],
    context: _Context,
) -> list[Problem]:
    """Source limits, condition sanity, templates and receivers, for fields that validated."""
    problems = [
        _locate(issue, doc, at, from_when)
        for issue in rule_issues(rule, context.settings.stripe)
        if not _reads_failed(issue, failed)
    ]
    problems += _template_problems(rule, doc, at, context.templates)
    problems += _receiver_problems(rule, doc, at, context.receivers)
    problems += _account_problems(rule, doc, at, context.settings)
    return problems


def _reads_failed(issue: RuleIssue, failed: frozenset[str]) -> bool:
    field_name = str(issue.path[0]) if issue.path else ""
    return field_name in failed or bool(_READS_ALSO.get(field_name, frozenset()) & failed)


def _locate(issue: RuleIssue, doc: Located, at: Path_, from_when: Collection[str]) -> Problem:
    """Issues about fields that ``when:`` wrote point at the ``when:`` value."""
    if issue.path and issue.path[0] in from_when:
        return doc.problem((*at, "when"), issue.message, at_value=True)
    return doc.problem((*at, *issue.path), issue.message, at_value=issue.at_value)


def _cap_group_by(data: dict[str, Any], doc: Located, at: Path_, problems: list[Problem]) -> None:
    """Report too many group-by keys with Stripe's reason, and validate the rest of the rule
    with the first ones (the schema's own cap would repeat the problem without the reason)."""
    keys = data.get("group_by")
    if not isinstance(keys, list):
        return
    issue = group_by_issue(keys)
    if issue is not None:
        problems.append(_locate(issue, doc, at, ()))
        data["group_by"] = keys[:MAX_GROUP_BY]


# --------------------------------------------------------------------------- when:


def _expand_when(
    raw: Mapping[str, Any], doc: Located, at: Path_, problems: list[Problem]
) -> tuple[dict[str, Any], frozenset[str]]:
    """The rule with ``when:`` replaced by the fields it stands for, and the names of the
    fields it wrote (so later problems about them point at ``when:``)."""
    data = dict(raw)
    if "when" not in data:
        return data, frozenset()
    when = _parse_when(data.pop("when"), doc, (*at, "when"), problems)
    if when is None:
        wrote = frozenset() if "condition" in data else frozenset({"condition"})
        data.setdefault("condition", _PLACEHOLDER_CONDITION)
        return data, wrote
    wrote = frozenset(name for name in ("condition", "window", "filters") if name not in data)
    if "condition" in data:
        problems.append(doc.problem((*at, "when"), "when: cannot be used together with "
                                    "'condition' (the shorthand is a threshold condition; "
                                    "keep one of them)"))
    else:
        data["condition"] = {"type": "threshold", "op": when.op, "value": when.value}
    data["window"] = _when_window(data, when, doc, at, problems)
    data["filters"] = _when_filters(data, when, doc, at, problems)
    return data, wrote


def _parse_when(text: object, doc: Located, path: Path_, problems: list[Problem]) -> When | None:
    if not isinstance(text, str):
        problems.append(doc.problem(path, "when: expected a string like "
                                    "'model=gpt-4 daily usage > 50000'", at_value=True))
        return None
    try:
        return parse_when(text)
    except ShorthandError as exc:
        problems.append(doc.problem_inside(path, exc.column, f"when: {exc.reason}"))
        return None


def _when_window(
    data: Mapping[str, Any], when: When, doc: Located, at: Path_, problems: list[Problem]
) -> object:
    window = data.get("window", when.window)
    if window != when.window:
        problems.append(doc.problem(
            (*at, "window"),
            f"window: {window!r} contradicts 'when' (its adverb means window {when.window!r}); "
            "remove window or change the shorthand",
            at_value=True,
        ))
    return window


def _when_filters(
    data: Mapping[str, Any], when: When, doc: Located, at: Path_, problems: list[Problem]
) -> object:
    filters = data.get("filters")
    if filters is None:
        return dict(when.filters)
    if not isinstance(filters, dict):
        return filters  # the schema reports the wrong type
    for key in when.filters:
        if key in filters:
            problems.append(doc.problem(
                (*at, "filters", key),
                f"filters.{key}: also set in 'when'; set each filter in one place",
            ))
    return {**filters, **when.filters}


# --------------------------------------------------------------------------- cross-references


def _template_problems(
    rule: Rule, doc: Located, at: Path_, environment: SandboxedEnvironment
) -> list[Problem]:
    problems = []
    for kind in ("annotations", "labels"):
        templates: dict[str, str] = getattr(rule, kind)
        for key, source in templates.items():
            for issue in check_template(source, environment, TEMPLATE_NAMES):
                where = f" (line {issue.line} of the template)" if issue.line > 1 else ""
                message = f"{kind}.{key}: {issue.message}{where}"
                problems.append(doc.problem((*at, kind, key), message, at_value=True))
    return problems


def _account_problems(rule: Rule, doc: Located, at: Path_, settings: Settings
                      ) -> list[Problem]:
    """Accounts a rule names that ``accounts:`` does not have."""
    known = [account.name for account in settings.accounts]
    configured = ", ".join(known) if known else "none: the config has no accounts: list"
    return [
        doc.problem((*at, "accounts", index),
                    f"accounts: unknown account {name!r} (configured accounts: {configured})",
                    at_value=True)
        for index, name in enumerate(rule.accounts or ())
        if name not in known
    ]


def _receiver_problems(
    rule: Rule, doc: Located, at: Path_, known: frozenset[str]
) -> list[Problem]:
    configured = ", ".join(sorted(known)) or "none"
    return [
        doc.problem(
            (*at, "receivers", index),
            f"receivers: unknown receiver {name!r} (configured receivers: {configured})",
            at_value=True,
        )
        for index, name in enumerate(rule.receivers or ())
        if name not in known
    ]


def _duplicate_names(loaded: Sequence[_Loaded]) -> list[Problem]:
    """Names must be unique across all files; the second and later uses are reported."""
    first: dict[str, str] = {}
    problems = []
    for item in loaded:
        if not isinstance(item.name, str):
            continue
        path = (*item.at, "name")
        mark = item.doc.marks.get(path)
        where = f"{item.doc.file}:{mark.value_line}" if mark else item.doc.file
        if item.name in first:
            message = (
                f"name: duplicate rule name {item.name!r} (first defined at {first[item.name]})"
            )
            problems.append(item.doc.problem(path, message, at_value=True))
        else:
            first[item.name] = where
    return problems


def select_rules(rules: Sequence[Rule], names: Iterable[str] | None) -> list[Rule]:
    """The rules named (all when ``names`` is ``None``); an unknown name is a usage error."""
    if names is None:
        return list(rules)
    wanted = list(dict.fromkeys(names))
    known = {rule.name for rule in rules}
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise ConfigError(f"--rule: no rule named {', '.join(map(repr, unknown))} "
                          f"(rules: {', '.join(sorted(known)) or 'none'})")
    return [rule for rule in rules if rule.name in wanted]

"""A property test of the rule loader: whatever a rule file holds, the loader answers with a
valid rule set or with located problems — never another exception — within a time and a
memory bound.

Inputs are structured mutations of valid rules (a field replaced by a wrong type, a huge or
non-finite number, unicode, deep nesting; a key removed or invented) and text-level damage
(anchors and aliases, merge keys, truncation, junk characters, an alias bomb).
"""

from __future__ import annotations

import contextlib
import math
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alertd.config.settings import Settings
from alertd.errors import ConfigError
from alertd.rules.loader import RuleSet, check_rules, load_rules
from alertd.rules.schema import Rule

#: Bounds for one rule file of this size: far above what a valid file takes (milliseconds,
#: a few MB), far below what an unbounded expansion would.
SECONDS = 3.0
PEAK_BYTES = 64 * 1024 * 1024

VALID_RULES: list[dict[str, Any]] = [
    {"name": "daily", "meter": "mtr_1", "when": "model=gpt-4 daily usage > 50_000"},
    {"name": "levels", "meter": "mtr_1", "window": "month", "timezone": "Europe/Paris",
     "condition": {"type": "threshold", "op": ">=",
                   "levels": {"warning": 80, "critical": 100}}},
    {"name": "quota", "meter": "mtr_1", "customers": {"all": True}, "every": "5m",
     "condition": {"type": "threshold", "value_from": {"metadata": "quota", "percent": 90}}},
    {"name": "spike", "meter": "mtr_1", "group_by": ["model"], "for": "10m",
     "condition": {"type": "change", "percent": 50, "min_volume": 100}},
    {"name": "odd", "meter": "mtr_1", "window": "hour",
     "condition": {"type": "anomaly", "sensitivity": 3, "history": "35d"}},
    {"name": "budget", "window": "month",
     "condition": {"type": "forecast", "value": 1e6, "min_elapsed": "3d"}},
    {"name": "silent", "meter": "mtr_1", "window": "hour",
     "condition": {"type": "absence", "duration": "2h", "floor": 0},
     "annotations": {"summary": "{{ customer.id }} sent nothing"}},
]

FIELDS = ["name", "meter", "when", "window", "timezone", "every", "for", "customers", "filters",
          "group_by", "condition", "severity", "labels", "annotations", "receivers",
          "keep_firing_for", "tenant_filters"]
CONDITION_FIELDS = ["type", "op", "value", "levels", "percent", "min_volume", "sensitivity",
                    "history", "min_history", "duration", "floor", "value_from", "min_elapsed"]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.just(10**400), st.just(-(10**30)),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(["1e400", ".inf", "-.nan"]),
    st.text(max_size=40), st.text(alphabet="😀ÿ\u202e\x00\t\\\"'{}[]&*!|>%@`", max_size=20),
    st.sampled_from(["Factory", "posix/UTC", "", "day", "5m", "-1s", "999999999999w"]),
)
junk: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)


def deeply_nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


@st.composite
def mutated_rule(draw: st.DrawFn) -> dict[str, Any]:
    rule = dict(draw(st.sampled_from(VALID_RULES)))
    for _ in range(draw(st.integers(0, 3))):
        action = draw(st.sampled_from(["replace", "drop", "invent", "condition", "deep"]))
        key = draw(st.sampled_from(FIELDS))
        if action == "replace":
            rule[key] = draw(junk)
        elif action == "drop":
            rule.pop(key, None)
        elif action == "invent":
            rule[draw(st.text(min_size=1, max_size=10))] = draw(junk)
        elif action == "deep":
            rule[key] = deeply_nested(draw(st.integers(10, 200)))
        elif isinstance(rule.get("condition"), dict):
            rule["condition"] = {**rule["condition"],
                                 draw(st.sampled_from(CONDITION_FIELDS)): draw(junk)}
    return rule


def as_yaml(rules: list[Any]) -> str:
    try:
        return yaml.safe_dump({"rules": rules}, allow_unicode=True, width=10**6)
    except (yaml.YAMLError, RecursionError):
        return yaml.safe_dump({"rules": []})


BOMB = ("a0: &a0 [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 9)) + "rules: *a8\n")


@st.composite
def damaged_text(draw: st.DrawFn) -> str:
    text = as_yaml(draw(st.lists(mutated_rule(), max_size=4)))
    damage = draw(st.sampled_from(["none", "truncate", "insert", "alias", "merge", "bomb",
                                   "junk"]))
    if damage == "truncate":
        return text[: draw(st.integers(0, len(text)))]
    if damage == "insert":
        at = draw(st.integers(0, len(text)))
        return text[:at] + draw(st.text(alphabet=":-[]{}&*!?|>#'\"\n\t %@`,", max_size=12)) \
            + text[at:]
    if damage == "alias":
        return "common: &c " + yaml.safe_dump(draw(junk), default_flow_style=True).strip() \
            + "\n" + text.replace("name: ", "extra: *c\n  name: ", 1)
    if damage == "merge":
        return "base: &b {meter: m, window: day}\n" + text.replace("- name:", "- <<: *b\n  name:")
    if damage == "bomb":
        return BOMB
    if damage == "junk":
        return draw(st.text(max_size=300))
    return text


def load_bounded(text: str) -> tuple[RuleSet, list[Any], float, int]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        tracemalloc.start()
        started = time.process_time()  # CPU seconds: a loaded machine cannot fail it
        try:
            rules, problems = check_rules([path], Settings(), known_receivers=["ops"])
            with contextlib.suppress(ConfigError):  # the only exception it may raise
                load_rules([path], Settings())
        finally:
            elapsed = time.process_time() - started
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
        for problem in problems:
            assert problem.file == str(path), problem
            assert problem.line >= 1 and problem.col >= 1, problem
            assert problem.message, problem
        return rules, problems, elapsed, peak


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(damaged_text())
def test_the_loader_answers_valid_rules_or_located_problems_in_bounds(text: str) -> None:
    rules, problems, elapsed, peak = load_bounded(text)
    assert elapsed < SECONDS, f"{elapsed:.2f}s"
    assert peak < PEAK_BYTES, f"{peak / 1e6:.1f} MB"
    assert all(isinstance(rule, Rule) for rule in rules)
    if not problems:  # a valid rule set: every number in it is finite
        for rule in rules:
            assert all(math.isfinite(v) for v in _numbers(rule.condition.model_dump()))


def _numbers(value: Any) -> list[float]:
    if isinstance(value, dict):
        return [n for item in value.values() for n in _numbers(item)]
    if isinstance(value, float | int) and not isinstance(value, bool):
        return [float(value)]
    return []


def test_the_bounds_hold_for_the_worst_inputs_we_know() -> None:
    for text in (BOMB, "rules: " + "[" * 20000, as_yaml([{**VALID_RULES[0], "x": 10**400}])):
        _, problems, elapsed, peak = load_bounded(text)
        assert problems and elapsed < SECONDS and peak < PEAK_BYTES

"""The rule loader: a valid RuleSet, or every problem as exact ``FILE:LINE:COL: message``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from alertd.conditions.absence import AbsenceCondition
from alertd.conditions.threshold import ThresholdCondition
from alertd.config.settings import Settings, load_settings
from alertd.errors import ConfigError, Location
from alertd.rules import RuleSet, load_rules
from alertd.rules.loader import TEMPLATE_NAMES, check_rules

ProblemsOf = Callable[..., list[str]]
MakeSettings = Callable[..., Settings]
REPO = Path(__file__).resolve().parents[2]

# Each case: a rule file (its first line is line 1) and every problem it must produce.
CASES = {
    "yaml syntax error": (
        """
        rules:
          - name: a
           when: daily usage > 1
        """,
        ["a.yaml:3:4: YAML syntax error: expected <block end>, but found "
         "'<block mapping start>'"],
    ),
    "unterminated quote": (
        """
        rules:
          - name: a
            when: "daily usage > 1
        """,
        ["a.yaml:4:1: YAML syntax error: found unexpected end of stream"],
    ),
    "unknown key": (
        """
        rules:
          - name: a
            when: daily usage > 1
            colour: red
        """,
        ["a.yaml:4:5: unknown key 'colour'"],
    ),
    "unknown key in condition": (
        """
        rules:
          - name: a
            condition: {type: threshold, value: 1, above: 2}
        """,
        ["a.yaml:3:44: unknown key 'above'"],
    ),
    "wrong types": (
        """
        rules:
          - name: a
            every: often
            customers: 5
            filters: {model: 4}
            condition: {type: threshold, value: [1]}
        """,
        [
            "a.yaml:3:12: every: not a duration: 'often' (use e.g. 30s, 5m, 4h, 7d)",
            "a.yaml:4:16: customers: expected a list or a mapping, got 5",
            "a.yaml:5:22: filters.model: expected a string or a list, got 4",
            "a.yaml:6:41: condition.value: expected a number, got a list",
        ],
    ),
    "wrong values": (
        """
        rules:
          - name: Daily_Usage
            window: year
            condition: {type: threshold, op: "=", value: 1}
        """,
        [
            "a.yaml:2:11: name: use lower-case letters, digits and '-' (e.g. gpt4-daily-usage)",
            "a.yaml:3:13: window: Input should be 'hour', 'day', 'week' or 'month'",
            "a.yaml:4:38: condition.op: Input should be '>', '>=', '<' or '<='",
        ],
    ),
    "a name that is not a string": (
        """
        rules:
          - name: [a]
            when: daily usage > 1
          - name: [a]
            when: daily usage > 1
        """,
        [
            "a.yaml:2:11: name: expected a string, got a list",
            "a.yaml:4:11: name: expected a string, got a list",
        ],
    ),
    "customers with a misspelt key": (
        """
        rules:
          - name: a
            customers: {al: true}
            when: daily usage > 1
        """,
        ["a.yaml:3:17: unknown key 'al'"],
    ),
    "missing condition": (
        """
        rules:
          - name: a
            meter: mtr_1
        """,
        ["a.yaml:2:5: missing required key 'condition'"],
    ),
    "missing name and threshold value": (
        """
        rules:
          - meter: mtr_1
            condition:
              type: threshold
              op: ">"
        """,
        [
            "a.yaml:2:5: missing required key 'name'",
            "a.yaml:4:7: condition: a threshold needs exactly one of 'value' or 'value_from'",
        ],
    ),
    "unknown condition type": (
        """
        rules:
          - name: a
            condition: {type: spike}
        """,
        ["a.yaml:3:23: condition.type: unknown type 'spike' (expected one of threshold, "
         "change, anomaly, forecast, absence, credit)"],
    ),
    "condition without a type": (
        """
        rules:
          - name: a
            condition:
              value: 1
        """,
        ["a.yaml:3:5: missing required key 'type'"],
    ),
    "bad shorthand, plain scalar": (
        """
        rules:
          - name: a
            when: model=gpt-4 dayly usage > 1
        """,
        ["a.yaml:3:23: when: expected one of hourly, daily, weekly, monthly at 'dayly' "
         "(did you mean 'daily'?)"],
    ),
    "bad shorthand, double-quoted with escapes": (
        r"""
        rules:
          - name: a
            when: "model=\"a b\" daly usage > 1"
        """,
        ["a.yaml:3:26: when: expected one of hourly, daily, weekly, monthly at 'daly' "
         "(did you mean 'daily'?)"],
    ),
    "bad shorthand, single-quoted with escapes": (
        """
        rules:
          - name: a
            when: 'model=x,''y'' daily usage > 1'
        """,
        ["a.yaml:3:20: when: expected KEY=VALUE after ',' at \"'\""],
    ),
    "bad shorthand, block scalar": (
        """
        rules:
          - name: a
            when: >-
              daily usage >> 1
        """,
        ["a.yaml:3:11: when: expected a number (like 50000, 50_000 or 0.5) at '>' "
         "(character 14 of the value)"],
    ),
    "shorthand that is not a string": (
        """
        rules:
          - name: a
            when: 5
        """,
        ["a.yaml:3:11: when: expected a string like 'model=gpt-4 daily usage > 50000'"],
    ),
    "bad shorthand does not hide other errors": (
        """
        rules:
          - name: a
            when: daily usage > lots
            timezone: Europe/Pariss
        """,
        [
            "a.yaml:3:25: when: expected a number (like 50000, 50_000 or 0.5) at 'lots'",
            "a.yaml:4:15: timezone: unknown time zone 'Europe/Pariss' (use an IANA name like "
            "America/New_York)",
        ],
    ),
    "unknown time zone": (
        """
        rules:
          - name: a
            when: daily usage > 1
            timezone: America/New_Yrok
        """,
        ["a.yaml:4:15: timezone: unknown time zone 'America/New_Yrok' (use an IANA name like "
         "America/New_York)"],
    ),
    "group_by of 3 keys": (
        """
        rules:
          - name: a
            when: daily usage > 1
            group_by: [model, tier, region]
            meter: m
        """,
        ["a.yaml:4:15: group_by: at most 2 keys, got 3 (Stripe's limit of "
         "dimension_group_by_keys in one request)"],
    ),
    "11 dimension filters": (
        """
        rules:
          - name: a
            when: daily usage > 1
            filters: {a: x, b: x, c: x, d: x, e: x, f: x, g: x, h: x, i: x, j: x, k: [x, y]}
            meter: m
        """,
        ["a.yaml:4:14: filters: at most 10 dimension filters, got 11 (Stripe's limit of "
         "dimension_filters in one request)"],
    ),
    "4 tenant filters": (
        """
        rules:
          - name: a
            when: daily usage > 1
            tenant_filters: {user: a, org: b, team: c, project: d}
            meter: m
        """,
        ["a.yaml:4:21: tenant_filters: at most 3 tenant filters, got 4 (Stripe's limit of "
         "tenant_filters in one request)"],
    ),
    "11 filters, counting those of the shorthand": (
        """
        rules:
          - name: a
            when: k=x daily usage > 1
            filters: {a: x, b: x, c: x, d: x, e: x, f: x, g: x, h: x, i: x, j: x}
            meter: m
        """,
        ["a.yaml:4:14: filters: at most 10 dimension filters, got 11 (Stripe's limit of "
         "dimension_filters in one request)"],
    ),
    "duplicate names": (
        """
        rules:
          - name: a
            when: daily usage > 1
          - name: b
            when: daily usage > 1
          - name: a
            when: hourly usage > 1
        """,
        ["a.yaml:6:11: name: duplicate rule name 'a' (first defined at a.yaml:2)"],
    ),
    "unknown receivers": (
        """
        rules:
          - name: a
            when: daily usage > 1
            receivers: [ops, pager, hooks]
        """,
        ["a.yaml:4:22: receivers: unknown receiver 'pager' (configured receivers: hooks, ops)"],
    ),
    "undefined template names": (
        """
        rules:
          - name: a
            when: daily usage > 1
            labels: {team: "{{ tema }}"}
            annotations:
              summary: "{{ custmer.name }} used {{ value | number }} tokens"
              details: |
                Usage: {{ value }}
                Quota: {{ quota }}
              broken: "{{ value "
              filter: "{% if value %}{{ value | humanize }}{% endif %}"
        """,
        [
            "a.yaml:4:20: labels.team: undefined name 'tema' in template (known names: "
            + ", ".join(TEMPLATE_NAMES) + ")",
            "a.yaml:6:16: annotations.summary: undefined name 'custmer' in template "
            "(did you mean 'customer'?)",
            "a.yaml:7:16: annotations.details: undefined name 'quota' in template (known "
            "names: " + ", ".join(TEMPLATE_NAMES) + ") (line 2 of the template)",
            "a.yaml:10:15: annotations.broken: template error: unexpected end of template, "
            "expected 'end of print statement'",
            "a.yaml:11:15: annotations.filter: template error: no filter named 'humanize'",
        ],
    ),
    "when together with condition": (
        """
        rules:
          - name: a
            when: daily usage > 1
            condition: {type: threshold, value: 2}
        """,
        ["a.yaml:3:5: when: cannot be used together with 'condition' (the shorthand is a "
         "threshold condition; keep one of them)"],
    ),
    "when with a conflicting window": (
        """
        rules:
          - name: a
            window: week
            when: daily usage > 1
          - name: b
            window: day
            when: daily usage > 1
        """,
        ["a.yaml:3:13: window: 'week' contradicts 'when' (its adverb means window 'day'); "
         "remove window or change the shorthand"],
    ),
    "when with a conflicting filter": (
        """
        rules:
          - name: a
            when: model=gpt-4,tier=pro daily usage > 1
            filters:
              region: eu
              model: [gpt-4, gpt-4o]
            meter: m
        """,
        ["a.yaml:6:7: filters.model: also set in 'when'; set each filter in one place"],
    ),
    "source is not for users": (
        """
        rules:
          - name: a
            when: daily usage > 1
            source: elsewhere
        """,
        ["a.yaml:4:5: unknown key 'source'"],
    ),
    "condition sanity": (
        """
        rules:
          - name: anomaly-weekly
            window: week
            condition: {type: anomaly, history: 7d, min_history: 14d}
          - name: forecast-hourly
            window: hour
            condition: {type: forecast, value: 10}
          - name: forecast-daily
            window: day
            condition: {type: forecast, value: 10}
          - name: absence-short
            condition: {type: absence, duration: 30m}
          - name: absence-short-hourly
            window: hour
            condition: {type: absence, duration: 30m}
          - name: quota-without-key
            condition: {type: threshold, value_from: {metadata: " "}}
          - name: negative-for
            when: daily usage > 1
            for: -5m
        """,
        [
            "a.yaml:3:13: window: an anomaly condition needs window: hour or day, not 'week' "
            "(its baseline needs many periods of history); for weeks or months use a change "
            "condition",
            "a.yaml:4:58: condition.min_history: 2w is longer than history (1w), so the rule "
            "could never fire",
            "a.yaml:6:13: window: a forecast condition needs window: day, week or month (it "
            "projects period-to-date usage to the end of the period)",
            "a.yaml:10:16: condition.min_elapsed: 3d is not shorter than a day, so this forecast "
            "could never be made; set min_elapsed below 1d",
            "a.yaml:12:42: condition.duration: at least 1d with window: day (usage is counted "
            "in day buckets, so a shorter silence cannot be seen), got 30m; use window: hour "
            "for shorter silences",
            "a.yaml:15:42: condition.duration: at least 1h with window: hour (usage is counted "
            "in hour buckets, so a shorter silence cannot be seen), got 30m",
            "a.yaml:17:57: condition.value_from.metadata: name the Stripe customer metadata key "
            "that holds the quota (e.g. monthly_quota)",
            "a.yaml:20:10: for: not a duration: '-5m' (use e.g. 30s, 5m, 4h, 7d)",
        ],
    ),
    "checks still run on the valid fields of an invalid rule": (
        """
        rules:
          - name: Bad_Name
            when: daily usage > 1
            tenant_filters: {a: x, b: x, c: x, d: x}
            receivers: [nobody]
            meter: m
        """,
        [
            "a.yaml:2:11: name: use lower-case letters, digits and '-' (e.g. gpt4-daily-usage)",
            "a.yaml:4:21: tenant_filters: at most 3 tenant filters, got 4 (Stripe's limit of "
            "tenant_filters in one request)",
            "a.yaml:5:17: receivers: unknown receiver 'nobody' (configured receivers: hooks, ops)",
        ],
    ),
}


@pytest.mark.parametrize(("text", "expected"), CASES.values(), ids=CASES.keys())
def test_problems(problems_of: ProblemsOf, text: str, expected: list[str]) -> None:
    assert problems_of({"a.yaml": text}) == expected


EVENT_SUMMARIES = """
rules:
  - name: needs-meter-usage
    filters: {model: gpt-4}
    tenant_filters: {user: u1}
    group_by: [model]
    window: week
    timezone: Europe/Paris
    condition: {type: threshold, value: 1}
  - name: fine-for-summaries
    meter: mtr_1
    when: hourly usage > 10
  - name: shorthand-filters
    meter: mtr_1
    when: model=gpt-4 weekly usage > 10
"""


def test_event_summaries_refusals(problems_of: ProblemsOf, make_settings: MakeSettings) -> None:
    settings = make_settings(stripe={"source": "event_summaries"})
    why = "(Stripe offers that on meter event summaries only in a private preview)"
    use = "or set stripe.source: meter_usage (the Meter Usage Analytics API)"
    assert problems_of({"a.yaml": EVENT_SUMMARIES}, settings) == [
        "a.yaml:2:5: meter: required with stripe.source: event_summaries (event summaries are "
        f"read one meter at a time); name the meter, {use} to sum all meters",
        f"a.yaml:3:14: filters: stripe.source: event_summaries cannot filter by dimension {why}; "
        f"remove filters, {use}",
        f"a.yaml:4:21: tenant_filters: stripe.source: event_summaries cannot filter by tenant "
        f"{why}; remove tenant_filters, {use}",
        f"a.yaml:5:15: group_by: stripe.source: event_summaries cannot group by dimension {why}; "
        f"remove group_by, {use}",
        "a.yaml:6:13: window: 'week' needs stripe.source: meter_usage (event summaries come in "
        "hour or day buckets only); use window: day or hour",
        "a.yaml:7:15: timezone: 'Europe/Paris' needs stripe.source: meter_usage (event "
        "summaries only have UTC day boundaries); use timezone: UTC",
        f"a.yaml:14:11: filters: stripe.source: event_summaries cannot filter by dimension {why}; "
        f"remove filters, {use}",
        "a.yaml:14:11: window: 'week' needs stripe.source: meter_usage (event summaries come in "
        "hour or day buckets only); use window: day or hour",
    ]
    # With meter_usage only the dimensions without a meter are refused.
    needs = ("needs a 'meter' (dimensions belong to one meter; a rule without 'meter:' sums "
             "every meter of the customer); add meter: <meter id> or remove")
    assert problems_of({"a.yaml": EVENT_SUMMARIES}) == [
        f"a.yaml:3:14: filters: {needs} filters",
        f"a.yaml:4:21: tenant_filters: {needs} tenant_filters",
        f"a.yaml:5:15: group_by: {needs} group_by",
    ]


FILE_SHAPES = {
    "empty file": ("", ["a.yaml:1:1: a rule file is a mapping with a 'rules:' list; this one "
                        "is empty"]),
    "a list": ("- name: a\n", ["a.yaml:1:1: a rule file is a mapping with a 'rules:' list; "
                               "this one is a list"]),
    "a scalar": ("# rules\nhello\n", ["a.yaml:2:1: a rule file is a mapping with a 'rules:' "
                                       "list; this one is a str"]),
    "no rules key": ("rule:\n  - name: a\n", [
        "a.yaml:1:1: unknown key 'rule' (a rule file has one top-level key, 'rules')",
        "a.yaml:1:1: missing required key 'rules'",
    ]),
    "rules not a list": ("rules: {name: a}\n", ["a.yaml:1:8: rules: expected a list of rules"]),
    "rule not a mapping": ("rules:\n  - gpt4-daily\n", [
        "a.yaml:2:5: rules: expected a rule (a mapping with name, condition, ...)",
    ]),
    "rules left empty": ("rules:\n", []),
    "no rules yet": ("rules: []\n", []),
    "duplicate keys, reported with the rest": (
        "rules:\n  - name: a\n    when: daily usage > 1\n    name: b\n    every: soon\n"
        "    every: 5m\n", [
            "a.yaml:4:5: duplicate key 'name'",
            "a.yaml:5:12: every: not a duration: 'soon' (use e.g. 30s, 5m, 4h, 7d)",
            "a.yaml:6:5: duplicate key 'every'",
        ]),
    "an impossible date": (
        "rules:\n  - name: a\n    when: daily usage > 1\n    labels: {since: 2025-13-01}\n",
        ["a.yaml:4:21: cannot read '2025-13-01': month must be in 1..12"],
    ),
    "an unknown tag": (
        "rules:\n  - name: a\n    when: !include usage.txt\n",
        [
            "a.yaml:3:11: cannot read 'usage.txt': could not determine a constructor for the "
            "tag '!include'",
            # The value stays the text as written, and is then judged as such.
            "a.yaml:3:11: when: expected one of hourly, daily, weekly, monthly at 'usage.txt'",
        ],
    ),
    "a mapping as a key": (
        "rules:\n  - name: a\n    when: daily usage > 1\n    ? {a: 1}\n    : x\n",
        ["a.yaml:4:7: mapping keys must be plain scalars"],
    ),
}


@pytest.mark.parametrize(("text", "expected"), FILE_SHAPES.values(), ids=FILE_SHAPES.keys())
def test_file_shapes(problems_of: ProblemsOf, text: str, expected: list[str]) -> None:
    assert problems_of({"a.yaml": text}) == expected


def test_every_problem_of_every_file_at_once(problems_of: ProblemsOf) -> None:
    files = {
        "b.yaml": "rules:\n  - name: a\n    when: daily usage > 1\n    colour: red\n",
        "a.yaml": "rules:\n  - name: a\n    when: daily usage >\n  - name: c\n",
        "c.yaml": "rules: [\n",
    }
    # Files are read in the order given: b.yaml defines rule 'a' first.
    assert problems_of(files) == [
        "a.yaml:2:11: name: duplicate rule name 'a' (first defined at b.yaml:2)",
        "a.yaml:3:24: when: expected a number (like 50000, 50_000 or 0.5) at end of text",
        "a.yaml:4:5: missing required key 'condition'",
        "b.yaml:4:5: unknown key 'colour'",
        "c.yaml:2:1: YAML syntax error: expected the node content, but found '<stream end>'",
    ]


def test_unreadable_file_is_a_problem_too(tmp_path: Path, make_settings: MakeSettings) -> None:
    (tmp_path / "bin.yaml").write_bytes(b"rules: \xff\xfe\n")
    with pytest.raises(ConfigError) as caught:
        load_rules([Path("missing.yaml"), Path("bin.yaml")], make_settings())
    assert [str(p) for p in caught.value.problems] == [
        "bin.yaml:1:8: not UTF-8 text: byte 0xff cannot be decoded",
        "missing.yaml:1:1: cannot read: No such file or directory",
    ]


GOOD = """
rules:
  # A comment line first, so the rules do not start on line 2.
  - name: gpt4-daily-usage
    meter: mtr_123
    customers: [cus_123]
    tenant_filters: {user_id: a8238bf39a1}
    group_by: [tier]
    timezone: America/New_York
    every: 15m
    when: "model=gpt-4 daily usage > 50_000"
    for: 30m
    keep_firing_for: 1h
    labels: {team: ml, customer_name: "{{ customer.name }}"}
    annotations: {summary: "{{ customer.name }} used {{ value | number }} gpt-4 tokens today"}
    receivers: [ops]
  - &quiet
    name: api-quiet
    meter: mtr_api
    customers: {search: "metadata['plan']:'pro'"}
    window: hour
    condition: {type: absence, duration: 2h}
  - <<: *quiet
    name: api-quiet-eu
    filters: {region: [eu-west-1, eu-central-1]}
    when: region=eu hourly usage < 1
"""


def test_valid_rules(problems_of: ProblemsOf, tmp_path: Path, make_settings: MakeSettings) -> None:
    (tmp_path / "good.yaml").write_text(GOOD.lstrip("\n"))
    # The merged rule has both `condition` (from the anchor) and `when`: reported.
    with pytest.raises(ConfigError) as caught:
        load_rules([Path("good.yaml")], make_settings())
    assert [str(p) for p in caught.value.problems] == [
        "good.yaml:24:15: filters.region: also set in 'when'; set each filter in one place",
        "good.yaml:25:5: when: cannot be used together with 'condition' (the shorthand is a "
        "threshold condition; keep one of them)",
    ]
    fixed = GOOD.replace("    filters: {region: [eu-west-1, eu-central-1]}\n", "").replace(
        "    when: region=eu hourly usage < 1\n", "    filters: {region: eu}\n"
    )
    (tmp_path / "good.yaml").write_text(fixed.lstrip("\n"))
    rules = load_rules([Path("good.yaml")], make_settings())

    assert isinstance(rules, RuleSet)
    assert rules.files == ("good.yaml",)
    assert [rule.name for rule in rules] == ["gpt4-daily-usage", "api-quiet", "api-quiet-eu"]
    assert len(rules) == 3
    gpt4 = rules.by_name("gpt4-daily-usage")
    assert gpt4.source == Location("good.yaml", 3)
    assert (gpt4.window, gpt4.filters, gpt4.group_by) == ("day", {"model": "gpt-4"}, ["tier"])
    assert gpt4.condition == ThresholdCondition(type="threshold", op=">", value=50_000)
    assert (gpt4.every, gpt4.for_, gpt4.keep_firing_for) == (900, 1800, 3600)
    eu = rules.by_name("api-quiet-eu")
    assert eu.source == Location("good.yaml", 22)
    assert eu.filters == {"region": "eu"}
    assert eu.condition == AbsenceCondition(type="absence", duration=7200)
    assert eu.customers is not None and rules.by_name("api-quiet").customers == eu.customers
    with pytest.raises(KeyError, match="no rule named 'nope' \\(rules: gpt4-daily-usage, "):
        rules.by_name("nope")


def test_merged_values_point_where_they_were_written(problems_of: ProblemsOf) -> None:
    text = """
    rules:
      - &base
        name: a
        timezone: Mars/Base
        when: daily usage > 1
      - <<: *base
        name: b
    """
    timezone = ("timezone: unknown time zone 'Mars/Base' (use an IANA name like "
                "America/New_York)")
    assert problems_of({"a.yaml": text}) == [f"a.yaml:4:15: {timezone}"]


def test_duplicate_names_across_files(problems_of: ProblemsOf) -> None:
    rule = "rules:\n  - name: same\n    when: daily usage > 1\n"
    assert problems_of({"one.yaml": rule, "two.yaml": "# two\n" + rule}) == [
        "two.yaml:3:11: name: duplicate rule name 'same' (first defined at one.yaml:2)",
    ]


def test_check_rules_returns_valid_rules_and_problems(
    tmp_path: Path, make_settings: MakeSettings
) -> None:
    (tmp_path / "a.yaml").write_text(
        "rules:\n  - name: a\n    when: daily usage > 1\n  - name: b\n    when: nope\n"
    )
    rules, problems = check_rules([Path("a.yaml")], make_settings())
    assert rules.names() == ("a",)
    assert [str(p) for p in problems] == [
        "a.yaml:5:11: when: expected one of hourly, daily, weekly, monthly at 'nope'"
    ]


def test_receivers_can_be_given_when_settings_are_not(
    tmp_path: Path, make_settings: MakeSettings
) -> None:
    (tmp_path / "a.yaml").write_text(
        "rules:\n  - name: a\n    when: daily usage > 1\n    receivers: [pager]\n"
    )
    _, problems = check_rules([Path("a.yaml")], make_settings(), known_receivers=["pager"])
    assert problems == []


def test_no_files_is_an_empty_rule_set(make_settings: MakeSettings) -> None:
    assert load_rules([], make_settings()) == RuleSet((), ())


def test_example_rules_load_cleanly() -> None:
    """Every rule file shipped under rules/ loads with the example config."""
    settings = load_settings(REPO / "config.example.yaml")
    paths = sorted((REPO / "rules").glob("*.yaml"))
    rules = load_rules(paths, settings)
    assert len(rules) >= len(paths)
    assert {rule.condition.type for rule in rules} >= {"threshold"}



def test_check_rules_leaves_out_duplicates(tmp_path: Path, make_settings: MakeSettings) -> None:
    (tmp_path / "a.yaml").write_text(
        "rules:\n  - name: a\n    when: daily usage > 1\n  - name: a\n    when: daily usage > 2\n"
    )
    rules, problems = check_rules([Path("a.yaml")], make_settings())
    assert [rule.source for rule in rules] == [Location("a.yaml", 2)]
    assert [str(p) for p in problems] == [
        "a.yaml:4:11: name: duplicate rule name 'a' (first defined at a.yaml:2)"
    ]

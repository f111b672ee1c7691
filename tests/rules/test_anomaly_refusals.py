"""Bad ``sensitivity`` names and bad ``exclude`` entries of anomaly rules, through the real
loader: each is refused with the file, line and column of the value and a message that says
what to write instead."""

from __future__ import annotations

from collections.abc import Callable

import pytest

ProblemsOf = Callable[..., list[str]]

RULE = """
rules:
  - name: spikes
    meter: mtr_tokens
    window: hour
    condition:
      type: anomaly
      {setting}
"""


def problems(problems_of: ProblemsOf, setting: str) -> list[str]:
    return problems_of({"a.yaml": RULE.format(setting=setting)})


@pytest.mark.parametrize("setting", [
    "sensitivity: medium", "sensitivity: 2.5", "sensitivity: '5'", "exclude: [2025-12-25]",
    "exclude: ['2025-12-25T09:00']", "exclude: [{from: 2025-12-24, to: 2025-12-26}]",
    "exclude: [{weekdays: [sat, sun], hours: [0, 6]}]", "exclude: [{dates: [12-25, 01-01]}]",
])
def test_good_settings_load(problems_of: ProblemsOf, setting: str) -> None:
    assert problems(problems_of, setting) == []


SPREADS = "use low, medium, high or a number of spreads (medium is 4)"
EITHER = "give a date (2025-12-25), a date-time (2025-12-25T09:00), or from/to or " \
         "dates/weekdays/hours"


@pytest.mark.parametrize(("setting", "expected"), [
    ("sensitivity: extreme", f"a.yaml:7:20: condition.sensitivity: {SPREADS}, not 'extreme'"),
    ("sensitivity: Medium", f"a.yaml:7:20: condition.sensitivity: {SPREADS}, not 'Medium'"),
    ("sensitivity: 0", "a.yaml:7:20: condition.sensitivity: Input should be greater than 0"),
    ("exclude: [{weekdays: [funday]}]",
     "a.yaml:7:29: condition.exclude.0.weekdays.0: Input should be 'mon', 'tue', 'wed', 'thu', "
     "'fri', 'sat' or 'sun'"),
    ("exclude: [{hours: [3]}]",
     "a.yaml:7:17: condition.exclude.0: hours: [start, end), e.g. [0, 6] for midnight to 06:00"),
    ("exclude: [{hours: [3, 30]}]",
     "a.yaml:7:29: condition.exclude.0.hours.1: Input should be less than or equal to 24"),
    ("exclude: [{dates: [13-01]}]",
     "a.yaml:7:26: condition.exclude.0.dates.0: dates are MM-DD, every year (12-25 for "
     "Christmas), not '13-01'"),
    ("exclude: [{from: 2025-01-01, weekdays: [mon]}]",
     "a.yaml:7:17: condition.exclude.0: use either from/to or dates/weekdays/hours, not both"),
    ("exclude: [{}]",
     "a.yaml:7:17: condition.exclude.0: give from (and to) or a recurring dates/weekdays/hours"),
    ("exclude: [not-a-date]", f"a.yaml:7:17: condition.exclude.0: {EITHER}, not 'not-a-date'"),
    ("exclude: [{from: 2025-01-01, until: 2025-01-02}]",
     "a.yaml:7:36: unknown key 'until'"),
])
def test_bad_settings_are_refused_where_written(
    problems_of: ProblemsOf, setting: str, expected: str
) -> None:
    assert problems(problems_of, setting) == [expected]


def test_one_bad_anomaly_rule_does_not_hide_another(problems_of: ProblemsOf) -> None:
    two = RULE.format(setting="sensitivity: extreme") + """
  - name: dips
    meter: mtr_tokens
    window: hour
    condition: {type: anomaly, exclude: [{dates: [02-30x]}]}
"""
    found = problems_of({"a.yaml": two})
    assert [problem.split(": ")[0] for problem in found] == ["a.yaml:7:20", "a.yaml:12:51"]

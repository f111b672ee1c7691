"""The template environment: filters, strictness, sandboxing, and checks without rendering."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from jinja2 import UndefinedError
from jinja2.exceptions import SecurityError

from alertd.clock import readable_duration
from alertd.templating import (
    TEMPLATE_NAMES,
    TemplateIssue,
    check_template,
    format_datetime,
    format_number,
    template_environment,
)


@pytest.mark.parametrize(
    ("value", "digits", "expected"),
    [
        (0, None, "0"),
        (50000.0, None, "50,000"),
        (1234567.5, None, "1,234,568"),
        (1234.567, None, "1,235"),
        (12.345, None, "12.35"),
        (0.1234567, None, "0.123457"),
        (-98765, None, "-98,765"),
        (12.3456, 1, "12.3"),
        (1000, 2, "1,000.00"),
        (None, None, "n/a"),
    ],
)
def test_number(value: float | None, digits: int | None, expected: str) -> None:
    assert format_number(value, digits) == expected


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(0, "0s"), (45, "45s"), (5400, "1h 30m"), (86400, "1d"), (90061, "1d 1h 1m 1s"),
     (-120, "-2m"), (59.6, "1m"), (None, "n/a")],
)
def test_duration(seconds: float | None, expected: str) -> None:
    assert readable_duration(seconds) == expected


@pytest.mark.parametrize(
    ("value", "tz", "expected"),
    [
        (1735896600, "UTC", "2025-01-03 09:30 UTC"),
        (1735896600, "America/New_York", "2025-01-03 04:30 EST"),
        (1751535000, "America/New_York", "2025-07-03 05:30 EDT"),
        (datetime(2025, 1, 3, 9, 30, tzinfo=UTC), "Asia/Kolkata", "2025-01-03 15:00 IST"),
        (datetime(2025, 1, 3, 9, 30), "UTC", "2025-01-03 09:30 UTC"),
        ("2025-01-03T09:30:00Z", "Europe/Paris", "2025-01-03 10:30 CET"),
        (None, "UTC", "n/a"),
    ],
)
def test_datetime(value: float | datetime | str | None, tz: str, expected: str) -> None:
    assert format_datetime(value, tz) == expected


def test_filters_in_templates() -> None:
    template = template_environment().from_string(
        "{{ value | number }} in {{ seconds | duration }} at "
        "{{ at | datetime('America/New_York', '%H:%M') }}"
    )
    assert template.render(value=1234567, seconds=3600, at=1735896600) == "1,234,567 in 1h at 04:30"


def test_undefined_names_fail_at_render() -> None:
    with pytest.raises(UndefinedError):
        template_environment().from_string("{{ missing }}").render()


def test_sandbox_refuses_unsafe_access() -> None:
    with pytest.raises(SecurityError):
        template_environment().from_string("{{ value.__class__.__mro__ }}").render(value=1)


def test_html_environment_escapes() -> None:
    rendered = template_environment(autoescape=True).from_string("{{ name }}").render(name="<b>")
    assert rendered == "&lt;b&gt;"


KNOWN = ", ".join(TEMPLATE_NAMES)


@pytest.mark.parametrize(
    ("source", "issues"),
    [
        ("{{ customer.name }} used {{ value | number }} gpt-4 tokens today", []),
        ("{% for k, v in dimensions.items() %}{{ k }}={{ v }} {% endfor %}", []),
        ("{% set share = value / threshold %}{{ share }}", []),
        ("plain text", []),
        ("{{ custmer.name }}", [(1, "undefined name 'custmer' in template (did you mean "
                                    "'customer'?)")]),
        ("a\nb {{ quota }}\n{{ quota }}", [(2, f"undefined name 'quota' in template (known "
                                              f"names: {KNOWN})")]),
        ("{{ value ", [(1, "template error: unexpected end of template, expected 'end of "
                           "print statement'")]),
        ("line\n{% if value %}", [(2, "template error: unexpected end of template. Jinja was "
                                      "looking for the following tags: 'elif' or 'else' or "
                                      "'endif'. The innermost block that needs to be closed is "
                                      "'if'")]),
        ("{{ value | humanize }}", [(1, "template error: no filter named 'humanize'")]),
        ("{% if value is big %}x{% endif %}{% if value %}{{ value | fmt }}{% endif %}", [
            (1, "template error: no filter named 'fmt'"),
            (1, "template error: no test named 'big'"),
        ]),
    ],
)
def test_check_template(source: str, issues: list[tuple[int, str]]) -> None:
    assert check_template(source) == [TemplateIssue(line, message) for line, message in issues]


def test_check_template_with_other_names() -> None:
    assert check_template("{{ alerts | length }}", names={"alerts"}) == []

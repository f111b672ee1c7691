"""Templates: filters, contexts, sandboxing and escaping, overrides, and the validate checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from jinja2 import TemplateError
from jinja2.exceptions import SecurityError

from alertd.model import Customer, Period
from alertd.notify.sample import sample_notification
from alertd.notify.templates import (
    ALERT_NAMES,
    DEFAULTS_DIR,
    NOTIFICATION_NAMES,
    TEMPLATE_FILES,
    Templates,
    alert_context,
    annotated,
    bar,
    check_templates,
    colour,
    iso,
    render_annotations,
    source_problems,
    spark,
)
from alertd.rules.schema import Rule
from alertd.templating import TEMPLATE_NAMES

TEMPLATES = Templates()

# --------------------------------------------------------------------------- filters


# number, duration and datetime come from alertd.templating and are tested there; these are
# the filters notification templates add.


@pytest.mark.parametrize("instant, tz, expected", [
    (1_735_880_400, "America/New_York", "2025-01-03 00:00 EST"),  # winter: UTC-5
    (1_751_342_400, "America/New_York", "2025-07-01 00:00 EDT"),  # summer: UTC-4
    (1_735_880_400, "Asia/Kolkata", "2025-01-03 10:30 IST"),      # half-hour offset
    (datetime(2025, 1, 3, 5, tzinfo=UTC), "UTC", "2025-01-03 05:00 UTC"),
    (None, "UTC", "n/a"),
])
def test_localtime(instant, tz, expected) -> None:
    rendered = TEMPLATES.render_source("{{ t | localtime(tz) }}", {"t": instant, "tz": tz})
    assert rendered == expected


def test_localtime_with_format_and_iso() -> None:
    source = "{{ 1735880400 | localtime('Europe/Berlin', '%d %b %H:%M') }}"
    rendered = TEMPLATES.render_source(source, {})
    assert rendered == "03 Jan 06:00"
    assert iso(1_735_880_400) == "2025-01-03T05:00:00Z"
    assert iso(datetime(2025, 1, 3, 0, tzinfo=timezone(timedelta(hours=-5)))) == \
        "2025-01-03T05:00:00Z"


@pytest.mark.parametrize("value, peak, width, expected", [
    (10, 10, 4, "████"), (5, 10, 4, "██"), (1, 8, 1, "▏"), (0, 10, 4, ""), (5, 0, 4, ""),
    (20, 10, 2, "██"),  # clipped at the peak
])
def test_bar(value, peak, width, expected) -> None:
    assert bar(value, peak, width) == expected


def test_spark_and_colour() -> None:
    assert spark([0, 4, 8]) == "▁▄█"
    assert spark([0, 0]) == "▁▁"
    assert colour("critical") == "#c5221f"
    assert colour("critical", "resolved") == "#188038"
    assert colour("made-up") == colour("warning")


# --------------------------------------------------------------------------- contexts


def test_alert_context_offers_every_documented_name(build) -> None:
    context = alert_context(build.alert())
    assert set(context) == ALERT_NAMES
    assert set(TEMPLATE_NAMES) <= ALERT_NAMES  # every name annotations are checked against
    assert context["window"]["starts_at"].isoformat() == "2025-01-03T00:00:00-05:00"
    assert context["starts_at"].tzinfo is not None
    assert context["recent"][-1]["label"] == "Fri 03 Jan"
    assert context["recent"][-1]["share"] == 1.0


def test_customer_name_falls_back_to_the_id(build) -> None:
    context = alert_context(build.alert(customer=Customer("cus_nameless")))
    assert context["customer"]["name"] == "cus_nameless"


def test_notification_context_offers_every_documented_name(build) -> None:
    notification = build.notification(build.alert(), build.resolved(build.alert()))
    context = Templates().notification_context(notification)
    assert set(context) == NOTIFICATION_NAMES
    assert len(context["firing"]) == len(context["resolved"]) == 1


# --------------------------------------------------------------------------- rendering


def test_annotation_templates_render_once_on_the_way_out(build) -> None:
    sly = Customer("cus_sly", "{{ customer.metadata }}", None, {"secret": "hunter2"})
    alert = build.alert(customer=sly, annotations={
        "summary": "{{ customer.name }} used {{ value | number }}"})
    notification = build.notification(alert)
    [rendered] = annotated(notification).alerts
    assert rendered.annotations["summary"] == "{{ customer.metadata }} used 5,900,000"
    context = TEMPLATES.notification_context(notification)
    assert context["alerts"][0]["annotations"]["summary"] == \
        "{{ customer.metadata }} used 5,900,000"  # Stripe data is never rendered as a template
    assert context["common_annotations"] == {"summary": "{{ customer.metadata }} used 5,900,000"}


def test_meta_alerts_concern_all_customers(build) -> None:
    meta = build.alert(customer=Customer(""), rule="stale-data", value=None, threshold=None,
                       window=Period(build.now, build.now), recent=(), dimensions=(),
                       annotations={"summary": "usage data is 3h old"})
    context = TEMPLATES.notification_context(build.notification(meta))
    assert context["alerts"][0]["customer"]["name"] == "all customers"
    assert context["alerts"][0]["window"]["label"] == "Fri 03 Jan 2025 16:00"
    text = TEMPLATES.render("email.txt", context)
    assert "Customer    all customers\n" in text and "Value       n/a" in text
    subject = " ".join(TEMPLATES.render("email_subject.txt", context).split())
    assert subject == "[FIRING critical] stale-data · all customers"
    TEMPLATES.render("email.html", context)


def test_html_is_autoescaped_and_text_is_not(build) -> None:
    evil = Customer("cus_evil", "<script>alert(1)</script>", "x@example.com")
    alert = build.alert(customer=evil, annotations={"summary": "<b>big</b> spender"})
    templates = Templates()
    context = templates.notification_context(build.notification(alert))
    html = templates.render("email.html", context)
    text = templates.render("email.txt", context)
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>big</b>" not in html and "&lt;b&gt;big&lt;/b&gt;" in html
    assert "<script>alert(1)</script>" in text


def test_the_sandbox_refuses_internals(build) -> None:
    templates = Templates()
    context = templates.notification_context(build.notification())
    with pytest.raises(SecurityError):
        templates.render_source("{{ alerts.__class__.__mro__ }}", context)
    with pytest.raises(SecurityError):
        templates.render_source("{{ status.__class__.__subclasses__() }}", context)


def test_undefined_names_are_errors_not_blanks(build) -> None:
    templates = Templates()
    context = templates.notification_context(build.notification())
    with pytest.raises(TemplateError, match="custmer"):
        templates.render_source("{{ custmer.name }}", context)


def test_templates_dir_overrides_one_file_and_keeps_the_rest(tmp_path: Path, build) -> None:
    (tmp_path / "email_subject.txt").write_text("custom {{ alerts | length }}")
    templates = Templates(tmp_path)
    context = templates.notification_context(build.notification())
    assert templates.render("email_subject.txt", context) == "custom 1"
    assert "Acme Analytics Inc." in templates.render("email.txt", context)


def test_render_annotations(build) -> None:
    context = alert_context(build.alert())
    rendered = render_annotations({
        "summary": "{{ customer.name }} used {{ value | number }} ({{ "
                   "(value / threshold * 100) | round | int }}%)",
        "when": "{{ window.starts_at | datetime(window.timezone, '%d %b') }}",
        "broken": "{{ customer.metadata.no_such_key }}",
    }, context)
    assert rendered["summary"] == "Acme Analytics Inc. used 5,900,000 (118%)"
    assert rendered["when"] == "03 Jan"
    assert rendered["broken"] == "{{ customer.metadata.no_such_key }}"  # kept, logged


CONDITIONS = [
    {"type": "threshold", "op": ">", "value": 5_000_000},
    {"type": "threshold", "op": "<", "value": 100},
    {"type": "threshold", "value_from": {"metadata": "quota", "percent": 80}},
    {"type": "threshold", "value_from": {"metadata": "quota"},
     "levels": {"warning": 100, "critical": 150}},
    {"type": "change", "percent": 50, "compare_to": "last_week", "direction": "down"},
    {"type": "anomaly", "sensitivity": 3},
    {"type": "forecast", "value": 10_000_000},
    {"type": "absence", "duration": "6h"},
]


@pytest.mark.parametrize("window", ["hour", "day", "month"])
@pytest.mark.parametrize("condition", CONDITIONS, ids=lambda c: f"{c['type']}")
def test_every_condition_renders_in_every_template(condition, window) -> None:
    rule = Rule.model_validate({
        "name": "sample-rule", "meter": "mtr_1", "window": window,
        "timezone": "Europe/Berlin", "filters": {"model": ["gpt-4", "gpt-4o"]},
        "group_by": ["region"], "condition": condition,
        "annotations": {"summary": "{{ customer.name }}: {{ message }}"},
    })
    notification = sample_notification(rule, "ops", now=1_735_920_000)
    templates = TEMPLATES
    context = templates.notification_context(notification)
    rendered = {name: templates.render(name, context) for name in TEMPLATE_FILES}
    alert = notification.alerts[0]
    assert alert.annotations["summary"] == "{{ customer.name }}: {{ message }}"  # a template
    assert f"Acme Analytics Inc.: {alert.message}" in rendered["email.txt"]  # rendered
    assert "region=eu-west-1" in rendered["email.txt"]
    assert "Europe/Berlin" in rendered["email.html"]
    assert len(alert.recent) == 8


def test_sample_levels_use_the_highest_level_as_severity() -> None:
    rule = Rule.model_validate({"name": "quota", "condition": CONDITIONS[3]})
    alert = sample_notification(rule, "ops", now=1_735_920_000).alerts[0]
    assert alert.severity == "critical"
    assert alert.threshold == 7_500_000  # 150 % of the sample quota of 5,000,000
    assert alert.customer.metadata["quota"] == "5000000"


# --------------------------------------------------------------------------- checks


def test_the_packaged_templates_pass_their_own_check() -> None:
    assert check_templates(DEFAULTS_DIR) == []


def test_check_templates_finds_syntax_errors_unknown_names_and_bad_attributes(
        tmp_path: Path) -> None:
    (tmp_path / "email.txt").write_text("Hello\n{{ custmer.name }}\n")
    (tmp_path / "email.html").write_text("<p>{% if alerts %}open\n")
    (tmp_path / "email_subject.txt").write_text("{{ alerts[0].customer.nme }}")
    (tmp_path / "webhook_title.txt").write_text("{{ alerts | length }} alerts")
    (tmp_path / "partial.txt").write_text("{{ anything_goes_in_partials }}")
    problems = [str(problem) for problem in check_templates(tmp_path)]
    assert problems == [
        f"{tmp_path}/email.html:1:1: template error: unexpected end of template. Jinja was "
        "looking for the following tags: 'elif' or 'else' or 'endif'. The innermost block that "
        "needs to be closed is 'if'",
        f"{tmp_path}/email.txt:2:4: undefined name 'custmer' in template (known names: "
        + ", ".join(sorted(NOTIFICATION_NAMES)) + ")",
        f"{tmp_path}/email_subject.txt:1:1: template fails on sample data: "
        "'dict object' has no attribute 'nme'",
    ]


def test_source_problems_point_into_the_users_file() -> None:
    problems = source_problems("{{ alerts | length }}\n{{ stauts }}", file="alertd.yaml",
                               line=12, col=16)
    assert [str(p) for p in problems] == [
        "alertd.yaml:13:4: undefined name 'stauts' in template (did you mean 'status'?)"]
    [first_line] = source_problems("{{ alerts | lenght }}", file="alertd.yaml", line=12, col=16)
    assert str(first_line) == "alertd.yaml:12:28: template error: no filter named 'lenght'"


@pytest.mark.parametrize("source", [
    "{{ customer.name }} used {{ value | number }} of {{ threshold | number }}",
    "{{ customer.metadata.plan | upper }}",               # any metadata key may exist
    "{{ details.change_percent | default('?') }}%",        # details vary by condition
    "{% for k, v in dimensions.items() %}{{ k }}={{ v }}{% endfor %}",
])
def test_source_problems_accepts_good_annotations(source) -> None:
    assert source_problems(source, names=ALERT_NAMES) == []


def test_source_problems_reports_syntax_errors_and_sample_failures() -> None:
    [syntax] = source_problems("{{ value | number", names=ALERT_NAMES, file="f", line=3, col=5)
    assert (syntax.line, syntax.col) == (3, 5)
    assert syntax.message.startswith("template error: unexpected end of template")
    [failure] = source_problems("{{ customer.nmae }}", names=ALERT_NAMES)
    assert "has no attribute 'nmae'" in failure.message
    [notification] = source_problems("{{ alerts[0].rule }} {{ value }}")
    assert "undefined name 'value'" in notification.message
    [division] = source_problems("{{ alerts[0].value / 0 }}")
    assert "division by zero" in division.message

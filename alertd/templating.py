"""Jinja2 for alertd: one sandboxed environment, its filters, and a checker for templates.

Rule annotations and labels (``"{{ customer.name }} used {{ value | number }} tokens"``) and the
notification templates (email subject and bodies, webhook bodies) all render in the
environment :func:`template_environment` builds: sandboxed (templates come from config files)
and strict (an undefined name is an error, never an empty string). :func:`check_template`
finds syntax errors and names outside the context *at load time*, so ``alertd validate``
reports them before any alert needs them.

Filters: ``number`` (thousands separators), ``duration`` (seconds → ``1h 30m``),
``datetime`` (unix seconds, ``datetime`` or ISO text → a local time in a zone).
"""

from __future__ import annotations

import difflib
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo

from jinja2 import StrictUndefined, TemplateSyntaxError, meta, nodes
from jinja2.sandbox import SandboxedEnvironment

#: The names an annotation or label template may use: the alert it describes.
TEMPLATE_NAMES: tuple[str, ...] = (
    "customer",
    "rule",
    "severity",
    "level",
    "value",
    "threshold",
    "baseline",
    "projected",
    "meter",
    "meter_name",
    "dimensions",
    "window",
    "labels",
    "status",
    "message",
    "details",
    "refreshed_at",
    "starts_at",
    "ends_at",
)

DEFAULT_DATETIME_FORMAT = "%Y-%m-%d %H:%M %Z"


def template_environment(*, autoescape: bool = False) -> SandboxedEnvironment:
    """A fresh sandboxed, strict environment with alertd's filters.

    ``autoescape=True`` is for HTML bodies. Templates are compiled from strings; a caller that
    loads files sets ``environment.loader`` itself.
    """
    environment = SandboxedEnvironment(
        undefined=StrictUndefined,
        autoescape=autoescape,
        keep_trailing_newline=True,
    )
    environment.filters["number"] = format_number
    environment.filters["duration"] = format_duration
    environment.filters["datetime"] = format_datetime
    return environment


def format_number(value: float | int | None, digits: int | None = None) -> str:
    """``1234567.5`` → ``1,234,568``, ``12.345`` → ``12.35``, ``0.0123`` → ``0.0123``: whole
    units from a thousand up, two decimals below, significant digits under one; ``digits``
    fixes the decimals.

    ``None`` (no value, e.g. no data) renders as ``n/a``.
    """
    if value is None:
        return "n/a"
    if digits is not None:
        return f"{value:,.{digits}f}"
    if float(value).is_integer() or abs(value) >= 1000:
        # Usage in the thousands reads as whole units; decimals there are noise.
        return f"{round(value):,}"
    return f"{value:,.6g}" if abs(value) < 1 else f"{value:,.2f}".rstrip("0").rstrip(".")


_DURATION_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def format_duration(seconds: float | int | None) -> str:
    """Seconds → ``1d 2h``, ``1h 30m``, ``45s`` (whole seconds; ``0s`` for zero)."""
    if seconds is None:
        return "n/a"
    remaining = round(abs(seconds))
    parts = []
    for unit, size in _DURATION_UNITS:
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    sign = "-" if seconds < 0 else ""
    return sign + (" ".join(parts) or "0s")


def format_datetime(
    value: float | int | datetime | str | None,
    tz: str | tzinfo = "UTC",
    fmt: str = DEFAULT_DATETIME_FORMAT,
) -> str:
    """An instant (unix seconds, aware ``datetime`` or ISO 8601 text) as local time in ``tz``.

    ``{{ starts_at | datetime("America/New_York") }}`` → ``2025-01-03 09:30 EST``.
    """
    if value is None:
        return "n/a"
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    return _as_datetime(value).astimezone(zone).strftime(fmt)


def _as_datetime(value: float | int | datetime | str) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        return _as_datetime(datetime.fromisoformat(value.replace("Z", "+00:00")))
    return datetime.fromtimestamp(value, tz=UTC)


@dataclass(frozen=True, slots=True)
class TemplateIssue:
    """A problem in one template; ``line`` is 1-based inside the template text."""

    line: int
    message: str


def check_template(
    source: str,
    environment: SandboxedEnvironment | None = None,
    names: Collection[str] = TEMPLATE_NAMES,
) -> list[TemplateIssue]:
    """Syntax errors, unknown filters and top-level names outside ``names``, without rendering.

    An empty list means the template compiles and reads only names the context provides
    (attributes of those names, such as ``customer.nmae``, can only be checked at render time).
    """
    environment = environment or template_environment()
    try:
        tree = environment.parse(source)
        environment.compile(tree)
    except TemplateSyntaxError as exc:
        return [TemplateIssue(exc.lineno or 1, f"template error: {_sentence(exc.message)}")]
    # Jinja checks filters and tests only at render time inside {% if %} blocks; do it here.
    issues = [
        TemplateIssue(node.lineno, f"template error: no {kind} named {node.name!r}")
        for kind, node_type, known in (
            ("filter", nodes.Filter, environment.filters),
            ("test", nodes.Test, environment.tests),
        )
        for node in tree.find_all(node_type)
        if node.name not in known
    ]
    unknown = meta.find_undeclared_variables(tree) - set(names)
    first_use = _first_use(tree, unknown)
    issues += [TemplateIssue(first_use[name], _unknown_name(name, names)) for name in unknown]
    return sorted(set(issues), key=lambda issue: (issue.line, issue.message))


def _sentence(message: str | None) -> str:
    """Jinja's message in alertd's style: lower-case start, no final full stop."""
    text = (message or "syntax error").rstrip(".")
    return text[:1].lower() + text[1:]


def _unknown_name(name: str, names: Collection[str]) -> str:
    close = difflib.get_close_matches(name, list(names), n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"known names: {', '.join(names)}"
    return f"undefined name {name!r} in template ({hint})"


def _first_use(tree: nodes.Template, wanted: set[str]) -> dict[str, int]:
    """The line each wanted name is first read on."""
    lines: dict[str, int] = {}
    for node in tree.find_all(nodes.Name):
        if node.name in wanted and node.ctx == "load":
            lines[node.name] = min(lines.get(node.name, node.lineno), node.lineno)
    return {name: lines.get(name, 1) for name in wanted}

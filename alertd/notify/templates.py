"""Notification templates: one sandboxed Jinja2 environment, its filters and the contexts.

Where it sits: the last step before delivery. Email (:mod:`alertd.notify.email`) and the
chat-style webhook presets render a :class:`~alertd.model.Notification` through here; rule
annotations are rendered here with one alert's context when an alert is built
(:func:`render_annotations`); ``alertd validate`` calls :func:`check_templates` and
:func:`source_problems`; ``alertd render`` shows the result on sample data.

Contract:

* One Jinja2 setup for all of alertd: this module builds on :mod:`alertd.templating` (the
  sandboxed, strict environment and the ``number``/``duration``/``datetime`` filters the
  rule loader checks annotations with). Rule annotations render in exactly that environment,
  so what ``validate`` accepts is what renders.
* Notification templates render in an overlay of it that adds a loader (the user's
  ``templates_dir`` first, then the packaged defaults in ``alertd/templates/``, so overriding
  one file leaves the others in place), HTML autoescaping for ``.html``/``.htm`` files (text
  templates and templates from strings — subjects, webhook bodies — are not escaped; webhook
  bodies use ``tojson``), block trimming, and the filters ``localtime(tz, fmt)`` (an alias of
  ``datetime``), ``iso``, ``bar(peak, width)``, ``spark`` and ``colour(status)``; ``tojson``
  writes datetimes as RFC 3339.
* Alerts arrive with their rule's annotation templates; :func:`notification_context`
  renders them (:func:`annotated`), so templates see finished text.
* ``customer.name`` falls back to the customer's id (``all customers`` for account-wide
  meta alerts), so "{{ customer.name }} used…" reads well for customers without a name.
* Every render is bounded (:func:`alertd.templating.render_limited`: output and value sizes,
  steps, wall time) and fails as a ``TemplateError``: a failed annotation is sent as its raw
  text with a warning; a failed notification template makes the delivery permanently failed
  (the notifiers raise :class:`~alertd.errors.PermanentDeliveryError`), never retried — but
  for a render out of time, which is retried (:func:`alertd.notify.base.template_failure`).
  ``validate`` renders every template on sample data under the same limits.
* Instants in a context are aware ``datetime`` objects: the window's in the rule's time zone,
  the rest in UTC. ``window.label`` names the period (``Fri 03 Jan 2025``, ``January 2025``).

Why over 400 lines: the rendering contexts, filters and limits that delivery, ``render`` and
``validate`` must share exactly.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
import traceback
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import (
    BaseLoader,
    ChoiceLoader,
    FileSystemLoader,
    Template,
    TemplateError,
    TemplateSyntaxError,
    select_autoescape,
)
from jinja2.sandbox import SandboxedEnvironment

from alertd import templating
from alertd.calendar import zone
from alertd.errors import Problem
from alertd.model import Alert, Bucket, Notification
from alertd.templating import (
    CHECK_LIMITS,
    DEFAULT_LIMITS,
    RenderLimits,
    format_datetime,
    render_limited,
)

log = logging.getLogger(__name__)

DEFAULTS_DIR = Path(__file__).resolve().parent.parent / "templates"

#: Files alertd renders itself; a ``templates_dir`` may override any of them.
TEMPLATE_FILES = ("email_subject.txt", "email.txt", "email.html", "webhook_title.txt")

#: What :func:`alert_context` offers: the names annotations may use
#: (:data:`alertd.templating.TEMPLATE_NAMES`) plus what notification templates also show.
ALERT_NAMES = frozenset(templating.TEMPLATE_NAMES) | {"annotations", "fingerprint", "recent",
                                                       "account"}

#: Names a notification template (subject, email body, webhook body) may use.
NOTIFICATION_NAMES = frozenset({
    "alerts", "status", "receiver", "group_labels", "group_key", "firing", "resolved",
    "common_labels", "common_annotations", "notification_id", "created_at", "external_url",
    "chart_cid",
})

SEVERITY_COLOURS = {
    "critical": "#c5221f", "error": "#d93025", "warning": "#e37400", "info": "#1a73e8",
}
RESOLVED_COLOUR = "#188038"
_BLOCKS = " ▏▎▍▌▋▊▉█"
_SPARKS = "▁▂▃▄▅▆▇█"

# --------------------------------------------------------------------------- filters


def _as_datetime(instant: datetime | float) -> datetime:
    if isinstance(instant, datetime):
        return instant if instant.tzinfo else instant.replace(tzinfo=UTC)
    return datetime.fromtimestamp(instant, tz=UTC)


def iso(instant: datetime | float | None) -> str | None:
    """RFC 3339 in UTC with a ``Z``: what JSON receivers expect."""
    if instant is None:
        return None
    return _as_datetime(instant).astimezone(UTC).isoformat().replace("+00:00", "Z")


def bar(value: float | None, peak: float | None, width: int = 20) -> str:
    """A horizontal bar of unicode blocks, ``width`` long at ``peak``, eighths in between."""
    if not value or not peak or peak <= 0:
        return ""
    eighths = round(max(0.0, min(1.0, value / peak)) * width * 8)
    full, rest = divmod(eighths, 8)
    return "█" * full + (_BLOCKS[rest] if rest else "")


def spark(values: Iterable[float | None]) -> str:
    """A sparkline: one block character per value, scaled to the largest."""
    numbers = [v or 0.0 for v in values]
    peak = max(numbers, default=0.0)
    if peak <= 0:
        return _SPARKS[0] * len(numbers)
    return "".join(_SPARKS[min(7, int(v / peak * 7.999))] for v in numbers)


def colour(severity: str, status: str = "firing") -> str:
    """The colour of a severity (green once resolved), as ``#rrggbb``."""
    if status == "resolved":
        return RESOLVED_COLOUR
    return SEVERITY_COLOURS.get(severity.lower(), SEVERITY_COLOURS["warning"])


def json_default(value: object) -> object:
    """``json.dumps`` fallback: datetimes as RFC 3339 strings, mappings as dicts."""
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


#: What notification templates get on top of :mod:`alertd.templating`'s filters.
NOTIFICATION_FILTERS = {"localtime": format_datetime, "iso": iso, "bar": bar, "spark": spark,
                        "colour": colour}

# --------------------------------------------------------------------------- environment


def notification_environment(templates_dir: Path | None = None) -> SandboxedEnvironment:
    """The environment for notification templates: ``templates_dir`` before the defaults."""
    loaders: list[BaseLoader] = [FileSystemLoader(str(DEFAULTS_DIR))]
    if templates_dir is not None:
        loaders.insert(0, FileSystemLoader(str(templates_dir)))
    base = templating.template_environment()
    env = base.overlay(
        loader=ChoiceLoader(loaders),
        autoescape=select_autoescape(("html", "htm"), default_for_string=False, default=False),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    env.filters = {**base.filters, **NOTIFICATION_FILTERS}
    templating.guard_filters(env)
    env.policies = {**base.policies,
                    "json.dumps_kwargs": {"sort_keys": False, "default": json_default}}
    return env


class Templates:
    """Renders files and template strings; compiled string templates are cached."""

    def __init__(self, templates_dir: Path | None = None, *, external_url: str = "",
                 limits: RenderLimits = DEFAULT_LIMITS) -> None:
        self.env = notification_environment(templates_dir)
        self.external_url = external_url
        self.limits = limits
        self._compiled: dict[str, Template] = {}

    def render(self, name: str, context: Mapping[str, Any]) -> str:
        """Render a template file within the render limits; raises
        :class:`jinja2.TemplateError` on any failure (over a limit included)."""
        return render_limited(self.env.get_template(name), context, self.limits)

    def render_source(self, source: str, context: Mapping[str, Any]) -> str:
        """Render a template given as text (a subject, a webhook body), not autoescaped."""
        template = self._compiled.get(source)
        if template is None:
            template = self._compiled[source] = self.env.from_string(source)
        return render_limited(template, context, self.limits)

    def notification_context(self, notification: Notification, *,
                             annotate: bool = True) -> dict[str, Any]:
        return notification_context(notification, external_url=self.external_url,
                                    annotate=annotate)


# --------------------------------------------------------------------------- contexts


def _in_zone(instant: int | None, tz: str = "UTC") -> datetime | None:
    return None if instant is None else datetime.fromtimestamp(instant, tz=zone(tz))


def window_label(starts_at: datetime, ends_at: datetime) -> str:
    """A calendar period as people say it: ``Fri 03 Jan 2025``, ``January 2025``…"""
    hours = (ends_at - starts_at).total_seconds() / 3600
    if hours <= 0:  # an instant (meta alerts)
        return f"{starts_at:%a %d %b %Y %H:%M}"
    if hours <= 2:
        return f"{starts_at:%a %d %b %Y %H:%M}–{ends_at:%H:%M}"
    if hours <= 26:
        return f"{starts_at:%a %d %b %Y}"
    if hours <= 7 * 24 + 1:
        return f"week of {starts_at:%a %d %b %Y}"
    return f"{starts_at:%B %Y}"


def _bucket_format(buckets: Sequence[Bucket]) -> str:
    length = buckets[0].ends_at - buckets[0].starts_at
    if length >= 28 * 86400:
        return "%b %Y"
    return "%a %d %b" if length >= 23 * 3600 else "%a %H:%M"


def recent_context(buckets: Sequence[Bucket], tz: str) -> list[dict[str, Any]]:
    """The recent buckets with a short ``label`` and ``share`` of the largest (0..1)."""
    if not buckets:
        return []
    fmt = _bucket_format(buckets)
    peak = max((b.value for b in buckets), default=0.0)
    return [
        {
            "starts_at": _in_zone(b.starts_at, tz), "ends_at": _in_zone(b.ends_at, tz),
            "value": b.value, "complete": b.complete,
            "label": format_datetime(b.starts_at, tz, fmt),
            "share": b.value / peak if peak > 0 else 0.0,
        }
        for b in buckets
    ]


def _window_context(alert: Alert) -> dict[str, Any]:
    tz = alert.window.timezone
    starts_at = datetime.fromtimestamp(alert.window.starts_at, tz=zone(tz))
    ends_at = datetime.fromtimestamp(alert.window.ends_at, tz=zone(tz))
    return {"starts_at": starts_at, "ends_at": ends_at, "timezone": tz,
            "label": window_label(starts_at, ends_at)}


def alert_context(alert: Alert) -> dict[str, Any]:
    """Every name one alert offers a template (see :data:`ALERT_NAMES`)."""
    tz = alert.window.timezone
    return {
        "fingerprint": alert.fingerprint, "status": alert.status, "rule": alert.rule,
        "account": alert.account,  # "" without accounts: (alertd.accounts)
        "severity": alert.severity, "level": alert.labels.get("level", alert.severity),
        "customer": {
            "id": alert.customer.id,
            # Meta alerts (stale data, source failures) concern the whole account: no id.
            "name": alert.customer.name or alert.customer.id or "all customers",
            "email": alert.customer.email, "metadata": dict(alert.customer.metadata),
        },
        "meter": alert.meter, "meter_name": alert.meter_name or alert.meter,
        "dimensions": dict(alert.dimensions),
        "window": _window_context(alert),
        "value": alert.value, "threshold": alert.threshold, "baseline": alert.baseline,
        "projected": alert.projected, "labels": dict(alert.labels),
        "annotations": dict(alert.annotations), "message": alert.message,
        "details": dict(alert.details), "refreshed_at": _in_zone(alert.refreshed_at),
        "starts_at": _in_zone(alert.starts_at), "ends_at": _in_zone(alert.ends_at),
        "recent": recent_context(alert.recent, tz),
    }


def common_pairs(mappings: Sequence[Mapping[str, str]]) -> dict[str, str]:
    """The key/value pairs every mapping shares (Alertmanager's ``commonLabels``)."""
    if not mappings:
        return {}
    first, *rest = mappings
    if not rest:
        return dict(first)  # one alert (the common case): all of its pairs
    return {k: v for k, v in first.items() if all(m.get(k) == v for m in rest)}


def annotated(notification: Notification) -> Notification:
    """The notification with every alert's annotations rendered.

    Alerts carry their rule's annotation *templates* (``alertd.alerts.build_alert``); they are
    rendered here, once, on the way out: by :func:`notification_context` for templates and by
    the webhook notifier for presets. Never pass the result back through either.
    """
    if not any(a.annotations for a in notification.alerts):
        return notification  # nothing to render (and no context to build for it)
    alerts = tuple(
        dataclasses.replace(a, annotations=render_annotations(a.annotations, alert_context(a)))
        if a.annotations else a
        for a in notification.alerts
    )
    return dataclasses.replace(notification, alerts=alerts)


def notification_context(notification: Notification, *, external_url: str = "",
                         annotate: bool = True) -> dict[str, Any]:
    """Every name a notification offers a template (see :data:`NOTIFICATION_NAMES`).

    ``notification`` carries annotation templates; they are rendered here (:func:`annotated`)
    unless ``annotate`` is false (the caller has rendered them already: never twice, a
    failed annotation keeps its raw text, which must not run again).
    """
    if annotate:
        notification = annotated(notification)
    alerts = [alert_context(a) for a in notification.alerts]
    return {
        "alerts": alerts,
        "firing": [a for a in alerts if a["status"] == "firing"],
        "resolved": [a for a in alerts if a["status"] == "resolved"],
        "status": notification.status, "receiver": notification.receiver,
        "group_labels": dict(notification.group_labels), "group_key": notification.group_key,
        "common_labels": common_pairs([a.labels for a in notification.alerts]),
        "common_annotations": common_pairs([a.annotations for a in notification.alerts]),
        "notification_id": notification.id, "created_at": _in_zone(notification.created_at),
        "external_url": external_url,
        # The email notifier sets the inline chart's Content-ID (alertd.notify.chart).
        "chart_cid": None,
    }


#: Annotations render exactly where the rule loader checks them.
_ANNOTATIONS_ENV = templating.template_environment()


@functools.lru_cache(maxsize=1024)
def _annotation_template(source: str) -> Template:
    return _ANNOTATIONS_ENV.from_string(source)


def render_annotations(annotations: Mapping[str, str],
                       alert_context: Mapping[str, Any]) -> dict[str, str]:
    """Render each annotation template with one alert's context.

    An annotation that fails at run time (a metadata key this customer lacks, or a render
    over :data:`~alertd.templating.DEFAULT_LIMITS`: a loop or a value too large for this
    customer's figures) keeps its source text and logs a warning: a notification is never
    lost to a template, and ``alertd validate`` has already caught misspelt names and
    templates that go over the limits on sample data.
    """
    rendered: dict[str, str] = {}
    for key, source in annotations.items():
        try:
            rendered[key] = render_limited(_annotation_template(source), alert_context)
        except TemplateError as exc:
            log.warning("annotation failed, sent unrendered rule=%s customer=%s annotation=%s "
                        "error=%s", alert_context.get("rule"),
                        (alert_context.get("customer") or {}).get("id"), key, exc)
            rendered[key] = source
    return rendered


# --------------------------------------------------------------------------- checks


class _AnyKey(dict[str, Any]):
    """Sample metadata/details for trial renders: every key exists (rules vary by customer)."""

    def __init__(self, sample: Any, known: Mapping[str, Any]) -> None:
        super().__init__(known)
        self._sample = sample

    def __missing__(self, key: str) -> Any:
        return self._sample


def _lenient(alert: dict[str, Any]) -> dict[str, Any]:
    customer = {**alert["customer"], "metadata": _AnyKey("0", alert["customer"]["metadata"])}
    return {**alert, "customer": customer, "details": _AnyKey(0, alert["details"])}


@functools.cache
def _trial_notifications(account: str) -> tuple[Notification, ...]:
    # Deferred: the sample builder renders annotations with this module.
    from alertd.notify.sample import trial_notifications

    return tuple(trial_notifications(account))


def _trial_contexts(*, per_alert: bool, account: str) -> list[dict[str, Any]]:
    """Fresh contexts on sample notifications (a template could mutate a shared one)."""
    contexts = []
    for notification in _trial_notifications(account):
        context = notification_context(notification)
        context["alerts"] = [_lenient(a) for a in context["alerts"]]
        context["firing"] = [a for a in context["alerts"] if a["status"] == "firing"]
        context["resolved"] = [a for a in context["alerts"] if a["status"] == "resolved"]
        contexts.append(context["alerts"][0] if per_alert else context)
    return contexts


_QUOTED_NAME = re.compile(r"'(\w+)'")


def _column(source: str, issue: templating.TemplateIssue) -> int:
    """Where on its line the name an issue is about appears (1 when it names none)."""
    lines = source.splitlines() or [""]
    text = lines[min(issue.line, len(lines)) - 1]
    named = _QUOTED_NAME.search(issue.message)
    found = re.search(rf"\b{re.escape(named.group(1))}\b", text) if named else None
    return found.start() + 1 if found else 1


def _error_line(exc: BaseException, filename: str) -> int:
    # render_limited wraps what a template raised: the template's frames are in the cause.
    cause = exc.__cause__ or exc
    frames = [f for f in traceback.extract_tb(cause.__traceback__) if f.filename == filename]
    return (frames[-1].lineno or 1) if frames else 1


def _trial_failure(template: Template, names: frozenset[str],
                   accounts: Sequence[str] = ()) -> tuple[int, str] | None:
    """(line, message) of the first failure rendering ``template`` on sample data.

    The samples are rendered once per account of ``accounts:`` (``accounts``), their alerts
    labelled ``account`` as the daemon labels them, so a template may read
    ``labels.account`` exactly when the daemon will give it one; with no accounts (the one
    of ``stripe.api_key``), once without the label."""
    # Names without ``alerts`` describe one alert (an annotation), not a notification.
    for account in accounts or ("",):
        for context in _trial_contexts(per_alert="alerts" not in names, account=account):
            try:
                render_limited(template, context, CHECK_LIMITS)
            except TemplateError as exc:
                filename = template.filename or "<template>"
                of = f" of account {account!r}" if account else ""
                return _error_line(exc, filename), f"template fails on sample data{of}: {exc}"
    return None


def source_problems(source: str, *, names: frozenset[str] = NOTIFICATION_NAMES,
                    file: str = "<template>", line: int = 1, col: int = 1,
                    env: SandboxedEnvironment | None = None,
                    accounts: Sequence[str] = ()) -> list[Problem]:
    """Syntax errors, unknown names or filters, and trial-render failures of a template text.

    ``names`` is :data:`NOTIFICATION_NAMES` for subjects and webhook bodies (the default),
    :data:`ALERT_NAMES` for one-alert templates. ``line``/``col`` is where the text starts in
    its file (a YAML value), so problems point into the user's file. ``accounts``: the names
    of ``accounts:``, whose label the samples carry (:func:`_trial_failure`).
    """
    env = env or _STRING_ENV

    def at(text_line: int, text_col: int, message: str) -> Problem:
        # Only the template's first line starts mid-line in its file.
        file_col = col + text_col - 1 if text_line == 1 else text_col
        return Problem(file, line + text_line - 1, file_col, message)

    issues = templating.check_template(source, env, sorted(names))
    if issues:
        return [at(i.line, _column(source, i), i.message) for i in issues]
    failure = _trial_failure(env.from_string(source), names, accounts)
    return [at(failure[0], 1, failure[1])] if failure else []


def check_templates(directory: Path, accounts: Sequence[str] = ()) -> list[Problem]:
    """Problems of every template in a ``templates_dir`` (each reads ``FILE:LINE:COL: message``).

    Every file must parse; the files alertd renders itself (:data:`TEMPLATE_FILES`) are also
    checked for unknown names and filters and rendered on sample notifications (of each of
    ``accounts``, the names of ``accounts:``). Other files may be partials included by those,
    and are checked through them.
    """
    env = notification_environment(directory)
    problems: list[Problem] = []
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        relative = path.relative_to(directory).as_posix()
        if any(part.startswith(".") for part in relative.split("/")):
            continue
        try:
            source = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(Problem(str(path), 1, 1, f"cannot read template: {exc}"))
            continue
        problems.extend(_file_problems(env, path, relative, source, accounts))
    return problems


def _file_problems(env: SandboxedEnvironment, path: Path, relative: str,
                   source: str, accounts: Sequence[str]) -> list[Problem]:
    if relative not in TEMPLATE_FILES:
        try:
            env.parse(source)
        except TemplateSyntaxError as exc:
            return [Problem(str(path), exc.lineno or 1, 1, f"template error: {exc.message}")]
        return []
    issues = templating.check_template(source, env, sorted(NOTIFICATION_NAMES))
    if issues:
        return [Problem(str(path), i.line, _column(source, i), i.message) for i in issues]
    failure = _trial_failure(env.get_template(relative), NOTIFICATION_NAMES, accounts)
    return [Problem(str(path), failure[0], 1, failure[1])] if failure else []


#: Subjects and webhook bodies written in the config: the notification filters, no escaping.
_STRING_ENV = notification_environment()

"""Logging: one line per event, ``key=value`` text or JSON, secrets redacted.

Call sites log events with context in the message (``"delivered receiver=%s id=%s"``) and
lazy arguments. :func:`configure` installs a formatter that renders either the plain line or
a JSON object, and a filter that masks anything that looks like a Stripe key, a bearer token or
a URL's credentials, wherever it appears, so a secret that slips into an exception text still
never reaches a log.

One event stays one line, and its fields cannot be forged: each ``%s`` and ``%r`` argument
(the latter as its ``repr``) is escaped
(control characters such as ESC and newlines become ``\\x1b``, ``\\n``), cut to
:data:`MAX_FIELD` characters, and quoted when it holds a space, ``=`` or a quote — so a
receiver's error body saying ``\\nlevel=error receiver=ops`` shows up as part of one quoted
value. The JSON formatter reads quoted values back.

:func:`redact_url` is the one way to show a URL (``render``, ``check``, logs): user-info and
query values are masked, and so are path segments that carry a secret (Slack's and Discord's
webhook paths, long tokens).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

SECRET = re.compile(
    r"(?:sk|rk|pk|whsec)_(?:live|test)_[A-Za-z0-9]{4,}|(?i:bearer)\s+[A-Za-z0-9._~+/-]{8,}"
)
#: A URL in free text; trailing punctuation belongs to the sentence.
URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>]*[^\s\"'<>.,;:)\]]")
MASK = "…"

#: The longest logged argument; the rest is cut (a receiver's error page can be megabytes).
MAX_FIELD = 1000

#: Path segments after one of these are webhook secrets (Slack ``/services/T…/B…/token``,
#: Discord ``/api/webhooks/id/token``); elsewhere a long random-looking segment is one.
_SECRET_PATH_AFTER = frozenset({"services", "webhooks", "hooks", "webhook"})
_TOKEN_SEGMENT = re.compile(r"[A-Za-z0-9_\-.~%]{16,}")


def redact_url(url: str, *, secret_path: bool = False) -> str:
    """``url`` safe to show: ``https://…@hooks.example.com/services/…/…?token=…``.

    The scheme, host, port and ordinary path segments stay, so the reader can tell which
    receiver it is. ``secret_path=True`` masks every path segment, for URLs whose whole path
    may be a token (a heartbeat's ``/api/push/Xk3q9``, a delivery error's webhook).
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "<invalid url>"
    host = parts.hostname or ""
    netloc = (f"{MASK}@" if "@" in parts.netloc else "") + host + (f":{port}" if port else "")
    query = "&".join(
        f"{pair.split('=', 1)[0]}={MASK}" if "=" in pair else MASK
        for pair in parts.query.split("&") if pair
    )
    path = re.sub(r"[^/]+", MASK, parts.path) if secret_path else _redact_path(parts.path)
    return urlunsplit((parts.scheme, netloc, path, query,
                       MASK if parts.fragment else ""))


def _redact_path(path: str) -> str:
    segments = path.split("/")
    shown = []
    secret_from = len(segments)
    for index, segment in enumerate(segments):
        if index > secret_from or _TOKEN_SEGMENT.fullmatch(segment):
            shown.append(MASK)
        else:
            shown.append(segment)
        if segment.lower() in _SECRET_PATH_AFTER:
            secret_from = min(secret_from, index)
    return "/".join(shown)


def redact(text: str) -> str:
    """Mask Stripe keys and bearer tokens, keeping a short prefix for recognition, and the
    secret parts of URLs (:func:`redact_url`)."""
    text = SECRET.sub(lambda m: m.group(0)[:8] + "…[redacted]", text)
    return URL.sub(lambda m: redact_url(m.group(0)), text)


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NEEDS_QUOTES = re.compile(r"[\s=\"']")


def escape_control(text: str) -> str:
    """Control characters as visible escapes (``\\x1b``, ``\\n``): one event, one line, no
    terminal escape sequences from a receiver's answer."""
    return _CONTROL.sub(lambda m: m.group(0).encode("unicode_escape").decode("ascii"), text)


def field_value(value: object) -> str:
    """One logged value: escaped, cut to :data:`MAX_FIELD`, quoted when it could otherwise
    run into the next ``key=value`` pair."""
    text = str(value)
    if len(text) > MAX_FIELD:
        text = text[:MAX_FIELD] + f"…[+{len(text) - MAX_FIELD}]"
    if text and not _NEEDS_QUOTES.search(text):
        return escape_control(text)
    return '"' + escape_control(text.replace("\\", "\\\\").replace('"', '\\"')) + '"'


_PLACEHOLDER = re.compile(r"%(?:\(\w+\))?[-#0 +]*(?:\*|\d+)?(?:\.(?:\*|\d+))?[a-zA-Z%]")


def _as_s(match: re.Match[str]) -> str:
    placeholder = match.group(0)
    return placeholder[:-1] + "s" if placeholder.endswith("r") else placeholder


def event_message(record: logging.LogRecord) -> str:
    """The record's message with every ``%s`` and ``%r`` argument made a safe field (see the
    module docstring); other conversions (``%d``, ``%.0f``) are formatted as usual."""
    args = record.args
    if not isinstance(args, tuple) or not args:
        return escape_control(record.getMessage())
    conversions = [m.group(0)[-1] for m in _PLACEHOLDER.finditer(str(record.msg))
                   if m.group(0) != "%%"]
    if len(conversions) != len(args):
        return escape_control(record.getMessage())
    # A repr quotes with ' and leaves = and spaces alone: "reason='receiver=forged'" would
    # still read as a receiver field, so %r is a field like %s, of the repr's text.
    safe = tuple(field_value(a) if c == "s" else field_value(repr(a)) if c == "r" else a
                 for c, a in zip(conversions, args, strict=True))
    try:
        return escape_control(_PLACEHOLDER.sub(_as_s, str(record.msg)) % safe)
    except (TypeError, ValueError):
        return escape_control(record.getMessage())


class RedactingFilter(logging.Filter):
    """Redacts the message template and each argument (kept apart for the formatters)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else _redacted_object(a)
                                for a in record.args)
        elif record.args:
            record.msg, record.args = redact(record.getMessage()), None
        record.msg = redact(str(record.msg))
        return True


def _redacted_object(value: object) -> object:
    """Exceptions and other objects are logged through ``str()``: redact that text."""
    if isinstance(value, int | float | bool) or value is None:
        return value
    text = str(value)
    cleaned = redact(text)
    return cleaned if cleaned != text else value


class TextFormatter(logging.Formatter):
    """``2025-01-03T04:30:00Z level=info logger=alertd.engine message…``"""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created))
        level = record.levelname.lower()
        line = f"{stamp} level={level} logger={record.name} {event_message(record)}"
        if record.exc_info:
            line += "\n" + redact(self.formatException(record.exc_info))
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line; ``key=value`` pairs in the message become fields too."""

    PAIR = re.compile(r"(\w+)=(\"(?:[^\"\\]|\\.)*\"|\S+)")

    def format(self, record: logging.LogRecord) -> str:
        message = event_message(record)
        document: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": message,
        }
        for key, value in self.PAIR.findall(message):
            document.setdefault(key, _unquoted(value))
        if record.exc_info:
            document["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(document)


def _unquoted(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r'\\([\\"])', r"\1", value[1:-1])
    return value


def configure(level: str = "info", fmt: Literal["text", "json"] = "text") -> None:
    """Route alertd's logs to stderr in the chosen format (idempotent)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("alertd").setLevel(level.upper())
    # APScheduler's own warnings ("skipped: maximum number of running instances reached",
    # "Run time of job … was missed") describe what max_instances=1 and coalesce are there to
    # do: a poll still running is not started twice. They are not events a user can act on
    # and are not in alertd's key=value form, so only its errors reach the log.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)

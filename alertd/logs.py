"""Logging: one line per event, ``key=value`` text or JSON, secrets redacted.

Call sites log events with context in the message (``"delivered receiver=%s id=%s"``) and
lazy arguments. :func:`configure` installs a formatter that renders either the plain line or
a JSON object, and a filter that masks anything that looks like a Stripe key or a bearer token,
wherever it appears, so a secret that slips into an exception text still never reaches a log.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Literal

SECRET = re.compile(
    r"(?:sk|rk|pk|whsec)_(?:live|test)_[A-Za-z0-9]{4,}|(?i:bearer)\s+[A-Za-z0-9._~+/-]{8,}"
)


def redact(text: str) -> str:
    """Mask Stripe keys and bearer tokens, keeping a short prefix for recognition."""
    return SECRET.sub(lambda m: m.group(0)[:8] + "…[redacted]", text)


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class TextFormatter(logging.Formatter):
    """``2025-01-03T04:30:00Z level=info logger=alertd.engine message…``"""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created))
        level = record.levelname.lower()
        line = f"{stamp} level={level} logger={record.name} {record.getMessage()}"
        if record.exc_info:
            line += "\n" + redact(self.formatException(record.exc_info))
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line; ``key=value`` pairs in the message become fields too."""

    PAIR = re.compile(r"(\w+)=(\"[^\"]*\"|\S+)")

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        document: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": message,
        }
        for key, value in self.PAIR.findall(message):
            document.setdefault(key, value.strip('"'))
        if record.exc_info:
            document["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(document)


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
    # The scheduler's own chatter (e.g. "skipped: maximum number of running instances") is
    # worth a warning in production, but not below the level the user asked for.
    scheduler_level = max(logging.WARNING, logging.getLevelName(level.upper()))
    logging.getLogger("apscheduler").setLevel(scheduler_level)

"""How findings, notifications and firings are shown: a readable table or stable JSON.

The JSON shapes are part of the contract (architecture.md, "Machine output"); field names here
never change between versions.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from alertd.clock import iso
from alertd.model import Finding
from alertd.templating import format_number


def window_json(finding: Finding) -> dict[str, Any]:
    return {
        "starts_at": iso(finding.window.starts_at),
        "ends_at": iso(finding.window.ends_at),
        "timezone": finding.window.timezone,
    }


def finding_json(finding: Finding) -> dict[str, Any]:
    """One finding in the contract's ``check`` shape."""
    entry: dict[str, Any] = {
        # Only with accounts: (alertd.accounts), so the first release's document is unchanged.
        **({"account": finding.key.account} if finding.key.account else {}),
        "rule": finding.rule,
        "customer": finding.customer,
        "meter": finding.meter,
        "dimensions": dict(finding.dimensions),
        "window": window_json(finding),
        "complete": finding.complete,
        "value": finding.value,
    }
    entry.update(bounds_json(finding))
    entry.update(level=finding.level, state=finding.state, message=finding.message)
    return entry


def bounds_json(finding: Finding) -> dict[str, float]:
    """Whichever of ``threshold``, ``baseline`` and ``projected`` the finding carries."""
    return finding.figures.contract()


def dumps(document: Mapping[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=False, default=str)


def number(value: float | None) -> str:
    return "-" if value is None else format_number(value)


def series_label(finding: Finding) -> str:
    return ",".join(f"{k}={v}" for k, v in finding.dimensions) or "-"


def bound(finding: Finding) -> str:
    shown = finding.figures.bound()
    return "-" if shown is None else shown[0] + number(shown[1])


FINDING_COLUMNS = ("RULE", "CUSTOMER", "SERIES", "WINDOW", "VALUE", "BOUND", "LEVEL", "STATE")


def local_minute(instant: int, timezone: str) -> str:
    """``2026-12-01 00:00`` on ``timezone``'s clock (UTC for a name Python does not know)."""
    try:
        zone: tzinfo = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = UTC
    return datetime.fromtimestamp(instant, zone).strftime("%Y-%m-%d %H:%M")


def finding_row(finding: Finding) -> tuple[str, ...]:
    # The period's start on the clock of the zone it is labelled with, not UTC's.
    window = f"{local_minute(finding.window.starts_at, finding.window.timezone)} " \
             f"{finding.window.timezone}"
    if not finding.complete:
        window += " (so far)"
    return (
        finding.rule,
        f"{finding.key.account}/{finding.customer}" if finding.key.account else finding.customer,
        series_label(finding),
        window,
        number(finding.value),
        bound(finding),
        finding.level or "-",
        finding.state,
    )


def table(columns: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A plain aligned text table."""
    materialised = [tuple(columns), *(tuple(r) for r in rows)]
    widths = [max(len(row[i]) for row in materialised) for i in range(len(columns))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in materialised]
    return "\n".join(lines)

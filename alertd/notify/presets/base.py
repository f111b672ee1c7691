"""What every webhook preset shares: the payload types and the one-line texts of an alert."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from alertd.model import Alert, Notification
from alertd.templating import format_number as number


@dataclass(frozen=True, slots=True)
class PresetContext:
    """What a preset may use besides the notification."""

    title: str
    external_url: str = ""
    routing_key: str | None = None


@dataclass(frozen=True, slots=True)
class Payload:
    """One request body (a JSON value) and the idempotency key it is sent with."""

    body: Any
    idempotency_key: str | None


Preset = Callable[[Notification, PresetContext], list[Payload]]


def summary(alert: Alert) -> str:
    """One line about an alert: its ``summary`` annotation, else the evaluator's message."""
    return alert.annotations.get("summary") or alert.message or f"{alert.rule} {alert.status}"


#: How channels name the customer of alertd's own alerts (stale data, source failure).
ACCOUNT_WIDE = "all customers (alertd's own alert)"


def is_meta(alert: Alert) -> bool:
    """alertd's own alerts are about the whole account: they have no customer."""
    return not alert.customer.id


def customer_label(alert: Alert) -> str:
    """``Acme (cus_1)``, the id alone without a name; never empty."""
    if is_meta(alert):
        return ACCOUNT_WIDE
    name = alert.customer.name
    return f"{name} ({alert.customer.id})" if name else alert.customer.id


def link(context: PresetContext, alert: Alert | None = None) -> str:
    """Where a channel's link points: under ``server.external_url`` (empty: no link)."""
    return context.external_url


def series_label(alert: Alert) -> str:
    return ", ".join(f"{k}={v}" for k, v in alert.dimensions) or "all usage"


def comparison(alert: Alert) -> str:
    """The value set against what it is judged by: ``5,900,000 vs threshold 5,000,000``; for
    alertd's own alerts, which judge no usage value, their message."""
    if alert.value is None:
        return alert.message or alert.status
    value = number(alert.value)
    if alert.projected is not None:
        return f"{value}, projected {number(alert.projected)} vs budget {number(alert.threshold)}"
    if alert.threshold is not None:
        return f"{value} vs threshold {number(alert.threshold)}"
    if alert.baseline is not None:
        return f"{value} vs baseline {number(alert.baseline)}"
    return value


def details(alert: Alert) -> dict[str, Any]:
    """The figures of an alert as plain JSON (PagerDuty ``custom_details`` and the like)."""
    found: dict[str, Any] = {
        "rule": alert.rule, "customer": alert.customer.id,
        "customer_name": alert.customer.name, "meter": alert.meter,
        "dimensions": dict(alert.dimensions), "value": alert.value,
        "threshold": alert.threshold, "baseline": alert.baseline, "projected": alert.projected,
        "window": {"starts_at": alert.window.starts_at, "ends_at": alert.window.ends_at,
                   "timezone": alert.window.timezone},
        "message": alert.message,
    }
    if is_meta(alert):
        found["customer"] = ACCOUNT_WIDE
    return {k: v for k, v in found.items() if v is not None and v != ""}


def truncate(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters (code points), ``…`` marking the cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def string_map(mapping: Mapping[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in mapping.items()}

"""Realistic sample notifications: what ``alertd render`` previews and ``validate`` trial-renders.

:func:`sample_notification` turns a rule into the notification it would send for an invented
but plausible customer: figures that actually cross the rule's condition, the rule's own
window, time zone, filters and group-by, and recent buckets. Annotations stay templates, as in
the daemon; the notifiers (or ``Templates.notification_context``) render them. Deterministic
for a given ``now``; no I/O.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from alertd.evaluate.windows import period_containing, shift
from alertd.model import Alert, AlertStatus, Bucket, Customer, Notification, SeriesKey
from alertd.rules.schema import (
    UPPER_OPS,
    AbsenceCondition,
    AnomalyCondition,
    ChangeCondition,
    ForecastCondition,
    Rule,
    ThresholdCondition,
)
from alertd.templating import format_duration as duration
from alertd.templating import format_number as number

SAMPLE_QUOTA = 5_000_000.0
SAMPLE_CUSTOMER = Customer("cus_Q3xL9f2Kd81mPa", "Acme Analytics Inc.", "billing@acme.example",
                           {"plan": "pro"})
_GROUP_VALUES = {"model": "gpt-4o", "region": "eu-west-1", "tier": "pro", "plan": "pro"}
_ADJECTIVE = {"hour": "hourly", "day": "daily", "week": "weekly", "month": "monthly"}
_RECENT_PERIODS = 8


@dataclass(frozen=True, slots=True)
class Figures:
    """The numbers an alert of one condition type carries."""

    value: float
    message: str
    threshold: float | None = None
    baseline: float | None = None
    projected: float | None = None
    severity: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


def _threshold(rule: Rule, condition: ThresholdCondition) -> Figures:
    severity = None
    if condition.levels:
        severity, bound = condition.ordered_levels()[-1]
        if condition.value_from is not None:
            bound = SAMPLE_QUOTA * bound / 100
    elif condition.value is not None:
        bound = condition.value
    else:
        assert condition.value_from is not None
        bound = SAMPLE_QUOTA * condition.value_from.percent / 100
    value = bound * (1.18 if condition.op in UPPER_OPS else 0.55)
    message = (f"{_ADJECTIVE[rule.window]} usage {number(value)} {condition.op} "
               f"{number(bound)}")
    return Figures(value, message, threshold=bound, severity=severity,
                   details={"op": condition.op})


def _change(rule: Rule, condition: ChangeCondition) -> Figures:
    baseline = 120_000.0
    step = condition.percent / 100 * 1.5
    value = baseline * (1 - min(step, 0.9) if condition.direction == "down" else 1 + step)
    percent = round((value / baseline - 1) * 100, 1)
    message = f"{_ADJECTIVE[rule.window]} usage {number(value)} changed {percent:+g}% " \
              f"vs {number(baseline)}"
    return Figures(value, message, baseline=baseline,
                   details={"change_percent": percent, "previous": baseline,
                            "compare_to": condition.compare_to})


def _anomaly(rule: Rule, condition: AnomalyCondition) -> Figures:
    baseline = 80_000.0
    value = baseline * (0.15 if condition.direction == "down" else 3.2)
    spread = baseline * 0.12 * condition.sensitivity
    message = f"{_ADJECTIVE[rule.window]} usage {number(value)} is outside the expected " \
              f"{number(baseline - spread)}–{number(baseline + spread)}"
    return Figures(value, message, baseline=baseline,
                   details={"band": [baseline - spread, baseline + spread],
                            "method": "median/MAD, same hour of week"})


def _forecast(rule: Rule, condition: ForecastCondition) -> Figures:
    budget = condition.value if condition.value is not None else SAMPLE_QUOTA
    value, projected = budget * 0.62, budget * 1.24
    message = f"on track for {number(projected)} this {rule.window}, budget {number(budget)}"
    return Figures(value, message, threshold=budget, projected=projected,
                   details={"elapsed_percent": 50})


def _absence(rule: Rule, condition: AbsenceCondition) -> Figures:
    silent = condition.duration + 1800
    return Figures(0.0, f"no usage for {duration(silent)}", threshold=condition.floor,
                   details={"silent_for": silent})


def figures(rule: Rule) -> Figures:
    """Figures that cross ``rule``'s condition."""
    condition = rule.condition
    if isinstance(condition, ThresholdCondition):
        return _threshold(rule, condition)
    if isinstance(condition, ChangeCondition):
        return _change(rule, condition)
    if isinstance(condition, AnomalyCondition):
        return _anomaly(rule, condition)
    if isinstance(condition, ForecastCondition):
        return _forecast(rule, condition)
    return _absence(rule, condition)


def _dimensions(rule: Rule) -> dict[str, str]:
    fixed = {k: (v if isinstance(v, str) else sorted(v)[0]) for k, v in rule.filters.items()}
    grouped = {k: _GROUP_VALUES.get(k, f"example-{k}") for k in rule.group_by}
    return {**fixed, **grouped}


def _recent(rule: Rule, now: int, found: Figures) -> tuple[Bucket, ...]:
    current = period_containing(now, rule.window, rule.timezone)
    absent = isinstance(rule.condition, AbsenceCondition)
    base = 40_000.0 if absent else found.baseline or (found.threshold or found.value) * 0.8
    buckets = []
    for back in range(_RECENT_PERIODS - 1, 0, -1):
        period = shift(current, rule.window, -back)
        wobble = 0.85 + 0.3 * ((back * 7) % 5) / 4
        value = 0.0 if absent and back <= 1 else base
        buckets.append(Bucket(period.starts_at, period.ends_at, round(value * wobble), True))
    buckets.append(Bucket(current.starts_at, current.ends_at, found.value, False))
    return tuple(buckets)


def _labels(rule: Rule, customer: Customer, severity: str,
            dimensions: Mapping[str, str]) -> dict[str, str]:
    labels = {**rule.labels, "alertname": rule.name, "rule": rule.name,
              "customer": customer.id, "severity": severity, **dimensions}
    if rule.meter:
        labels["meter"] = rule.meter
    return labels


def sample_alert(rule: Rule, *, now: int, status: AlertStatus = "firing",
                 customer: Customer = SAMPLE_CUSTOMER) -> Alert:
    """The alert ``rule`` would raise for ``customer`` at ``now``. Like the alerts the daemon
    builds, it carries the rule's annotation templates; rendering them is the templates' job."""
    found = figures(rule)
    quota_key = getattr(rule.condition, "value_from", None)
    if quota_key is not None:
        customer = dataclasses.replace(
            customer, metadata={**customer.metadata, quota_key.metadata: f"{SAMPLE_QUOTA:.0f}"})
    dimensions = _dimensions(rule)
    severity = found.severity or rule.severity
    key = SeriesKey(rule.name, customer.id, tuple(sorted(
        (k, v) for k, v in dimensions.items() if k in rule.group_by)))
    return Alert(
        fingerprint=key.fingerprint, status=status, rule=rule.name, severity=severity,
        customer=customer, meter=rule.meter, meter_name=rule.meter,
        dimensions=tuple(sorted(dimensions.items())),
        window=period_containing(now, rule.window, rule.timezone), value=found.value,
        labels=_labels(rule, customer, severity, dimensions), annotations=dict(rule.annotations),
        starts_at=now - int(rule.for_) - 600, ends_at=now if status == "resolved" else None,
        refreshed_at=now - 240, message=found.message, threshold=found.threshold,
        baseline=found.baseline, projected=found.projected, details=dict(found.details),
        recent=_recent(rule, now, found),
    )


def sample_notification(rule: Rule, receiver: str, *, now: int,
                        status: AlertStatus = "firing",
                        customers: tuple[Customer, ...] = (SAMPLE_CUSTOMER,)) -> Notification:
    """The notification ``receiver`` would get for ``rule`` (one alert per customer)."""
    alerts = tuple(sample_alert(rule, now=now, status=status, customer=c) for c in customers)
    group_labels = {"rule": rule.name}
    if len(customers) == 1:
        group_labels["customer"] = customers[0].id
    group_key = "{}:{" + ",".join(f'{k}="{v}"' for k, v in group_labels.items()) + "}"
    digest = hashlib.sha256(f"{receiver}\x1f{group_key}\x1f{status}\x1f{now}".encode())
    return Notification(id=f"sample-{digest.hexdigest()[:24]}", receiver=receiver,
                        status=status, group_key=group_key, group_labels=group_labels,
                        alerts=alerts, created_at=now)


_TRIAL_NOW = 1_735_920_000  # 2025-01-03T16:00:00Z


def trial_notifications() -> list[Notification]:
    """Notifications covering the shapes templates meet: one alert, a digest, a customer with
    no name or email, a resolve, a baseline instead of a threshold, no recent buckets."""
    threshold = Rule.model_validate({
        "name": "example-daily-usage", "meter": "mtr_example", "group_by": ["model"],
        "timezone": "America/New_York",
        "condition": {"type": "threshold", "op": ">", "value": 5_000_000},
        "annotations": {"summary": "{{ customer.name }} used {{ value | number }} tokens"},
    })
    change = Rule.model_validate({
        "name": "example-weekly-change", "window": "week",
        "condition": {"type": "change", "percent": 50, "compare_to": "previous"},
    })
    nameless = Customer("cus_Nameless0001")
    digest = sample_notification(threshold, "example", now=_TRIAL_NOW,
                                 customers=(SAMPLE_CUSTOMER, nameless))
    mixed = dataclasses.replace(digest, alerts=(
        digest.alerts[0], dataclasses.replace(digest.alerts[1], status="resolved", recent=())))
    return [
        sample_notification(threshold, "example", now=_TRIAL_NOW),
        mixed,
        sample_notification(change, "example", now=_TRIAL_NOW, status="resolved"),
    ]

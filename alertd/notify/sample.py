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

from alertd.calendar import period_containing, shift
from alertd.conditions import kind_of
from alertd.conditions.base import SAMPLE_QUOTA, Sample
from alertd.model import Alert, Bucket, Customer, Notification, NotificationStatus, SeriesKey
from alertd.notify import labelset
from alertd.notify.routing import Destination, Timing
from alertd.rules.schema import Rule

SAMPLE_CUSTOMER = Customer("cus_Q3xL9f2Kd81mPa", "Acme Analytics Inc.", "billing@acme.example",
                           {"plan": "pro"})
_GROUP_VALUES = {"model": "gpt-4o", "region": "eu-west-1", "tier": "pro", "plan": "pro"}
_RECENT_PERIODS = 8


def figures(rule: Rule) -> Sample:
    """Figures that cross ``rule``'s condition (its kind invents them)."""
    return kind_of(rule).sample(rule)


def _dimensions(rule: Rule) -> dict[str, str]:
    fixed = {k: (v if isinstance(v, str) else sorted(v)[0]) for k, v in rule.filters.items()}
    grouped = {k: _GROUP_VALUES.get(k, f"example-{k}") for k in rule.group_by}
    return {**fixed, **grouped}


def _recent(rule: Rule, now: int, found: Sample) -> tuple[Bucket, ...]:
    current = period_containing(now, rule.window, rule.timezone)
    buckets = []
    for back in range(_RECENT_PERIODS - 1, 0, -1):
        period = shift(current, rule.window, -back)
        wobble = 0.85 + 0.3 * ((back * 7) % 5) / 4
        value = 0.0 if found.recent_silent and back <= 1 else found.recent_level
        buckets.append(Bucket(period.starts_at, period.ends_at, round(value * wobble), True))
    buckets.append(Bucket(current.starts_at, current.ends_at, found.value, False))
    return tuple(buckets)


def _labels(rule: Rule, customer: Customer, severity: str,
            dimensions: Mapping[str, str], account: str) -> dict[str, str]:
    labels = {**rule.labels, "alertname": rule.name, "rule": rule.name,
              "customer": customer.id, "severity": severity, **dimensions}
    if rule.meter:
        labels["meter"] = rule.meter
    if account:  # as alerts.alert_labels: only with accounts:
        labels["account"] = account
    return labels


def sample_alert(rule: Rule, *, now: int, status: NotificationStatus = "firing",
                 customer: Customer = SAMPLE_CUSTOMER, account: str = "") -> Alert:
    """The alert ``rule`` would raise for ``customer`` at ``now`` in the Stripe ``account``
    of ``accounts:`` (``""``: the one of ``stripe.api_key``). Like the alerts the daemon
    builds, it carries the rule's annotation templates; rendering them is the templates' job."""
    found = figures(rule)
    contract = found.figures.contract()
    if found.quota_metadata is not None:
        customer = dataclasses.replace(customer, metadata={
            **customer.metadata, found.quota_metadata: f"{SAMPLE_QUOTA:.0f}"})
    dimensions = _dimensions(rule)
    severity = found.severity or rule.severity
    key = SeriesKey(rule.name, customer.id, tuple(sorted(
        (k, v) for k, v in dimensions.items() if k in rule.group_by)), account=account)
    return Alert(
        fingerprint=key.fingerprint, status=status, rule=rule.name, severity=severity,
        customer=customer, meter=rule.meter, meter_name=rule.meter,
        dimensions=tuple(sorted(dimensions.items())),
        window=period_containing(now, rule.window, rule.timezone), value=found.value,
        labels=_labels(rule, customer, severity, dimensions, account),
        annotations=dict(rule.annotations),
        starts_at=now - int(rule.for_) - 600, ends_at=now if status == "resolved" else None,
        refreshed_at=now - 240, message=found.message, threshold=contract.get("threshold"),
        baseline=contract.get("baseline"), projected=contract.get("projected"),
        details=dict(found.details),
        recent=_recent(rule, now, found), account=account,
    )


def sample_notification(rule: Rule, receiver: str, *, now: int,
                        status: NotificationStatus = "firing",
                        customers: tuple[Customer, ...] = (SAMPLE_CUSTOMER,),
                        destination: Destination | None = None,
                        account: str = "") -> Notification:
    """The notification ``receiver`` would get for ``rule`` (one alert per customer).

    With the route ``destination`` the alerts would take, its group labels and group key are
    the ones the daemon would send; without, the root route grouping by rule and customer.
    ``account`` is the Stripe account of ``accounts:`` the alerts belong to.
    """
    alerts = tuple(sample_alert(rule, now=now, status=status, customer=c, account=account)
                   for c in customers)
    if destination is None:
        destination = Destination(receiver, "root", Timing(("customer", "rule"), 0, 0, 0))
    group_labels = destination.group_labels(alerts[0].labels)
    if len(customers) > 1:
        group_labels.pop("customer", None)
    group_key = labelset.group_key(destination.route_key, group_labels)
    digest = hashlib.sha256(f"{receiver}\x1f{group_key}\x1f{status}\x1f{now}".encode())
    return Notification(id=f"sample-{digest.hexdigest()[:24]}", receiver=receiver,
                        status=status, group_key=group_key, group_labels=group_labels,
                        alerts=alerts, created_at=now)


_TRIAL_NOW = 1_735_920_000  # 2025-01-03T16:00:00Z


def trial_notifications(account: str = "") -> list[Notification]:
    """Notifications covering the shapes templates meet: one alert, a digest, a customer with
    no name or email, a resolve, a baseline instead of a threshold, no recent buckets.

    Their alerts belong to the Stripe ``account`` of ``accounts:`` and carry its ``account``
    label, as the daemon's do; ``""`` (the one account of ``stripe.api_key``) carries none."""
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
                                 customers=(SAMPLE_CUSTOMER, nameless), account=account)
    mixed = dataclasses.replace(digest, alerts=(
        digest.alerts[0], dataclasses.replace(digest.alerts[1], status="resolved", recent=())))
    return [
        sample_notification(threshold, "example", now=_TRIAL_NOW, account=account),
        mixed,
        sample_notification(change, "example", now=_TRIAL_NOW, status="resolved",
                            account=account),
    ]

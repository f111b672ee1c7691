"""The Prometheus metrics of one alertd process, in a registry of their own.

Names are part of the contract (architecture.md, "Observability"); every stage receives the
:class:`Metrics` object it reports to through its constructor, so tests can make a fresh one.

Label values known in advance (the two Stripe budgets, the store's error kinds) start at 0, so
``rate(alertd_stripe_rate_limited_total[5m])`` has a series before the first 429 and an alert
on it can fire on the first increase. The ``*_created`` series are switched off: they carry a
process start time per series that nobody graphs and double the exposition.

Beside the contract's metrics, the deadline scheduler's (:mod:`alertd.service.schedule`), one
series per account and poll group (``every``: the group's interval in seconds), set at each
tick: ``alertd_deadline_customers`` (customers booked), ``alertd_deadline_due`` (customers
whose read was due at the tick, never-read ones included), ``alertd_deadline_lag_seconds``
(how far past its deadline the most overdue read customer was: the budget falling behind
shows here first) and ``alertd_deadline_next_timestamp_seconds`` (the earliest deadline booked
after the tick took its customers). And the daemon's polls, per account:
``alertd_poll_duration_seconds`` (each poll's own wall time), ``alertd_poll_budget_idle_seconds``
(of it, the seconds the rate budget had a slot free and no request asked for it: a slow poll
with little idle was paced by the budget, one with much by alertd's own work) and
``alertd_poll_overruns_total`` (polls that took their interval or longer, each followed by the
next at once): a poll log line says each of these once, the metrics let an alert say it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from alertd import __version__


@dataclass(frozen=True, slots=True)
class TickFigures:
    """What one tick of a poll group's deadline book shows (see the module docstring)."""

    customers: int
    due: int
    lag: float
    next_due: float | None

#: The rate-limit budgets of :mod:`alertd.source.ratelimit` (``budget`` label values).
BUDGETS = ("analytics", "general")
#: The ``kind`` label values of ``alertd_store_errors_total``.
STORE_ERROR_KINDS = ("damaged", "error")


class Metrics:
    """All alertd metrics. Also the source layer's request observer."""

    def __init__(self) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.stripe_requests = Counter(
            "alertd_stripe_requests", "HTTP requests sent to Stripe.", ["endpoint", "code"],
            registry=r,
        )
        self.stripe_request_duration = Histogram(
            "alertd_stripe_request_duration_seconds", "Duration of Stripe requests.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=r,
        )
        self.stripe_rate_limited = Counter(
            "alertd_stripe_rate_limited", "Stripe answers with HTTP 429.", ["budget"], registry=r
        )
        self.stripe_refreshed = Gauge(
            "alertd_stripe_refreshed_timestamp_seconds",
            "Oldest refreshed_at seen in the last poll (unix seconds).", registry=r,
        )
        self.rule_evaluations = Counter(
            "alertd_rule_evaluations", "Series evaluations by outcome.", ["rule", "outcome"],
            registry=r,
        )
        self.rule_last_evaluation = Gauge(
            "alertd_rule_last_evaluation_timestamp_seconds", "When a rule was last evaluated.",
            ["rule"], registry=r,
        )
        self.alerts = Gauge("alertd_alerts", "Alert series by state.", ["state"], registry=r)
        self.notifications = Counter(
            "alertd_notifications", "Notification delivery attempts by outcome.",
            ["receiver", "outcome"], registry=r,
        )
        self.outbox_pending = Gauge(
            "alertd_outbox_pending", "Notifications waiting in the outbox.", registry=r
        )
        self.store_errors = Counter(
            "alertd_store_errors", "State store operations that failed, by kind "
            "(damaged: the file is corrupt; error: locked, full, unwritable).", ["kind"],
            registry=r,
        )
        self.leader = Gauge(
            "alertd_leader", "1 while this replica leads the account (polls and records).",
            ["account"], registry=r,
        )
        self.lease_generation = Gauge(
            "alertd_lease_generation", "Generation of the account's lease as last seen.",
            ["account"], registry=r,
        )
        self.lease_expires = Gauge(
            "alertd_lease_expires_timestamp_seconds",
            "When the account's lease, as last seen, expires (unix seconds).", ["account"],
            registry=r,
        )
        scheduler = ["account", "every"]
        self.deadline_customers = Gauge(
            "alertd_deadline_customers", "Customers the deadline scheduler books.", scheduler,
            registry=r,
        )
        self.deadline_due = Gauge(
            "alertd_deadline_due", "Customers whose read was due at the scheduler's last tick "
            "(never-read ones included).", scheduler, registry=r,
        )
        self.deadline_lag = Gauge(
            "alertd_deadline_lag_seconds", "How long past its deadline the most overdue "
            "customer was at the scheduler's last tick (0: none overdue).", scheduler,
            registry=r,
        )
        self.deadline_next = Gauge(
            "alertd_deadline_next_timestamp_seconds", "The earliest deadline booked after the "
            "scheduler's last tick (unix seconds).", scheduler, registry=r,
        )
        self.poll_duration = Histogram(
            "alertd_poll_duration_seconds", "Wall seconds of each poll, from its start to its "
            "alerts recorded.", ["account"],
            buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600), registry=r,
        )
        self.poll_budget_idle = Counter(
            "alertd_poll_budget_idle_seconds", "Seconds of polls in which the Stripe rate "
            "budget had a slot free and no request asked for it.", ["account"], registry=r,
        )
        self.poll_overruns = Counter(
            "alertd_poll_overruns", "Polls that took their interval or longer (the next one "
            "then started at once).", ["account"], registry=r,
        )
        self.build_info = Gauge(
            "alertd_build_info", "Build information.", ["version"], registry=r
        )
        self.build_info.labels(version=__version__).set(1)
        for budget in BUDGETS:
            self.stripe_rate_limited.labels(budget=budget)
        for kind in STORE_ERROR_KINDS:
            self.store_errors.labels(kind=kind)

    # The source layer's observer protocol.
    def on_response(self, endpoint: str, code: str, seconds: float) -> None:
        self.stripe_requests.labels(endpoint=endpoint, code=code).inc()
        self.stripe_request_duration.observe(seconds)

    def on_rate_limited(self, budget: str) -> None:
        self.stripe_rate_limited.labels(budget=budget).inc()

    # The outbox's observer protocol.
    def on_delivery(self, receiver: str, outcome: str) -> None:
        self.notifications.labels(receiver=receiver, outcome=outcome).inc()

    def on_pending(self, count: int) -> None:
        self.outbox_pending.set(count)

    # The deadline scheduler's observer protocol.
    def on_tick(self, account: str, every: float, tick: TickFigures) -> None:
        labels = {"account": account, "every": f"{every:g}"}
        self.deadline_customers.labels(**labels).set(tick.customers)
        self.deadline_due.labels(**labels).set(tick.due)
        self.deadline_lag.labels(**labels).set(tick.lag)
        if tick.next_due is not None:
            self.deadline_next.labels(**labels).set(tick.next_due)

    # The daemon's polls.
    def watch_account(self, account: str) -> None:
        """Starts ``account``'s poll counters at 0 (a ``rate()`` alert has a series before
        the first overrun)."""
        self.poll_overruns.labels(account=account)
        self.poll_budget_idle.labels(account=account)

    def on_poll(self, account: str, seconds: float, budget_idle: float) -> None:
        self.poll_duration.labels(account=account).observe(seconds)
        self.poll_budget_idle.labels(account=account).inc(max(0.0, budget_idle))

    def on_overrun(self, account: str) -> None:
        self.poll_overruns.labels(account=account).inc()

    def forget_schedule(self, account: str, every: float) -> None:
        """Drops a poll group's scheduler series (a reload removed or changed the group)."""
        labels = (account, f"{every:g}")
        for gauge in (self.deadline_customers, self.deadline_due, self.deadline_lag,
                      self.deadline_next):
            with contextlib.suppress(KeyError):  # never set: no tick yet
                gauge.remove(*labels)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)

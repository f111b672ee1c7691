"""Frozen value types shared by every stage of the pipeline.

Data flow (see ``docs`` in the package ``__init__``)::

    rules + customers --planner--> UsageQuery --source--> UsageResult
        --series.build--> Series --evaluate--> Finding --alerts.apply--> Transition
        --notify--> Notification

Conventions that every module relies on:

* Instants are **unix seconds as ``int``** (UTC). They are what Stripe speaks, they hash and
  compare cheaply, and they never carry a naive/aware ambiguity. ``alertd.clock`` converts to
  and from aware ``datetime`` at the edges (CLI, templates, JSON output).
* Filters and dimensions are **sorted tuples of pairs** so that equal specs compare and hash
  equal; ``dict(...)`` of them gives the mapping back.
* Nothing here does I/O.

Why over 400 lines: the shared vocabulary of every stage, many small frozen types; one module so
that no stage imports another stage for a type.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from alertd.billing import CustomerBilling

Granularity = Literal["hour", "day", "week", "month"]
GRANULARITIES: tuple[Granularity, ...] = ("hour", "day", "week", "month")

#: ``(("model", ("gpt-4",)), ("tier", ("premium", "pro")))`` — key, accepted values (any of).
Filters = tuple[tuple[str, tuple[str, ...]], ...]
#: ``(("model", "gpt-4"),)`` — a concrete dimension value per key.
Dimensions = tuple[tuple[str, str], ...]

FindingState = Literal["inactive", "pending", "firing", "resolved", "nodata", "error"]
NotificationStatus = Literal["firing", "resolved"]


def make_filters(raw: Mapping[str, str | list[str] | tuple[str, ...]] | None) -> Filters:
    """Normalise a ``{key: value | [values]}`` mapping into sorted :data:`Filters`."""
    if not raw:
        return ()
    items: list[tuple[str, tuple[str, ...]]] = []
    for key, value in raw.items():
        values = (value,) if isinstance(value, str) else tuple(value)
        items.append((key, tuple(sorted(set(values)))))
    return tuple(sorted(items))


def make_dimensions(raw: Mapping[str, str] | None) -> Dimensions:
    """Normalise a ``{key: value}`` mapping into sorted :data:`Dimensions`."""
    return tuple(sorted(raw.items())) if raw else ()


@dataclass(frozen=True, slots=True)
class Period:
    """A half-open interval ``[starts_at, ends_at)`` in unix seconds, labelled with its zone."""

    starts_at: int
    ends_at: int
    timezone: str = "UTC"

    def contains(self, instant: int) -> bool:
        return self.starts_at <= instant < self.ends_at


# --------------------------------------------------------------------------- Stripe directory


@dataclass(frozen=True, slots=True)
class Customer:
    """A Stripe customer as rules and templates see it."""

    id: str
    name: str | None = None
    email: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict, hash=False, compare=False)
    #: Prices, billing periods and credit, attached by the engine for the rules that price
    #: usage (``measure: cost``, ``credit``); ``None`` for every other rule.
    billing: CustomerBilling | None = field(default=None, hash=False, compare=False)


@dataclass(frozen=True, slots=True)
class Meter:
    """A Stripe billing meter (``GET /v1/billing/meters``)."""

    id: str
    display_name: str | None = None
    event_name: str | None = None
    status: str = "active"


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True, slots=True)
class MeterSpec:
    """One ``meters[i]`` entry of a usage request. ``meter=None`` means all meters summed."""

    meter: str | None
    dimension_filters: Filters = ()
    tenant_filters: Filters = ()
    group_by: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class UsageQuery:
    """One Meter Usage Analytics request (before any ``has_more`` split).

    ``meters`` holds at most 5 specs with pairwise distinct ``meter`` ids, because a response
    row names its meter but not the spec that asked for it.
    """

    customer: str
    starts_at: int
    ends_at: int
    window: Granularity | None
    timezone: str
    meters: tuple[MeterSpec, ...]


@dataclass(frozen=True, slots=True)
class UsageRow:
    """One response row, whichever response shape it came in."""

    starts_at: int
    ends_at: int
    value: float
    meter: str | None
    dimensions: Dimensions = ()


@dataclass(frozen=True, slots=True)
class UsageResult:
    """Everything one query returned, after any ``has_more`` splits were stitched together.

    ``refreshed_at`` is the oldest freshness seen across the sub-requests (``None`` when the
    source does not report one). ``requests`` counts HTTP requests spent, retries included.
    ``rows`` is any sequence of rows: the analytics source hands columns (numpy arrays, rows
    made when read: :mod:`alertd.usage_columns`), which the planner, the bucket cache and
    ``build_series`` read as arrays.
    """

    query: UsageQuery
    rows: Sequence[UsageRow]
    refreshed_at: int | None
    requests: int = 1
    request_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DataNeed:
    """What one rule needs fetched for one customer.

    Buckets of ``granularity`` (Stripe's ``value_grouping_window``; evaluators ask for ``hour``
    or ``day`` and sum days into weeks and months locally, so rules of different windows can
    share a request) in ``timezone``, over ``[starts_at, ends_at)``, for ``spec`` (the rule's own
    meter, filters and group-by). The planner merges needs into the fewest :class:`UsageQuery`.
    """

    customer: str
    spec: MeterSpec
    granularity: Granularity
    timezone: str
    starts_at: int
    ends_at: int


# --------------------------------------------------------------------------- series


@dataclass(frozen=True, slots=True)
class Bucket:
    """One aggregated bucket of a series. ``complete`` per the freshness rule."""

    starts_at: int
    ends_at: int
    value: float
    complete: bool


@dataclass(frozen=True, slots=True)
class SeriesKey:
    """The identity of an alert series: rule name, customer id and group-by values.

    It is deliberately made of names and values only (never object identity), so state keyed
    by it survives restarts and reloads.
    """

    rule: str
    customer: str
    group: Dimensions = ()
    #: The Stripe account of ``accounts:`` it belongs to; ``""`` for the one account of
    #: ``stripe.api_key`` (:mod:`alertd.accounts`), whose fingerprints stay as they were.
    account: str = ""

    @property
    def fingerprint(self) -> str:
        parts = [self.rule, self.customer, *(f"{k}={v}" for k, v in self.group)]
        if self.account:
            parts.append(f"\x1eaccount={self.account}")
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Series:
    """Usage of one alert series, bucketed, sorted by time and zero-filled over its range.

    ``dimensions`` is what the series measures (fixed filters plus its group-by values).
    ``refreshed_at`` is the source's freshness at fetch time; ``None`` means unknown.
    ``buckets`` is any sequence of buckets: a tuple, or the columns (numpy arrays, buckets made
    when read) that ``build_series`` gives (:mod:`alertd.conditions.columns`).
    """

    key: SeriesKey
    meter: str | None
    dimensions: Dimensions
    granularity: Granularity
    timezone: str
    buckets: Sequence[Bucket]
    refreshed_at: int | None


# --------------------------------------------------------------------------- evaluation


@dataclass(frozen=True, slots=True)
class Figures:
    """The numbers a finding was judged against, as its condition kind defines them.

    Each kind (:mod:`alertd.conditions`) subclasses this with its own fields and says, in
    :meth:`contract`, which of the contract's fields they are: ``threshold`` (a bound or
    budget), ``baseline`` (what was expected), ``projected`` (a forecast total). Nothing else
    reads a kind's figures; everything reads :meth:`contract`. The base has none.
    """

    def contract(self) -> dict[str, float]:
        """The contract's fields this payload fills, in the order they are shown."""
        return {}

    def bound(self) -> tuple[str, float] | None:
        """What a table shows as the finding's bound: a prefix (``""`` for a bound, ``~``
        for an expected value) and the number; ``None`` for no bound."""
        return None


NO_FIGURES = Figures()


@dataclass(frozen=True, slots=True)
class Finding:
    """The verdict of one condition on one series at one instant.

    ``active`` is the raw verdict ("the condition holds now"). ``state`` is what the alert
    lifecycle made of it (``pending`` until ``for`` has passed, ``firing``, ``resolved``...);
    evaluators leave it ``inactive``/``nodata``/``error`` and ``alerts.apply`` fills it in.
    ``details`` carries condition-specific explanation (``band``, ``method``, ``crosses_at``,
    ``previous``...) for messages and templates; ``figures`` the numbers it was judged
    against, owned by its condition kind (``threshold``, ``baseline`` and ``projected`` read
    them as the contract names them).
    """

    key: SeriesKey
    meter: str | None
    dimensions: Dimensions
    window: Period
    complete: bool
    value: float | None
    active: bool
    level: str | None
    state: FindingState
    message: str
    figures: Figures = NO_FIGURES
    period_key: str = ""
    details: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def rule(self) -> str:
        return self.key.rule

    @property
    def threshold(self) -> float | None:
        return self.figures.contract().get("threshold")

    @property
    def baseline(self) -> float | None:
        return self.figures.contract().get("baseline")

    @property
    def projected(self) -> float | None:
        return self.figures.contract().get("projected")

    @property
    def customer(self) -> str:
        return self.key.customer


# --------------------------------------------------------------------------- notifications


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert as templates and webhooks see it (the contract's notification fields).

    ``labels`` is the full label set used for routing, grouping and silences: the rule's own
    labels plus ``alertname``/``rule``, ``customer``, ``severity``, ``meter`` and every
    dimension of the series. ``recent`` holds the last buckets for the inline table in emails.
    """

    fingerprint: str
    status: NotificationStatus
    rule: str
    severity: str
    customer: Customer
    meter: str | None
    dimensions: Dimensions
    window: Period
    value: float | None
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: int
    ends_at: int | None
    refreshed_at: int | None
    message: str = ""
    meter_name: str | None = None
    threshold: float | None = None
    baseline: float | None = None
    projected: float | None = None
    details: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)
    recent: tuple[Bucket, ...] = ()
    #: The Stripe account of ``accounts:`` (``""``: the one of ``stripe.api_key``).
    account: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form; :meth:`from_dict` reverses it exactly (used by the outbox)."""
        return {
            **({"account": self.account} if self.account else {}),
            "fingerprint": self.fingerprint,
            "status": self.status,
            "rule": self.rule,
            "severity": self.severity,
            "customer": {
                "id": self.customer.id,
                "name": self.customer.name,
                "email": self.customer.email,
                "metadata": dict(self.customer.metadata),
            },
            "meter": self.meter,
            "meter_name": self.meter_name,
            "dimensions": dict(self.dimensions),
            "window": {
                "starts_at": self.window.starts_at,
                "ends_at": self.window.ends_at,
                "timezone": self.window.timezone,
            },
            "value": self.value,
            "threshold": self.threshold,
            "baseline": self.baseline,
            "projected": self.projected,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
            "refreshed_at": self.refreshed_at,
            "message": self.message,
            "details": dict(self.details),
            "recent": [[b.starts_at, b.ends_at, b.value, b.complete] for b in self.recent],
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Alert:
        customer = raw["customer"]
        window = raw["window"]
        return cls(
            fingerprint=raw["fingerprint"],
            status=raw["status"],
            rule=raw["rule"],
            severity=raw["severity"],
            customer=Customer(
                customer["id"], customer.get("name"), customer.get("email"),
                dict(customer.get("metadata") or {}),
            ),
            meter=raw.get("meter"),
            meter_name=raw.get("meter_name"),
            dimensions=make_dimensions(raw.get("dimensions")),
            window=Period(window["starts_at"], window["ends_at"], window["timezone"]),
            value=raw.get("value"),
            threshold=raw.get("threshold"),
            baseline=raw.get("baseline"),
            projected=raw.get("projected"),
            labels=dict(raw.get("labels") or {}),
            annotations=dict(raw.get("annotations") or {}),
            starts_at=raw["starts_at"],
            ends_at=raw.get("ends_at"),
            refreshed_at=raw.get("refreshed_at"),
            message=raw.get("message", ""),
            details=dict(raw.get("details") or {}),
            recent=tuple(Bucket(int(s), int(e), float(v), bool(c))
                         for s, e, v, c in raw.get("recent") or ()),
            account=raw.get("account", ""),
        )


@dataclass(frozen=True, slots=True)
class Notification:
    """One message to one receiver: a group of alerts, sent as a whole.

    ``id`` is stable for this notification and is sent as the ``Idempotency-Key``; a retry or a
    resend after a crash carries the same one, so receivers can drop repeats. ``opens_thread``
    says it is the first of its group's episode (nothing of the group was firing before): its
    mail starts the conversation the repeats and the resolve reply to.
    """

    id: str
    receiver: str
    status: NotificationStatus
    group_key: str
    group_labels: Mapping[str, str]
    alerts: tuple[Alert, ...]
    created_at: int
    opens_thread: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "receiver": self.receiver,
            "status": self.status,
            "group_key": self.group_key,
            "group_labels": dict(self.group_labels),
            "alerts": [a.to_dict() for a in self.alerts],
            "created_at": self.created_at,
            "opens_thread": self.opens_thread,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Notification:
        return cls(
            id=raw["id"],
            receiver=raw["receiver"],
            status=raw["status"],
            group_key=raw["group_key"],
            group_labels=dict(raw.get("group_labels") or {}),
            alerts=tuple(Alert.from_dict(a) for a in raw["alerts"]),
            created_at=raw["created_at"],
            opens_thread=bool(raw.get("opens_thread", False)),
        )

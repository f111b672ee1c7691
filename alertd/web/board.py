"""The status board: what every poll found, kept for the status page (pending and firing).

Where it sits: the daemon hands each :class:`~alertd.service.polling.PollOutcome` to
:meth:`Board.record` after it was recorded; the status page (:mod:`alertd.web`) reads the
board for its overview, each alert's page and ``/api/v1/alerts``. A poll replaces the entries
of the rules it polled (a series that stopped being pending or firing leaves the board), so
the board holds at most one entry per active series and needs no pruning.

It lives in memory: after a restart it fills in with the first poll of each rule. ``since``
is the lifecycle's ``firing_since``/``pending_since`` from the stored state of a series the
board does not show in that state yet (the daemon loads those states for the rules
:meth:`Board.unseen_rules` names: after a restart, each rule's once), then kept while the
series stays in that state. Paging is over a list sorted once per poll, so a page costs
O(page size) however many series are active.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from alertd.alerts import SOURCE_FAILURE, STALE_DATA, AlertState
from alertd.charts import band_of
from alertd.model import Bucket, Customer, Finding, Series, SeriesKey

ACTIVE_STATES = ("firing", "pending")
META_RULES = (STALE_DATA, SOURCE_FAILURE)


@dataclass(frozen=True, slots=True)
class Entry:
    """One pending or firing series as the status page shows it."""

    fingerprint: str
    key: SeriesKey
    state: str
    level: str | None
    value: float | None
    threshold: float | None
    band: tuple[float, float] | None
    message: str
    meter: str | None
    customer: Customer
    since: int
    polled_at: int
    refreshed_at: int | None
    recent: tuple[Bucket, ...] = ()
    dimensions: tuple[tuple[str, str], ...] = ()
    #: Where the finding's window starts (its value is judged over the window).
    window_start: int = 0

    @property
    def meta(self) -> bool:
        return self.key.rule in META_RULES

    @property
    def silence_matchers(self) -> list[str]:
        """Matchers that silence exactly this series (the silence form's defaults)."""
        matchers = [f"rule={self.key.rule}"]
        if self.key.customer:
            matchers.append(f"customer={self.key.customer}")
        matchers.extend(f"{name}={value}" for name, value in self.key.group)
        if self.key.account:
            matchers.append(f"account={self.key.account}")
        return matchers

    def to_dict(self) -> dict[str, object]:
        return {
            **({"account": self.key.account} if self.key.account else {}),
            "fingerprint": self.fingerprint,
            "rule": self.key.rule,
            "customer": {"id": self.customer.id, "name": self.customer.name},
            "group": dict(self.key.group),
            "state": self.state,
            "level": self.level,
            "meter": self.meter,
            "value": self.value,
            "threshold": self.threshold,
            "band": list(self.band) if self.band else None,
            "message": self.message,
            "since": self.since,
            "polled_at": self.polled_at,
            "refreshed_at": self.refreshed_at,
            "meta": self.meta,
            "recent": [{"starts_at": b.starts_at, "ends_at": b.ends_at, "value": b.value,
                        "complete": b.complete} for b in self.recent],
        }


def entry_for(
    finding: Finding, now: int, *, previous: Entry | None, state: AlertState | None,
    customer: Customer | None, series: Series | None, recent_buckets: int = 30,
) -> Entry:
    """The board entry of an active finding (pure)."""
    since = now
    if previous is not None and previous.state == finding.state:
        since = previous.since
    elif state is not None:
        stored = state.firing_since if finding.state == "firing" else state.pending_since
        since = stored if stored is not None else now
    return Entry(
        fingerprint=finding.key.fingerprint, key=finding.key, state=finding.state,
        level=finding.level, value=finding.value, threshold=finding.threshold,
        band=band_of(finding.details), message=finding.message, meter=finding.meter,
        customer=customer or Customer(finding.key.customer), since=since, polled_at=now,
        refreshed_at=series.refreshed_at if series else None,
        recent=tuple(series.buckets[-recent_buckets:]) if series else (),
        dimensions=tuple(finding.dimensions), window_start=finding.window.starts_at,
    )


def _order(entry: Entry) -> tuple[int, int, str, str]:
    # Firing before pending, meta alerts first among them, then by rule (a stable order).
    return (ACTIVE_STATES.index(entry.state), 0 if entry.meta else 1, entry.key.rule,
            entry.fingerprint)


@dataclass
class Board:
    """The active series, by fingerprint, plus the time of the latest poll."""

    entries: dict[str, Entry] = field(default_factory=dict)
    last_poll: int | None = None
    _ordered: list[Entry] = field(default_factory=list)

    def unseen_rules(self, findings: Iterable[Finding]) -> set[str]:
        """The rules of the active ``findings`` the board does not show in that state yet:
        whose entries need their stored state for ``since``."""
        unseen = set()
        for finding in findings:
            if finding.state in ACTIVE_STATES:
                entry = self.entries.get(finding.key.fingerprint)
                if entry is None or entry.state != finding.state:
                    unseen.add(finding.key.rule)
        return unseen

    def record(
        self, rules: Iterable[str], findings: Iterable[Finding], now: int, *,
        customers: Mapping[str, Customer] | None = None,
        series: Mapping[SeriesKey, Series] | None = None,
        states: Mapping[SeriesKey, AlertState] | None = None,
        only: Collection[str] | None = None,
        account: str = "",
    ) -> None:
        """The active series of ``rules`` (of ``account``) are exactly the active
        ``findings`` now (of the customers in ``only``, when a poll read only those)."""
        polled = set(rules)
        findings = list(findings)
        read = None if only is None else {*only, *(f.key.customer for f in findings)}
        kept = {f: e for f, e in self.entries.items() if e.key.rule not in polled
                or e.key.account != account
                or (read is not None and e.key.customer not in read)}
        for finding in findings:
            if finding.state not in ACTIVE_STATES:
                continue
            fingerprint = finding.key.fingerprint
            kept[fingerprint] = entry_for(
                finding, now, previous=self.entries.get(fingerprint),
                state=(states or {}).get(finding.key),
                customer=(customers or {}).get(finding.key.customer),
                series=(series or {}).get(finding.key))
        self.entries = kept
        self.last_poll = now
        self._ordered = sorted(kept.values(), key=_order)

    def page(self, state: str | None = None, start: int = 0, limit: int = 50) -> list[Entry]:
        """Entries in display order (firing first), of one state when given."""
        chosen = self._ordered if state is None else [
            e for e in self._ordered if e.state == state]
        return chosen[start:start + max(1, min(limit, 500))]

    def count(self, state: str | None = None) -> int:
        if state is None:
            return len(self._ordered)
        return sum(1 for e in self._ordered if e.state == state)

    def meta(self) -> list[Entry]:
        return [e for e in self._ordered if e.meta]

    def get(self, fingerprint: str) -> Entry | None:
        return self.entries.get(fingerprint)

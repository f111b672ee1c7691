"""The status board: what every poll found, kept for the status page (pending and firing).

Where it sits: a poll hands each recorded batch's pending and firing findings to a
:class:`BoardPass` (:meth:`Board.begin`) as the batch is recorded, which makes their entries
then — the only copy of them and their recent buckets the poll keeps — and the daemon hands
the pass to :meth:`Board.record` once the poll is recorded; the status page
(:mod:`alertd.web`) reads the board for its overview, each alert's page and
``/api/v1/alerts``. A poll replaces the entries of the rules it polled (a series that stopped
being pending or firing leaves the board), so the board holds at most one entry per active
series and needs no pruning. While a poll runs the board shows the previous one's entries;
a poll that records nothing (no fresher data) or fails leaves its rules' entries as they were.

An entry's recent buckets are held as one array of floats (:class:`Recent`, ~0.8 KB for 24
buckets where 24 :class:`~alertd.model.Bucket` objects take ~3.5 KB), made into buckets when
the page or the API reads them.

It lives in memory: after a restart it fills in with the first poll of each rule. ``since``
is the lifecycle's ``firing_since``/``pending_since`` from the stored state of a series the
board does not show in that state yet (the daemon loads those states for the rules
:meth:`Board.unseen_rules` names: after a restart, each rule's once), then kept while the
series stays in that state. Paging is over a list sorted once per poll, so a page costs
O(page size) however many series are active.
"""

from __future__ import annotations

from array import array
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import overload

from alertd.alerts import SOURCE_FAILURE, STALE_DATA, AlertState
from alertd.charts import band_of
from alertd.model import Bucket, Customer, Finding, Series, SeriesKey

ACTIVE_STATES = ("firing", "pending")
META_RULES = (STALE_DATA, SOURCE_FAILURE)


class Recent(Sequence[Bucket]):
    """Buckets held compactly: one array of ``starts_at, ends_at, value, complete`` per
    bucket, as floats (unix seconds are exact in a double); :class:`Bucket` objects are made
    when read, equal to those it was made from."""

    __slots__ = ("_columns",)

    def __init__(self, buckets: Iterable[Bucket] = ()) -> None:
        self._columns = array("d")
        for b in buckets:
            self._columns.extend((b.starts_at, b.ends_at, b.value, 1.0 if b.complete else 0.0))

    def __len__(self) -> int:
        return len(self._columns) // 4

    def _bucket(self, index: int) -> Bucket:
        s, e, v, c = self._columns[4 * index:4 * index + 4]
        return Bucket(int(s), int(e), v, c != 0.0)

    @overload
    def __getitem__(self, index: int) -> Bucket: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[Bucket, ...]: ...

    def __getitem__(self, index: int | slice) -> Bucket | tuple[Bucket, ...]:
        if isinstance(index, slice):
            return tuple(self._bucket(i) for i in range(len(self))[index])
        return self._bucket(range(len(self))[index])

    def __iter__(self) -> Iterator[Bucket]:
        return (self._bucket(i) for i in range(len(self)))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Recent):
            return self._columns == other._columns
        if isinstance(other, tuple):
            return tuple(self) == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return f"Recent({tuple(self)!r})"


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
    recent: Sequence[Bucket] = ()
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
        recent=Recent(series.buckets[-recent_buckets:]) if series else (),
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

    def begin(self, now: int) -> BoardPass:
        """A pass of a poll at ``now`` whose batches make their entries as they are recorded
        (:class:`BoardPass`); the board shows nothing of it until :meth:`record` takes it."""
        return BoardPass(self, now)

    def record(
        self, rules: Iterable[str], findings: Iterable[Finding], now: int, *,
        customers: Mapping[str, Customer] | None = None,
        series: Mapping[SeriesKey, Series] | None = None,
        states: Mapping[SeriesKey, AlertState] | None = None,
        only: Collection[str] | None = None,
        account: str = "",
        staged: BoardPass | None = None,
    ) -> None:
        """The active series of ``rules`` (of ``account``) are exactly the active
        ``findings`` now, with the entries ``staged`` made batch by batch (of the customers
        in ``only``, when a poll read only those)."""
        polled = set(rules)
        findings = list(findings)
        made = staged.entries if staged is not None else {}
        read = None if only is None else {*only, *(f.key.customer for f in findings),
                                          *(e.key.customer for e in made.values())}
        kept = {f: e for f, e in self.entries.items() if e.key.rule not in polled
                or e.key.account != account
                or (read is not None and e.key.customer not in read)}
        kept.update(made)
        for finding in findings:
            if finding.state not in ACTIVE_STATES:
                continue
            fingerprint = finding.key.fingerprint
            kept[fingerprint] = entry_for(
                finding, now, previous=self.entries.get(fingerprint),
                state=(states or {}).get(finding.key),
                customer=(customers or {}).get(finding.key.customer),
                series=(series or {}).get(finding.key))
        if staged is not None:
            staged.entries = {}
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


class BoardPass:
    """The entries of one poll's pending and firing series, made batch by batch as the
    batches are recorded (:meth:`add`), and shown only once :meth:`Board.record` takes the
    pass: until then the board shows the previous poll's. A pass dropped instead (the poll
    failed, or recorded nothing) changes nothing on the board."""

    __slots__ = ("board", "entries", "now")

    def __init__(self, board: Board, now: int) -> None:
        self.board = board
        self.now = now
        self.entries: dict[str, Entry] = {}

    def add(self, findings: Iterable[Finding], *,
            customers: Mapping[str, Customer] | None = None,
            series: Mapping[SeriesKey, Series] | None = None,
            states: Mapping[SeriesKey, AlertState] | None = None) -> None:
        """The entries of one recorded batch's active ``findings`` (their lifecycle
        ``states`` as stepped give ``since`` where the board does not show them yet)."""
        for finding in findings:
            if finding.state not in ACTIVE_STATES:
                continue
            fingerprint = finding.key.fingerprint
            self.entries[fingerprint] = entry_for(
                finding, self.now, previous=self.board.entries.get(fingerprint),
                state=(states or {}).get(finding.key),
                customer=(customers or {}).get(finding.key.customer),
                series=(series or {}).get(finding.key))

"""The board across a poll's batches: entries are made as each batch is recorded
(:class:`~alertd.web.board.BoardPass`) and shown only when the poll's pass is recorded; a pass
in progress or dropped leaves the board as it was, a resolved series leaves it."""

from __future__ import annotations

from alertd.alerts import AlertState
from alertd.model import Bucket, Customer, Finding, Period, Series, SeriesKey
from alertd.web.board import Board, Recent

NOW = 1_741_608_000  # 2025-03-10 12:00 UTC


def finding(rule: str, customer: str, state: str) -> Finding:
    return Finding(key=SeriesKey(rule, customer), meter="mtr", dimensions=(),
                   window=Period(NOW - 3600, NOW, "UTC"), complete=False, value=5.0,
                   active=state in ("pending", "firing"), level="warning",
                   state=state,  # type: ignore[arg-type]
                   message=f"{rule} {customer}", details={})


def shown(board: Board) -> list[tuple[str, str, str, int]]:
    return [(e.key.rule, e.key.customer, e.state, e.polled_at) for e in board.page()]


def test_a_pass_shows_its_batches_only_once_recorded_and_replaces_its_rules_entries() -> None:
    board = Board()
    board.record(["a"], [finding("a", "c1", "firing"), finding("a", "c2", "pending")], NOW)
    staged = board.begin(NOW + 60)
    staged.add([finding("a", "c1", "firing"), finding("a", "c3", "inactive")])  # batch 1
    staged.add([finding("a", "c2", "resolved"), finding("a", "c4", "pending")])  # batch 2
    # In progress: the board still shows the previous poll, nothing blank, nothing new.
    assert shown(board) == [("a", "c1", "firing", NOW), ("a", "c2", "pending", NOW)]
    board.record(["a"], [], NOW + 60, staged=staged)
    assert shown(board) == [("a", "c1", "firing", NOW + 60), ("a", "c4", "pending", NOW + 60)]
    c1 = board.get(SeriesKey("a", "c1").fingerprint)
    assert c1 is not None and c1.since == NOW  # firing since the first poll, kept
    assert board.get(SeriesKey("a", "c2").fingerprint) is None  # resolved: off the board
    assert staged.entries == {}  # handed over, not kept twice


def test_a_failed_or_unrecorded_pass_leaves_its_rules_entries_as_they_were() -> None:
    board = Board()
    board.record(["a", "b"], [finding("a", "c1", "firing"), finding("b", "c1", "firing")], NOW)
    staged = board.begin(NOW + 60)
    staged.add([finding("a", "c1", "inactive"), finding("a", "c2", "firing")])
    # The pass of "a" recorded nothing (no fresher data) or failed: only the meta rules it
    # did judge are replaced, its staged entries are dropped.
    meta = finding("alertd-stale-data", "", "firing")
    board.record([meta.rule], [meta], NOW + 60, staged=None)
    assert shown(board) == [("alertd-stale-data", "", "firing", NOW + 60),
                            ("a", "c1", "firing", NOW), ("b", "c1", "firing", NOW)]


def test_staged_entries_take_since_from_the_stepped_state_and_carry_their_series() -> None:
    board = Board()
    key = SeriesKey("a", "c1")
    buckets = tuple(Bucket(NOW + i * 3600, NOW + (i + 1) * 3600, i / 3, i < 20)
                    for i in range(30))
    series = Series(key, "mtr", (), "hour", "UTC", buckets, NOW - 30)
    staged = board.begin(NOW)
    staged.add([finding("a", "c1", "firing")], customers={"c1": Customer("c1", "Acme")},
               series={key: series},
               states={key: AlertState("firing", firing_since=NOW - 7200)})
    board.record(["a"], [], NOW, staged=staged)
    entry = board.get(key.fingerprint)
    assert entry is not None and entry.since == NOW - 7200 and entry.refreshed_at == NOW - 30
    assert entry.customer.name == "Acme"
    assert isinstance(entry.recent, Recent) and entry.recent == buckets
    assert list(entry.recent) == list(buckets) and entry.recent[-1] == buckets[-1]
    assert entry.recent[2:4] == buckets[2:4]
    assert entry.to_dict()["recent"][0] == {"starts_at": NOW, "ends_at": NOW + 3600,
                                            "value": 0.0, "complete": True}


def test_a_partial_poll_replaces_only_the_customers_it_read() -> None:
    board = Board()
    board.record(["a"], [finding("a", "c1", "firing"), finding("a", "c2", "firing")], NOW)
    staged = board.begin(NOW + 60)
    staged.add([finding("a", "c1", "inactive")])
    board.record(["a"], [], NOW + 60, staged=staged, only=["c1"])
    assert shown(board) == [("a", "c2", "firing", NOW)]

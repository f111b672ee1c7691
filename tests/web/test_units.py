"""The status page's pure parts: the board, chart rows and shapes, the usage query, access."""

from __future__ import annotations

import base64

import pytest

from alertd.charts import (
    bar_chart,
    comparable_values,
    series_keys,
    stacked_chart,
    stacked_rows,
)
from alertd.model import Bucket, Finding, Period, Series, SeriesKey, UsageRow
from alertd.web.auth import Access, is_loopback, same_origin, session_value
from alertd.web.board import Board
from alertd.web.usage import daily_sums, dates_of, usage_query

NOW = 1_741_608_000  # 2025-03-10 12:00 UTC


def finding(rule: str, customer: str, state: str, value: float = 5.0) -> Finding:
    return Finding(key=SeriesKey(rule, customer), meter="mtr", dimensions=(),
                   window=Period(NOW - 3600, NOW, "UTC"), complete=False, value=value,
                   active=state != "inactive", level="warning", state=state,  # type: ignore[arg-type]
                   message=f"{rule} {customer}", details={"band": [1, 3]})


def test_board_keeps_the_active_series_of_the_rules_polled() -> None:
    board = Board()
    board.record(["a", "b"], [finding("a", "c1", "firing"), finding("a", "c2", "pending"),
                              finding("b", "c1", "inactive")], NOW)
    assert [(e.key.rule, e.key.customer, e.state) for e in board.page()] == [
        ("a", "c1", "firing"), ("a", "c2", "pending")]
    assert board.get(SeriesKey("a", "c1").fingerprint).band == (1.0, 3.0)  # type: ignore[union-attr]
    board.record(["b"], [finding("b", "c3", "firing")], NOW + 60)  # a's entries stay
    assert board.count("firing") == 2 and board.count() == 3
    board.record(["a"], [finding("a", "c1", "firing")], NOW + 120)
    entry = board.get(SeriesKey("a", "c1").fingerprint)
    assert entry is not None and entry.since == NOW and entry.polled_at == NOW + 120
    assert board.get(SeriesKey("a", "c2").fingerprint) is None  # no longer pending
    assert [e.key.rule for e in board.page("firing", 1, 1)] == ["b"]  # firing a, then b


def test_board_entry_carries_recent_buckets_and_freshness() -> None:
    key = SeriesKey("a", "c1")
    buckets = tuple(Bucket(NOW + i * 60, NOW + (i + 1) * 60, float(i), True) for i in range(40))
    series = Series(key, "mtr", (), "minute", "UTC", buckets, NOW - 30)  # type: ignore[arg-type]
    board = Board()
    board.record(["a"], [finding("a", "c1", "firing")], NOW, series={key: series})
    entry = board.get(key.fingerprint)
    assert entry is not None and entry.refreshed_at == NOW - 30
    assert entry.recent == buckets[-30:]
    assert entry.silence_matchers == ["rule=a", "customer=c1"]


def test_stacked_rows_have_the_guides_shape() -> None:
    sums = {"2025-03-01": {"gpt-4": 2.0, "claude-3": 1.0}, "2025-03-02": {"gpt-4": 4.0}}
    rows = stacked_rows(sums, ["2025-03-01", "2025-03-02", "2025-03-03"])
    assert rows[0] == {"date": "2025-03-01", "claude-3": 1.0, "claude-3_start": 0.0,
                       "claude-3_end": 1.0, "gpt-4": 2.0, "gpt-4_start": 1.0, "gpt-4_end": 3.0}
    assert rows[2]["gpt-4"] == 0.0 and rows[2]["claude-3_end"] == 0.0  # zero-filled
    assert series_keys(rows) == ["claude-3", "gpt-4"]
    chart = stacked_chart(rows, width=300, height=110, pad=10)
    assert [b.label for b in chart.bars] == ["2025-03-01 claude-3", "2025-03-01 gpt-4",
                                             "2025-03-02 gpt-4"]
    # Heights are to scale and stacked: the 4.0 bar is as tall as the 1.0 and 2.0 and 1.0 more.
    heights = [b.height for b in chart.bars]
    assert heights[2] == pytest.approx(heights[0] + heights[1] + heights[0])
    assert chart.bars[1].y + chart.bars[1].height == pytest.approx(chart.bars[0].y)
    assert [name for name, _ in chart.legend] == ["claude-3", "gpt-4"]


def test_bar_chart_draws_threshold_and_band_on_the_bars_scale() -> None:
    chart = bar_chart([("a", 50.0), ("b", 100.0)], threshold=100.0, band=(20.0, 60.0),
                      width=200, height=120, pad=10)
    (y, _, _), = chart.lines
    assert y == pytest.approx(chart.bars[1].y)  # the 100 bar reaches the threshold
    assert chart.band is not None and chart.band[1] > chart.band[0]


def test_usage_query_is_one_aligned_daily_request() -> None:
    query = usage_query("cus_1", "mtr_1", "model", NOW + 1234, 30)
    assert query.window == "day" and query.meters[0].group_by == ("model",)
    assert query.starts_at % 86400 == 0 and query.ends_at % 3600 == 0
    assert len(dates_of(query)) == 30 and dates_of(query)[-1] == "2025-03-10"
    for bad in (("cus 1", "m", "k", 30), ("cus_1", "m", "bad key!", 30), ("c", "m", "k", 0)):
        with pytest.raises(ValueError):
            usage_query(bad[0], bad[1], bad[2], NOW, int(bad[3]))


def test_daily_sums_group_rows_by_date_and_value() -> None:
    rows = [UsageRow(NOW - 3600, NOW, 2.0, "m", (("model", "gpt-4"),)),
            UsageRow(NOW - 7200, NOW - 3600, 3.0, "m", (("model", "gpt-4"),)),
            UsageRow(NOW - 86400, NOW - 82800, 1.0, "m", ())]
    assert daily_sums(rows, "model") == {"2025-03-10": {"gpt-4": 5.0},
                                         "2025-03-09": {"(none)": 1.0}}


def test_access_checks() -> None:
    access = Access(token="t0k", basic=("ops", "pw"))
    assert access.bearer_ok("Bearer t0k") and not access.bearer_ok("Bearer t0")
    good = base64.b64encode(b"ops:pw").decode()
    assert access.basic_ok(f"Basic {good}") and not access.basic_ok("Basic !!!")
    assert not access.basic_ok("Basic " + base64.b64encode(b"ops:pW").decode())
    assert access.session_ok(session_value("t0k")) and not access.session_ok("x")
    assert access.csrf_for("a") != access.csrf_for("b")
    assert access.csrf_for("a") != Access().csrf_for("a")  # a per-process key
    assert is_loopback("127.0.0.1:9464") and is_loopback("[::1]:1") and is_loopback("localhost:1")
    assert not is_loopback("0.0.0.0:9464") and not is_loopback("alertd.example:80")
    assert same_origin(None, "h:1") and same_origin("http://h:1", "h:1")
    assert not same_origin("http://evil:1", "h:1") and not same_origin("null", "h:1")


def test_buckets_are_drawn_cumulatively_when_the_value_is_the_windows_total() -> None:
    buckets = [(0, 5.0), (10, 1.0), (20, 2.0), (30, 3.0)]
    assert comparable_values(buckets, 10, 6.0) == ([5.0, 1.0, 3.0, 6.0], True)
    assert comparable_values(buckets, 10, 3.0) == ([5.0, 1.0, 2.0, 3.0], False)  # per bucket
    assert comparable_values(buckets, 10, None) == ([5.0, 1.0, 2.0, 3.0], False)


def test_board_takes_since_from_the_stored_state_of_a_series_it_has_not_shown() -> None:
    from alertd.alerts import AlertState

    board = Board()
    found = [finding("a", "c1", "firing"), finding("a", "c2", "pending"),
             finding("b", "c3", "inactive")]
    assert board.unseen_rules(found) == {"a"}  # after a restart: every active series
    stored = {SeriesKey("a", "c1"): AlertState("firing", firing_since=NOW - 7200,
                                               pending_since=NOW - 9000),
              SeriesKey("a", "c2"): AlertState("pending", pending_since=NOW - 60)}
    board.record(["a", "b"], found, NOW, states=stored)
    assert board.get(SeriesKey("a", "c1").fingerprint).since == NOW - 7200  # type: ignore[union-attr]
    assert board.get(SeriesKey("a", "c2").fingerprint).since == NOW - 60  # type: ignore[union-attr]
    assert board.unseen_rules(found) == set()  # shown now: no state needed next poll
    promoted = [finding("a", "c1", "firing"), finding("a", "c2", "firing")]
    assert board.unseen_rules(promoted) == {"a"}  # c2 changed state

"""Pages: a query expected to pass one answer is cut in advance; has_more cuts by its total."""

from __future__ import annotations

import itertools
from typing import Any

import httpx
import pytest

from alertd.calendar import floor, next_start, periods
from alertd.clock import FakeClock
from alertd.model import DataNeed, MeterSpec, UsageQuery
from alertd.source.analytics import MeterUsageSource, more_ranges
from alertd.source.pages import (
    PageLearner,
    Paging,
    bucket_starts,
    expected_rows,
    page_ranges,
    range_bucket_starts,
    split_evenly,
)
from alertd.usage_columns import UsageColumns
from bench.lower_bound import lower_bound

from .fakes import make_http, reply

JAN_1 = 1735689600
DAY = 86400
NY = "America/New_York"
TOTAL = MeterSpec("mtr_calls")
BY_ENDPOINT = MeterSpec("mtr_calls", group_by=("endpoint",))
BY_MODEL = MeterSpec("mtr_tokens", group_by=("model",))
STORAGE = MeterSpec("mtr_storage")


def query(*specs: MeterSpec, days: int = 30, window: Any = "day", timezone: str = "UTC",
          customer: str = "cus_1") -> UsageQuery:
    return UsageQuery(customer, JAN_1, JAN_1 + days * DAY, window, timezone, specs)


def days_at(*offsets: int) -> list[int]:
    return [JAN_1 + d * DAY for d in offsets]


@pytest.mark.parametrize(("days", "pieces", "cuts"), [
    (4, 2, days_at(2)),
    (5, 2, days_at(2)),
    (30, 3, days_at(10, 20)),
    (3, 5, days_at(1, 2)),  # never more pieces than buckets
    (4, 1, []),
])
def test_split_evenly_cuts_at_bucket_starts(days: int, pieces: int, cuts: list[int]) -> None:
    q = query(TOTAL, days=days)
    edges = [q.starts_at, *cuts, q.ends_at]
    assert split_evenly(q, pieces) == tuple(itertools.pairwise(edges))


def test_split_evenly_cuts_at_local_midnights_across_dst() -> None:
    start = floor(1741132800, "day", NY)  # 2025-03-05, DST starts 03-09
    ends = start
    for _ in range(8):
        ends = next_start(ends, "day", NY)
    q = UsageQuery("cus_1", start, ends, "day", NY, (TOTAL,))
    ranges = split_evenly(q, 2)
    assert len(ranges) == 2 and ranges[0][1] == bucket_starts(q)[4]
    assert floor(ranges[0][1], "day", NY) == ranges[0][1]


@pytest.mark.parametrize(("paging", "specs", "pieces"), [
    (Paging(), (TOTAL,), 1),  # no page known yet
    (Paging(10), (TOTAL,), 3),  # 30 rows, one a day: pages of 10 days
    (Paging(30), (TOTAL,), 1),  # fits exactly
    (Paging(10), (BY_ENDPOINT,), 1),  # rows per bucket unknown: not guessed
    (Paging(40, {("day", BY_ENDPOINT): 3.0}), (BY_ENDPOINT,), 3),  # 90 rows, 13 days a page
    (Paging(35, {("day", BY_ENDPOINT): 3.0}), (BY_ENDPOINT, STORAGE), 4),  # 120 rows: 8 days
    (Paging(40, {("hour", BY_ENDPOINT): 3.0}), (BY_ENDPOINT,), 1),  # learned for hours only
])
def test_page_ranges(paging: Paging, specs: tuple[MeterSpec, ...], pieces: int) -> None:
    q = query(*specs)
    ranges = page_ranges(q, paging)
    assert len(ranges) == pieces
    assert ranges[0][0] == q.starts_at and ranges[-1][1] == q.ends_at
    rows = expected_rows(q, paging)
    if paging.page_rows is not None and rows is not None:
        per_day = rows / 30
        assert all((b - a) / DAY * per_day <= paging.page_rows for a, b in ranges)


def test_has_more_asks_for_as_many_pieces_as_its_total_needs() -> None:
    q = query(TOTAL, days=30)
    assert len(more_ranges(q, held=10, total=None)) == 2  # not said: halves
    assert len(more_ranges(q, held=10, total=25)) == 3  # 25 rows, pages of 9
    assert len(more_ranges(q, held=10, total=11)) == 2
    assert more_ranges(query(TOTAL, window=None), held=10, total=25) == (
        (JAN_1, JAN_1 + 30 * DAY),)


def columns(rows: list[tuple[str, str]], day: int = JAN_1) -> UsageColumns:
    """One row per (meter, endpoint) on ``day``."""
    return UsageColumns.from_lists([day] * len(rows), [day + DAY] * len(rows),
                                   [1.0] * len(rows), [m for m, _ in rows],
                                   [(("endpoint", e),) for _, e in rows])


def test_the_learner_learns_the_page_and_rows_per_bucket_of_each_spec() -> None:
    learner = PageLearner(weight=0.5)
    assert learner.paging() == Paging()
    learner.answered_more(5000)
    learner.answered_more(4000)
    assert learner.paging().page_rows == 5000
    two_days = query(BY_ENDPOINT, BY_MODEL, days=2)
    learner.answered(two_days, columns([("mtr_calls", "/a"), ("mtr_calls", "/b")] * 3))
    known = learner.paging().rows_per_bucket
    assert known[("day", BY_ENDPOINT)] == 3.0 and known[("day", BY_MODEL)] == 0.0
    learner.answered(two_days, columns([("mtr_calls", "/a")] * 2))
    assert learner.paging().rows_per_bucket[("day", BY_ENDPOINT)] == 2.0  # moving average
    assert learner.counts.more == 2


class Groups:
    """A Stripe with pages of ``page`` rows: ``endpoints`` rows a day, and ``total``."""

    def __init__(self, page: int, endpoints: int) -> None:
        self.page = page
        self.endpoints = endpoints
        self.ranges: list[tuple[int, int]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params.multi_items())
        starts, ends = int(params["starts_at"]), int(params["ends_at"])
        self.ranges.append((starts, ends))
        rows = [{"starts_at": day, "ends_at": day + DAY, "value": 1, "meter": "mtr_calls",
                 "dimensions": {"endpoint": f"/e{e}"}}
                for day in range(starts, ends, DAY) for e in range(self.endpoints)]
        return reply({"refreshed_at": JAN_1,
                      "rows": {"has_more": len(rows) > self.page, "total": len(rows),
                               "data": rows[:self.page]}},
                     request_id=f"req_{len(self.ranges)}")


async def test_the_second_customer_is_cut_in_advance_and_never_answered_has_more() -> None:
    stripe = Groups(page=40, endpoints=3)  # 30 days × 3 = 90 rows: 3 pages
    async with make_http(stripe, FakeClock()) as http:
        source = MeterUsageSource(http, http.settings)
        first = await source.fetch(query(BY_ENDPOINT, customer="cus_1"))
        assert first.requests == 1 + 3  # the wasted has_more, then 3 pieces side by side
        assert source.pages.counts.more == 1
        stripe.ranges.clear()
        second = await source.fetch(query(BY_ENDPOINT, customer="cus_2"))
    assert second.requests == 3 == len(stripe.ranges)
    assert source.pages.counts.more == 1  # no second wasted answer
    assert source.pages.counts.presplit == 2
    assert len(second.rows) == len(first.rows) == 90
    assert sorted(set(second.rows.starts.tolist())) == [JAN_1 + d * DAY for d in range(30)]


def test_the_bound_counts_the_pages_each_group_needs_at_least() -> None:
    def need(spec: MeterSpec, days: int) -> DataNeed:
        return DataNeed("cus_1", spec, "day", "UTC", JAN_1, JAN_1 + days * DAY)

    needs = [need(BY_ENDPOINT, 30), need(TOTAL, 30), need(BY_MODEL, 30)]
    assert lower_bound(needs) == 1  # two meters, one covering spec each: one request
    paging = Paging(40, {("day", BY_ENDPOINT): 3.0, ("day", BY_MODEL): 1.0})
    # calls: the most rows one need has, 90 (by endpoint); tokens 30: 120 rows, 3 pages.
    assert lower_bound(needs, paging=paging) == 3
    assert lower_bound(needs, paging=Paging(200, paging.rows_per_bucket)) == 1


@pytest.mark.parametrize(("starts_at", "ends_at", "window"), [
    (JAN_1, JAN_1 + 35 * DAY, "hour"),
    (JAN_1 + 1800, JAN_1 + 7200 + 60, "hour"),  # clipped first bucket, a sliver of the last
    (JAN_1 + 3600, JAN_1 + 3 * DAY, "day"),
    (JAN_1, JAN_1 + DAY, "day"),
])
def test_utc_buckets_are_counted_as_the_calendar_counts_them(starts_at: int, ends_at: int,
                                                            window: Any) -> None:
    by_calendar = tuple(max(p.starts_at, starts_at)
                        for p in periods(starts_at, ends_at, window, "UTC"))
    assert range_bucket_starts(starts_at, ends_at, window, "UTC") == by_calendar

"""The GA fallback source: ``GET /v1/billing/meters/{meter}/event_summaries``.

Where it sits: with ``stripe.source: event_summaries`` the engine hands each
:class:`~alertd.model.UsageQuery` to :meth:`EventSummariesSource.fetch` instead of the
analytics source. That endpoint reads one meter at a time, sums hour or UTC-day buckets (or
one total when no window is asked for), knows no time zone, filter or group-by, and pages with
``limit``/``starting_after``. It draws on the account's general rate budget and reports no
freshness, so ``refreshed_at`` is ``None``.

Rule validation (:mod:`alertd.rules.limits`) already refuses rules this source cannot serve;
:func:`check_summaries_query` refuses such a query again here, with the same advice, in case
one is built some other way. Ranges are widened to whole UTC hours or days, as Stripe demands;
the extra rows lie outside what the rule asked for and are cut off by the planner's
``extract_rows``.

Values are read as strictly as the analytics source's (finite, within ±10^18, see
:mod:`alertd.source.body`). A summary ``id`` seen before in the same meter's pages is the same
summary sent twice: it is dropped, and the repeated ids are logged with the ``Request-Id``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, NamedTuple
from urllib.parse import quote

from alertd.calendar import ceil_minute, floor, floor_minute, next_start
from alertd.config.settings import StripeSettings
from alertd.errors import InvalidRequestError, MalformedResponseError
from alertd.model import Granularity, UsageQuery, UsageResult, UsageRow
from alertd.source.body import BodyReader
from alertd.source.http import StripeHTTP

log = logging.getLogger("alertd.source")

PATH = "/v1/billing/meters/{meter}/event_summaries"
ENDPOINT = "event_summaries"
PAGE_SIZE = 100
_ADVICE = "set stripe.source: meter_usage (the Meter Usage Analytics API)"


def check_summaries_query(query: UsageQuery) -> None:
    """Refuse, with :class:`InvalidRequestError`, a query event summaries cannot serve."""
    if query.window not in (None, "hour", "day"):
        raise InvalidRequestError(
            f"event summaries come in hour or day buckets, not {query.window}; use window: "
            f"day or hour, or {_ADVICE}",
            param="value_grouping_window",
        )
    if query.timezone != "UTC":
        raise InvalidRequestError(
            f"event summaries only have UTC boundaries, not {query.timezone}; use timezone: "
            f"UTC, or {_ADVICE}",
            param="timezone",
        )
    if not query.meters:
        raise InvalidRequestError(
            f"event summaries are read one meter at a time, so a query needs meters; {_ADVICE} "
            "to sum all meters", param="meter",
        )
    for spec in query.meters:
        if spec.meter is None:
            raise InvalidRequestError(
                f"event summaries are read one meter at a time; name the meter, or {_ADVICE} "
                "to sum all meters", param="meter",
            )
        if spec.dimension_filters or spec.tenant_filters or spec.group_by:
            raise InvalidRequestError(
                f"event summaries cannot filter or group by dimension or tenant (meter "
                f"{spec.meter}); remove filters, tenant_filters and group_by, or {_ADVICE}",
                param="dimension_filters",
            )


def aligned_range(starts_at: int, ends_at: int, window: Granularity | None) -> tuple[int, int]:
    """``[starts_at, ends_at)`` widened to whole UTC hours or days (minutes for no window)."""
    if window is None:
        return floor_minute(starts_at), ceil_minute(ends_at)
    start = floor(starts_at, window, "UTC")
    end = ends_at if floor(ends_at, window, "UTC") == ends_at else next_start(
        ends_at, window, "UTC"
    )
    return start, end


def encode_summaries_page(
    customer: str, starts_at: int, ends_at: int, window: Granularity | None,
    starting_after: str | None,
) -> list[tuple[str, str]]:
    """The query string of one page, in the order Stripe's SDK sends it."""
    params = [
        ("customer", customer),
        ("start_time", str(starts_at)),
        ("end_time", str(ends_at)),
    ]
    if window is not None:
        params.append(("value_grouping_window", window))
    params.append(("limit", str(PAGE_SIZE)))
    if starting_after is not None:
        params.append(("starting_after", starting_after))
    return params


class SummaryPage(NamedTuple):
    """One page of summaries: its rows, ``has_more``, the last id (the next cursor), and each
    row's summary id (``ids[i]`` is ``rows[i]``'s)."""

    rows: list[UsageRow]
    has_more: bool
    last_id: str | None
    ids: tuple[str, ...] = ()


def parse_summaries_page(body: Any, request_id: str | None, meter: str) -> SummaryPage:
    """One page, read; wrong types and unusable numbers raise MalformedResponseError."""
    reader = BodyReader("event summaries response", request_id)
    data, has_more = reader.page(body)
    rows: list[UsageRow] = []
    ids: list[str] = []
    last_id: str | None = None
    for index, raw in enumerate(data):
        where = f"summary {index}"
        item = reader.mapping(raw, where)
        last_id = reader.text(item.get("id"), f"{where} id")
        ids.append(last_id)
        rows.append(UsageRow(
            starts_at=reader.instant(item.get("start_time"), f"{where} start_time"),
            ends_at=reader.instant(item.get("end_time"), f"{where} end_time"),
            value=reader.number(item.get("aggregated_value"), f"{where} aggregated_value"),
            meter=meter,
        ))
    return SummaryPage(rows, has_more, last_id, tuple(ids))


class EventSummariesSource:
    """Reads usage from meter event summaries (``stripe.source: event_summaries``)."""

    def __init__(self, http: StripeHTTP, settings: StripeSettings) -> None:
        self.http = http
        self.settings = settings

    async def fetch(self, query: UsageQuery) -> UsageResult:
        """Every summary of every meter of ``query``, all pages, over the aligned range."""
        check_summaries_query(query)
        starts_at, ends_at = aligned_range(query.starts_at, query.ends_at, query.window)
        aligned = replace(query, starts_at=starts_at, ends_at=ends_at)
        pages: list[_Page] = []
        for meter in (spec.meter for spec in query.meters if spec.meter is not None):
            pages += await self._meter_pages(aligned, meter)
        return UsageResult(
            query=query,
            rows=tuple(row for page in pages for row in page.rows),
            refreshed_at=None,
            requests=sum(page.attempts for page in pages),
            request_ids=tuple(page.request_id for page in pages if page.request_id),
        )

    async def _meter_pages(self, query: UsageQuery, meter: str) -> list[_Page]:
        """Every page of one meter, following ``starting_after`` until ``has_more`` is false."""
        path = PATH.format(meter=quote(meter, safe=""))
        pages: list[_Page] = []
        seen: set[str] = set()
        starting_after: str | None = None
        while True:
            params = encode_summaries_page(
                query.customer, query.starts_at, query.ends_at, query.window, starting_after
            )
            response = await self.http.request(
                path, params, budget="general", endpoint=ENDPOINT,
                parse=partial(parse_summaries_page, meter=meter),
            )
            page = response.body
            rows = _first_copies(page, seen, query.customer, response.request_id)
            pages.append(_Page(rows, response.attempts, response.request_id))
            if not page.has_more:
                return pages
            starting_after = _next_cursor(page.last_id, starting_after, response.request_id)


def _first_copies(
    page: SummaryPage, seen: set[str], customer: str, request_id: str | None
) -> tuple[UsageRow, ...]:
    """The page's rows whose summary id is new to ``seen`` (which learns them); repeats are
    logged, never summed."""
    kept: list[UsageRow] = []
    repeated: list[str] = []
    for summary_id, row in zip(page.ids, page.rows, strict=True):
        if summary_id in seen:
            repeated.append(summary_id)
            continue
        seen.add(summary_id)
        kept.append(row)
    if repeated:
        log.warning("repeated event summaries dropped customer=%s count=%d ids=%s request_id=%s",
                    customer, len(repeated), ",".join(sorted(set(repeated))[:5]), request_id)
    return tuple(kept)


@dataclass(frozen=True, slots=True)
class _Page:
    rows: tuple[UsageRow, ...]
    attempts: int
    request_id: str | None


def _next_cursor(last_id: str | None, previous: str | None, request_id: str | None) -> str:
    """The cursor of the next page; a page that cannot advance is malformed (no endless loop)."""
    if last_id is None or last_id == previous:
        raise MalformedResponseError(
            "unexpected event summaries response: has_more is true but the page gives no new "
            "cursor; it was not used",
            request_id=request_id,
        )
    return last_id

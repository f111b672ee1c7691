"""An answer saying ``has_more: true`` is asked again in halves, so its rows are not read."""

from __future__ import annotations

from typing import Any

import httpx

from alertd.clock import FakeClock
from alertd.model import MeterSpec, UsageQuery
from alertd.source.analytics import MeterUsageSource, parse_unless_more, parse_usage_body

from .fakes import make_http, reply

JAN_1 = 1735689600  # 2025-01-01T00:00:00Z
DAY = 86400
GOOD = {"starts_at": JAN_1, "ends_at": JAN_1 + DAY, "value": 1.0, "meter": "mtr_1"}
#: A row no reader accepts: reading it would make the answer malformed (and retried).
BROKEN: Any = {"starts_at": "soon", "value": "lots"}


def current(rows: list[Any], has_more: bool) -> dict[str, Any]:
    return {"refreshed_at": JAN_1, "rows": {"has_more": has_more, "data": rows}}


def test_rows_of_an_answer_with_more_are_not_read_in_either_shape() -> None:
    assert parse_unless_more(current([BROKEN], True), None) == ([], JAN_1, True, ())
    guide = {"data": [BROKEN], "has_more": True, "data_refreshed_at": JAN_1}
    assert parse_unless_more(guide, None) == ([], JAN_1, True, ())
    # Without has_more the rows are read as ever.
    complete = current([GOOD], False)
    assert parse_unless_more(complete, None) == parse_usage_body(complete, None)
    assert len(parse_unless_more(complete, None).rows) == 1


async def test_a_split_answer_costs_no_retry_for_rows_it_did_not_need() -> None:
    ranges: list[tuple[str, str]] = []

    def app(request: httpx.Request) -> httpx.Response:
        params = request.url.params
        ranges.append((params["starts_at"], params["ends_at"]))
        if len(ranges) == 1:  # the whole range: more than one answer holds
            return reply(current([BROKEN] * 3, True))
        return reply(current([{**GOOD, "starts_at": int(params["starts_at"]),
                               "ends_at": int(params["ends_at"])}], False))

    query = UsageQuery("cus_1", JAN_1, JAN_1 + 2 * DAY, "day", "UTC", (MeterSpec("mtr_1"),))
    async with make_http(app, FakeClock()) as http:
        result = await MeterUsageSource(http, http.settings).fetch(query)
    assert result.requests == 3 and len(ranges) == 3  # no attempt was retried
    assert [row.starts_at for row in result.rows] == [JAN_1, JAN_1 + DAY]

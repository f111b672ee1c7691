"""Large answers are decoded in StripeHTTP's worker thread, with the same results and errors
as small ones decoded on the event loop."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from alertd.clock import FakeClock
from alertd.errors import MalformedResponseError
from alertd.source.http import OFFLOAD_BYTES, StripeHTTP

from .fakes import Observed, Recorder, make_http, reply

PATH = "/v1/billing/analytics/meter_usage"


def rows_body(count: int) -> dict[str, Any]:
    return {"rows": {"data": [{"id": f"r{i}", "value": float(i)} for i in range(count)]}}


def body_of_at_least(size: int) -> dict[str, Any]:
    count = size // 20 + 1
    assert len(str(rows_body(count))) > size
    return rows_body(count)


class Where:
    """A BodyParser that remembers which thread read each body and what it read."""

    def __init__(self) -> None:
        self.threads: list[str] = []

    def __call__(self, body: dict[str, Any], request_id: str | None) -> int:
        self.threads.append(threading.current_thread().name)
        return len(body["rows"]["data"])


async def fetched(http: StripeHTTP, where: Where) -> int:
    response = await http.request(PATH, [], budget="analytics", endpoint="meter_usage",
                                  parse=where)
    return response.body


async def test_a_large_body_is_read_in_the_worker_thread_and_a_small_one_in_place() -> None:
    large, small = body_of_at_least(OFFLOAD_BYTES), rows_body(3)
    answers = [reply(large), reply(small)]
    app = Recorder(lambda request: answers.pop(0))
    where = Where()
    async with make_http(app, FakeClock()) as http:
        assert await fetched(http, where) == len(large["rows"]["data"])
        assert await fetched(http, where) == 3
    assert where.threads[0].startswith("alertd-decode")
    assert where.threads[1] == threading.current_thread().name


async def test_a_large_body_that_is_not_json_is_malformed_and_retried() -> None:
    text = '{"rows": {"data": [' + "1, " * OFFLOAD_BYTES  # truncated JSON, over the size
    answers = [reply(text=text, request_id="req_bad"), reply(rows_body(2))]
    app = Recorder(lambda request: answers.pop(0) if len(answers) > 1 else answers[0])
    observed = Observed()
    where = Where()
    async with make_http(app, FakeClock(), observer=observed) as http:
        assert await fetched(http, where) == 2
    assert observed.responses == [("meter_usage", "malformed"), ("meter_usage", "200")]


async def test_a_large_body_its_parser_refuses_counts_as_200_and_is_retried_then_raised(
) -> None:
    large = body_of_at_least(OFFLOAD_BYTES)
    app = Recorder(lambda request: reply(large, request_id="req_odd"))
    observed = Observed()

    def refuse(body: dict[str, Any], request_id: str | None) -> int:
        raise MalformedResponseError("no such shape", request_id=request_id)

    async with make_http(app, FakeClock(), observer=observed, max_retries=1) as http:
        with pytest.raises(MalformedResponseError) as caught:
            await http.request(PATH, [], budget="analytics", endpoint="meter_usage",
                               parse=refuse)
    assert caught.value.request_id == "req_odd"
    assert len(app.requests) == 2
    assert observed.responses == [("meter_usage", "200")] * 2

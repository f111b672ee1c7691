"""Large answers are decoded in StripeHTTP's decoding process (or, for a parser that cannot
be sent there, its worker thread), with the same results and errors as small ones decoded on
the event loop."""

from __future__ import annotations

import os
import threading
from typing import Any

import pytest

from alertd.clock import FakeClock
from alertd.errors import MalformedResponseError
from alertd.source.decoder import Decoder, picklable
from alertd.source.http import OFFLOAD_BYTES, StripeHTTP

from .fakes import Observed, Recorder, make_http, reply

PATH = "/v1/billing/analytics/meter_usage"

#: Where a body was read: its rows, the process id and the thread's name.
Read = tuple[int, int, str]


def rows_body(count: int) -> dict[str, Any]:
    return {"rows": {"data": [{"id": f"r{i}", "value": float(i)} for i in range(count)]}}


def body_of_at_least(size: int) -> dict[str, Any]:
    count = size // 20 + 1
    assert len(str(rows_body(count))) > size
    return rows_body(count)


def where_read(body: dict[str, Any], request_id: str | None) -> Read:
    """A BodyParser that says where it ran (module-level: it pickles)."""
    return len(body["rows"]["data"]), os.getpid(), threading.current_thread().name


def refuse(body: dict[str, Any], request_id: str | None) -> int:
    """A BodyParser that refuses every body (module-level: it pickles)."""
    raise MalformedResponseError("no such shape", request_id=request_id)


async def fetched(http: StripeHTTP, parse: Any = where_read) -> Any:
    response = await http.request(PATH, [], budget="analytics", endpoint="meter_usage",
                                  parse=parse)
    return response.body


async def test_a_large_body_is_read_in_the_decoding_process_and_a_small_one_in_place() -> None:
    large, small = body_of_at_least(OFFLOAD_BYTES), rows_body(3)
    answers = [reply(large), reply(small), reply(large)]
    app = Recorder(lambda request: answers.pop(0))
    async with make_http(app, FakeClock()) as http:
        rows, pid, _ = await fetched(http)
        assert rows == len(large["rows"]["data"])
        assert pid != os.getpid()
        assert await fetched(http) == (3, os.getpid(), threading.current_thread().name)
        assert (await fetched(http))[1] == pid  # one process, kept
        assert http.decoder_pid == pid


async def test_start_decoder_starts_the_process_before_any_answer() -> None:
    app = Recorder(lambda request: reply(rows_body(1)))
    async with make_http(app, FakeClock()) as http:
        assert http.decoder_pid is None
        await http.start_decoder()
        assert http.decoder_pid is not None and http.decoder_pid != os.getpid()


async def test_the_setting_chooses_where_large_answers_are_decoded() -> None:
    """``stripe.decode_answers_in``: a worker thread by default (no child's memory), a child
    process when asked."""
    large = body_of_at_least(OFFLOAD_BYTES)
    app = Recorder(lambda request: reply(large))
    async with make_http(app, FakeClock(), decode_in_process=None) as http:
        await http.start_decoder()
        assert http.decoder_pid is None
        assert (await fetched(http))[1] == os.getpid()
    async with make_http(app, FakeClock(), decode_in_process=None,
                         decode_answers_in="process") as http:
        await http.start_decoder()
        assert http.decoder_pid not in (None, os.getpid())
        assert (await fetched(http))[1] == http.decoder_pid


async def test_without_a_process_a_large_body_is_read_in_the_worker_thread() -> None:
    large = body_of_at_least(OFFLOAD_BYTES)
    app = Recorder(lambda request: reply(large))
    async with make_http(app, FakeClock(), decode_in_process=False) as http:
        await http.start_decoder()
        assert http.decoder_pid is None
        rows, pid, thread = await fetched(http)
    assert (rows, pid) == (len(large["rows"]["data"]), os.getpid())
    assert thread.startswith("alertd-decode")


async def test_a_parser_that_does_not_pickle_reads_a_large_body_in_the_worker_thread() -> None:
    large = body_of_at_least(OFFLOAD_BYTES)
    app = Recorder(lambda request: reply(large))
    seen: list[str] = []

    def closure(body: dict[str, Any], request_id: str | None) -> int:
        seen.append(threading.current_thread().name)
        return len(body["rows"]["data"])

    assert not picklable(closure)
    async with make_http(app, FakeClock()) as http:
        assert await fetched(http, closure) == len(large["rows"]["data"])
    assert seen and seen[0].startswith("alertd-decode")


async def test_a_large_body_that_is_not_json_is_malformed_and_retried() -> None:
    text = '{"rows": {"data": [' + "1, " * OFFLOAD_BYTES  # truncated JSON, over the size
    answers = [reply(text=text, request_id="req_bad"), reply(rows_body(2))]
    app = Recorder(lambda request: answers.pop(0) if len(answers) > 1 else answers[0])
    observed = Observed()
    async with make_http(app, FakeClock(), observer=observed) as http:
        assert (await fetched(http))[0] == 2
    assert observed.responses == [("meter_usage", "malformed"), ("meter_usage", "200")]


@pytest.mark.parametrize("in_process", [True, False])
async def test_a_large_body_its_parser_refuses_counts_as_200_and_is_retried_then_raised(
        in_process: bool) -> None:
    large = body_of_at_least(OFFLOAD_BYTES)
    app = Recorder(lambda request: reply(large, request_id="req_odd"))
    observed = Observed()
    async with make_http(app, FakeClock(), observer=observed, max_retries=1,
                         decode_in_process=in_process) as http:
        with pytest.raises(MalformedResponseError) as caught:
            await fetched(http, refuse)
    assert caught.value.request_id == "req_odd"
    assert caught.value.message == "no such shape"
    assert len(app.requests) == 2
    assert observed.responses == [("meter_usage", "200")] * 2


async def test_a_decoder_closed_twice_or_never_started_closes_cleanly() -> None:
    decoder = Decoder()
    await decoder.aclose()
    await decoder.start()
    assert decoder.pid is not None
    await decoder.aclose()
    await decoder.aclose()
    assert decoder.pid is None


@pytest.mark.parametrize("in_process", [True, False])
async def test_a_large_html_page_is_named_as_one_with_its_request_id_wherever_decoded(
        in_process: bool) -> None:
    page = "<html><body>" + "<p>proxy error</p>" * (OFFLOAD_BYTES // 10) + "</body></html>"
    app = Recorder(lambda request: reply(text=page, request_id="req_html",
                                         headers={"Content-Type": "text/html"}))
    async with make_http(app, FakeClock(), max_retries=0,
                         decode_in_process=in_process) as http:
        with pytest.raises(MalformedResponseError) as caught:
            await fetched(http)
    assert "an HTML page" in caught.value.message
    assert caught.value.request_id == "req_html"


PARENT = "ALERTD_TEST_DECODER_PARENT"


def exit_unless_in_parent(body: dict[str, Any], request_id: str | None) -> Read:
    """A BodyParser that ends any process but the test's (the decoding process dies)."""
    if os.getpid() != int(os.environ[PARENT]):
        os._exit(3)
    return where_read(body, request_id)


async def test_when_the_decoding_process_dies_answers_are_decoded_in_the_thread_from_then_on(
        caplog: pytest.LogCaptureFixture) -> None:
    large = body_of_at_least(OFFLOAD_BYTES)
    app = Recorder(lambda request: reply(large))
    os.environ[PARENT] = str(os.getpid())
    try:
        async with make_http(app, FakeClock()) as http:
            first = await fetched(http, exit_unless_in_parent)
            second = await fetched(http, where_read)
            assert http.decoder_pid is None
    finally:
        del os.environ[PARENT]
    assert first[:2] == (len(large["rows"]["data"]), os.getpid())
    assert first[2].startswith("alertd-decode")
    assert second[1] == os.getpid()  # no new process
    assert len(app.requests) == 2  # the answer was decoded, not asked again
    assert sum("decoding process failed" in r.getMessage() for r in caplog.records) == 1


async def test_clients_share_one_decoding_process_which_stops_with_the_last() -> None:
    large = body_of_at_least(OFFLOAD_BYTES)
    app = Recorder(lambda request: reply(large))
    async with make_http(app, FakeClock()) as first:
        async with make_http(app, FakeClock()) as second:
            pid = (await fetched(first))[1]
            assert (await fetched(second))[1] == pid
        assert (await fetched(first))[1] == pid  # the other client's closing kept it
    async with make_http(app, FakeClock()) as later:
        await later.start_decoder()
        assert later.decoder_pid not in (None, pid)  # the last one's closing stopped it

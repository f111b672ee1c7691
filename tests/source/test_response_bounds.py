"""Response bodies are bounded: by size (``stripe.max_response_bytes``) and by time
(``stripe.timeout`` covers the body). A 100 MB answer is never read whole, memory stays near
the cap, and the event loop keeps running while it streams in."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
import tracemalloc
from collections.abc import AsyncIterator

import httpx
import pytest

from alertd.clock import FakeClock
from alertd.config.settings import StripeSettings
from alertd.errors import MalformedResponseError, ResponseTooLargeError, StripeTimeoutError

from .fakes import Observed, make_http

PATH = "/v1/billing/analytics/meter_usage"
MiB = 1024 * 1024
CHUNK = 64 * 1024  # bytes of JSON whitespace per chunk: the body would parse if read whole


class Firehose:
    """An app streaming ``total`` bytes of a JSON object, 64 KiB at a time, yielding to the
    loop between chunks as a socket would; ``served`` counts what the client pulled of the
    latest answer."""

    def __init__(self, total: int, *, declare_length: bool = False, drip: float = 0.0) -> None:
        self.total = total
        self.declare_length = declare_length
        self.drip = drip
        self.served = 0
        self.calls = 0

    async def body(self) -> AsyncIterator[bytes]:
        self.served = 1  # of this answer
        yield b"{"
        while self.served < self.total - 1:
            await asyncio.sleep(self.drip)
            self.served += CHUNK
            yield b" " * CHUNK  # a new object each time, as from a socket
        yield b"}"

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        headers = {"Content-Type": "application/json", "Request-Id": f"req_big{self.calls}"}
        if self.declare_length:
            headers["Content-Length"] = str(self.total)
        return httpx.Response(200, headers=headers, content=self.body())


async def ticking(ticks: list[float], stop: asyncio.Event) -> None:
    """Another task on the loop: it ticks whenever the loop lets it."""
    while not stop.is_set():
        ticks.append(time.perf_counter())
        await asyncio.sleep(0)


def test_the_default_cap_is_tens_of_megabytes() -> None:
    assert 16 * MiB <= StripeSettings().max_response_bytes <= 64 * MiB


async def test_a_100_mb_answer_is_refused_with_bounded_memory_and_a_live_loop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="alertd.source")
    app = Firehose(100 * MiB)
    observed = Observed()
    ticks: list[float] = []
    stop = asyncio.Event()
    ticker = asyncio.create_task(ticking(ticks, stop))
    cap = StripeSettings().max_response_bytes
    tracemalloc.start()
    try:
        async with make_http(app, FakeClock(), observer=observed, max_retries=0) as http:
            with pytest.raises(ResponseTooLargeError) as raised:
                await http.get(PATH, [], budget="analytics", endpoint="meter_usage")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        stop.set()
        await ticker
    error = raised.value
    assert isinstance(error, MalformedResponseError) and error.retryable
    assert error.request_id == "req_big1" and "stripe.max_response_bytes" in str(error)
    assert app.served <= cap + 2 * CHUNK, "the client kept reading past the cap"
    assert peak < cap + 16 * MiB, f"peak {peak / MiB:.0f} MiB for a cap of {cap / MiB:.0f} MiB"
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    # the other task ran between the chunks all along (512 chunks make up the cap)
    # 1.25 s, five times the bound this had: what a shared 2-core machine at load 10 adds to
    # a loop that does yield between chunks (tracemalloc slows each chunk down too).
    assert len(ticks) > 256 and max(gaps) < 1.25, f"the loop stalled for {max(gaps):.2f}s"
    assert ("meter_usage", "too_large") in observed.responses
    assert "request_id=req_big1" in caplog.text and "too large" in caplog.text


async def test_a_declared_length_over_the_cap_is_refused_before_reading() -> None:
    app = Firehose(100 * MiB, declare_length=True)
    async with make_http(app, FakeClock(), max_retries=0, max_response_bytes=MiB) as http:
        with pytest.raises(ResponseTooLargeError, match="104857600 bytes declared"):
            await http.get(PATH, [], budget="analytics", endpoint="meter_usage")
    assert app.served == 0


async def test_too_large_is_a_bad_answer_retried_then_given_up() -> None:
    app = Firehose(2 * MiB)
    clock = FakeClock()
    async with make_http(app, clock, max_retries=2, max_response_bytes=MiB) as http:
        with pytest.raises(ResponseTooLargeError) as raised:
            await http.get(PATH, [], budget="analytics", endpoint="meter_usage")
        assert http.requests == 3
    assert raised.value.request_id == "req_big3"
    assert len(clock.sleeps) == 2


async def test_an_answer_under_the_cap_is_read() -> None:
    rows = [{"n": i, "pad": "x" * 100} for i in range(5000)]  # ~600 kB
    body = json.dumps({"rows": rows}).encode()

    def app(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Request-Id": "req_ok"}, content=body)

    async with make_http(app, FakeClock(), max_response_bytes=MiB) as http:
        got, request_id = await http.get(PATH, [], budget="analytics", endpoint="meter_usage")
    assert request_id == "req_ok" and len(got["rows"]) == 5000


async def test_a_body_that_drips_in_is_cut_off_by_the_timeout() -> None:
    app = Firehose(100 * MiB, drip=0.05)  # 64 KiB every 50 ms: ~25 minutes for it all
    began = time.perf_counter()
    async with make_http(app, FakeClock(), max_retries=0, timeout=0.5) as http:
        with pytest.raises(StripeTimeoutError, match=r"in full within 0\.5s"):
            await http.get(PATH, [], budget="analytics", endpoint="meter_usage")
    assert time.perf_counter() - began < 60.0  # the whole body would take ~25 minutes
    assert 0 < app.served < 2 * MiB

"""The webhook HTTP/1.1 client: answer parsing (tables), then real connections to scripted
loopback servers (raw asyncio sockets, so the tests choose every byte of the answer)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest

from alertd.notify.http1 import (
    Answer,
    AnswerError,
    ConnectionPool,
    Target,
    parse_answer,
    request_head,
)

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(("data", "eof", "limit", "expected"), [
    (OK, False, 100, (200, "OK", b"ok", True)),
    (b"HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n", False, 100, (201, "Created", b"", True)),
    (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", False, 100,
     (200, "OK", b"ok", False)),
    (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", False, 100, (200, "OK", b"ok", False)),
    (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", False, 100,
     (200, "OK", b"ok", True)),
    (b"HTTP/1.1 204 No Content\r\n\r\n", False, 100, (204, "No Content", b"", True)),
    (b"HTTP/1.1 100 Continue\r\n\r\n" + OK, False, 100, (200, "OK", b"ok", True)),
    # chunked, with an extension and a trailer
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"3;x=1\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", False, 100, (200, "OK", b"abcde", True)),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n", False, 100, (200, "OK", b"abc", True)),
    # delimited by the end of the connection
    (b"HTTP/1.1 500 Oops\r\n\r\nbroken", True, 100, (500, "Oops", b"broken", False)),
    # over the limit: cut, and the connection is not reused
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123", False, 4, (200, "OK", b"0123", False)),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n0\r\n\r\n",
     False, 4, (200, "OK", b"0123", False)),
    (b"HTTP/1.1 200 OK\r\n\r\n0123456", False, 4, (200, "OK", b"0123", False)),
])
def test_answers_parse(data: bytes, eof: bool, limit: int,
                       expected: tuple[int, str, bytes, bool]) -> None:
    parsed = parse_answer(data, eof, limit)
    assert not isinstance(parsed, int)
    assert (parsed.answer.status, parsed.answer.reason, parsed.answer.body,
            parsed.keep_alive) == expected


@pytest.mark.parametrize("data", [
    b"HTTP/1.1 200 OK\r\nContent-Len",
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
    b"HTTP/1.1 200 OK\r\n\r\npart",
])
def test_incomplete_answers_wait_for_more_then_fail_at_the_end(data: bytes) -> None:
    wanted = parse_answer(data, False, 100)
    assert isinstance(wanted, int) and wanted > len(data)
    if data.endswith(b"part"):  # close-delimited: the end of the connection completes it
        parsed = parse_answer(data, True, 100)
        assert not isinstance(parsed, int) and parsed.answer.body == b"part"
    else:
        with pytest.raises(ConnectionResetError):
            parse_answer(data, True, 100)


@pytest.mark.parametrize("data", [
    b"SMTP 220 hello\r\n\r\n", b"HTTP/1.1 2000 OK\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
])
def test_malformed_answers_are_errors(data: bytes) -> None:
    with pytest.raises(AnswerError):
        parse_answer(data, False, 100)


@pytest.mark.parametrize(("data", "body_wanted"), [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123", 10),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123", 100),  # up to the limit
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", 3 + 5 + 2),
])
def test_an_incomplete_answer_says_how_long_it_must_get(data: bytes, body_wanted: int
                                                        ) -> None:
    wanted = data.index(b"\r\n\r\n") + 4 + body_wanted
    assert parse_answer(data, False, 100) == wanted
    full = data + b"x" * (wanted - len(data))
    if b"chunked" not in data:
        assert not isinstance(parse_answer(full, False, 100), int)


def test_an_answer_in_too_many_chunks_is_cut() -> None:
    body = b"1\r\nx\r\n" * 300 + b"0\r\n\r\n"
    parsed = parse_answer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body,
                          False, 1000)
    assert not isinstance(parsed, int)
    assert (parsed.answer.body, parsed.keep_alive) == (b"x" * 256, False)


def test_location_is_read() -> None:
    parsed = parse_answer(b"HTTP/1.1 302 Found\r\nLocation: https://x.example/h\r\n"
                          b"Content-Length: 0\r\n\r\n", False, 100)
    assert not isinstance(parsed, int) and parsed.answer.location == "https://x.example/h"


@pytest.mark.parametrize(("url", "start"), [
    ("http://hooks.example/a", b"POST /a HTTP/1.1\r\nHost: hooks.example\r\n"),
    ("http://hooks.example", b"POST / HTTP/1.1\r\nHost: hooks.example\r\n"),
    ("https://hooks.example:8443/a?b=c d",
     b"POST /a?b=c%20d HTTP/1.1\r\nHost: hooks.example:8443\r\n"),
    ("https://hooks.example:443/é", b"POST /%C3%A9 HTTP/1.1\r\nHost: hooks.example\r\n"),
    ("http://[::1]:8080/h", b"POST /h HTTP/1.1\r\nHost: [::1]:8080\r\n"),
    ("http://bücher.example/h", b"POST /h HTTP/1.1\r\nHost: xn--bcher-kva.example\r\n"),
])
def test_request_line_and_host(url: str, start: bytes) -> None:
    assert Target.post(url).start == start


@pytest.mark.parametrize("url", ["ftp://hooks.example/a", "http:///a", "http://h:99999/"])
def test_unusable_urls(url: str) -> None:
    with pytest.raises(ValueError):
        Target.post(url)


def test_a_header_with_a_line_break_is_refused() -> None:
    target = Target.post("http://hooks.example/a")
    assert request_head(target, {"X-A": "1"}, 3).endswith(b"X-A: 1\r\nContent-Length: 3\r\n\r\n")
    with pytest.raises(ValueError, match="line break"):
        request_head(target, {"X-A": "1\r\nX-Injected: 2"}, 3)


# --------------------------------------------------------------------------- connections


@dataclass
class Scripted:
    """A loopback server: ``answer(n, request)`` gives the bytes for the n-th request of all
    (``None``: close the connection without answering)."""

    answer: Callable[[int, bytes], bytes | None]
    requests: list[bytes] = field(default_factory=list)
    connections: int = 0
    open_now: int = 0
    most_open: int = 0
    delay: float = 0.0
    #: Bytes per write of an answer (0: the whole answer in one write).
    piece: int = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                self.open_now += 1
                self.most_open = max(self.most_open, self.open_now)
                await asyncio.sleep(self.delay)
                self.open_now -= 1
                answer = self.answer(len(self.requests), request)
                if answer is None:
                    break
                step = self.piece or len(answer)
                for at in range(0, len(answer), step):
                    writer.write(answer[at:at + step])
                    await writer.drain()
                    if self.piece:
                        await asyncio.sleep(0.002)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def scripted(server: Scripted, context: ssl.SSLContext | None = None
                   ) -> AsyncIterator[str]:
    listening = await asyncio.start_server(server.serve, "127.0.0.1", 0, ssl=context)
    port = listening.sockets[0].getsockname()[1]
    try:
        yield f"{'https' if context else 'http'}://127.0.0.1:{port}/hook"
    finally:
        listening.close()


async def post(pool: ConnectionPool, url: str, body: bytes = b"{}", limit: int = 100
               ) -> Answer:
    target = Target.post(url)
    return await pool.post(target, request_head(target, {"X-N": "1"}, len(body)) + body,
                           limit, 10.0)


async def test_one_connection_serves_requests_one_after_another() -> None:
    server = Scripted(lambda n, _: OK)
    pool = ConnectionPool(4)
    async with scripted(server) as url:
        answers = [await post(pool, url, b'{"n": %d}' % i) for i in range(5)]
    await pool.close()
    assert [a.body for a in answers] == [b"ok"] * 5
    assert (server.connections, pool.opened, len(server.requests)) == (1, 1, 5)
    assert server.requests[0].startswith(b"POST /hook HTTP/1.1\r\nHost: 127.0.0.1:")
    assert server.requests[0].endswith(b'X-N: 1\r\nContent-Length: 8\r\n\r\n{"n": 0}')


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n" + b"y" * 40,
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    + b"".join(b"4\r\nyyyy\r\n" for _ in range(10)) + b"0\r\n\r\n",
])
async def test_an_answer_in_many_small_reads_completes_and_the_connection_is_kept(
        answer: bytes) -> None:
    server = Scripted(lambda n, _: answer, piece=7)
    pool = ConnectionPool(2)
    async with scripted(server) as url:
        bodies = [(await post(pool, url)).body for _ in range(2)]
    await pool.close()
    assert bodies == [b"y" * 40] * 2 and server.connections == 1


async def test_a_closed_keep_alive_connection_is_retried_once_on_a_new_one() -> None:
    # The server takes the second request on the kept connection and closes it unanswered.
    server = Scripted(lambda n, _: None if n == 2 else OK)
    pool = ConnectionPool(4)
    async with scripted(server) as url:
        first, second = await post(pool, url), await post(pool, url)
    await pool.close()
    assert (first.status, second.status) == (200, 200)
    assert (server.connections, len(server.requests)) == (2, 3)


async def test_a_new_connection_closed_unanswered_fails_without_a_retry() -> None:
    server = Scripted(lambda n, _: None)
    pool = ConnectionPool(4)
    async with scripted(server) as url:
        with pytest.raises(ConnectionResetError):
            await post(pool, url)
    await pool.close()
    assert (server.connections, len(server.requests)) == (1, 1)  # not retried: not reused


async def test_connection_close_answers_and_cut_bodies_are_not_reused() -> None:
    answers = [b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
               b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 1000, OK]
    server = Scripted(lambda n, _: answers[n - 1])
    pool = ConnectionPool(4)
    async with scripted(server) as url:
        bodies = [(await post(pool, url, limit=100)).body for _ in answers]
    await pool.close()
    assert bodies == [b"ok", b"x" * 100, b"ok"]
    assert server.connections == 3


async def test_idle_connections_expire() -> None:
    server = Scripted(lambda n, _: OK)
    pool = ConnectionPool(4, keep_alive=0.0)
    async with scripted(server) as url:
        for _ in range(3):
            await post(pool, url)
    await pool.close()
    assert server.connections == 3


async def test_requests_in_flight_are_bounded_by_the_pool() -> None:
    server = Scripted(lambda n, _: OK, delay=0.02)
    pool = ConnectionPool(2)
    async with scripted(server) as url:
        answers = await asyncio.gather(*(post(pool, url) for _ in range(8)))
    await pool.close()
    assert [a.status for a in answers] == [200] * 8
    assert server.most_open == 2 and server.connections == 2


async def test_a_request_past_its_timeout_fails_and_drops_its_connection() -> None:
    server = Scripted(lambda n, _: OK, delay=5.0)
    pool = ConnectionPool(2)
    async with scripted(server) as url:
        target = Target.post(url)
        with pytest.raises(TimeoutError):
            await pool.post(target, request_head(target, {}, 0), 100, 0.1)
        server.delay = 0.0
        assert (await post(pool, url)).status == 200
    await pool.close()
    assert server.connections == 2


async def test_a_cancelled_request_drops_its_connection() -> None:
    server = Scripted(lambda n, _: OK, delay=5.0)
    pool = ConnectionPool(2)
    async with scripted(server) as url:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.1):
                await post(pool, url)
        server.delay = 0.0
        assert (await post(pool, url)).status == 200
    await pool.close()
    assert server.connections == 2


async def test_waiting_for_a_slot_counts_against_the_timeout() -> None:
    server = Scripted(lambda n, _: OK, delay=5.0)
    pool = ConnectionPool(1)
    async with scripted(server) as url:
        target = Target.post(url)
        first = asyncio.create_task(pool.post(target, request_head(target, {}, 0), 100, 10.0))
        await asyncio.sleep(0.05)
        with pytest.raises(TimeoutError):
            await pool.post(target, request_head(target, {}, 0), 100, 0.1)
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
    await pool.close()
    assert server.connections == 1


async def test_tls_is_verified(tls_files) -> None:
    server = Scripted(lambda n, _: OK)
    async with scripted(server, tls_files.server_context()) as url:
        trusting = ConnectionPool(2, tls_files.client_context())
        assert (await post(trusting, url.replace("127.0.0.1", "localhost"))).body == b"ok"
        await trusting.close()
        strict = ConnectionPool(2, ssl.create_default_context())
        with pytest.raises(ssl.SSLCertVerificationError):
            await post(strict, url)
        await strict.close()


async def test_a_closed_pool_refuses_requests() -> None:
    pool = ConnectionPool(1)
    await pool.close()
    with pytest.raises(ConnectionError, match="closed"):
        await post(pool, "http://127.0.0.1:9/hook")

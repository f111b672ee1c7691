"""The shards' connections keep their socket for httpcore's readability check
(:class:`alertd.source.pool.SocketKeepingBackend`): an idle connection the server has closed
is still told apart from a live one, so it is never reused."""

from __future__ import annotations

import asyncio
import socket

import httpx

from alertd.source.pool import ClientPool, SocketKeepingBackend, readable

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


class Server:
    """An HTTP/1.1 server on localhost answering each request with ``{}``; it closes each
    connection ``close_after`` seconds after its first answer (the client is not told)."""

    def __init__(self, close_after: float | None) -> None:
        self.close_after = close_after
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                writer.write(RESPONSE)
                await writer.drain()
                if self.close_after is not None:
                    await asyncio.sleep(self.close_after)
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()


def make(transport: httpx.AsyncBaseTransport | None, limits: httpx.Limits) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=transport, limits=limits)


async def test_a_connection_the_server_closed_while_idle_is_not_reused() -> None:
    server = Server(close_after=0.05)
    async with server as url:
        pool = ClientPool(make, connections=4)
        for _ in range(3):
            async with pool.client() as client:
                response = await client.get(f"{url}/v1/x")
                assert response.json() == {}
            await asyncio.sleep(0.3)  # the server closes the idle connection meanwhile
        await pool.aclose()
    assert server.connections == 3


async def test_a_live_idle_connection_is_reused() -> None:
    server = Server(close_after=None)
    async with server as url:
        pool = ClientPool(make, connections=4)
        for _ in range(3):
            async with pool.client() as client:
                assert (await client.get(f"{url}/v1/x")).json() == {}
        await pool.aclose()
    assert server.connections == 1


async def test_a_stream_is_readable_once_data_or_the_end_arrives() -> None:
    server = Server(close_after=0.05)
    async with server as url:
        port = int(url.rsplit(":", 1)[1])
        stream = await SocketKeepingBackend().connect_tcp("127.0.0.1", port)
        assert stream.get_extra_info("is_readable") is False
        await stream.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.sleep(0.2)
        assert stream.get_extra_info("is_readable") is True  # the answer, then the end
        assert stream.get_extra_info("socket").fileno() >= 0
        await stream.aclose()
        assert stream.get_extra_info("is_readable") is True  # closed: a read ends at once


def test_no_socket_or_a_closed_one_reads_as_readable() -> None:
    closed = socket.socket()
    closed.close()
    assert readable(None) and readable(closed)

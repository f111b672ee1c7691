"""Stripe's connections spread over several small ``httpx.AsyncClient`` pools (shards).

Where it sits: :class:`~alertd.source.http.StripeHTTP` sends every request through
:meth:`ClientPool.client`, which lends it the least busy shard for the exchange.

Why shards, not one client with a large pool: httpcore's connection pool walks *every*
connection it holds each time a request enters and each time a response is closed
(``AsyncConnectionPool._assign_requests_to_connections``): ``is_closed`` and ``has_expired``
on each (``has_expired`` asks the socket whether it is readable — a syscall — for each idle
one), plus, for each idle connection, a count over all of them. Its cost per request therefore
grows with the connections held, and those follow the latency: at 100 requests/s the in-flight
limit (:mod:`alertd.source.inflight`) keeps ~160 requests, hence connections, open against a
1-second Stripe and ~30 against 150 ms. Measured with ``bench/fetch.py`` (phase 2, one-row
requests), one client (its pool bounded at 512, holding 100–250 connections) cost ~13 CPU
s per 1,000 requests at 1 s against ~3 at 150 ms.

Why not tune ``httpx.Limits`` instead: the walk covers busy connections as well as idle ones,
and ~100 are busy at once against a 1-second Stripe at 100/s, so no limit shortens it below
that without making requests queue for a connection (``max_connections`` below the requests
in flight: their start then reaches Stripe late and bunched with later ones); a shorter
``keepalive_expiry`` or fewer keep-alive connections only close idle connections the next
second's requests reopen (a TCP/TLS handshake each). Shards of at most
:data:`SHARD_CONNECTIONS` connections bound the walk instead: each request is sent by the
shard with the fewest requests in flight, so no shard holds more than
:data:`SHARD_CONNECTIONS` and the walk is as long at 1 s as at 150 ms (phase 2 at 1 s: ~2.6–2.9
CPU s per 1,000 requests, as at 150 ms; 7 pools open against 2). 8 per shard measured no
better than 16 (the walk is then no longer what costs most: the socket calls are). Sending
each request by the *first* shard with room instead (so a burst's extra shards fall idle and
their connections expire) measured no better (``bench/README.md``, issue 13).

The socket calls: the readability check of every idle connection at every walk went through
anyio's ``extra()``, which builds a dict of the socket's attributes, ``getpeername`` (a
syscall) among them, each time — ~15 µs per idle connection per walk. Each shard's httpcore
pool runs over :class:`SocketKeepingBackend` instead, whose streams keep their socket from the
connect and poll it directly: ~1.8 µs (the same check as httpcore's own).

Shards are opened as needed — a new one only when every open shard is full — so a fast Stripe
uses one or two and a slow one as many as its requests in flight need, up to
``⌈connections ÷ SHARD_CONNECTIONS⌉``. They share one TLS context (loading the CA bundle
once). A ``transport`` passed in (tests' ``httpx.MockTransport``) is the caller's: one client
over it, no shards.
"""

from __future__ import annotations

import math
import select
import ssl
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import httpcore
import httpx

#: Most connections one shard's pool holds: the length of httpcore's walk per request.
SHARD_CONNECTIONS = 16


@dataclass(frozen=True, slots=True)
class ShardStats:
    """One shard now: requests it is sending, connections its pool holds, the most of each."""

    in_flight: int
    connections: int
    peak_in_flight: int
    peak_connections: int


class _Shard:
    def __init__(self, client: httpx.AsyncClient,
                 transport: httpx.AsyncHTTPTransport | None) -> None:
        self.client = client
        self.transport = transport
        self.in_flight = 0
        self.peak_in_flight = 0
        self.peak_connections = 0

    def connections(self) -> int:
        """Connections the shard's pool holds (what httpcore walks per request); 0 when the
        transport is not httpx's own."""
        if self.transport is None:
            return 0
        # httpx keeps its httpcore pool in ``_pool``; ``connections`` is httpcore's public view.
        pool = getattr(self.transport, "_pool", None)
        return len(pool.connections) if pool is not None else 0


class Socket(Protocol):
    """A socket as httpcore's streams give it (asyncio's ``TransportSocket``)."""

    def fileno(self) -> int: ...


def readable(sock: Socket | None) -> bool:
    """Whether a read on ``sock`` would return at once (data, or the ``b""`` of a closed
    connection): httpcore's own check, on a socket without one (``None``) or closed too."""
    fd = -1 if sock is None else sock.fileno()
    if fd < 0:
        return True
    poll = select.poll()
    poll.register(fd, select.POLLIN)
    return bool(poll.poll(0))


class _Stream(httpcore.AsyncNetworkStream):
    """httpcore's stream of one connection, with the socket it runs on kept from the start:
    the readability check httpcore makes of every idle connection at every walk
    (``has_expired``) reads the socket through anyio's ``extra()``, which builds a dict of
    the socket's attributes each time, ``getpeername`` (a syscall) included."""

    def __init__(self, stream: httpcore.AsyncNetworkStream, sock: Socket | None) -> None:
        self._stream = stream
        self._socket = sock

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._stream.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._stream.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore.AsyncNetworkStream:
        tls = await self._stream.start_tls(ssl_context, server_hostname, timeout)
        return _Stream(tls, self._socket)  # TLS runs over the same socket

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            return readable(self._socket)
        return self._stream.get_extra_info(info)


class SocketKeepingBackend(httpcore.AsyncNetworkBackend):
    """httpcore's asyncio (anyio) backend, its streams keeping their socket (:class:`_Stream`)."""

    def __init__(self) -> None:
        self._backend = httpcore.AnyIOBackend()

    async def connect_tcp(
        self, host: str, port: int, timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._backend.connect_tcp(host, port, timeout, local_address,
                                                 socket_options)
        return _Stream(stream, stream.get_extra_info("socket"))

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._backend.connect_unix_socket(path, timeout, socket_options)
        return _Stream(stream, stream.get_extra_info("socket"))

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


def shard_transport(ssl_context: ssl.SSLContext, limits: httpx.Limits
                    ) -> httpx.AsyncHTTPTransport:
    """httpx's transport for one shard, its httpcore pool over a
    :class:`SocketKeepingBackend` (httpx has no parameter for the backend: the pool it made
    is replaced by the same pool over this backend)."""
    transport = httpx.AsyncHTTPTransport(verify=ssl_context, limits=limits)
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=ssl_context,
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=SocketKeepingBackend(),
    )
    return transport


class ClientPool:
    """Up to ``⌈connections ÷ per_shard⌉`` clients of at most ``per_shard`` connections each.

    ``make(transport, limits)`` builds one ``httpx.AsyncClient`` (base URL, headers, timeout:
    the caller's); ``transport`` is ``None`` unless the caller gave one, and then it is the only
    client. Callers must never have more than ``connections`` requests in flight at once (the
    in-flight slots see to it), so the least busy shard always has a free connection.
    """

    def __init__(self, make: Callable[[httpx.AsyncBaseTransport | None, httpx.Limits],
                                      httpx.AsyncClient],
                 connections: int, *, transport: httpx.AsyncBaseTransport | None = None,
                 per_shard: int = SHARD_CONNECTIONS) -> None:
        if connections < 1 or per_shard < 1:
            raise ValueError("connections and per_shard must be at least 1")
        self._make = make
        self._given = transport
        self.per_shard = min(per_shard, connections) if transport is None else connections
        self.most_shards = math.ceil(connections / self.per_shard)
        self._limits = httpx.Limits(max_connections=self.per_shard,
                                    max_keepalive_connections=self.per_shard)
        self._ssl: ssl.SSLContext | None = None
        self._shards: list[_Shard] = []

    def _open(self) -> _Shard:
        if self._given is not None:
            shard = _Shard(self._make(self._given, self._limits), None)
        else:
            if self._ssl is None:
                self._ssl = httpx.create_ssl_context()
            transport = shard_transport(self._ssl, self._limits)
            shard = _Shard(self._make(transport, self._limits), transport)
        self._shards.append(shard)
        return shard

    def _least_busy(self) -> _Shard:
        best: _Shard | None = None
        for shard in self._shards:
            if best is None or shard.in_flight < best.in_flight:
                best = shard
        if best is None or (best.in_flight >= self.per_shard
                            and len(self._shards) < self.most_shards):
            return self._open()
        return best

    @asynccontextmanager
    async def client(self) -> AsyncIterator[httpx.AsyncClient]:
        """The least busy shard's client, lent for one exchange (body read included)."""
        shard = self._least_busy()
        shard.in_flight += 1
        shard.peak_in_flight = max(shard.peak_in_flight, shard.in_flight)
        try:
            yield shard.client
        finally:
            shard.in_flight -= 1
            shard.peak_connections = max(shard.peak_connections, shard.connections())

    def stats(self) -> list[ShardStats]:
        """Every open shard, in the order opened."""
        return [ShardStats(s.in_flight, s.connections(), s.peak_in_flight, s.peak_connections)
                for s in self._shards]

    async def aclose(self) -> None:
        shards, self._shards = self._shards, []
        for shard in shards:
            await shard.client.aclose()

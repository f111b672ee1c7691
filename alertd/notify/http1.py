"""A small keep-alive HTTP/1.1 client for webhook POSTs: one request per connection at a time.

Where it sits: :class:`~alertd.notify.webhook.WebhookNotifier` POSTs each prepared body
through a :class:`ConnectionPool` (shared by all webhook receivers, see
:func:`~alertd.notify.webhook.webhook_session`) unless the environment names a proxy for the
receiver's URL; proxied receivers go through aiohttp, as before.

Why not aiohttp for every request: on the outbox's path aiohttp's request machinery (its
request and response objects, connector, tracing hooks, timers, stream reader) cost
~0.15–0.35 ms of CPU per webhook (load dependent) — the largest part of alertd's CPU per
delivered notification. This client writes one prebuilt request (head and body, one
``write``) and parses the small answer in :meth:`_Connection.data_received`: about a third
of that. It only does what a webhook POST needs, and states it:

* ``http`` and ``https`` URLs (TLS verified with the pool's :class:`ssl.SSLContext`, the
  server name checked); the request line, ``Host`` and ``Content-Length`` are written here,
  every other header comes from the caller; no ``Expect``, no compression, no redirects
  (a 3xx is an answer like any other).
* Answers: a status line, headers, and a body delimited by ``Content-Length``, chunked
  transfer coding, or the end of the connection; 1xx interim answers are skipped. The body is
  read up to ``limit`` bytes; a longer one is cut there and its connection dropped.
* Connections are reused while both sides keep them alive (HTTP/1.1 without
  ``Connection: close``) and for at most :data:`KEEP_ALIVE` seconds idle, then closed. A
  reused connection that the server closed before answering a byte (the keep-alive race) is
  retried once on a new connection: the server had not answered, and the request carries its
  ``Idempotency-Key`` anyway.
* At most ``connections`` requests are in flight at once over the pool. Each request has a
  timeout covering the wait for a slot, the connection and the answer; a request cut by it
  (or cancelled) closes its connection. Waiting answers are checked against their deadlines
  by one timer every :data:`TICK` seconds while any is in flight (so a timeout may fire up to
  that late), not one timer per request.

Failures raise :class:`OSError` (refused, reset, TLS, a connection closed mid-answer,
:class:`AnswerError` for an answer that is not HTTP/1.x) and :class:`TimeoutError`; the
webhook notifier classifies them (all transient).

Why over 400 lines: the answer parser and the connection pool are one client; the parser's
framing rules (length, chunks, end of connection, the limit) decide when a connection may be
reused, which is the pool's business.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

#: Seconds an idle connection is kept for reuse (aiohttp's default too).
KEEP_ALIVE = 15.0
#: Seconds between checks for answers past their deadline.
TICK = 0.05
_HEAD_END = b"\r\n\r\n"
#: The answer's headers the client reads, as found in the lower-cased head.
_READ = (b"\r\ncontent-length:", b"\r\ntransfer-encoding:", b"\r\nconnection:",
         b"\r\nlocation:")
#: How a connection the server closed shows up.
_CLOSED = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)
_MAX_HEAD = 64 * 1024
#: Chunks of a chunked answer read at most (webhook answers come in one or a few).
_MAX_CHUNKS = 256
#: Characters of a URL path and query sent as they are (the rest is percent-encoded).
_SAFE = "/%:@!$&'()*+,;=-._~?"


class AnswerError(ConnectionError):
    """The server's answer is not a well-formed HTTP/1.x response."""


@dataclass(frozen=True, slots=True)
class Answer:
    """A server's answer: status, reason, the ``Location`` header, the body up to the limit."""

    status: int
    reason: str
    location: str
    body: bytes


@dataclass(frozen=True, slots=True)
class Target:
    """Where requests go: the origin to connect to and the request's head before its headers."""

    scheme: str
    host: str
    port: int
    #: ``POST <path> HTTP/1.1\\r\\nHost: <host>\\r\\n``, encoded.
    start: bytes

    @classmethod
    def post(cls, url: str) -> Target:
        """The target of a POST to ``url``; :class:`ValueError` for a URL it cannot use."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {parts.scheme}://")
        default = 443 if parts.scheme == "https" else 80
        port = parts.port or default  # ValueError for a port out of range
        path = quote(parts.path or "/", safe=_SAFE)
        if parts.query:
            path += "?" + quote(parts.query, safe=_SAFE)
        host = parts.hostname
        ascii_host = host if host.isascii() else host.encode("idna").decode("ascii")
        shown = f"[{ascii_host}]" if ":" in ascii_host else ascii_host
        host_header = shown if port == default else f"{shown}:{port}"
        start = f"POST {path} HTTP/1.1\r\nHost: {host_header}\r\n".encode("ascii")
        return cls(parts.scheme, host, port, start)


def request_head(target: Target, headers: dict[str, str], length: int) -> bytes:
    """The bytes before the body: request line, ``Host``, ``headers``, ``Content-Length``.
    :class:`ValueError` for a header that would break the request (a CR or LF in it)."""
    for name, value in headers.items():
        if "\r" in name or "\n" in name or "\r" in value or "\n" in value:
            raise ValueError(f"the header {name[:40]!r} holds a line break")
    text = "".join([f"{name}: {value}\r\n" for name, value in headers.items()])
    return b"".join((target.start, text.encode("latin-1"),
                     b"Content-Length: %d\r\n\r\n" % length))


@dataclass(slots=True)
class _Parsed:
    answer: Answer
    keep_alive: bool


def parse_answer(buffer: bytes, eof: bool, limit: int) -> _Parsed | int:
    """The final answer at the start of ``buffer``, or, while more bytes are needed, the
    length ``buffer`` must reach before it can hold the answer (``eof``: none will come).
    Interim 1xx answers before it are skipped. The length lets a connection skip parsing
    again until then: a long body in many small reads is parsed once, not once per read."""
    skipped = 0
    while True:
        end = buffer.find(_HEAD_END)
        if end < 0:
            if len(buffer) > _MAX_HEAD:
                raise AnswerError("the answer's head is over 64 KiB")
            if eof:
                raise ConnectionResetError("the connection closed before a complete answer")
            return skipped + len(buffer) + 1
        status, reason, headers, keep_alive = _head(buffer[:end])
        rest = buffer[end + 4:]
        skipped += end + 4
        if 100 <= status < 200:
            buffer = rest
            continue
        body = _body(rest, headers, status, eof, limit)
        if isinstance(body, int):
            return skipped + body
        content, complete = body
        answer = Answer(status, reason, headers.get("location", ""), content)
        return _Parsed(answer, keep_alive and complete)


def _head(head: bytes) -> tuple[int, str, dict[str, str], bool]:
    """Status, reason, the headers the client reads (:data:`_READ`, lower-case names) and
    whether the server keeps the connection open. Other headers are not parsed: a webhook
    answer's ``Date``, ``Server``, ``Content-Type`` and the like are never looked at."""
    line_end = head.find(b"\r\n")
    status_line = (head if line_end < 0 else head[:line_end]).decode("latin-1")
    version, _, rest = status_line.partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/1.") or not code.isdigit() or len(code) != 3:
        raise AnswerError(f"not an HTTP/1.x answer: {status_line[:80]!r}")
    headers: dict[str, str] = {}
    if line_end >= 0:
        lowered = head.lower()
        for name in _READ:
            at = lowered.find(name)
            if at >= 0:
                start = at + len(name)
                end = head.find(b"\r\n", start)
                headers[name[2:-1].decode()] = (
                    head[start:] if end < 0 else head[start:end]).decode("latin-1").strip()
    connection = headers.get("connection", "").lower()
    keep_alive = ("close" not in connection if version == "HTTP/1.1"
                  else "keep-alive" in connection)
    return int(code), reason, headers, keep_alive


def _body(rest: bytes, headers: dict[str, str], status: int, eof: bool,
          limit: int) -> tuple[bytes, bool] | int:
    """(body up to ``limit``, whether it ended where the framing says: the connection can be
    reused), or the length ``rest`` must reach first."""
    if status in (204, 304):
        return b"", True
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return _chunked(rest, eof, limit)
    length = headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise AnswerError(f"a malformed Content-Length: {length[:40]!r}")
        size = int(length)
        if len(rest) >= min(size, limit):
            return rest[:min(size, limit)], size <= limit
        if eof:
            raise ConnectionResetError("the connection closed in the middle of the answer")
        return min(size, limit)
    if len(rest) >= limit:
        return rest[:limit], False
    return (rest, False) if eof else min(len(rest) * 2 + 1, limit)


def _chunked(data: bytes, eof: bool, limit: int) -> tuple[bytes, bool] | int:
    """A chunked body (see :func:`_body`). At most :data:`_MAX_CHUNKS` chunks are read (the
    body is parsed from its start on each attempt): a body in more is cut there."""
    parts: list[bytes] = []
    size = 0
    at = 0
    while len(parts) < _MAX_CHUNKS:
        line_end = data.find(b"\r\n", at)
        if line_end < 0:
            return _more(eof, len(data) + 1)
        field = data[at:line_end].split(b";", 1)[0].strip()
        try:
            chunk = int(field, 16)
        except ValueError:
            raise AnswerError(f"a malformed chunk size: {field[:20]!r}") from None
        start = line_end + 2
        if chunk == 0:
            # Trailer lines (rare) end with an empty line, like the head.
            if data.find(_HEAD_END, start - 2) >= 0:
                return b"".join(parts), True
            return _more(eof, len(data) + 1)
        if len(data) < start + chunk + 2:
            if size + len(data) - start >= limit:  # enough for the caller: stop here
                parts.append(data[start:start + limit - size])
                return b"".join(parts), False
            return _more(eof, min(start + chunk + 2, start + limit - size))
        parts.append(data[start:start + chunk])
        size += chunk
        if size >= limit:
            return b"".join(parts)[:limit], False
        at = start + chunk + 2
    return b"".join(parts), False


def _more(eof: bool, wanted: int) -> int:
    if eof:
        raise ConnectionResetError("the connection closed in the middle of the answer")
    return wanted


class _Connection(asyncio.Protocol):
    """One connection: a request written, its answer parsed as the bytes come."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = time.monotonic()
        self._buffer = b""
        self._limit = 0
        #: The buffer length before which parsing again cannot complete the answer.
        self._wanted = 0
        self._answer: asyncio.Future[_Parsed] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self._answer is None or self._answer.done():
            self.close()  # bytes nobody asked for: the connection is out of step
            return
        self._buffer += data
        if len(self._buffer) >= self._wanted:
            self._settle(eof=False)

    def eof_received(self) -> bool:
        self._settle(eof=True)
        self.closed = True
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._answer is not None and not self._answer.done():
            if exc is not None:
                self._answer.set_exception(exc)
            else:
                self._settle(eof=True)

    def _settle(self, eof: bool) -> None:
        answer = self._answer
        if answer is None or answer.done():
            return
        try:
            parsed = parse_answer(self._buffer, eof, self._limit)
        except OSError as exc:
            answer.set_exception(exc)
            return
        if isinstance(parsed, int):
            self._wanted = parsed
        else:
            answer.set_result(parsed)

    async def exchange(self, data: bytes, limit: int) -> tuple[Answer, bool]:
        """Writes one request and waits for its answer; (answer, reusable)."""
        assert self.transport is not None
        self._buffer = b""
        self._limit = limit
        self._wanted = 0
        self._answer = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        parsed = await self._answer
        self._answer = None
        return parsed.answer, parsed.keep_alive and not self.closed

    def time_out(self) -> None:
        """The answer did not come in time: the waiting request fails, the connection goes."""
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(TimeoutError("no complete answer in time"))
        self.close()

    @property
    def answered_nothing(self) -> bool:
        return not self._buffer

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class ConnectionPool:
    """Keep-alive connections per origin, at most ``connections`` requests in flight, each
    idle for at most ``keep_alive`` seconds; TLS with ``ssl_context`` (default: the system's
    trust store). Close with :meth:`close`."""

    def __init__(self, connections: int = 100, ssl_context: ssl.SSLContext | None = None,
                 *, keep_alive: float = KEEP_ALIVE) -> None:
        self._ssl = ssl_context
        self._keep_alive = keep_alive
        self._slots = asyncio.Semaphore(max(connections, 1))
        self._idle: dict[tuple[str, str, int], deque[_Connection]] = {}
        #: The connections waiting for an answer, with their deadlines (loop time).
        self._watched: dict[_Connection, float] = {}
        self._ticking: asyncio.TimerHandle | None = None
        self.closed = False
        #: Connections opened so far (tests count reuse with it).
        self.opened = 0

    async def post(self, target: Target, data: bytes, limit: int, timeout: float) -> Answer:
        """Sends ``data`` (a whole request: :func:`request_head` and the body) to ``target``;
        the answer with its body read up to ``limit`` bytes, within ``timeout`` seconds
        (:class:`TimeoutError` after it, up to :data:`TICK` late)."""
        if self.closed:
            raise ConnectionError("the HTTP connection pool is closed")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if self._slots.locked():  # rare: a full pool; the wait counts against the timeout
            async with asyncio.timeout_at(deadline):
                await self._slots.acquire()
        else:
            await self._slots.acquire()
        try:
            return await self._exchange(target, data, limit, deadline)
        finally:
            self._slots.release()

    async def _exchange(self, target: Target, data: bytes, limit: int,
                        deadline: float) -> Answer:
        connection, reused = self._take(target), True
        if connection is None:
            connection, reused = await self._open(target, deadline), False
        self._watched[connection] = deadline
        self._tick()
        try:
            try:
                answer, reusable = await connection.exchange(data, limit)
            except _CLOSED:
                if not (reused and connection.answered_nothing):
                    raise
                connection.close()  # the keep-alive race: the server had closed it
                del self._watched[connection]
                connection = await self._open(target, deadline)
                self._watched[connection] = deadline
                answer, reusable = await connection.exchange(data, limit)
        except BaseException:
            connection.close()
            raise
        finally:
            self._watched.pop(connection, None)
        if reusable:
            connection.idle_since = time.monotonic()
            self._idle.setdefault((target.scheme, target.host, target.port),
                                  deque()).append(connection)
        else:
            connection.close()
        return answer

    def _watch(self) -> None:
        """Times out the exchanges past their deadline; again in :data:`TICK` s while any
        is in flight. One timer for all requests: a timer per request (``asyncio.timeout``)
        cost more CPU than parsing its answer."""
        self._ticking = None
        now = asyncio.get_running_loop().time()
        for connection, deadline in list(self._watched.items()):
            if deadline <= now:
                connection.time_out()
        if self._watched:
            self._tick()

    def _tick(self) -> None:
        if self._ticking is None and not self.closed:
            self._ticking = asyncio.get_running_loop().call_later(TICK, self._watch)

    def _take(self, target: Target) -> _Connection | None:
        idle = self._idle.get((target.scheme, target.host, target.port))
        oldest = time.monotonic() - self._keep_alive
        while idle:
            connection = idle.pop()  # the most recently used: least likely to be stale
            if not connection.closed and connection.idle_since > oldest:
                return connection
            connection.close()
        return None

    async def _open(self, target: Target, deadline: float) -> _Connection:
        loop = asyncio.get_running_loop()
        context = None
        if target.scheme == "https":
            context = self._ssl or ssl.create_default_context()
        async with asyncio.timeout_at(deadline):  # a new connection: rare enough for a timer
            _, connection = await loop.create_connection(
                _Connection, target.host, target.port, ssl=context,
                server_hostname=target.host if context is not None else None)
        self.opened += 1
        return connection

    async def close(self) -> None:
        """Closes every idle connection; requests after this fail."""
        self.closed = True
        if self._ticking is not None:
            self._ticking.cancel()
            self._ticking = None
        for idle in self._idle.values():
            while idle:
                idle.pop().close()
        self._idle.clear()
        await asyncio.sleep(0)  # let the transports finish closing

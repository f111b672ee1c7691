"""The heartbeat: a dead man's switch for alertd itself.

Where it sits: after a poll that read Stripe, the daemon hands :meth:`Heartbeat.after_poll` a
small JSON summary; when ``heartbeat.url`` is set and ``heartbeat.interval`` has passed since
the last beat, it is POSTed there (healthchecks.io, Cronitor, a Uptime Kuma push monitor…),
which alerts when the beats stop: alertd crashed, hangs, or cannot read Stripe any more.

Contract: at most one beat per ``interval`` and at most one in flight; a beat never delays a
poll (it runs in the background) and never fails one (errors are logged, then forgotten). The
URL carries a secret (the check's token in its path, sometimes user-info), so logs show it
only through :func:`~alertd.logs.redact_url`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import httpx

from alertd import __version__
from alertd.clock import Clock, SystemClock
from alertd.config.settings import HeartbeatSettings
from alertd.logs import redact_url
from alertd.tasks import cancel

log = logging.getLogger("alertd.heartbeat")

USER_AGENT = f"alertd/{__version__} heartbeat"


def heartbeat_due(last_sent: float | None, now: float, interval: float) -> bool:
    """Whether a beat is due at monotonic time ``now`` (pure)."""
    return last_sent is None or now - last_sent >= interval


def heartbeat_body(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON body of a beat: who is beating, then the poll ``summary``."""
    return {"service": "alertd", "version": __version__, "status": "ok", **summary}


class Heartbeat:
    """POSTs beats through its own HTTP client; use ``async with``.

    ``transport`` lets tests route the client elsewhere; ``timeout`` bounds one beat.
    """

    def __init__(
        self,
        clock: Clock | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.clock: Clock = clock or SystemClock()
        self.started = 0  # beats after_poll started (answered or not): what tests observe
        self.sent = 0
        self._transport = transport
        self._timeout = timeout
        self._client: httpx.AsyncClient | None = None
        self._last_sent: float | None = None
        self._in_flight: asyncio.Task[bool] | None = None

    async def __aenter__(self) -> Heartbeat:
        self._client = httpx.AsyncClient(
            timeout=self._timeout, transport=self._transport, follow_redirects=True,
            headers={"User-Agent": USER_AGENT},
        )
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task, self._in_flight = self._in_flight, None
        if task is not None:
            await cancel(task)
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def after_poll(self, settings: HeartbeatSettings, summary: Mapping[str, Any]) -> bool:
        """Starts a beat when one is configured, due and none is in flight; ``True`` if
        started. Never raises."""
        now = self.clock.monotonic()
        busy = self._in_flight is not None and not self._in_flight.done()
        if settings.url is None or busy or not heartbeat_due(self._last_sent, now,
                                                             settings.interval):
            return False
        self._last_sent = now
        self.started += 1
        self._in_flight = asyncio.create_task(
            self.send(settings.url, heartbeat_body(summary)), name="alertd-heartbeat"
        )
        return True

    async def send(self, url: str, body: Mapping[str, Any]) -> bool:
        """One POST of ``body``; ``True`` when the receiver answered 2xx. Never raises."""
        if self._client is None:
            raise RuntimeError("use 'async with Heartbeat()' before sending")
        where = redact_url(url, secret_path=True)
        try:
            response = await self._client.post(url, json=dict(body))
        except httpx.HTTPError as exc:
            log.warning("heartbeat failed url=%s error=%s", where, type(exc).__name__)
            return False
        if not response.is_success:
            log.warning("heartbeat refused url=%s status=%d", where, response.status_code)
            return False
        self.sent += 1
        log.debug("heartbeat sent url=%s", where)
        return True

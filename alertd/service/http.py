"""The HTTP side door: ``/metrics``, ``/healthz`` and ``/readyz`` on ``server.listen``, and
the status page with its JSON API (:mod:`alertd.web`) when the daemon passes its context.

``/healthz`` answers 200 while the main loop is alive: the daemon's keepalive beats every half
systemd watchdog interval (every 10 s without a watchdog) and ``/healthz`` wants the last beat
within ``max(3 beats, 60 s)`` (:attr:`Health.beat_tolerance`, set by the daemon; unrelated to
the poll intervals);
``/readyz`` answers 200 once the first poll finished, the data is not stale and the state store
works, else 503 with the reason (a failing store first: nothing is recorded or delivered
while it fails). With replicas on PostgreSQL the body names the role (``ready: leader``,
``ready: standby (leader NAME)``; with several accounts, which ones it leads:
``ready: leader (leads eu; standby for us (leader b))``); a standby is ready once its store
works — it delivers and stands by to take over, and polls nothing until it leads. The
daemon owns a :class:`Health` object and updates it; this module only reads it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from alertd.clock import Clock
from alertd.errors import ConfigError
from alertd.service.metrics import Metrics
from alertd.web.app import StatusContext, install


@dataclass
class Health:
    """Mutable liveness/readiness facts, written by the daemon loop."""

    last_beat: float | None = None
    beat_tolerance: float = 180.0
    first_poll_done: bool = False
    stale_reason: str | None = None
    store_problem: str | None = None
    #: ``leader`` or ``standby`` on a shared (PostgreSQL) store; ``None`` with SQLite.
    role: str | None = None
    leader: str | None = None
    #: With several accounts: which ones this replica leads (``leads eu; standby for us``).
    leads: str | None = None

    def alive(self, now: float) -> bool:
        return self.last_beat is not None and now - self.last_beat <= self.beat_tolerance

    def not_ready_reason(self) -> str | None:
        if self.store_problem is not None:
            return self.store_problem
        if self.role == "standby":  # it delivers and takes over; it polls nothing yet
            return None
        if not self.first_poll_done:
            # Polls that fail from the start would otherwise hide their reason behind this.
            suffix = f" ({self.stale_reason})" if self.stale_reason else ""
            return f"first poll not finished{suffix}"
        return self.stale_reason


def build_app(
    metrics: Metrics, health: Health, clock: Clock, status: StatusContext | None = None
) -> web.Application:
    async def metrics_handler(_: web.Request) -> web.Response:
        response = web.Response(body=metrics.render())
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    async def healthz(_: web.Request) -> web.Response:
        if health.alive(clock.now()):
            return web.Response(text="ok\n")
        return web.Response(status=503, text="main loop not beating\n")

    async def readyz(_: web.Request) -> web.Response:
        reason = health.not_ready_reason()
        if reason is None:
            role = "" if health.role is None else f": {health.role}"
            if health.leads is not None:
                role += f" ({health.leads})"
            elif health.role == "standby" and health.leader:
                role += f" (leader {health.leader})"
            return web.Response(text=f"ready{role}\n")
        return web.Response(status=503, text=f"not ready: {reason}\n")

    app = web.Application()
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if status is not None:
        install(app, status)
    return app


@asynccontextmanager
async def serve(
    listen: str, metrics: Metrics, health: Health, clock: Clock,
    status: StatusContext | None = None,
) -> AsyncIterator[str]:
    """Serve on ``HOST:PORT`` (port 0 picks one) and yield the base URL.

    An address that cannot be bound (in use, not this host's, a privileged port) is a
    :class:`ConfigError` naming ``server.listen``."""
    host, port = listen.rsplit(":", 1)
    runner = web.AppRunner(build_app(metrics, health, clock, status), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host.strip("[]"), int(port))
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError(
            f"server.listen {listen}: cannot listen there ({exc.strerror or exc}); another "
            "program (another alertd?) may use it: pick another address, or set "
            "server.listen: '' to disable the metrics server"
        ) from None
    try:
        bound = runner.addresses[0][1] if runner.addresses else int(port)
        yield f"http://{host}:{bound}"
    finally:
        await runner.cleanup()

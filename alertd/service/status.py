"""Wires the status page (:mod:`alertd.web`) to the running daemon.

Where it sits: :meth:`alertd.service.daemon.Daemon.running` builds one
:class:`~alertd.web.app.StatusContext` when ``server.listen`` is set. Credentials come from
``server.token_file`` / ``server.basic_auth_file`` (read once at start; a bad file is a
:class:`~alertd.errors.ConfigError` naming the setting). The context reaches the live world
through ``live_services``, so after a reload the pages read the new world's source,
meters and outbox without being rebuilt.
"""

from __future__ import annotations

from collections.abc import Callable

from alertd.clock import Clock
from alertd.config.settings import ServerSettings
from alertd.service.open import Services
from alertd.source import Source
from alertd.store.base import Store
from alertd.web.app import StatusContext
from alertd.web.auth import Access, is_loopback
from alertd.web.board import Board


def access_for(server: ServerSettings) -> Access:
    """Who may see the pages: token and/or basic credentials; none only on loopback."""
    token = server.resolved_token()
    basic = server.resolved_basic_auth()
    return Access(
        token=token.get_secret_value() if token is not None else None,
        basic=(basic[0], basic[1].get_secret_value()) if basic is not None else None,
        open_without=is_loopback(server.listen),
    )


def status_context(
    server: ServerSettings, store: Store, board: Board, clock: Clock,
    live_services: Callable[[], Services | None],
) -> StatusContext:
    """``live_services`` answers the running world's services (``None`` before they open)."""
    def source() -> Source | None:
        live = live_services()
        return live.stripe.source if live is not None else None

    def wake() -> None:
        live = live_services()
        if live is not None and live.outbox is not None:
            live.outbox.wake()

    def meters() -> list[str]:
        live = live_services()
        if live is None:
            return []
        return sorted({r.meter for r in live.world.rules if r.meter})

    return StatusContext(store=store, board=board, clock=clock, access=access_for(server),
                         source=source, wake=wake, meters=meters)

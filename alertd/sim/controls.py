"""The simulator's own ``/__`` endpoints: incidents, clock, faults and statistics.

They skip authentication, rate limits, faults and statistics, so a test or benchmark can use
them freely while it measures the Stripe endpoints.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from alertd.clock import parse_instant
from alertd.sim.endpoints import json_response
from alertd.sim.faults import Fault
from alertd.sim.incidents import INCIDENT_KINDS

if TYPE_CHECKING:
    from alertd.sim.server import Simulator


class Controls:
    """The simulator's own ``/__`` endpoints (no auth, no rate limit, no faults, no stats)."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    async def incidents(self, request: web.Request) -> web.Response:
        query = request.query
        try:
            now = self.sim.now()
            since = _instant(query["since"], now) if "since" in query else None
            until = _instant(query["until"], now) if "until" in query else int(now)
        except ValueError as error:
            return _control_error(str(error))
        customers = query.getall("customer", []) or None
        found = self.sim.generator.incidents(since, until, customers)
        kinds, meters = query.getall("kind", []), query.getall("meter", [])
        unknown = set(kinds) - set(INCIDENT_KINDS)
        if unknown:
            return _control_error(f"unknown incident kinds {sorted(unknown)}")
        data = [
            i.to_json() for i in found
            if (not kinds or i.kind in kinds) and (not meters or i.meter in meters)
        ]
        return json_response({"object": "list", "data": data})

    async def get_now(self, request: web.Request) -> web.Response:
        return json_response(self._clock())

    def _clock(self) -> dict[str, Any]:
        return {
            "now": self.sim.now(),
            "frozen": self.sim.clock.frozen is not None,
            "refreshed_at": self.sim.refreshed_at(),
            "history_start": self.sim.generator.history_start,
        }

    async def set_now(self, request: web.Request) -> web.Response:
        try:
            raw = await request.json()
            if not isinstance(raw, dict) or not {"now", "advance"} & set(raw):
                raise ValueError('send {"now": T}, {"now": null} or {"advance": SECONDS}')
            if "now" in raw:
                now = raw["now"]
                self.sim.set_now(
                    None if now is None else float(now) if isinstance(now, int | float)
                    else parse_instant(str(now), time.time())
                )
            if "advance" in raw:
                self.sim.advance(float(raw["advance"]))
        except (ValueError, TypeError) as error:
            return _control_error(str(error))
        return json_response(self._clock())

    async def stats(self, request: web.Request) -> web.Response:
        return json_response(self.sim.stats())

    async def reset_stats(self, request: web.Request) -> web.Response:
        self.sim.reset_stats()
        return json_response(self.sim.stats())

    async def faults(self, request: web.Request) -> web.Response:
        return json_response({"faults": self.sim.faults.active()})

    async def add_faults(self, request: web.Request) -> web.Response:
        try:
            raw = await request.json()
            items = raw.get("faults", [raw]) if isinstance(raw, dict) else raw
            faults = [Fault.from_json(item) for item in items]
        except (ValueError, TypeError, AttributeError) as error:
            return _control_error(str(error))
        for fault in faults:
            self.sim.add_fault(fault)
        return json_response({"faults": self.sim.faults.active()})

    async def clear_faults(self, request: web.Request) -> web.Response:
        self.sim.clear_faults()
        return json_response({"faults": []})


def _instant(text: str, now: float) -> int:
    """Unix seconds, ISO 8601, or a duration ago (``10d``)."""
    return int(text) if text.strip().isdigit() else parse_instant(text, now)


def _control_error(message: str) -> web.Response:
    return web.Response(
        status=400, text=json.dumps({"error": {"message": message}}),
        content_type="application/json",
    )

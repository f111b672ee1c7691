"""The Stripe endpoints of the simulator: parse and validate, ask the generator, render.

Each handler reads the simulator's generator, clock and configuration through the
:class:`~alertd.sim.server.Simulator` it was built for; authentication, rate limits, faults and
``Request-Id`` happen before, in the server's edge.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from aiohttp import web

from alertd.sim import responses
from alertd.sim.profiles import METERS, METERS_BY_ID, customer_id, customer_index
from alertd.sim.stripe_form import StripeRequestError, check_known, invalid, parse_form
from alertd.sim.validate import (
    ApiVersion,
    api_version,
    list_request,
    page_request,
    summary_request,
    usage_query,
)
from alertd.source.search import SearchQueryError, parse_search

if TYPE_CHECKING:
    from alertd.sim.server import Simulator

#: Whether the request's API key is a live-mode key (set by the server's edge).
LIVEMODE = web.RequestKey("livemode", bool)


def json_response(data: Any, version: ApiVersion | None = None) -> web.Response:
    """A JSON response (``data`` already rendered when it is a string), echoing the version."""
    text = data if isinstance(data, str) else json.dumps(data)
    headers = {"Stripe-Version": version.text} if version is not None else None
    return web.Response(text=text, content_type="application/json", headers=headers)


def _page(
    ids: Sequence[str], limit: int, starting_after: str | None, ending_before: str | None,
    position: Callable[[str], int | None],
) -> tuple[range, bool]:
    """Which positions of a list a page holds, and whether more follow (Stripe's cursors)."""
    cursor = starting_after or ending_before
    if cursor is None:
        return range(min(limit, len(ids))), limit < len(ids)
    found = position(cursor)
    if found is None:
        param = "starting_after" if starting_after else "ending_before"
        raise invalid(f"No such object: '{cursor}'", param, "resource_missing")
    if starting_after:
        end = min(found + 1 + limit, len(ids))
        return range(found + 1, end), end < len(ids)
    start = max(0, found - limit)
    return range(start, found), start > 0


class _NewestFirst(Sequence[str]):
    """Customer ids, newest (highest number) first, without building every profile."""

    def __init__(self, count: int) -> None:
        self._count = count

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, position: Any) -> Any:
        if isinstance(position, slice):
            return [self[p] for p in range(*position.indices(self._count))]
        return customer_id(self._count - 1 - position)

    def position(self, customer: str) -> int | None:
        index = customer_index(customer, self._count)
        return None if index is None else self._count - 1 - index


class StripeEndpoints:
    """The Stripe endpoints; they read the simulator's generator, clock and configuration."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.generator = sim.generator

    def _version(self, request: web.Request) -> ApiVersion:
        return api_version(request.headers.get("Stripe-Version"), self.sim.config.default_version)

    def _exists(self, customer: str) -> bool:
        return customer_index(customer, self.generator.customer_count) is not None

    async def meter_usage(self, request: web.Request) -> web.Response:
        version = self._version(request)
        query = usage_query(parse_form(request.query.items()), version, self._exists)
        refreshed_at = self.sim.refreshed_at()
        livemode, max_rows = request[LIVEMODE], self.sim.config.max_rows
        order_key = int.from_bytes(
            hashlib.blake2b(request.query_string.encode(), digest_size=8).digest(), "big")

        def build() -> str:
            return responses.meter_usage(
                self.generator.usage(query, refreshed_at),
                current_shape=version.current_shape, refreshed_at=refreshed_at,
                livemode=livemode, max_rows=max_rows, order_key=order_key,
                customer=query.customer)

        # Built in the simulator's builder thread: the event loop stays free to accept (and
        # stamp) the requests that arrive meanwhile (see alertd.sim.server).
        return json_response(await self.sim.build(build), version)

    async def summaries(self, request: web.Request) -> web.Response:
        version = self._version(request)
        meter = request.match_info["meter"]
        if meter not in METERS_BY_ID:
            raise StripeRequestError(
                404, f"No such billing meter: '{meter}'", code="resource_missing", param="id"
            )
        ask = summary_request(parse_form(request.query.items()), self._exists)
        found = self.generator.summaries(
            ask.customer, meter, ask.start_time, ask.end_time, ask.window, self.sim.refreshed_at()
        )
        found.reverse()  # Stripe lists summaries newest first
        ids = [_summary_id(ask.customer, meter, start, end) for start, end, _ in found]
        chosen, has_more = _page(ids, ask.limit, ask.starting_after, ask.ending_before,
                                 _position_in(ids))
        data = [
            responses.summary(ids[p], meter, *found[p], livemode=request[LIVEMODE])
            for p in chosen
        ]
        return json_response(responses.page(request.path, data, has_more), version)

    async def meters(self, request: web.Request) -> web.Response:
        version = self._version(request)
        ask = list_request(parse_form(request.query.items()), ("status",))
        chosen_meters = [m for m in METERS if ask.filters.get("status", "active") == "active"]
        ids = [m.id for m in chosen_meters]
        chosen, has_more = _page(ids, ask.limit, ask.starting_after, ask.ending_before,
                                 _position_in(ids))
        created = self.generator.history_start - 365 * 86_400
        data = [responses.meter(chosen_meters[p], created, request[LIVEMODE]) for p in chosen]
        return json_response(responses.page("/v1/billing/meters", data, has_more), version)

    async def meter(self, request: web.Request) -> web.Response:
        version = self._version(request)
        definition = METERS_BY_ID.get(request.match_info["meter"])
        if definition is None:
            raise StripeRequestError(
                404, f"No such billing meter: '{request.match_info['meter']}'",
                code="resource_missing", param="id",
            )
        created = self.generator.history_start - 365 * 86_400
        return json_response(responses.meter(definition, created, request[LIVEMODE]), version)

    async def customers(self, request: web.Request) -> web.Response:
        version = self._version(request)
        ask = list_request(parse_form(request.query.items()), ("email",))
        newest_first = _NewestFirst(self.generator.customer_count)
        ids: Sequence[str] = newest_first
        position: Callable[[str], int | None] = newest_first.position
        if "email" in ask.filters:
            ids = [p.id for p in reversed(self.generator.profiles())
                   if p.email == ask.filters["email"]]
            position = _position_in(ids)
        chosen, has_more = _page(ids, ask.limit, ask.starting_after, ask.ending_before, position)
        data = [self._customer_json(ids[p], request) for p in chosen]
        return json_response(responses.page("/v1/customers", data, has_more), version)

    def _customer_json(self, customer: str, request: web.Request) -> dict[str, Any]:
        profile = self.generator.profile(customer)
        if profile is None:
            raise StripeRequestError(
                404, f"No such customer: '{customer}'", code="resource_missing", param="id"
            )
        return responses.customer(profile, request[LIVEMODE])

    async def customer(self, request: web.Request) -> web.Response:
        version = self._version(request)
        check_known(parse_form(request.query.items()), ())
        found = self._customer_json(request.match_info["customer"], request)
        return json_response(found, version)

    async def search(self, request: web.Request) -> web.Response:
        version = self._version(request)
        text, limit, offset = page_request(parse_form(request.query.items()))
        try:
            query = parse_search(text)
        except SearchQueryError as exc:
            raise invalid(str(exc), "query") from None
        matches = [p for p in reversed(self.generator.profiles()) if query.matches(p.customer())]
        chosen = matches[offset:offset + limit]
        more = offset + limit < len(matches)
        data = [responses.customer(p, request[LIVEMODE]) for p in chosen]
        next_page = f"page_{offset + limit}" if more else None
        page = responses.search_page("/v1/customers/search", data, more, next_page)
        return json_response(page, version)


def _position_in(ids: list[str]) -> Callable[[str], int | None]:
    where = {customer: position for position, customer in enumerate(ids)}
    return where.get


def _summary_id(customer: str, meter: str, start: int, end: int) -> str:
    digest = hashlib.blake2b(f"{customer}|{meter}|{start}|{end}".encode(), digest_size=12)
    return f"mtrusg_sim_{digest.hexdigest()}"

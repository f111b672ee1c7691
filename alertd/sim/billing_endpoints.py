"""The simulator's billing endpoints: subscriptions, prices, credit grants, balance summaries.

They answer from :class:`~alertd.sim.billing.SimBilling` at the simulator's clock, behind the
same edge as every other endpoint (authentication, general rate limit, faults, ``Request-Id``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from alertd.sim.billing import SimBilling, balance_summary_json, grant_json, price_json
from alertd.sim.endpoints import json_response
from alertd.sim.stripe_form import StripeRequestError, check_known, invalid, parse_form

if TYPE_CHECKING:
    from alertd.sim.server import Simulator


class BillingEndpoints:
    """Handlers for the billing routes."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.billing = SimBilling(sim.generator)

    def _now(self) -> int:
        return int(self.sim.now())

    def _customer(self, raw: object) -> str:
        if not isinstance(raw, str) or self.billing.index(raw) is None:
            raise StripeRequestError(404, f"No such customer: '{raw}'",
                                     code="resource_missing", param="customer")
        return raw

    async def subscriptions(self, request: web.Request) -> web.Response:
        form = parse_form(request.query.items())
        check_known(form, ("customer", "status", "limit", "starting_after"))
        customer = self._customer(form.get("customer"))
        data = [] if form.get("starting_after") else [
            self.billing.subscription(customer, self._now())]
        return json_response({"object": "list", "data": data, "has_more": False,
                              "url": "/v1/subscriptions"})

    async def price(self, request: web.Request) -> web.Response:
        form = parse_form(request.query.items())
        check_known(form, ())
        expand = form.get("expand")
        expanded = expand.values() if isinstance(expand, dict) else [expand]
        found = price_json(request.match_info["price"], tiers="tiers" in expanded)
        if found is None:
            raise StripeRequestError(404, f"No such price: '{request.match_info['price']}'",
                                     code="resource_missing", param="id")
        return json_response(found)

    async def credit_grants(self, request: web.Request) -> web.Response:
        form = parse_form(request.query.items())
        check_known(form, ("customer", "limit", "starting_after"))
        customer = self._customer(form.get("customer"))
        data = [grant_json(g) for g in self.billing.grants(customer, self._now())]
        return json_response({"object": "list", "data": data, "has_more": False,
                              "url": "/v1/billing/credit_grants"})

    async def create_grant(self, request: web.Request) -> web.Response:
        form = parse_form((await request.post()).items())  # type: ignore[arg-type]
        customer = self._customer(form.get("customer"))
        amount = form.get("amount")
        monetary = amount.get("monetary") if isinstance(amount, dict) else None
        if not isinstance(monetary, dict):
            raise invalid("Missing required param: amount[monetary].", "amount")
        value, currency = monetary.get("value"), monetary.get("currency")
        if not isinstance(value, str) or not value.isdigit() or not isinstance(currency, str):
            raise invalid("Invalid amount[monetary].", "amount[monetary][value]")
        grant = self.billing.top_up(customer, currency.lower(), int(value), self._now())
        return json_response(grant_json(grant))

    async def balance_summary(self, request: web.Request) -> web.Response:
        form = parse_form(request.query.items())
        check_known(form, ("customer", "filter"))
        customer = self._customer(form.get("customer"))
        if not isinstance(form.get("filter"), dict):
            raise invalid("Missing required param: filter.", "filter")
        return json_response(balance_summary_json(
            customer, self.billing.available(customer, self._now())))


def add_routes(app: web.Application, sim: Simulator) -> BillingEndpoints:
    billing = BillingEndpoints(sim)
    get = app.router.add_get
    get("/v1/subscriptions", billing.subscriptions, name="subscriptions.list")
    get("/v1/prices/{price}", billing.price, name="prices.retrieve")
    get("/v1/billing/credit_grants", billing.credit_grants, name="credit_grants.list")
    app.router.add_post("/v1/billing/credit_grants", billing.create_grant,
                        name="credit_grants.create")
    get("/v1/billing/credit_balance_summary", billing.balance_summary,
        name="credit_balance_summary")
    return billing

"""Prices, billing periods and credit from Stripe, on the general budget, cached.

Where it sits: the engine asks :meth:`BillingSource.billing` for each customer of a rule that
prices usage (:func:`alertd.conditions.money.wants_billing`) and attaches the answer to the
customer it hands to evaluators. Nothing here is asked on a poll whose answers are cached:
every answer is kept for ``stripe.billing_refresh`` seconds, so prices cost general-budget
requests only at a refresh, never an extra usage request.

Requests (all ``GET``, general budget), per customer and refresh:

* ``/v1/subscriptions?customer=&status=active&expand[]=data.items.data.price`` (pages of 100):
  each item's price and its ``current_period_start``/``current_period_end`` (the item's since
  API version ``2025-03-31.basil``; the subscription's before it).
* ``/v1/prices/{id}?expand[]=tiers`` once per distinct *tiered* price (``tiers`` is
  includable only, and one level too deep to expand through a subscription), cached by price id
  so customers on one price share it.
* with ``credit``: ``/v1/billing/credit_balance_summary?customer=&filter[type]=applicability_scope
  &filter[applicability_scope][price_type]=metered`` and ``/v1/billing/credit_grants?customer=``.

A failed or malformed answer is not cached: the customer's billing carries a ``problem`` (its
cost and credit rules get an ``error`` finding naming it) and the next poll asks again.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from alertd.billing import BillingItem, Credit, CustomerBilling
from alertd.clock import Clock
from alertd.errors import MalformedResponseError, SourceError
from alertd.model import Period
from alertd.pricing import PricePlan, UnsupportedPrice, minor_digits, parse_price
from alertd.source.directory import PAGE_SIZE, TimedCache
from alertd.source.http import StripeHTTP

log = logging.getLogger("alertd.source")

#: A customer with more active subscriptions than this many pages is refused, not read whole.
MAX_PAGES = 10


class BillingSource:
    """Reads and caches customers' billing (see the module docstring)."""

    def __init__(self, http: StripeHTTP, *, clock: Clock, refresh: float) -> None:
        self.http = http
        self.clock = clock
        self._items: TimedCache[tuple[BillingItem, ...]] = TimedCache(clock, refresh)
        self._prices: TimedCache[PricePlan | UnsupportedPrice] = TimedCache(clock, refresh)
        self._credit: TimedCache[tuple[Credit, ...]] = TimedCache(clock, refresh)

    async def billing(self, customer: str, *, credit: bool, now: int) -> CustomerBilling:
        """``customer``'s priced items (and credit when asked), or a ``problem``."""
        try:
            items = await self._items.get(customer, lambda: self._load_items(customer))
            credits: tuple[Credit, ...] = ()
            if credit:
                credits = await self._credit.get(
                    customer, lambda: self._load_credit(customer, now))
        except SourceError as exc:
            log.warning("billing unavailable customer=%s error=%s", customer, exc)
            return CustomerBilling(problem=f"could not read its prices or credit: {exc}")
        return CustomerBilling(items=items, credit=credits)

    async def _pages(self, path: str, params: list[tuple[str, str]], endpoint: str,
                     what: str) -> list[dict[str, Any]]:
        """Every object of a Stripe list, pages of 100, at most :data:`MAX_PAGES` of them."""
        found: list[dict[str, Any]] = []
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            page_params = [*params, ("limit", str(PAGE_SIZE))]
            if cursor is not None:
                page_params.append(("starting_after", cursor))
            body, request_id = await self.http.get(path, page_params, budget="general",
                                                   endpoint=endpoint)
            page = _list(body, what, request_id)
            found += page
            if not body.get("has_more") or not page:
                return found
            cursor = str(page[-1].get("id"))
        raise MalformedResponseError(f"more than {MAX_PAGES * PAGE_SIZE} {what}: not read")

    async def _load_items(self, customer: str) -> tuple[BillingItem, ...]:
        subscriptions = await self._pages(
            "/v1/subscriptions", [("customer", customer), ("status", "active"),
                                  ("expand[]", "data.items.data.price")],
            "subscriptions", f"active subscriptions of {customer}")
        items: list[BillingItem] = []
        for subscription in subscriptions:
            items += [await self._item(raw, subscription)
                      for raw in _items_of(subscription, None)]
        return tuple(items)

    async def _item(self, raw: dict[str, Any], subscription: dict[str, Any]) -> BillingItem:
        price = parse_price(raw.get("price"))
        if isinstance(price, UnsupportedPrice) and "needs its tiers" in price.reason:
            price = await self._prices.get(price.id, lambda: self._load_price(price.id))
        start = raw.get("current_period_start", subscription.get("current_period_start"))
        end = raw.get("current_period_end", subscription.get("current_period_end"))
        if not (isinstance(start, int) and isinstance(end, int) and start < end):
            price = UnsupportedPrice(price.id, price.meter,
                                     f"subscription item {raw.get('id')} has no current period")
            start, end = 0, 1
        return BillingItem(str(raw.get("id", "?"))[:100], price, Period(start, end))

    async def _load_price(self, price_id: str) -> PricePlan | UnsupportedPrice:
        body, _ = await self.http.get(f"/v1/prices/{quote(price_id, safe='')}",
                                      [("expand[]", "tiers")], budget="general",
                                      endpoint="prices.retrieve")
        return parse_price(body)

    async def _load_credit(self, customer: str, now: int) -> tuple[Credit, ...]:
        summary, request_id = await self.http.get(
            "/v1/billing/credit_balance_summary",
            [("customer", customer), ("filter[type]", "applicability_scope"),
             ("filter[applicability_scope][price_type]", "metered")],
            budget="general", endpoint="credit_balance_summary")
        available = _balances(summary, request_id)
        grants = await self._pages("/v1/billing/credit_grants", [("customer", customer)],
                                   "credit_grants", f"credit grants of {customer}")
        granted = _granted(grants, now)
        return tuple(Credit(currency, amount, granted.get(currency, Decimal(0)))
                     for currency, amount in sorted(available.items()))


def _list(body: Any, what: str, request_id: str | None) -> list[dict[str, Any]]:
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list) or not all(isinstance(entry, dict) for entry in data):
        raise MalformedResponseError(f"unexpected {what} response: no list of objects in "
                                     f"'data'", request_id=request_id)
    return data


def _items_of(subscription: dict[str, Any], request_id: str | None) -> list[dict[str, Any]]:
    return _list(subscription.get("items"), "subscription items", request_id)


def _minor_to_major(value: Any, currency: Any, what: str) -> tuple[str, Decimal]:
    if not isinstance(currency, str) or not isinstance(value, int) or isinstance(value, bool):
        raise MalformedResponseError(f"unexpected {what}: amount {value!r} {currency!r}")
    return currency.lower(), Decimal(value).scaleb(-minor_digits(currency))


def _balances(body: Any, request_id: str | None) -> dict[str, Decimal]:
    balances = body.get("balances") if isinstance(body, dict) else None
    if not isinstance(balances, list):
        raise MalformedResponseError("unexpected credit balance summary: no 'balances'",
                                     request_id=request_id)
    found: dict[str, Decimal] = {}
    for entry in balances:
        monetary = ((entry or {}).get("available_balance") or {}).get("monetary") \
            if isinstance(entry, dict) else None
        if not isinstance(monetary, dict):
            raise MalformedResponseError("unexpected credit balance summary: a balance "
                                         "without available_balance.monetary",
                                         request_id=request_id)
        currency, amount = _minor_to_major(monetary.get("value"), monetary.get("currency"),
                                           "credit balance")
        found[currency] = found.get(currency, Decimal(0)) + amount
    return found


def _granted(grants: list[dict[str, Any]], now: int) -> dict[str, Decimal]:
    """The amounts of the grants in effect at ``now``, by currency."""
    totals: dict[str, Decimal] = {}
    for grant in grants:
        expires, voided = grant.get("expires_at"), grant.get("voided_at")
        effective = grant.get("effective_at")
        if voided is not None or (isinstance(expires, int) and expires <= now):
            continue
        if isinstance(effective, int) and effective > now:
            continue
        monetary = (grant.get("amount") or {}).get("monetary")
        if not isinstance(monetary, dict):
            continue
        currency, amount = _minor_to_major(monetary.get("value"), monetary.get("currency"),
                                           "credit grant")
        totals[currency] = totals.get(currency, Decimal(0)) + amount
    return totals

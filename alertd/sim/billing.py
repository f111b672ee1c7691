"""The simulator's prices, subscriptions and billing credits, consistent with its usage.

Deterministic from the customer index (no state but the credit grants created over HTTP):

* Prices, per meter and plan (all per token or call, amounts in cents as Stripe's decimals):
  tokens — ``free``: graduated, the first 1,000,000 free then 0.001¢; ``pro``: per unit
  0.001¢ ($10 per million); ``enterprise``: volume, 0.001¢ up to 10,000,000 then 0.0008¢ plus a
  $50 flat amount. API calls: package pricing, 50¢ per 1,000 calls rounded up
  (``transform_quantity``). Storage: a licensed (not metered) price, so no meter price.
  Every tenth customer (index 9, 19, ...) is billed in EUR, the others in USD.
* One active subscription per customer, monthly, anchored on day ``1 + 5·index mod 28`` at hour
  ``7·index mod 24`` UTC; each item carries its own ``current_period_start``/``_end``.
* Every third customer (index 0, 3, 6, ...) has a paid credit grant, effective at the start of
  its previous billing period, applicable to its tokens price, of ``factor ×`` what that
  period's tokens cost (``factor = 1.3 + 0.2 · (index mod 4)``, rounded up to a whole unit).
  The previous period's invoice consumed its cost, so the balance summary's available balance
  is ``grant − previous period's cost`` (never below zero) plus later grants; the current
  period's usage is not invoiced yet, so it is not subtracted, as in Stripe.
* ``POST /v1/billing/credit_grants`` adds a grant (a top-up) effective now.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from alertd.pricing import PricePlan, cost, minor_digits, parse_price
from alertd.sim.profiles import API_CALLS, STORAGE, TOKENS, customer_index

if TYPE_CHECKING:
    from alertd.sim.generator import UsageGenerator

_TOKEN_TIERS: dict[str, tuple[str, list[dict[str, Any]]]] = {
    "free": ("graduated", [{"up_to": 1_000_000, "unit_amount_decimal": "0"},
                           {"up_to": None, "unit_amount_decimal": "0.001"}]),
    "enterprise": ("volume", [{"up_to": 10_000_000, "unit_amount_decimal": "0.001"},
                              {"up_to": None, "unit_amount_decimal": "0.0008",
                               "flat_amount_decimal": "5000"}]),
}


#: The meter each price id names (``price_<meter>_…``), by its short name.
_METER_IDS = {"tokens": TOKENS.id, "api": API_CALLS.id, "storage": STORAGE.id}


def currency_of(index: int) -> str:
    return "eur" if index % 10 == 9 else "usd"


def price_json(price_id: str, *, tiers: bool) -> dict[str, Any] | None:
    """The price object ``price_<meter>_<plan>_<currency>``; ``tiers`` as ``expand[]=tiers``."""
    parts = price_id.split("_")
    if len(parts) != 4 or parts[0] != "price" or parts[3] not in ("usd", "eur"):
        return None
    _, meter, plan, currency = parts
    base: dict[str, Any] = {
        "id": price_id, "object": "price", "active": True, "currency": currency,
        "custom_unit_amount": None, "livemode": False, "type": "recurring",
        "recurring": {"interval": "month", "interval_count": 1, "usage_type": "metered",
                      "meter": _METER_IDS.get(meter)},
        "tiers_mode": None, "transform_quantity": None, "unit_amount": None,
        "unit_amount_decimal": None, "billing_scheme": "per_unit",
    }
    if meter == "tokens" and plan in _TOKEN_TIERS:
        mode, table = _TOKEN_TIERS[plan]
        base.update(billing_scheme="tiered", tiers_mode=mode)
        if tiers:
            base["tiers"] = [{"flat_amount": None, "flat_amount_decimal": None,
                              "unit_amount": None, **tier} for tier in table]
    elif meter == "tokens" and plan == "pro":
        base.update(unit_amount_decimal="0.001")
    elif meter == "api":
        base.update(unit_amount=50, unit_amount_decimal="50",
                    transform_quantity={"divide_by": 1000, "round": "up"})
    elif meter == "storage":
        base["recurring"] = {"interval": "month", "interval_count": 1, "usage_type": "licensed",
                             "meter": None}
        base.update(unit_amount=2000, unit_amount_decimal="2000")
    else:
        return None
    return base


def _price_ids(plan: str, currency: str) -> dict[str, str]:
    return {TOKENS.id: f"price_tokens_{plan}_{currency}",
            API_CALLS.id: f"price_api_{plan}_{currency}",
            STORAGE.id: f"price_storage_{plan}_{currency}"}


def _monthly(year: int, month: int, day: int, hour: int) -> int:
    year, month = year + (month - 1) // 12, (month - 1) % 12 + 1
    return int(datetime(year, month, day, hour, tzinfo=UTC).timestamp())


def current_period(index: int, now: int) -> tuple[int, int]:
    """The billing period containing ``now`` of the customer at ``index``."""
    day, hour = 1 + (5 * index) % 28, (7 * index) % 24
    at = datetime.fromtimestamp(now, UTC)
    for months_back in (0, 1):
        start = _monthly(at.year, at.month - months_back, day, hour)
        if start <= now:
            return start, _monthly(at.year, at.month - months_back + 1, day, hour)
    raise AssertionError("a month back is always before now")


@dataclass
class Grant:
    id: str
    customer: str
    currency: str
    value: int  #: minor units
    effective_at: int


class SimBilling:
    """Prices, subscriptions, grants and balances for the generator's customers."""

    def __init__(self, generator: UsageGenerator) -> None:
        self.generator = generator
        self.topups: list[Grant] = []

    def index(self, customer: str) -> int | None:
        return customer_index(customer, self.generator.customer_count)

    def subscription(self, customer: str, now: int) -> dict[str, Any]:
        index = self.index(customer)
        profile = self.generator.profile(customer)
        assert index is not None and profile is not None
        start, end = current_period(index, now)
        ids = _price_ids(profile.plan, currency_of(index))
        items = []
        for number, meter in enumerate((TOKENS, API_CALLS, STORAGE)):
            price = price_json(ids[meter.id], tiers=False)
            items.append({"id": f"si_sim_{index + 1:06d}_{number}", "object": "subscription_item",
                          "current_period_start": start, "current_period_end": end,
                          "price": price, "quantity": None if number < 2 else 1})
        return {"id": f"sub_sim_{index + 1:06d}", "object": "subscription", "status": "active",
                "customer": customer, "currency": currency_of(index),
                "billing_cycle_anchor": start,
                "items": {"object": "list", "data": items, "has_more": False}}

    def _tokens_plan(self, customer: str) -> PricePlan:
        index = self.index(customer)
        profile = self.generator.profile(customer)
        assert index is not None and profile is not None
        raw = price_json(_price_ids(profile.plan, currency_of(index))[TOKENS.id], tiers=True)
        plan = parse_price(raw)
        assert isinstance(plan, PricePlan)
        return plan

    def _cost_minor(self, customer: str, start: int, end: int, as_of: int) -> int:
        used = self.generator.summaries(customer, TOKENS.id, start, end, None, as_of)
        total = sum(value for _, _, value in used)
        plan = self._tokens_plan(customer)
        return int(cost(plan, Decimal(total)).scaleb(minor_digits(plan.currency)))

    def _first_grant(self, customer: str, now: int) -> tuple[Grant, int] | None:
        """The deterministic grant of every third customer, and what the previous period's
        invoice consumed of it (minor units)."""
        index = self.index(customer)
        if index is None or index % 3 != 0:
            return None
        start, _ = current_period(index, now)
        previous, _ = current_period(index, start - 1)
        spent = self._cost_minor(customer, previous, start, now)
        factor = 1.3 + 0.2 * (index % 4)
        unit = 10 ** minor_digits(currency_of(index))
        value = math.ceil(spent * factor / unit) * unit
        if value == 0:
            return None  # nothing was spent last period: no grant to size
        grant = Grant(f"credgr_sim_{index + 1:06d}", customer, currency_of(index), value,
                      previous)
        return grant, spent

    def grants(self, customer: str, now: int) -> list[Grant]:
        first = self._first_grant(customer, now)
        later = [g for g in self.topups if g.customer == customer and g.effective_at <= now]
        return ([first[0]] if first else []) + later

    def available(self, customer: str, now: int) -> dict[str, int]:
        """Available balance by currency: grants minus invoiced (previous period) usage."""
        totals: dict[str, int] = {}
        first = self._first_grant(customer, now)
        if first is not None:
            grant, spent = first
            totals[grant.currency] = max(0, grant.value - spent)
        for grant in self.grants(customer, now)[1 if first else 0:]:
            totals[grant.currency] = totals.get(grant.currency, 0) + grant.value
        return totals

    def top_up(self, customer: str, currency: str, value: int, now: int) -> Grant:
        grant = Grant(f"credgr_sim_topup_{len(self.topups) + 1}", customer, currency, value, now)
        self.topups.append(grant)
        return grant


def grant_json(grant: Grant) -> dict[str, Any]:
    return {
        "id": grant.id, "object": "billing.credit_grant", "customer": grant.customer,
        "amount": {"type": "monetary",
                   "monetary": {"currency": grant.currency, "value": grant.value}},
        "applicability_config": {"scope": {"price_type": "metered"}},
        "category": "paid", "effective_at": grant.effective_at, "expires_at": None,
        "voided_at": None, "livemode": False,
    }


def balance_summary_json(customer: str, available: dict[str, int]) -> dict[str, Any]:
    balances = [{
        "available_balance": {"type": "monetary",
                              "monetary": {"currency": currency, "value": value}},
        "ledger_balance": {"type": "monetary",
                           "monetary": {"currency": currency, "value": value}},
    } for currency, value in sorted(available.items())]
    return {"object": "billing.credit_balance_summary", "customer": customer,
            "balances": balances, "livemode": False}

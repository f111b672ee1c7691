"""A first pass judges the customers already listed while the listing goes on (issue 13).

The simulator answers through an ``httpx.MockTransport`` that forwards every request to it
and can hold (or refuse) page 2 of the customer list: what was sent before page 2 was
answered is read from the order of the requests it saw, never from the time they took."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
import pytest

from alertd.clock import SystemClock
from alertd.config.settings import Settings
from alertd.errors import PermissionDeniedError
from alertd.rules.loader import RuleSet
from alertd.rules.schema import Rule
from alertd.service.engine import BatchFindings, Engine, PassResult
from alertd.service.world import StripeStack, stripe_stack
from alertd.sim.server import Simulator
from alertd.sim.testing import API_KEY, TEST_NOW, running_simulator
from tests.source.fakes import stripe_error

CUSTOMERS = 250  # three pages of the customer list
#: How long page 2 waits for a usage request before it is answered anyway: only a broken
#: engine ever waits that long (it then fails the ordering assertions, not a timing one).
PATIENCE = 20.0


def rule(name: str, window: str = "month", **fields: Any) -> Rule:
    return Rule.model_validate({
        "name": name, "meter": "mtr_sim_tokens", "window": window,
        "condition": {"type": "threshold", "op": ">=", "value": 1000}, **fields})


class Forwarding:
    """Forwards to the simulator, logging each request as it comes (``usage`` with its
    customer, ``page`` with its number) and ``answered page 2`` when page 2 is answered.
    Page 2 waits until a usage request has come (at most :data:`PATIENCE`); ``refuse``
    answers page 2 with a 403 instead."""

    def __init__(self, sim: Simulator) -> None:
        self.client = httpx.AsyncClient(base_url=sim.url)
        self.log: list[tuple[str, str]] = []
        self.first_page: list[str] = []
        self.usage_seen = asyncio.Event()
        self.refuse = False
        self.hold = True

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/meter_usage"):
            self.log.append(("usage", request.url.params["customer"]))
            self.usage_seen.set()
        elif path == "/v1/customers":
            return await self.customers(request)
        return await self.forward(request)

    async def customers(self, request: httpx.Request) -> httpx.Response:
        after = request.url.params.get("starting_after")
        page = "1" if after is None else "2" if after == self.first_page[-1] else "3"
        self.log.append(("page", page))
        if page == "2":
            if self.hold:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.usage_seen.wait(), PATIENCE)
            self.log.append(("answered", "page 2"))
            if self.refuse:
                return stripe_error(403, "no permission", request_id="req_page2")
        response = await self.forward(request)
        if page == "1":
            self.first_page = [c["id"] for c in response.json()["data"]]
        return response

    async def forward(self, request: httpx.Request) -> httpx.Response:
        sent = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        answer = await self.client.get(request.url.path, params=request.url.params,
                                       headers=sent)
        kept = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP}
        return httpx.Response(answer.status_code, headers=kept, content=answer.content)


HOP_BY_HOP = {"host", "content-length", "content-encoding", "transfer-encoding",
              "accept-encoding", "connection"}


def settings_for(sim: Simulator) -> Settings:
    return Settings.model_validate({
        "stripe": {"api_base": sim.url, "api_key": API_KEY, "max_retries": 0},
        "customers": {"all": True}})


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with running_simulator(customers=CUSTOMERS, days=3) as running:
        yield running


@pytest.fixture
async def forwarding(sim: Simulator) -> AsyncIterator[Forwarding]:
    forwarding = Forwarding(sim)
    async with forwarding.client:
        yield forwarding


def stack_for(sim: Simulator, forwarding: Forwarding | None = None
              ) -> AbstractAsyncContextManager[StripeStack]:
    transport = httpx.MockTransport(forwarding) if forwarding is not None else None
    return stripe_stack(settings_for(sim), clock=SystemClock(), transport=transport)


def engine_for(sim: Simulator, stack: StripeStack, *rules: Rule) -> Engine:
    return Engine(settings_for(sim), RuleSet(rules), stack.source, stack.directory)


async def test_page_one_customers_are_read_before_page_two_is_answered(
    sim: Simulator, forwarding: Forwarding,
) -> None:
    async with stack_for(sim, forwarding) as stack:
        result = await engine_for(sim, stack, rule("month")).run_pass(TEST_NOW)
    answered = forwarding.log.index(("answered", "page 2"))
    early = [customer for kind, customer in forwarding.log[:answered] if kind == "usage"]
    assert early and set(early) <= set(forwarding.first_page)
    assert len(result.customers) == CUSTOMERS
    assert len(result.findings) == CUSTOMERS
    assert not [f for f in result.findings if f.state == "error"]


async def test_a_listing_failing_on_page_two_judges_page_one_and_is_listed_again(
    sim: Simulator, forwarding: Forwarding,
) -> None:
    forwarding.refuse = True
    handed: list[BatchFindings] = []

    async def on_batch(found: BatchFindings) -> None:
        handed.append(found)

    async with stack_for(sim, forwarding) as stack:
        engine = engine_for(sim, stack, rule("month"), rule("day", window="day"))
        failed = await engine.run_pass(TEST_NOW, on_batch=on_batch)
        forwarding.refuse, forwarding.hold = False, False
        again = await engine.run_pass(TEST_NOW)
    findings = [f for found in handed for f in found.findings]
    errors = [f for f in findings if f.state == "error"]
    assert sorted((f.rule, f.customer) for f in errors) == [("day", ""), ("month", "")]
    assert all("could not read the rule's customers" in f.message for f in errors)
    judged = {(f.rule, f.customer) for f in findings if f.state != "error"}
    assert judged == {(r, c) for r in ("day", "month") for c in forwarding.first_page}
    assert set(failed.customers) == set(forwarding.first_page)
    [failure] = failed.failures
    assert isinstance(failure, PermissionDeniedError) and failure.request_id == "req_page2"
    assert failed.problem.startswith("could not read the rule's customers")
    # Nothing was cached: the next pass lists everyone again, and judges them all.
    assert [p for kind, p in forwarding.log if kind == "page"] == ["1", "2", "1", "2", "3"]
    assert len(again.customers) == CUSTOMERS
    assert not [f for f in again.findings if f.state == "error"]


def mixed_rules(plan: str, ids: list[str], order: str) -> tuple[Rule, ...]:
    rules = {
        "all": rule("everyone"),
        "all-day": rule("everyone-day", window="day"),
        "search": rule("searched", window="day",
                       customers={"search": f"metadata['plan']:'{plan}'"}),
        "ids": rule("chosen", customers=ids),
    }
    return tuple(rules[name] for name in order.split())


@pytest.mark.parametrize("only", [False, True])
@pytest.mark.parametrize("order", ["all search ids all-day", "ids search all-day all"])
async def test_a_streamed_pass_finds_what_a_pass_from_the_cache_finds(
    sim: Simulator, order: str, only: bool,
) -> None:
    async with stack_for(sim) as stack:
        everyone = await stack.directory.customers(settings_for(sim).customers)
        plan = everyone[0].metadata["plan"]
        ids = [everyone[150].id, "cus_sim_missing", everyone[3].id]
    customer_ids = [c.id for c in everyone[::7]] + [ids[0]] if only else None
    rules = mixed_rules(plan, ids, order)

    async def two_passes() -> tuple[PassResult, PassResult]:
        async with stack_for(sim) as stack:
            engine = engine_for(sim, stack, *rules)
            streamed = await engine.run_pass(TEST_NOW, customer_ids=customer_ids)
            cached = await engine.run_pass(TEST_NOW, customer_ids=customer_ids)
        return streamed, cached

    streamed, cached = await two_passes()
    assert streamed.findings == cached.findings
    assert list(streamed.customers.items()) == list(cached.customers.items())
    assert {f.rule for f in streamed.findings} == {r.name for r in rules}
    assert ("chosen", "cus_sim_missing") in {(f.rule, f.customer) for f in streamed.findings
                                             if f.state == "error"} or only
    # The same as the pass had before listings were streamed: every selection whole first.
    async with stack_for(sim) as stack:
        engine = engine_for(sim, stack, *rules)
        chosen = await engine.select_customers(
            rules, set(customer_ids) if customer_ids else None)
    expected = {(name, c.id) for name, cs in chosen.by_rule.items() for c in cs}
    assert {(f.rule, f.customer) for f in streamed.findings if f.state != "error"} == expected


async def test_leaving_the_stack_ends_a_first_listing_under_way(
    sim: Simulator, forwarding: Forwarding,
) -> None:
    async with stack_for(sim, forwarding) as stack:
        listing = stack.directory.listing(settings_for(sim).customers)
        await listing.wait(0)  # page 1 is in; page 2 is held (no usage request will come)
        assert stack.directory.running == 1 and not listing.done
    assert listing.done and isinstance(listing.error, asyncio.CancelledError)
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("alertd-list")]
    assert ("answered", "page 2") not in forwarding.log

"""The customer and meter directory: retrieval, list and search paging, caching."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import pytest

from alertd.clock import FakeClock
from alertd.config.settings import CustomerSelection
from alertd.errors import MalformedResponseError, NotFoundError, PermissionDeniedError
from alertd.model import Customer, Meter
from alertd.source.directory import PAGE_SIZE, Directory

from .fakes import Recorder, make_http, reply, stripe_error


def customer_json(i: int) -> dict[str, Any]:
    return {"id": f"cus_{i:04d}", "object": "customer", "name": f"Customer {i}",
            "email": f"c{i}@example.com", "metadata": {"plan": "pro" if i % 2 else "free",
                                                         "monthly_quota": str(1000 * i)}}


def customer(i: int) -> Customer:
    raw = customer_json(i)
    return Customer(raw["id"], raw["name"], raw["email"], raw["metadata"])


class FakeAccount:
    """Customers and meters behind Stripe's list, retrieve and search endpoints."""

    def __init__(self, customers: int = 250, meters: int = 3) -> None:
        self.customers = [customer_json(i) for i in range(customers)]
        self.meters = [{"id": f"mtr_{i}", "object": "billing.meter", "display_name": f"Meter {i}",
                        "event_name": f"event_{i}", "status": "active"} for i in range(meters)]
        self.deleted = {"cus_gone"}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        params = dict(request.url.params.multi_items())
        if path == "/v1/customers":
            return self.page(self.customers, params)
        if path == "/v1/billing/meters":
            return self.page(self.meters, params)
        if path == "/v1/customers/search":
            return self.search(params)
        customer_id = path.rsplit("/", 1)[1]
        if customer_id in self.deleted:
            return reply({"id": customer_id, "object": "customer", "deleted": True})
        found = [c for c in self.customers if c["id"] == customer_id]
        if not found:
            return stripe_error(404, f"No such customer: '{customer_id}'", code="resource_missing",
                                param="id")
        return reply(found[0], request_id=f"req_{customer_id}")

    @staticmethod
    def page(items: list[dict[str, Any]], params: dict[str, str]) -> httpx.Response:
        limit = int(params["limit"])
        after = params.get("starting_after")
        first = 0 if after is None else [i["id"] for i in items].index(after) + 1
        return reply({"object": "list", "data": items[first:first + limit],
                      "has_more": first + limit < len(items)})

    def search(self, params: dict[str, str]) -> httpx.Response:
        assert params["query"] == "metadata['plan']:'pro'"
        matches = [c for c in self.customers if c["metadata"]["plan"] == "pro"]
        limit = int(params["limit"])
        first = int(params.get("page", "0"))
        more = first + limit < len(matches)
        return reply({"object": "search_result", "data": matches[first:first + limit],
                      "has_more": more, "next_page": str(first + limit) if more else None})


def directory(app: Any, clock: FakeClock, refresh: float = 3600) -> tuple[Directory, Any]:
    http = make_http(app, clock)
    return Directory(http, clock=clock, refresh=refresh), http


async def test_all_customers_are_listed_in_pages_of_100() -> None:
    app = Recorder(FakeAccount(customers=250))
    found, http = directory(app, FakeClock())
    async with http:
        customers = await found.customers(CustomerSelection(all=True))
        assert http.budgets.general.stats().acquired == 3
    assert customers == [customer(i) for i in range(250)]
    assert customers[7].metadata == {"plan": "pro", "monthly_quota": "7000"}
    assert [dict(r.url.params.multi_items()) for r in app.requests] == [
        {"limit": "100"},
        {"limit": "100", "starting_after": "cus_0099"},
        {"limit": "100", "starting_after": "cus_0199"},
    ]


async def test_a_selection_that_chooses_nothing_means_all_customers() -> None:
    found, http = directory(Recorder(FakeAccount(customers=5)), FakeClock())
    async with http:
        assert len(await found.customers(CustomerSelection())) == 5
        assert await found.customers(CustomerSelection(ids=[])) == []


async def test_explicit_ids_are_retrieved_one_by_one_in_order() -> None:
    app = Recorder(FakeAccount())
    found, http = directory(app, FakeClock())
    async with http:
        customers = await found.customers(
            CustomerSelection(ids=["cus_0003", "cus_0001", "cus_gone", "cus_0003"])
        )
    assert customers == [customer(3), customer(1)]  # deleted skipped, duplicate once
    assert sorted(r.url.path for r in app.requests) == [
        "/v1/customers/cus_0001", "/v1/customers/cus_0003", "/v1/customers/cus_gone"
    ]


async def test_an_unknown_customer_id_is_named() -> None:
    found, http = directory(Recorder(FakeAccount()), FakeClock())
    async with http:
        with pytest.raises(NotFoundError) as caught:
            await found.customers(CustomerSelection(ids=["cus_0001", "cus_nope"]))
        assert "cus_nope" in str(caught.value)
        assert "customers.ids" in str(caught.value)
        assert caught.value.code == "resource_missing"
        with pytest.raises(NotFoundError, match="deleted"):
            await found.customer("cus_gone")


async def test_search_follows_next_page() -> None:
    app = Recorder(FakeAccount(customers=250))
    found, http = directory(app, FakeClock())
    async with http:
        customers = await found.customers(CustomerSelection(search="metadata['plan']:'pro'"))
    assert customers == [customer(i) for i in range(1, 250, 2)]
    assert [r.url.params.get("page") for r in app.requests] == [None, "100"]
    assert {r.url.path for r in app.requests} == {"/v1/customers/search"}


async def test_selections_are_cached_for_the_refresh_interval() -> None:
    app = Recorder(FakeAccount(customers=150))
    clock = FakeClock()
    found, http = directory(app, clock, refresh=600)
    async with http:
        everyone = CustomerSelection(all=True)
        first = await found.customers(everyone)
        await found.customers(CustomerSelection(all=True, refresh=5))  # same selection
        assert len(app.requests) == 2
        assert await found.customer("cus_0042") == customer(42)  # filled by the list
        assert len(app.requests) == 2
        clock.advance(601)
        # Expired: the previous list at once, and a refresh in the background.
        assert await found.customers(everyone) == first
        assert len(app.requests) == 2
        await found.settled()
        assert len(app.requests) == 4
        assert await found.customers(everyone) == first
        assert len(app.requests) == 4


async def test_concurrent_callers_share_one_load() -> None:
    app = Recorder(FakeAccount(customers=150))
    found, http = directory(app, FakeClock())
    async with http:
        results = await asyncio.gather(*(
            found.customers(CustomerSelection(all=True)) for _ in range(5)
        ))
    assert all(r == results[0] for r in results)
    assert len(app.requests) == 2


async def test_a_failed_load_is_not_cached() -> None:
    answers = [stripe_error(403, "no permission"), None]
    account = FakeAccount(customers=3)

    def app(request: httpx.Request) -> httpx.Response:
        answer = answers.pop(0) if answers else None
        return answer if answer is not None else account(request)

    found, http = directory(app, FakeClock())
    async with http:
        with pytest.raises(PermissionDeniedError, match="read access to Customers"):
            await found.customers(CustomerSelection(all=True))
        assert len(await found.customers(CustomerSelection(all=True))) == 3


async def test_meters_are_listed_cached_and_checked() -> None:
    app = Recorder(FakeAccount(meters=205))
    found, http = directory(app, FakeClock())
    async with http:
        meters = await found.meters()
        assert meters["mtr_7"] == Meter("mtr_7", "Meter 7", "event_7", "active")
        assert len(meters) == 205
        assert await found.check_meters(["mtr_1", None, "mtr_204"]) == []
        assert len(app.requests) == 3  # three pages, then the cache
        # A miss is asked again once (three more pages) before it is refused.
        assert await found.check_meters(["mtr_1", None, "mtr_x", "mtr_204", "mtr_x"]) == ["mtr_x"]
    assert len(app.requests) == 6
    assert app.requests[1].url.params["starting_after"] == "mtr_99"


async def test_a_meter_created_after_the_list_was_cached_is_not_refused() -> None:
    account = FakeAccount(meters=3)
    found, http = directory(Recorder(account), FakeClock())
    async with http:
        assert await found.check_meters(["mtr_2"]) == []
        account.meters.append({"id": "mtr_new", "object": "billing.meter",
                               "display_name": "New", "event_name": "new", "status": "active"})
        assert await found.check_meters(["mtr_2", "mtr_new"]) == []
        assert "mtr_new" in await found.meters()  # and the cache now knows it


@pytest.mark.parametrize(
    ("item", "hint"),
    [
        ({"id": "cus_1", "metadata": {"quota": 5}}, "metadata"),
        ({"id": 1}, "id"),
        ({"id": "cus_1", "email": ["a@b"]}, "email"),
        ("cus_1", "not an object"),
    ],
)
async def test_malformed_customers(item: Any, hint: str) -> None:
    app = Recorder(lambda request: reply({"data": [item], "has_more": False},
                                         request_id="req_c"))
    found, http = directory(app, FakeClock())
    async with http:
        with pytest.raises(MalformedResponseError) as caught:
            await found.customers(CustomerSelection(all=True))
    assert caught.value.request_id == "req_c"
    assert hint in str(caught.value)


async def test_a_list_that_cannot_advance_is_malformed() -> None:
    app = Recorder(lambda request: reply({"data": [], "has_more": True}))
    found, http = directory(app, FakeClock())
    async with http:
        with pytest.raises(MalformedResponseError, match="cursor"):
            await found.meters()


async def test_a_search_that_repeats_its_page_is_malformed() -> None:
    app = Recorder(lambda request: reply({"object": "search_result", "data": [],
                                          "has_more": True, "next_page": "same"}))
    found, http = directory(app, FakeClock())
    async with http:
        with pytest.raises(MalformedResponseError, match="same page again"):
            await found.customers(CustomerSelection(search="email:'a@b'"))
    assert len(app.requests) == 2


async def test_select_names_unknown_deleted_and_failed_ids_and_keeps_the_rest() -> None:
    account = FakeAccount()

    def app(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/cus_flaky"):
            return stripe_error(500, "boom", type_="api_error", request_id="req_flaky")
        return account(request)

    recorder = Recorder(app)
    found, http = directory(recorder, FakeClock())
    async with http:
        ids = ["cus_0002", "cus_nope", "cus_gone", "cus_flaky", "cus_0001"]
        selected = await found.select(CustomerSelection(ids=ids))
        again = await found.select(CustomerSelection(ids=ids))
    assert selected.customers == (customer(2), customer(1))
    assert [(m.customer_id, m.deleted) for m in selected.missing] == [
        ("cus_nope", False), ("cus_gone", True)]
    assert "Stripe has no customer cus_nope" in selected.missing[0].reason
    assert "was deleted" in selected.missing[1].reason
    [(flaky, error)] = selected.failed
    assert flaky == "cus_flaky" and error.status == 500 and error.request_id == "req_flaky"
    # Found and missing ids are cached; the failed lookup is asked again.
    assert (again.customers, again.missing) == (selected.customers, selected.missing)
    assert [customer_id for customer_id, _ in again.failed] == ["cus_flaky"]
    paths = [r.url.path for r in recorder.requests]
    assert paths.count("/v1/customers/cus_flaky") == 2 * (1 + http.settings.max_retries)
    assert paths.count("/v1/customers/cus_nope") == 1


class Gated:
    """A FakeAccount whose customer list waits at the gate while one is set: page 2 of a
    first listing, or a whole refresh, is then under way until the test opens it."""

    def __init__(self, account: FakeAccount, *, page: int = 1) -> None:
        self.account = account
        self.page = page  # the first page that waits (0: every page)
        self.gate: asyncio.Event | None = None
        self.failing: list[httpx.Response] = []  # answers of the next ones from ``page``

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/customers":
            after = request.url.params.get("starting_after")
            page = 0 if after is None else [c["id"] for c in self.account.customers].index(
                after) // PAGE_SIZE + 1
            if page >= self.page:
                if self.gate is not None:
                    await self.gate.wait()
                if self.failing:
                    return self.failing.pop(0)
        return self.account(request)


async def test_an_expired_list_is_served_while_one_refresh_replaces_it() -> None:
    account = FakeAccount(customers=150)
    gated = Gated(account, page=0)
    app = Recorder(gated)
    clock = FakeClock()
    found, http = directory(app, clock, refresh=600)
    everyone = CustomerSelection(all=True)
    async with http, found:
        first = await found.customers(everyone)
        account.customers.append(customer_json(150))
        clock.advance(601)
        gated.gate = asyncio.Event()
        # Expired: the previous list at once, however often asked, while one refresh waits.
        assert await found.customers(everyone) == first
        await asyncio.sleep(0)  # the refresh sends its first page, which waits at the gate
        assert await found.customers(everyone) == first
        assert found.running == 1
        # A customer expires with its list: served too, and looked up again meanwhile.
        assert await found.customer("cus_0042") == customer(42)
        gated.gate.set()
        await found.settled()
        assert await found.customers(everyone) == [customer(i) for i in range(151)]
        assert await found.customer("cus_0150") == customer(150)  # filled by the refresh
    paths = [r.url.path for r in app.requests]
    assert paths.count("/v1/customers") == 2 + 2  # the first listing, then one refresh
    assert paths.count("/v1/customers/cus_0042") == 1


async def test_a_failed_refresh_keeps_the_old_list_and_the_next_call_retries(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="alertd.source")
    account = FakeAccount(customers=3)
    gated = Gated(account, page=0)
    app = Recorder(gated)
    clock = FakeClock()
    found, http = directory(app, clock, refresh=600)
    everyone = CustomerSelection(all=True)
    async with http, found:
        first = await found.customers(everyone)
        account.customers.append(customer_json(3))
        clock.advance(601)
        gated.failing = [stripe_error(403, "no permission", request_id="req_denied")]
        assert await found.customers(everyone) == first
        await found.settled()
        [warning] = [r for r in caplog.records if "refresh failed" in r.getMessage()]
        assert warning.levelname == "WARNING"
        assert "request_id=req_denied" in warning.getMessage()
        assert "key=all" in warning.getMessage()
        assert await found.customers(everyone) == first  # kept; and refreshed again
        await found.settled()
        assert await found.customers(everyone) == [customer(i) for i in range(4)]
    assert len(app.requests) == 3


async def test_aclose_cancels_a_refresh_and_a_first_listing_under_way() -> None:
    gated = Gated(FakeAccount(customers=150), page=0)
    clock = FakeClock()
    found, http = directory(Recorder(gated), clock, refresh=600)
    async with http:
        first = await found.customers(CustomerSelection(all=True))
        clock.advance(601)
        gated.gate = asyncio.Event()  # never opened
        assert await found.customers(CustomerSelection(all=True)) == first
        searching = found.listing(CustomerSelection(search="metadata['plan']:'pro'"))
        listing = found.listing(CustomerSelection(all=True, refresh=5))
        assert listing.done  # the stale list, not a new listing
        await asyncio.sleep(0)
        assert found.running == 2
        await found.aclose()
        assert found.running == 0
        assert searching.done
        with pytest.raises(asyncio.CancelledError):
            await searching.complete()
    left = [t for t in asyncio.all_tasks() if t.get_name().startswith("alertd-")]
    assert left == []


async def test_a_listing_closed_before_it_ran_ends_and_is_forgotten() -> None:
    """Closed before the listing's task took its first step (its body never runs): the
    listing ends as closed all the same, or every pass waiting for it would wait for ever."""
    found, http = directory(Recorder(FakeAccount(customers=3)), FakeClock())
    everyone = CustomerSelection(all=True)
    async with http:
        listing = found.listing(everyone)
        await found.aclose()  # no turn of the loop in between
        assert listing.done
        with pytest.raises(asyncio.CancelledError):
            await listing.complete()
        assert found.listing(everyone) is not listing  # forgotten: a new one starts
        await found.aclose()


async def test_a_first_listing_is_offered_page_by_page_and_shared() -> None:
    gated = Gated(FakeAccount(customers=250))
    gated.gate = asyncio.Event()
    app = Recorder(gated)
    found, http = directory(app, FakeClock())
    everyone = CustomerSelection(all=True)
    async with http, found:
        listing = found.listing(everyone)
        await listing.wait(0)
        assert listing.customers == [customer(i) for i in range(100)]
        assert not listing.done
        assert found.listing(CustomerSelection(all=True, refresh=5)) is listing
        waiting = asyncio.ensure_future(found.customers(everyone))
        gated.gate.set()
        assert await listing.complete() == [customer(i) for i in range(250)]
        assert await waiting == listing.customers
        assert found.listing(everyone).done  # cached
    assert len(app.requests) == 3


async def test_a_first_listing_failing_midway_keeps_what_it_had_and_caches_nothing() -> None:
    gated = Gated(FakeAccount(customers=250))
    gated.failing = [stripe_error(403, "no permission", request_id="req_denied")]
    gated.gate = asyncio.Event()
    gated.gate.set()
    found, http = directory(Recorder(gated), FakeClock())
    async with http, found:
        listing = found.listing(CustomerSelection(all=True))
        with pytest.raises(PermissionDeniedError) as caught:
            await listing.complete()
        assert caught.value.request_id == "req_denied"
        assert listing.customers == [customer(i) for i in range(100)]
        again = found.listing(CustomerSelection(all=True))
        assert again is not listing and not again.done  # nothing cached: listed anew
        assert len(await again.complete()) == 250


async def test_expired_meters_are_served_while_refreshed() -> None:
    account = FakeAccount(meters=3)
    clock = FakeClock()
    found, http = directory(Recorder(account), clock, refresh=600)
    async with http, found:
        assert await found.check_meters(["mtr_2"]) == []
        account.meters.pop()
        clock.advance(601)
        assert "mtr_2" in await found.meters()  # the previous list, while refreshed
        await found.settled()
        assert "mtr_2" not in await found.meters()

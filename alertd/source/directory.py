"""The customer and meter directory: who the rules cover, and what the meters are called.

Where it sits: before planning, the engine asks :meth:`Directory.customers` for each rule's
customer selection (explicit ids, ``all: true`` or a ``search`` query); notifications show
:meth:`Directory.meters` display names, and start-up checks rule meters with
:meth:`Directory.check_meters`. All calls go through :class:`~alertd.source.http.StripeHTTP` on
the ``general`` budget, and answers are cached for ``refresh`` seconds so a poll loop does not
list 10,000 customers every minute. Concurrent callers of one cold entry share one load.

A selection that chooses nothing (no ``ids``, no ``all``, no ``search``) means every customer,
as ``all: true``; an explicit empty ``ids: []`` means none.

Explicit ids are looked up one by one, and one id never spoils the others:
:meth:`Directory.select` returns the customers found, the ids Stripe does not have (unknown, or
deleted — cached like customers, so a poll loop does not ask every minute) and the ids whose
lookup failed (not cached, so the next poll asks again). The engine turns each of the last two
into an ``error`` finding for that (rule, customer) and evaluates everyone else.

Stale while revalidating: listing every customer is one page of 100 after another (each needs
the previous one's cursor), ~100 s for 10,000 customers at 1 s a request. So no poll waits
for a listing except the very first: once a list, search, meter list or customer lookup has
been read, a call after its ``refresh`` has passed gets the previous value at once and starts
one refresh of it in the background (one per key at a time); the calls after that refresh
ends get its value. A value is thus served stale from the first call after it expires until
the refresh that call started ends: for a poll loop calling more often than ``refresh``, at
most ``refresh`` + one poll interval + the time of one listing after it was read. A refresh
that fails is logged (``request_id=``) and the previous value kept; the next call starts
another. The directory owns these tasks: :meth:`Directory.aclose` cancels and awaits them.

The first listing of a selection (nothing cached at all) is offered as it goes:
:meth:`Directory.listing` returns a :class:`Listing` whose customers grow page by page, shared
by every caller of that selection, so the engine judges the first pages' customers while the
next are read. Its complete list is cached when the last page comes; a listing that fails
midway keeps the customers it had (those already judged stay judged), caches nothing, and
the next call lists again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any, Generic, Literal, TypeVar
from urllib.parse import quote

from alertd.clock import Clock
from alertd.config.settings import CustomerSelection
from alertd.errors import MalformedResponseError, NotFoundError, SourceError
from alertd.model import Customer, Meter
from alertd.source.body import BodyReader
from alertd.source.http import BodyParser, StripeHTTP
from alertd.tasks import OwnedTasks

log = logging.getLogger("alertd.source")

PAGE_SIZE = 100
T = TypeVar("T")


class TimedCache(Generic[T]):
    """Values kept for ``ttl`` seconds of ``clock.monotonic()``; one load per key at a time."""

    def __init__(self, clock: Clock, ttl: float) -> None:
        self._clock = clock
        self._ttl = ttl
        self._entries: dict[Hashable, tuple[float, T]] = {}
        self._locks: dict[Hashable, asyncio.Lock] = {}

    def fresh(self, key: Hashable) -> T | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] <= self._clock.monotonic():
            return None
        return entry[1]

    def put(self, key: Hashable, value: T) -> None:
        self._entries[key] = (self._clock.monotonic() + self._ttl, value)

    async def get(self, key: Hashable, load: Callable[[], Awaitable[T]]) -> T:
        """The cached value, or ``load()``'s (a failed load caches nothing)."""
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            cached = self.fresh(key)
            if cached is not None:
                return cached
            value = await load()
            self.put(key, value)
            return value


class RevalidatingCache(TimedCache[T]):
    """A :class:`TimedCache` whose expired value is still served while one refresh per key
    runs in the background (a task of ``tasks``); a refresh that fails keeps the value."""

    def __init__(self, clock: Clock, ttl: float, tasks: OwnedTasks, what: str) -> None:
        super().__init__(clock, ttl)
        self._tasks = tasks
        self._what = what
        self._refreshing: set[Hashable] = set()

    def current(self, key: Hashable, load: Callable[[], Awaitable[T]]) -> T | None:
        """The value of ``key``, fresh or expired (then refreshed in the background), or
        ``None`` when there has never been one."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= self._clock.monotonic() and key not in self._refreshing:
            self._refreshing.add(key)
            task = self._tasks.start(self._refresh(key, load),
                                     name=f"alertd-refresh-{self._what}")
            task.add_done_callback(lambda _: self._refreshing.discard(key))
        return entry[1]

    async def get(self, key: Hashable, load: Callable[[], Awaitable[T]]) -> T:
        """The value of ``key`` as :meth:`current` has it, else ``load()``'s."""
        known = self.current(key, load)
        return known if known is not None else await super().get(key, load)

    async def _refresh(self, key: Hashable, load: Callable[[], Awaitable[T]]) -> None:
        try:
            self.put(key, await load())
        except SourceError as exc:
            log.warning("refresh failed, the previous value kept what=%s key=%s error=%s "
                        "request_id=%s", self._what, key_text(key), exc, exc.request_id)


def key_text(key: Hashable) -> str:
    """A cache key for a log line: ``search:email:'a@b'``, ``all``, ``cus_1``."""
    return ":".join(key) if isinstance(key, tuple) else str(key)


class Listing:
    """The customers of one list or search selection as its pages come, in Stripe's order.

    ``customers`` only grows (a reader keeps its place by index; a cached list is never
    changed); ``done`` once the last page came or the listing failed (``error``: a
    :class:`~alertd.errors.SourceError`, or the cancellation of a closed directory)."""

    def __init__(self, customers: list[Customer] | None = None, *, done: bool = False) -> None:
        self.customers: list[Customer] = [] if customers is None else customers
        self.done = done
        self.error: BaseException | None = None
        self._changed = asyncio.Event()

    def extend(self, page: Iterable[Customer]) -> None:
        self.customers.extend(page)
        self._wake()

    def finish(self, error: BaseException | None = None) -> None:
        self.done, self.error = True, error
        self._wake()

    def _wake(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def wait(self, seen: int) -> None:
        """Returns once more than ``seen`` customers are listed or the listing is done."""
        while len(self.customers) <= seen and not self.done:
            await self._changed.wait()

    async def finished(self) -> None:
        """Returns once the listing is done (failed or not)."""
        while not self.done:
            await self._changed.wait()

    async def complete(self) -> list[Customer]:
        """Every customer, once the listing is done; its error if it failed."""
        await self.finished()
        if self.error is not None:
            raise self.error
        return self.customers


def selection_key(selection: CustomerSelection) -> tuple[str, ...]:
    """The cache key of a selection: what it chooses, not how often it refreshes."""
    if selection.ids is not None:
        return ("ids", *selection.ids)
    if selection.search is not None:
        return ("search", selection.search)
    return ("all",)


def parse_customer(raw: Any, reader: BodyReader, where: str = "customer") -> Customer:
    item = reader.mapping(raw, where)
    return Customer(
        id=reader.text(item.get("id"), f"{where} id"),
        name=reader.optional_text(item.get("name"), f"{where} name"),
        email=reader.optional_text(item.get("email"), f"{where} email"),
        metadata=reader.strings(item.get("metadata"), f"{where} metadata"),
    )


def parse_meter(raw: Any, reader: BodyReader, where: str = "meter") -> Meter:
    item = reader.mapping(raw, where)
    return Meter(
        id=reader.text(item.get("id"), f"{where} id"),
        display_name=reader.optional_text(item.get("display_name"), f"{where} display_name"),
        event_name=reader.optional_text(item.get("event_name"), f"{where} event_name"),
        status=reader.optional_text(item.get("status"), f"{where} status") or "active",
    )


@dataclass(frozen=True, slots=True)
class Missing:
    """A customer id Stripe does not have: unknown (404) or ``deleted``; ``reason`` says which
    and what to do."""

    customer_id: str
    reason: str
    deleted: bool = False
    request_id: str | None = None

    def error(self) -> NotFoundError:
        return NotFoundError(self.reason, status=404, code=None if self.deleted
                             else "resource_missing", request_id=self.request_id)


@dataclass(frozen=True, slots=True)
class Selected:
    """What one selection found: ``customers`` in order, the ids Stripe does not have
    (``missing``) and the ids whose lookup failed after retries (``failed``)."""

    customers: tuple[Customer, ...]
    missing: tuple[Missing, ...] = ()
    failed: tuple[tuple[str, SourceError], ...] = ()


class Directory:
    """Customers and meters of the Stripe account, cached for ``refresh`` seconds, then
    served while refreshed in the background; :meth:`aclose` ends the refreshes and
    listings under way."""

    def __init__(self, http: StripeHTTP, *, clock: Clock, refresh: float) -> None:
        self.http = http
        self.refresh = refresh
        self._tasks = OwnedTasks()
        self._selections: RevalidatingCache[list[Customer]] = RevalidatingCache(
            clock, refresh, self._tasks, "customers")
        self._customers: RevalidatingCache[Customer | Missing] = RevalidatingCache(
            clock, refresh, self._tasks, "customer")
        self._meters: RevalidatingCache[dict[str, Meter]] = RevalidatingCache(
            clock, refresh, self._tasks, "meters")
        self._listings: dict[tuple[str, ...], Listing] = {}

    async def __aenter__(self) -> Directory:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Cancels the refreshes and first listings under way and waits until they are
        gone (the callers waiting on such a listing get the cancellation)."""
        await self._tasks.aclose()

    @property
    def running(self) -> int:
        """Refreshes and first listings under way (for tests and shutdown checks)."""
        return len(self._tasks)

    async def settled(self) -> None:
        """Waits until the refreshes and first listings under way have ended (failed or
        not): for tests, and for a caller that wants the values they bring."""
        await self._tasks.join()

    async def select(self, selection: CustomerSelection) -> Selected:
        """The customers ``selection`` chooses, in Stripe's order (ids: in the given order,
        each once), with the ids that could not be had. A list or search that fails raises its
        :class:`~alertd.errors.SourceError`: it names no customer to blame."""
        if selection.ids is not None:
            return await self._select_ids(selection.ids)
        return Selected(tuple(await self.listing(selection).complete()))

    def listing(self, selection: CustomerSelection) -> Listing:
        """A list or search selection's customers: the cached ones (a done :class:`Listing`
        of the cached list, refreshed in the background once expired), else the first
        listing's as its pages come, started here unless one is under way."""
        key = selection_key(selection)
        known = self._selections.current(key, partial(self._load, selection))
        if known is not None:
            return Listing(known, done=True)
        listing = self._listings.get(key)
        if listing is None:
            listing = self._listings[key] = Listing()
            task = self._tasks.start(self._list_into(key, selection, listing),
                                     name=f"alertd-list-{key[0]}")
            task.add_done_callback(lambda _: self._ended(key, listing))
        return listing

    def _ended(self, key: tuple[str, ...], listing: Listing) -> None:
        """After a first listing's task ended, however: the listing is forgotten, and one
        it did not finish (cancelled, even before its first step, when its body never runs)
        ends as closed, or every pass waiting for it would wait for ever."""
        if not listing.done:
            listing.finish(asyncio.CancelledError("the customer directory was closed"))
        if self._listings.get(key) is listing:
            del self._listings[key]

    async def customers(self, selection: CustomerSelection) -> list[Customer]:
        """The customers ``selection`` chooses, in Stripe's order (ids: in the given order).

        Strict, for callers that need all or nothing: an unknown id raises
        :class:`NotFoundError` naming it, a failed lookup its error; deleted customers are
        skipped with a warning."""
        selected = await self.select(selection)
        if selected.failed:
            raise selected.failed[0][1]
        for missing in selected.missing:
            if not missing.deleted:
                raise missing.error()
            log.warning("customer deleted in Stripe, skipped customer=%s request_id=%s",
                        missing.customer_id, missing.request_id)
        return list(selected.customers)

    async def customer(self, customer_id: str) -> Customer:
        """One customer by id; :class:`NotFoundError` if Stripe has no such customer."""
        found = await self._lookup(customer_id)
        if isinstance(found, Missing):
            raise found.error()
        return found

    async def _lookup(self, customer_id: str) -> Customer | Missing:
        return await self._customers.get(customer_id, lambda: self._retrieve(customer_id))

    async def _select_ids(self, ids: list[str]) -> Selected:
        unique = list(dict.fromkeys(ids))
        outcomes = await asyncio.gather(*(self._lookup(i) for i in unique),
                                        return_exceptions=True)
        customers: list[Customer] = []
        missing: list[Missing] = []
        failed: list[tuple[str, SourceError]] = []
        for customer_id, outcome in zip(unique, outcomes, strict=True):
            if isinstance(outcome, Customer):
                customers.append(outcome)
            elif isinstance(outcome, Missing):
                missing.append(outcome)
            elif isinstance(outcome, SourceError):
                failed.append((customer_id, outcome))
            else:  # a bug or a cancellation: not a customer's problem to hide
                raise outcome
        return Selected(tuple(customers), tuple(missing), tuple(failed))

    async def meters(self) -> dict[str, Meter]:
        """Every billing meter of the account by id (``GET /v1/billing/meters``, all pages)."""
        return dict(await self._meters.get("meters", self._load_meters))

    async def check_meters(self, ids: Iterable[str | None]) -> list[str]:
        """The meter ids among ``ids`` that the account does not have (``None`` = all meters).
        A miss in the cached list is asked again once before it is refused: a meter created
        since the list was cached (a reload right after adding it) is not unknown."""
        wanted = dict.fromkeys(i for i in ids if i is not None)
        known = await self.meters()
        if any(meter not in known for meter in wanted):
            known = await self._load_meters()
            self._meters.put("meters", known)
        return [meter for meter in wanted if meter not in known]

    # ----------------------------------------------------------------------- loading

    async def _list_into(self, key: tuple[str, ...], selection: CustomerSelection,
                         listing: Listing) -> None:
        """A first listing, page by page into ``listing``; cached whole when it ends well."""
        try:
            async for page in self._customer_pages(selection):
                listing.extend(page)
            self._remember(key, listing.customers)
            listing.finish()
        except SourceError as exc:
            listing.finish(exc)
        except Exception as exc:  # a bug: its waiters raise it, and the task logs it
            listing.finish(exc)
            raise
        finally:  # at once: the next call lists again (a cancellation is ended by _ended)
            if self._listings.get(key) is listing:
                del self._listings[key]

    def _remember(self, key: tuple[str, ...], customers: list[Customer]) -> None:
        self._selections.put(key, customers)
        self._remember_each(customers)

    def _remember_each(self, customers: list[Customer]) -> None:
        for customer in customers:
            self._customers.put(customer.id, customer)

    async def _load(self, selection: CustomerSelection) -> list[Customer]:
        """A selection's every customer (a refresh); its customers are cached one by one."""
        customers: list[Customer] = []
        async for page in self._customer_pages(selection):
            customers += page
        self._remember_each(customers)
        return customers

    def _customer_pages(self, selection: CustomerSelection) -> AsyncIterator[list[Customer]]:
        """``GET /v1/customers/search`` (following ``next_page``) or ``GET /v1/customers``."""
        if selection.search is not None:
            return self._each_page(
                "/v1/customers/search", [("query", selection.search)], "customers_search",
                "page", partial(parse_page, item=parse_customer, cursor="next_page"))
        return self._each_page(
            "/v1/customers", [], "customers", "starting_after",
            partial(parse_page, item=parse_customer, cursor="last_id"))

    async def _retrieve(self, customer_id: str) -> Customer | Missing:
        """One customer, or :class:`Missing` when Stripe has none by that id (or deleted it)."""
        path = f"/v1/customers/{quote(customer_id, safe='')}"
        try:
            response = await self.http.request(
                path, [], budget="general", endpoint="customer", parse=parse_retrieved
            )
        except NotFoundError as exc:
            return Missing(
                customer_id,
                f"Stripe has no customer {customer_id}: check the customer ids in the config "
                "(customers.ids) and in the rules",
                request_id=exc.request_id,
            )
        if response.body is None:
            return Missing(
                customer_id,
                f"Stripe customer {customer_id} was deleted: remove it from the customer ids "
                "in the config (customers.ids) and in the rules",
                deleted=True, request_id=response.request_id,
            )
        return response.body

    async def _load_meters(self) -> dict[str, Meter]:
        meters = await self._pages(
            "/v1/billing/meters", [], "meters", "starting_after",
            partial(parse_page, item=parse_meter, cursor="last_id"),
        )
        return {meter.id: meter for meter in meters}

    async def _pages(
        self, path: str, params: list[tuple[str, str]], endpoint: str, cursor_param: str,
        parse: BodyParser[Page[T]],
    ) -> list[T]:
        """Every item of a Stripe list or search endpoint."""
        items: list[T] = []
        async for page in self._each_page(path, params, endpoint, cursor_param, parse):
            items += page
        return items

    async def _each_page(
        self, path: str, params: list[tuple[str, str]], endpoint: str, cursor_param: str,
        parse: BodyParser[Page[T]],
    ) -> AsyncIterator[list[T]]:
        """The items of a Stripe list or search endpoint, page after page of 100."""
        cursor: str | None = None
        while True:
            page_params = [*params, ("limit", str(PAGE_SIZE))]
            if cursor is not None:
                page_params.append((cursor_param, cursor))
            response = await self.http.request(
                path, page_params, budget="general", endpoint=endpoint, parse=parse
            )
            page = response.body
            if page.has_more and page.cursor == cursor:
                raise MalformedResponseError(
                    f"unexpected {endpoint} response: the next page is the same page again; "
                    "it was not used",
                    request_id=response.request_id,
                )
            yield page.items
            if not page.has_more:
                return
            cursor = page.cursor


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a Stripe list or search; ``cursor`` asks for the next one."""

    items: list[T]
    has_more: bool
    cursor: str | None


def parse_page(
    body: dict[str, Any],
    request_id: str | None,
    *,
    item: Callable[[Any, BodyReader, str], T],
    cursor: Literal["last_id", "next_page"],
) -> Page[T]:
    """A list page (cursor: the last item's id) or a search page (cursor: ``next_page``).

    ``has_more`` without a cursor is malformed: it could only end in an endless loop.
    """
    reader = BodyReader(f"{body.get('object') or 'list'} response", request_id)
    data, has_more = reader.page(body)
    items = [item(raw, reader, f"item {i}") for i, raw in enumerate(data)]
    if not has_more:
        return Page(items, False, None)
    if cursor == "next_page":
        following = body.get("next_page")
    else:
        following = reader.mapping(data[-1], "the last item").get("id") if data else None
    if not isinstance(following, str):
        raise reader.malformed("has_more is true but the page gives no cursor to the next one")
    return Page(items, True, following)


def parse_retrieved(body: dict[str, Any], request_id: str | None) -> Customer | None:
    """A retrieved customer, or ``None`` for a deleted one (``{"deleted": true}``)."""
    if body.get("deleted") is True:
        return None
    return parse_customer(body, BodyReader("customer response", request_id))

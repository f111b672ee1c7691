"""What one batch of a pass reads: from the bucket cache, and from Stripe only what may change.

Where it sits: between the engine's needs and its planner (:meth:`Engine._run_batch`). The
decisions are :mod:`alertd.buckets`' pure functions; this module loads the batch's extents
from the store, hands the planner one (possibly shrunk) need per cache key, loads the entries
whose rows the plan takes from the cache (:func:`load_entries`) when the batch is about to be
judged, puts each key's rows together after the fetch, and saves the new entries that changed
(a poll within the hour of the last leaves most as they were: :func:`alertd.buckets.unchanged`)
— all of one batch at a time, so the cache lives on disk and memory stays flat with the
number of customers.

Why two reads of the store: the batches queued ahead of the judged one keep a slow Stripe's
requests in flight (~100 at 1 s latency), and each used to hold its cached rows from its
start (~6,000 a customer for the mixed rule set) while its few steady requests were out; the
rows held ahead, not the answers, then bounded the look-ahead (:class:`HeldAhead`: a
600-customer steady cycle at 1 s had 786 requests wait for rows) and raised the peak memory.
Planning needs only each entry's extent (:class:`~alertd.buckets.BucketExtent`), so a batch
holds rows only once it is next in line (:data:`ROWS_AHEAD`).

Without a :class:`BucketCache` (a store without the cache, or none) every key is read in full,
exactly as before the cache. A read-only cache (``check --dry-run``) uses what is stored but
never writes. A failed or stale answer saves nothing for its keys; a store that fails to
load the extents or save the cache only costs full reads (logged), never a finding. Entries
that cannot be had once planned from (the store failed, the entry is unreadable, another poll
replaced it with one that no longer serves: :func:`~alertd.buckets.serves`) are read in full
before the batch is judged (:meth:`BatchReads.repair`, logged), never judged on partial rows.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from alertd import conditions
from alertd.buckets import (
    BucketEntry,
    CachePolicy,
    Extent,
    cache_key,
    combine,
    cut,
    extent_of,
    fetch_range,
    hourly,
    hours_settled_before,
    kept_hours,
    key_needs,
    planned_needs,
    rebucket,
    serves,
    settled_before,
    unchanged,
    updated,
)
from alertd.conditions.money import sums_meters
from alertd.errors import StoreError
from alertd.model import DataNeed, UsageResult, UsageRow
from alertd.planner import RequestPlan, extract_rows
from alertd.rules.schema import Rule
from alertd.store.base import BucketStore
from alertd.usage_columns import concatenated

log = logging.getLogger("alertd.engine")

#: What one batch may hold, about, in cached rows (a fetched row costs :data:`FETCHED_WEIGHT`:
#: its answer's text and parse, the series built from it). A batch's memory is its rows, so
#: this, not the number of customers, bounds a pass's peak memory (about 50 MB over the
#: process's own at 100,000, measured with ``bench/steady.py``). Fewer customers a batch
#: also means fewer requests in flight: a budget of 100 requests/s at 1 s latency wants 100;
#: the batches ahead keep those (:data:`AHEAD_ROWS`, a bound of its own). 75,000: at 100,000
#: the real daemon's peak RSS at 10,000 customers was 151-153 MB (warm-up, steady cycles), the
#: judged batch's swing (~25 MB) on top of a flat ~130 MB (``bench/memgrowth.py``); a batch
#: costs one commit and one trim, so a smaller one costs a little CPU per customer. 50,000
#: since the batches ahead hold extents, not rows (2026-12-04, the real daemon at 10,000
#: customers, 1 s latency): steady peak 153 → 144 MB, warm-up 139 → 128, 95.5 → 95.8
#: requests/s steady, 93.2 → 92.7 warm-up (with AHEAD_ROWS 400,000 → 500,000).
BATCH_ROWS = 50_000
FETCHED_WEIGHT = 2
#: The first batch of a pass, before the rows a customer costs are known.
FIRST_BATCH = 10
#: What the batches queued beyond the one being judged may hold, in the same weighted rows
#: (their cache entries, and their answers so far): a fixed bound on the look-ahead's memory
#: whatever Stripe's latency, where a bound in batches (up to 8 at 1 s) held up to 8 batches'
#: rows. Four batches' worth: a steady batch holds its cache entries (~``BATCH_ROWS``) from
#: its start for few requests (~3 a customer), so the batches ahead that keep a 1 s Stripe's
#: requests in flight hold several batches' entries; at two batches' worth a steady pass at
#: 1 s latency sent 32 requests/s where one bounded by batches sent 43 (bench/README.md).
#: Measured with ``BATCH_ROWS`` at 100,000, and kept in rows when that was lowered; 500,000
#: with it at 50,000 (a warm-up answer weighs ~3,700: ~100 in flight at 1 s need ~370,000).
AHEAD_ROWS = 500_000
#: Batches beyond the judged one whose entries are loaded (their rows held) before it is
#: judged: the next one's load then overlaps the judging of this one.
ROWS_AHEAD = 1


@dataclass(frozen=True, slots=True)
class BucketCache:
    """The store's bucket cache with its policy; ``writable=False`` only reads it."""

    store: BucketStore
    policy: CachePolicy = field(default_factory=CachePolicy)
    writable: bool = True


@dataclass(slots=True)
class CacheCounts:
    """What the cache saved, across a pass (for benches and metrics)."""

    keys: int = 0
    #: Keys with settled history that was read from Stripe (no entry, a full re-read, a rule
    #: looking further back); a key whose range lies inside the settle window is never one.
    full: int = 0
    rows_fetched: int = 0


@dataclass(slots=True)
class BatchReads:
    """One batch's keys: the need fetched for each, and its rows once fetched."""

    hulls: dict[str, DataNeed]
    fetched: dict[str, DataNeed]
    #: The stored extents the batch was planned from.
    extents: dict[str, Extent]
    #: What the planner plans for each key: its fetched need, or that as hours.
    planned: dict[str, DataNeed] = field(default_factory=dict)
    #: Keys read in full as days (or weeks, months): the hours of their first unsettled
    #: bucket, asked for alongside (:func:`hours_alongside`), so the entry keeps them.
    alongside: dict[str, DataNeed] = field(default_factory=dict)
    #: The stored entries of the keys whose rows come from the cache, once loaded
    #: (:func:`load_entries`).
    entries: dict[str, BucketEntry] = field(default_factory=dict)
    #: The task that runs :func:`load_entries`, once started.
    loading: asyncio.Task[None] | None = None
    #: Why a key's rows cannot be had from the cache (it is read in full: :meth:`repair`).
    unserved: dict[str, str] = field(default_factory=dict)
    _keys: dict[DataNeed, str] = field(default_factory=dict)
    _rows: dict[str, Sequence[UsageRow]] = field(default_factory=dict)
    #: The hours of keys read as hours (kept and fresh), from their fetched need's start; of
    #: keys read alongside, from their first unsettled bucket's start.
    _hours: dict[str, Sequence[UsageRow]] = field(default_factory=dict)

    @property
    def cached_rows(self) -> int:
        """The rows of the batch's cache entries (days and kept hours) once loaded."""
        return sum(len(e.rows) + len(e.hours) for e in self.entries.values())

    @property
    def fetch_needs(self) -> list[DataNeed]:
        """What the planner plans: one need per key, and the hours read alongside."""
        return [*self.planned.values(), *self.alongside.values()]

    def take_alongside(self, the_plan: RequestPlan,
                       outcomes: Sequence[UsageResult | Exception]) -> None:
        """Picks the hours read alongside out of their answers (a failed one: none kept)."""
        for key, need in self.alongside.items():
            outcome = outcomes[the_plan.query_index(need)]
            if isinstance(outcome, UsageResult):
                _, spec = the_plan.serving(need)
                self._hours[key] = extract_rows(need, spec, outcome.rows)

    def repair(self) -> list[DataNeed]:
        """The keys whose cached rows could not be had (:attr:`unserved`) turned into full
        reads: what to fetch for them, now, so their series are judged this poll as a cold
        read would judge them (and, with a writable cache, their entries rewritten)."""
        needs = []
        for key in sorted(self.unserved):
            hull = self.hulls[key]
            self.fetched[key] = self.planned[key] = hull
            self.alongside.pop(key, None)
            self.extents.pop(key, None)
            needs.append(hull)
        self.unserved.clear()
        return needs

    def fetched_need(self, need: DataNeed) -> DataNeed:
        """The planned need whose request serves ``need``."""
        return self.planned[self._keys[need]]

    def from_cache(self, key: str) -> bool:
        """Whether the plan takes some of ``key``'s rows (or kept hours) from its entry."""
        hull, fetched, planned = self.hulls[key], self.fetched[key], self.planned[key]
        return fetched.starts_at > hull.starts_at or planned.starts_at > fetched.starts_at

    def rows_of(self, need: DataNeed, the_plan: RequestPlan, outcome: UsageResult
                ) -> Sequence[UsageRow]:
        """``need``'s rows: its key's cached and fetched rows, cut to its range.
        :class:`~alertd.errors.StoreError` when its cached rows could not be had."""
        key = self._keys[need]
        rows = self._rows.get(key)
        if rows is None and self.from_cache(key) and key not in self.entries:
            raise StoreError(self.unserved.get(key, "the cached buckets were not loaded"))
        if rows is None:
            fetched, planned = self.fetched[key], self.planned[key]
            entry = self.entries.get(key)
            _, spec = the_plan.serving(planned)
            fresh = extract_rows(planned, spec, outcome.rows)
            if planned != fetched:
                hours = concatenated([kept_hours(planned, fetched, entry), fresh])
                self._hours[key] = hours
                fresh = rebucket(hours, fetched)
            rows = combine(self.hulls[key], fetched, entry, fresh)
            self._rows[key] = rows
        return cut(need, rows)

    def new_entries(self, good: Iterable[DataNeed], now: int, policy: CachePolicy
                    ) -> list[BucketEntry]:
        """Entries for the keys of ``good`` needs whose rows were put together."""
        keys = {self._keys[n] for n in good} & self._rows.keys()
        return [updated(k, self.hulls[k], self.fetched[k], self.entries.get(k), self._rows[k],
                        now, policy, self._hours.get(k, ()), self._hours_zone(k))
                for k in sorted(keys)]

    def _hours_zone(self, key: str) -> str:
        """The zone of the hours a key was read as (or alongside), or ``""`` if none."""
        planned = self.alongside.get(key, self.planned[key])
        return planned.timezone if key in self._hours and planned.granularity == "hour" else ""


def hours_alongside(hull: DataNeed, fetched: DataNeed, planned: DataNeed, now: int,
                    policy: CachePolicy) -> DataNeed | None:
    """The hours to read beside a key read in full as days, weeks or months (pure): those of
    its first unsettled bucket on, as the next poll will plan them (:func:`hourly`), or
    ``None`` for any other read.

    Why: the entry of a key read as days keeps no hours, so the next poll reads its first
    unsettled bucket as hours from that bucket's start (up to a day more than the settle
    window) before it can keep them. Read beside the full read, they join the customer's
    hourly request in that zone, where there is one (:func:`prepare` asks for them only
    then: they never cost a request): the warm-up keeps them, and the first poll after it
    asks only for the settle window and the time since, as every later one does.
    """
    if hull.granularity == "hour" or planned != fetched or fetched.starts_at > hull.starts_at:
        return None
    settled = settled_before(hull, now, policy)
    if not hull.starts_at < settled < hull.ends_at:
        return None
    hours = hourly(replace(hull, starts_at=settled), policy)
    if hours.granularity != "hour" or hours_settled_before(now, hours.timezone, policy) <= settled:
        return None
    return hours


def next_batch_size(fetched: int, cached: int, customers: int, most: int,
                    budget: int = BATCH_ROWS) -> int:
    """How many customers the next batch takes, after one of ``customers`` fetched ``fetched``
    rows and read ``cached`` from the cache: as many as :data:`BATCH_ROWS` holds at that cost
    (a cold cache's full reads cost about twice a warm poll's cached rows), from 1 to ``most``.
    """
    per_customer = (FETCHED_WEIGHT * fetched + cached) / max(customers, 1)
    return max(1, min(most, int(budget // per_customer) if per_customer else most))


def widening_needs(rules: Iterable[Rule], customers: Iterable[str], now: int
                   ) -> list[DataNeed]:
    """The needs other rules (other poll groups) have of ``customers``: a key's entry covers
    the hull of *every* rule's range, so polls of different ``every`` keep one entry of one
    extent instead of each re-reading in full what the other trimmed. A need depends on the
    customer only by its id, so each rule's is worked out once. A rule whose need cannot be
    had is skipped here (its own poll reports it), and so is a cost summed over a customer's
    meters: which meters it reads depends on each customer's prices."""
    templates: list[DataNeed] = []
    for rule in rules:
        if sums_meters(rule):
            continue
        try:
            templates.append(conditions.needs(rule, "", now)[0])
        except Exception:
            continue
    return [replace(t, customer=c) for c in customers for t in templates]


@dataclass(frozen=True, slots=True)
class Reading:
    """A batch's plan with the cache reads it was planned from."""

    plan: RequestPlan
    reads: BatchReads

    def query_index(self, need: DataNeed) -> int:
        """The index of the request serving ``need`` (through its key's fetched need)."""
        return self.plan.query_index(self.reads.fetched_need(need))


async def prepare(cache: BucketCache | None, needs: Iterable[DataNeed], now: int,
                  counts: CacheCounts | None = None, widening: Iterable[DataNeed] = ()
                  ) -> BatchReads:
    """The batch's keys, their stored entries and what to fetch for each. ``widening``
    needs stretch the range of keys the batch has (:func:`widening_needs`), add none."""
    needs = list(needs)
    hulls = key_needs(needs)
    if cache is not None:
        wider = key_needs([*needs, *widening])
        hulls = {k: wider[k] for k in hulls}
    extents: dict[str, Extent] = {}
    if cache is not None and hulls:
        try:
            extents = dict(await cache.store.load_extents(hulls))
        except StoreError as exc:
            log.warning("could not read the bucket cache, reading in full error=%s", exc)
    policy = cache.policy if cache is not None else CachePolicy()
    fetched = {k: fetch_range(h, extents.get(k), now, policy) for k, h in hulls.items()}
    planned = planned_needs(fetched, policy, extents) if cache is not None else fetched
    reads = BatchReads(hulls, fetched, extents, planned)
    if cache is not None and cache.writable:
        # Only where the customer has an hourly request in that zone anyway: never one more.
        hourly_anyway = {(p.customer, p.timezone) for p in planned.values()
                         if p.granularity == "hour"}
        for key, hull in hulls.items():
            hours = hours_alongside(hull, fetched[key], planned[key], now, policy)
            if hours is not None and (hours.customer, hours.timezone) in hourly_anyway:
                reads.alongside[key] = hours
    reads._keys.update((n, cache_key(n)) for n in needs)
    if counts is not None:
        counts.keys += len(hulls)
        counts.full += sum(fetched[k] == h and settled_before(h, now, policy) > h.starts_at
                           for k, h in hulls.items())
    return reads


async def load_entries(cache: BucketCache | None, reads: BatchReads) -> None:
    """Loads the entries of the batch's keys whose rows the plan takes from the cache, and
    notes in ``reads.unserved`` those it could not have: a failed load, an entry gone or
    unreadable, or replaced by one that no longer holds those rows
    (:func:`~alertd.buckets.serves`). The engine reads those in full before it judges the
    batch (:meth:`BatchReads.repair`: one request more per such key, the price of planning
    from extents), and save writes their entries again: no key stays unreadable."""
    wanted = [k for k in reads.hulls if reads.from_cache(k)]
    if cache is None or not wanted:
        return
    try:
        found = await cache.store.load_buckets(wanted)
    except StoreError as exc:
        log.warning("could not read the bucket cache error=%s", exc)
        reads.unserved.update(dict.fromkeys(wanted, f"could not read the bucket cache: {exc}"))
        return
    for key in wanted:
        entry = found.get(key)
        if serves(entry, reads.hulls[key], reads.fetched[key], reads.planned[key]):
            assert entry is not None
            reads.entries[key] = entry
            continue
        why = ("gone or unreadable" if entry is None
               else "replaced by another poll with one of another range")
        log.warning("cached buckets %s since this poll planned from them; reading them in "
                    "full key=%s", why, key)
        reads.unserved[key] = f"the cached buckets were {why} during the poll"


async def save(cache: BucketCache | None, reads: BatchReads, good: Sequence[DataNeed],
               now: int) -> None:
    """Keeps the batch's new entries (a writable cache only): those that changed, in rows or
    in the extent the store's columns hold (which entries stored before those columns lack)."""
    if cache is None or not cache.writable:
        return
    entries = [e for e in reads.new_entries(good, now, cache.policy)
               if not (unchanged(e, reads.entries.get(e.key)) and e.key in reads.extents
                       and extent_of(e) == extent_of(reads.extents[e.key]))]
    try:
        await cache.store.save_buckets(entries, now)
    except StoreError as exc:
        log.warning("could not write the bucket cache error=%s", exc)


async def prune(cache: BucketCache | None, now: int) -> None:
    """Drops entries nobody saved for ``full_reread_every``: their next read would be a full
    one anyway, so they hold nothing of use (keys of removed rules, changed filters, customers
    gone). Keeps the cache bounded by what the rule set reads."""
    if cache is None or not cache.writable:
        return
    try:
        await cache.store.prune_buckets(int(now - cache.policy.full_reread_every))
    except StoreError as exc:
        log.warning("could not prune the bucket cache error=%s", exc)


class HeldAhead:
    """The rows the batches of a pass hold beyond the one judged next (the *front*), and the
    gate a batch ahead waits at while they are over :data:`AHEAD_ROWS`.

    The engine judges batches in order; the front batch's requests never wait here (it is
    bounded by its size, :func:`next_batch_size`). A batch ahead starts (its cache entries
    loaded: held from then on) and sends each request only while what is held ahead is under
    the bound; a request ahead reserves the rows an answer has held on average this pass until
    its own answer replaces the reservation with its rows. So requests of the next batches
    start as rows are released — when the front is judged (:meth:`advance`) the next batch
    becomes the front and its rows stop counting — and what is held ahead never exceeds the
    bound by more than one batch's cache entries or one answer's misestimate, however slow
    Stripe is. The requests in flight are what the latency needs (:meth:`Engine._ahead
    <alertd.service.engine.Engine._ahead>`) as long as their answers fit in the bound: ahead
    of the front batch, about ``bound ÷ rows an answer`` of them.
    """

    def __init__(self, bound: int = AHEAD_ROWS) -> None:
        self.bound = bound
        #: The batch judged next.
        self.front = 0
        #: What the batches ahead of the front hold (rows and reservations): the gate's figure.
        self.held = 0
        #: The most rows (answers and cache entries, no reservations) held ahead so far, and
        #: the most :attr:`held` when a request or batch ahead was let start.
        self.peak = 0
        self.peak_at_start = 0
        #: Requests ahead that waited at the gate, and batches whose start waited for rows.
        self.waited = 0
        self.deferred = 0
        #: The most rows one batch held (for benches and tests).
        self.most_of_one = 0
        self._answers = 0
        self._answered_rows = 0
        self._rows: dict[int, int] = {}
        self._reserved: dict[int, int] = {}
        self._waiters: list[asyncio.Future[None]] = []

    def open(self, batch: int) -> bool:
        """Whether ``batch`` may start a request (or be started) now."""
        return batch <= self.front or self.held < self.bound

    def may_start(self, batch: int) -> bool:
        """Whether a new ``batch`` may be started (its cache entries loaded) now; a refusal
        is counted in :attr:`deferred`."""
        if self.open(batch):
            return True
        self.deferred += 1
        return False

    def estimate(self) -> int:
        """The rows an answer has held on average this pass (0 before the first)."""
        return self._answered_rows // self._answers if self._answers else 0

    async def admit(self, batch: int) -> int:
        """Waits until ``batch`` is the front or what is held ahead is under the bound; the
        rows reserved for the request's answer (none for the front's) are returned, to be
        given to :meth:`answered`."""
        if not self.open(batch):
            self.waited += 1
        while not self.open(batch):
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        if batch <= self.front:
            return 0
        self.peak_at_start = max(self.peak_at_start, self.held)
        reserved = self.estimate()
        self._add(batch, 0, reserved)
        return reserved

    def hold(self, batch: int, rows: int) -> None:
        """``batch`` holds ``rows`` more (weighted) rows until it is judged."""
        self._add(batch, rows, 0)

    def answered(self, batch: int, rows: int, reserved: int) -> None:
        """A request of ``batch`` was answered with ``rows`` (weighted; 0 for a failure),
        replacing the ``reserved`` rows :meth:`admit` returned."""
        self._answers += 1
        self._answered_rows += rows
        self._add(batch, rows, -reserved)
        if reserved > rows:
            self._wake()

    def advance(self) -> None:
        """The front batch is judged: its rows are gone, the next one is the front."""
        self._rows.pop(self.front, None)
        self._reserved.pop(self.front, None)
        self.front += 1
        self.held -= self._rows.get(self.front, 0) + self._reserved.get(self.front, 0)
        self._wake()

    def _add(self, batch: int, rows: int, reserved: int) -> None:
        self._rows[batch] = self._rows.get(batch, 0) + rows
        self._reserved[batch] = self._reserved.get(batch, 0) + reserved
        self.most_of_one = max(self.most_of_one, self._rows[batch])
        if batch > self.front:
            self.held += rows + reserved
            held_rows = self.held - sum(r for b, r in self._reserved.items() if b > self.front)
            self.peak = max(self.peak, held_rows)

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

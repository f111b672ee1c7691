"""What one batch of a pass reads: from the bucket cache, and from Stripe only what may change.

Where it sits: between the engine's needs and its planner (:meth:`Engine._run_batch`). The
decisions are :mod:`alertd.buckets`' pure functions; this module loads the batch's entries
from the store, hands the planner one (possibly shrunk) need per cache key, puts each key's
rows together after the fetch, and saves the new entries — all of one batch at a time, so the
cache lives on disk and memory stays flat with the number of customers.

Without a :class:`BucketCache` (a store without the cache, or none) every key is read in full,
exactly as before the cache. A read-only cache (``check --dry-run``) uses what is stored but
never writes. A failed or stale answer saves nothing for its keys; a store that fails to
load or save the cache only costs full reads (logged), never a finding.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from alertd import conditions
from alertd.buckets import (
    BucketEntry,
    CachePolicy,
    cache_key,
    combine,
    cut,
    fetch_range,
    key_needs,
    planned_needs,
    rebucket,
    settled_before,
    updated,
)
from alertd.conditions.money import sums_meters
from alertd.errors import StoreError
from alertd.model import DataNeed, UsageResult, UsageRow
from alertd.planner import RequestPlan, extract_rows
from alertd.rules.schema import Rule
from alertd.store.base import BucketStore

log = logging.getLogger("alertd.engine")


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
    entries: dict[str, BucketEntry]
    #: What the planner plans for each key: its fetched need, or that as hours.
    planned: dict[str, DataNeed] = field(default_factory=dict)
    _keys: dict[DataNeed, str] = field(default_factory=dict)
    _rows: dict[str, list[UsageRow]] = field(default_factory=dict)

    @property
    def fetch_needs(self) -> list[DataNeed]:
        """What the planner plans: one need per key."""
        return list(self.planned.values())

    def fetched_need(self, need: DataNeed) -> DataNeed:
        """The planned need whose request serves ``need``."""
        return self.planned[self._keys[need]]

    def rows_of(self, need: DataNeed, the_plan: RequestPlan, outcome: UsageResult
                ) -> list[UsageRow]:
        """``need``'s rows: its key's cached and fetched rows, cut to its range."""
        key = self._keys[need]
        rows = self._rows.get(key)
        if rows is None:
            fetched, planned = self.fetched[key], self.planned[key]
            _, spec = the_plan.serving(planned)
            fresh = extract_rows(planned, spec, outcome.rows)
            if planned != fetched:
                fresh = rebucket(fresh, fetched)
            rows = combine(self.hulls[key], fetched, self.entries.get(key), fresh)
            self._rows[key] = rows
        return cut(need, rows)

    def new_entries(self, good: Iterable[DataNeed], now: int, policy: CachePolicy
                    ) -> list[BucketEntry]:
        """Entries for the keys of ``good`` needs whose rows were put together."""
        keys = {self._keys[n] for n in good} & self._rows.keys()
        return [updated(k, self.hulls[k], self.fetched[k], self.entries.get(k), self._rows[k],
                        now, policy) for k in sorted(keys)]


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
    entries: dict[str, BucketEntry] = {}
    if cache is not None and hulls:
        try:
            entries = await cache.store.load_buckets(hulls)
        except StoreError as exc:
            log.warning("could not read the bucket cache, reading in full error=%s", exc)
    policy = cache.policy if cache is not None else CachePolicy()
    fetched = {k: fetch_range(h, entries.get(k), now, policy) for k, h in hulls.items()}
    planned = planned_needs(fetched, policy) if cache is not None else fetched
    reads = BatchReads(hulls, fetched, entries, planned)
    reads._keys.update((n, cache_key(n)) for n in needs)
    if counts is not None:
        counts.keys += len(hulls)
        counts.full += sum(fetched[k] == h and settled_before(h, now, policy) > h.starts_at
                           for k, h in hulls.items())
    return reads


async def save(cache: BucketCache | None, reads: BatchReads, good: Sequence[DataNeed],
               now: int) -> None:
    """Keeps the batch's new entries (a writable cache only)."""
    if cache is None or not cache.writable:
        return
    entries = reads.new_entries(good, now, cache.policy)
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

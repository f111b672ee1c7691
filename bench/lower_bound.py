"""The fewest requests any plan can use, computed without :func:`alertd.planner.plan`.

:func:`steady_state_needs` gives what a poll with a warm bucket cache asks for; the lower
bound of those is the steady-state bound. The benchmarks print them beside the planner's
request count (``bench/planner.py``, ``bench/fetch.py``, ``bench/dryrun.py``), and
``tests/test_planner.py`` uses it as an independent oracle for the planner's optimality.
Nothing in alertd itself needs it, so it lives here. The model is the planner's (see the
:mod:`alertd.planner` docstring); only :func:`alertd.planner.covering_spec` — which specs
one spec can serve — is shared (and, for the steady state, the cache's own range decisions).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import replace
from functools import lru_cache

from alertd.buckets import CachePolicy, key_needs, planned_needs, settled_before
from alertd.model import DataNeed, MeterSpec
from alertd.planner import covering_spec
from alertd.source.pages import Paging, bucket_count, spec_rows_per_bucket
from alertd.stripe_limits import MAX_GROUP_BY, MAX_METERS

#: Up to this many distinct specs of one meter, :func:`lower_bound` partitions exactly (3^n).
EXACT_LIMIT = 10


def lower_bound(needs: Iterable[DataNeed], *, max_meters: int = MAX_METERS,
                max_group_by: int = MAX_GROUP_BY, paging: Paging | None = None) -> int:
    """The fewest requests any plan can use for ``needs``.

    With ``paging`` (the page size and rows per bucket the source had learned when the plan
    was made, :mod:`alertd.source.pages`), each group also takes at least
    ``ceil(R / page_rows)`` requests, ``R`` the sum over meters of the most rows one need of
    that meter has (its buckets × its own spec's rows per bucket; a spec not yet seen counts
    no rows, one without group-by one per bucket): every row of an answer is of one meter,
    and a spec serving a need returns at least the need's rows. Exact when the rows per
    bucket are; the planner's pieces (:func:`alertd.source.pages.page_ranges`) come from the
    same figures.

    Per (customer, granularity, time zone) group: ``A + max(ceil(S / max_meters), max S_m)``
    (the planner's module docstring). It is a true lower bound under the model there: a request
    serves one group only; each need is served by one spec, and the needs one spec serves form a
    coverable set, so meter ``m`` takes at least ``S_m`` specs across the group's requests; a
    request holds at most one spec of ``m`` (so ``>= S_m`` requests) and at most ``max_meters``
    specs (so ``>= ceil(S / max_meters)``); an all-meters spec holds a request alone. ``S_m`` is
    an exact minimum partition (dynamic programming over subsets) for up to ten distinct specs
    of one meter in a group; beyond that it is the size of a set of pairwise uncoverable specs,
    still a lower bound but possibly below the optimum.
    """
    needs = list(needs)
    groups: dict[tuple[str, str, str], dict[str | None, set[MeterSpec]]] = defaultdict(
        lambda: defaultdict(set))
    for need in needs:
        groups[(need.customer, need.granularity, need.timezone)][need.spec.meter].add(need.spec)
    pages = _page_bounds(needs, paging) if paging is not None else {}
    total = 0
    for key, by_meter in groups.items():
        least = len(by_meter.pop(None, ()))
        fewest = [_fewest_covering_specs(tuple(sorted(specs, key=_order)), max_group_by)
                  for specs in by_meter.values()]
        if fewest:
            least += max(-(-sum(fewest) // max_meters), max(fewest))
        total += max(least, pages.get(key, 0))
    return total


def _page_bounds(needs: Iterable[DataNeed], paging: Paging
                 ) -> dict[tuple[str, str, str], int]:
    """Per group, the pages its rows take at least (see :func:`lower_bound`)."""
    if paging.page_rows is None:
        return {}
    most: dict[tuple[str, str, str], dict[str | None, float]] = defaultdict(dict)
    for need in needs:
        per_bucket = spec_rows_per_bucket(need.granularity, need.spec, paging) or 0.0
        buckets = bucket_count(need.starts_at, need.ends_at, need.granularity, need.timezone)
        by_meter = most[(need.customer, need.granularity, need.timezone)]
        meter = need.spec.meter
        by_meter[meter] = max(by_meter.get(meter, 0.0), buckets * per_bucket)
    return {key: math.ceil(sum(rows.values()) / paging.page_rows)
            for key, rows in most.items()}


def steady_state_needs(needs: Iterable[DataNeed], now: int, every: float,
                       policy: CachePolicy | None = None) -> list[DataNeed]:
    """What a poll with a warm bucket cache plans at ``now``, the previous poll ``every``
    seconds before: per cache key, the range from where that poll found buckets not yet
    settled (:func:`alertd.buckets.settled_before`) — the whole range for a key with no
    settled history — as the cache plans it (:func:`alertd.buckets.planned_needs`: as hours
    when recent).

    :func:`lower_bound` of these is the steady-state bound: the planner's model, with the
    ranges the cache leaves. Every recent need of a customer is then hourly in UTC (or in its
    own zone, for a zone a fraction of an hour from UTC), so they share requests that a cold
    read spends one per granularity and zone on.
    """
    policy = policy or CachePolicy()
    fetched: dict[str, DataNeed] = {}
    for key, hull in key_needs(needs).items():
        start = settled_before(hull, int(now - every), policy)
        fetched[key] = hull if start <= hull.starts_at else replace(hull, starts_at=start)
    return list(planned_needs(fetched, policy).values())


def _order(spec: MeterSpec) -> tuple[object, ...]:
    # The planner's order within one meter: one cache entry per set of specs, and the same
    # greedy choice beyond EXACT_LIMIT whatever order the needs came in.
    return (spec.dimension_filters, spec.tenant_filters, spec.group_by)


@lru_cache(maxsize=1024)
def _fewest_covering_specs(specs: tuple[MeterSpec, ...], max_group_by: int) -> int:
    if len(specs) > EXACT_LIMIT:
        return _pairwise_uncoverable(specs, max_group_by)
    size = 1 << len(specs)
    coverable = [mask == 0 or covering_spec(
        [s for i, s in enumerate(specs) if mask >> i & 1], max_group_by=max_group_by) is not None
        for mask in range(size)]
    fewest = [0] * size
    for mask in range(1, size):
        lowest = mask & -mask
        rest = mask ^ lowest
        best, sub = len(specs), rest
        while True:  # every coverable subset holding the lowest spec, as the first cluster
            if coverable[sub | lowest]:
                best = min(best, fewest[rest ^ sub] + 1)
            if sub == 0:
                break
            sub = (sub - 1) & rest
        fewest[mask] = best
    return fewest[-1]


def _pairwise_uncoverable(specs: tuple[MeterSpec, ...], max_group_by: int) -> int:
    """The size of a greedily built set of specs no two of which one spec can cover."""
    chosen: list[MeterSpec] = []
    for spec in specs:
        if all(covering_spec((spec, other), max_group_by=max_group_by) is None
               for other in chosen):
            chosen.append(spec)
    return len(chosen)

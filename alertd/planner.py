"""The request planner: from data needs to the fewest Meter Usage Analytics requests. Pure.

Where it sits::

    rules × customers --evaluate.needs--> DataNeed --plan--> RequestPlan(UsageQuery…)
        --source--> rows --extract_rows(need, serving spec)--> the need's own rows

The model the planner optimises in (the contract's constraints):

* One request has one customer, one ``value_grouping_window``, one time zone and one time range.
  A need is served only by a request of its own customer, granularity and time zone. Needs of
  one such *group* may share a request whatever their ranges: the request takes the hull and
  rows are cut back per need locally (fewer requests beats fewer rows).
* A request carries at most ``max_meters`` specs with pairwise distinct meter ids, because a
  response row names its meter but not the ``meters[i]`` that asked for it. A spec with
  ``meter=None`` is Stripe's "no ``meters``" request (all meters summed), so it travels alone.
* Each need is served by exactly one spec, and a spec *serves* a need exactly when its rows
  determine the need's rows (:func:`serves`): same meter and tenant filters (tenant keys cannot
  be grouped, so they cannot be separated locally), every filter of the spec is a filter of the
  need, and every filter and group-by key of the need that the spec does not already apply is one
  of the spec's group-by keys. Within the ``max_group_by`` limit, a set of specs has a single
  covering spec exactly when :func:`covering_spec` finds one: the filters they all share
  (tenant filters must be identical), grouped by the union of their other filter keys and their
  group-by keys. That is the contract's "grouped by the union of their filter and group-by keys
  (at most 2), without tenant filters", extended to keep filters every spec shares, which only
  removes rows nobody asked for.

Under that model the fewest requests for a group are exactly
``A + max(ceil(S / max_meters), max over meters of S_m)`` where ``S_m`` is the fewest covering
specs meter ``m`` needs (a minimum partition of its distinct specs into coverable sets), ``S``
their sum and ``A`` the number of all-meters specs. :func:`plan` reaches it: it partitions each
meter's specs exactly (branch and bound, first-fit as its starting bound) and deals the covering
specs round-robin into that many requests. ``bench/lower_bound.py`` computes the same minimum
by a separate method, so benchmarks and tests can compare. Summing several specs' rows for one
need could in rare cases save a request; the contract does not do that, and neither does this
model.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from alertd.model import DataNeed, Filters, Granularity, MeterSpec, UsageQuery, UsageRow
from alertd.stripe_limits import MAX_GROUP_BY, MAX_METERS, spec_breaches
from alertd.usage_columns import UsageColumns, sorted_table, summed

#: Branch-and-bound nodes spent on one meter's specs before settling for the best found so far.
#: Rule sets with a dozen specs of one meter in one group finish in a few hundred nodes.
_SEARCH_BUDGET = 50_000

GroupKey = tuple[str, Granularity, str]
SpecKey = tuple[bool, str, Filters, Filters, tuple[str, ...]]


def spec_limits_problems(spec: MeterSpec) -> list[str]:
    """Why Stripe would refuse ``spec`` as one ``meters[i]`` entry (empty when it would not).

    The rule validator reports these at ``validate`` time, so they never surface at run time.
    """
    problems = [breach.message() for breach in spec_breaches(
        group_by=len(spec.group_by), dimension_filters=len(spec.dimension_filters),
        tenant_filters=len(spec.tenant_filters))]
    if spec.meter is None and (spec.dimension_filters or spec.tenant_filters or spec.group_by):
        problems.append("filters, tenant_filters and group_by need a 'meter': a rule without "
                        "one sums every meter of the customer")
    return problems


def covering_spec(specs: Iterable[MeterSpec], *, max_group_by: int = MAX_GROUP_BY
                  ) -> MeterSpec | None:
    """The one spec whose rows serve every spec in ``specs``, or ``None`` if there is none.

    It keeps the dimension filters all of them share, groups by the union of their remaining
    filter keys and their group-by keys (sorted), and needs them to share meter and tenant
    filters and that union to have at most ``max_group_by`` keys. One distinct spec covers
    itself. Raises ``ValueError`` for no specs.
    """
    distinct = list(dict.fromkeys(specs))
    if not distinct:
        raise ValueError("no specs to cover")
    first = distinct[0]
    if len(distinct) == 1:
        return first
    if any(s.meter != first.meter or s.tenant_filters != first.tenant_filters for s in distinct):
        return None
    shared = set(first.dimension_filters).intersection(*(s.dimension_filters for s in distinct))
    keys = {key for s in distinct for key in s.group_by}
    keys |= {key for s in distinct for key, values in s.dimension_filters
             if (key, values) not in shared}
    if len(keys) > max_group_by or first.meter is None:
        return None
    return MeterSpec(first.meter, tuple(sorted(shared)), first.tenant_filters, tuple(sorted(keys)))


def serves(serving: MeterSpec, spec: MeterSpec) -> bool:
    """Whether the rows of a ``serving`` query determine the rows ``spec`` asks for."""
    if serving.meter != spec.meter or serving.tenant_filters != spec.tenant_filters:
        return False
    wanted = dict(spec.dimension_filters)
    grouped = set(serving.group_by)
    for key, values in serving.dimension_filters:
        if key not in wanted or not set(wanted[key]) <= set(values):
            return False
    for pair in spec.dimension_filters:
        if pair not in serving.dimension_filters and pair[0] not in grouped:
            return False
    return set(spec.group_by) <= grouped


def extract_rows(need: DataNeed, serving_spec: MeterSpec, rows: Sequence[UsageRow]
                 ) -> Sequence[UsageRow]:
    """The rows ``need`` would get from its own query, cut out of a covering query's ``rows``.

    Keeps rows of the need's meter (``None``: the all-meters rows) whose dimensions pass the
    need's filters that ``serving_spec`` did not apply (a list of values means any of them) and
    whose bucket starts inside ``[need.starts_at, need.ends_at)``; sums them per bucket and the
    need's own group-by values, which become the result's only dimensions. Sorted by bucket,
    then dimensions. Raises ``ValueError`` when ``serving_spec`` cannot serve the need.
    Columns (:class:`~alertd.usage_columns.UsageColumns`) give columns, any other rows a list.
    """
    spec = need.spec
    if not serves(serving_spec, spec):
        raise ValueError(f"{serving_spec} cannot serve {spec}")
    checks = [(key, frozenset(values)) for key, values in spec.dimension_filters
              if (key, values) not in serving_spec.dimension_filters]
    kept = set(spec.group_by)
    if isinstance(rows, UsageColumns):
        return _extract_columns(need, rows, checks, kept)
    sums: dict[tuple[int, int, tuple[tuple[str, str], ...]], float] = defaultdict(float)
    for row in rows:
        if row.meter != spec.meter or not need.starts_at <= row.starts_at < need.ends_at:
            continue
        dimensions = dict(row.dimensions)
        if all(dimensions.get(key) in values for key, values in checks):
            group = tuple(sorted((k, v) for k, v in row.dimensions if k in kept))
            sums[(row.starts_at, row.ends_at, group)] += row.value
    return [UsageRow(start, end, value, spec.meter, group)
            for (start, end, group), value in sorted(sums.items())]


def _extract_columns(need: DataNeed, rows: UsageColumns,
                     checks: Sequence[tuple[str, frozenset[str]]], kept: set[str]
                     ) -> UsageColumns:
    """:func:`extract_rows` of columns, as columns: the filters and the group-by values are
    worked out once per distinct dimension set, the sums by :func:`summed` (in row order)."""
    if need.spec.meter not in rows.meters:
        return UsageColumns.empty()
    passes, groups = [], []
    for dimensions in rows.dimensions:
        found = dict(dimensions)
        passes.append(all(found.get(key) in values for key, values in checks))
        groups.append(tuple(sorted((k, v) for k, v in dimensions if k in kept)))
    names, group_of = sorted_table(groups)
    codes = rows.dimension_codes
    chosen = ((rows.meter_codes == rows.meters.index(need.spec.meter))
              & (rows.starts >= need.starts_at) & (rows.starts < need.ends_at))
    if not all(passes):
        chosen &= np.asarray(passes, bool).reshape(len(passes))[codes]
    return summed(rows.starts[chosen], rows.ends[chosen], rows.values[chosen],
                  group_of[codes[chosen]], need.spec.meter, names)


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True, slots=True)
class RequestPlan:
    """Requests covering a set of needs, and which request and spec serve each need.

    ``needs`` are the distinct input needs in input order; ``assignments[i]`` is
    ``(query index, serving spec)`` for ``needs[i]``.
    """

    queries: tuple[UsageQuery, ...]
    needs: tuple[DataNeed, ...]
    assignments: tuple[tuple[int, MeterSpec], ...]
    _position: Mapping[DataNeed, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_position", {n: i for i, n in enumerate(self.needs)})

    def query_index(self, need: DataNeed) -> int:
        """The index in :attr:`queries` of the request serving ``need`` (``KeyError`` if none)."""
        return self.assignments[self._position[need]][0]

    def serving(self, need: DataNeed) -> tuple[UsageQuery, MeterSpec]:
        """The request serving ``need`` and the spec inside it whose rows hold the need's rows."""
        index, spec = self.assignments[self._position[need]]
        return self.queries[index], spec

    def extended(self, more: RequestPlan) -> RequestPlan:
        """This plan followed by ``more``'s requests (their indexes after this plan's); a
        need of both stays served as here."""
        shift = len(self.queries)
        added = [(n, (i + shift, spec)) for n, (i, spec) in zip(more.needs, more.assignments,
                                                                 strict=True)
                 if n not in self._position]
        return RequestPlan((*self.queries, *more.queries), (*self.needs, *(n for n, _ in added)),
                           (*self.assignments, *(a for _, a in added)))


def plan(needs: Iterable[DataNeed], *, max_meters: int = MAX_METERS,
         max_group_by: int = MAX_GROUP_BY) -> RequestPlan:
    """The fewest requests serving every need (see the module docstring for "fewest").

    Deterministic: the same needs in any order give the same queries in the same order (groups
    sorted by customer, granularity and time zone; specs inside a request sorted by meter).
    Raises ``ValueError`` for a spec Stripe would refuse (:func:`spec_limits_problems`), which
    rule validation reports first.
    """
    distinct = tuple(dict.fromkeys(needs))
    _check_specs({n.spec for n in distinct}, max_group_by)
    queries: list[UsageQuery] = []
    serving: dict[DataNeed, tuple[int, MeterSpec]] = {}
    for key, group in sorted(_groups(distinct).items()):
        requests, cover = _plan_group(tuple(sorted({n.spec for n in group}, key=_spec_key)),
                                      max_meters, max_group_by)
        by_cover = {spec: len(queries) + i for i, request in enumerate(requests)
                    for spec in request}
        queries.extend(_query(key, request, [n for n in group if cover[n.spec] in request])
                       for request in requests)
        serving.update((n, (by_cover[cover[n.spec]], cover[n.spec])) for n in group)
    return RequestPlan(tuple(queries), distinct, tuple(serving[n] for n in distinct))


def _check_specs(specs: Iterable[MeterSpec], max_group_by: int) -> None:
    for spec in specs:
        problems = spec_limits_problems(spec)
        if len(spec.group_by) > max_group_by:  # a planner told to allow fewer than Stripe
            problems.append(f"group_by: at most {max_group_by} keys, got {len(spec.group_by)}")
        if problems:
            raise ValueError(f"cannot request {spec}: {'; '.join(problems)}")


def _groups(needs: Iterable[DataNeed]) -> dict[GroupKey, list[DataNeed]]:
    groups: dict[GroupKey, list[DataNeed]] = defaultdict(list)
    for need in needs:
        groups[(need.customer, need.granularity, need.timezone)].append(need)
    return groups


def _spec_key(spec: MeterSpec) -> SpecKey:
    return (spec.meter is not None, spec.meter or "", spec.dimension_filters,
            spec.tenant_filters, spec.group_by)


@lru_cache(maxsize=1024)
def _plan_group(specs: tuple[MeterSpec, ...], max_meters: int, max_group_by: int
                ) -> tuple[tuple[frozenset[MeterSpec], ...], Mapping[MeterSpec, MeterSpec]]:
    """Requests (as sets of covering specs, in dealing order) for one group's distinct specs,
    and each spec's covering spec. Cached: every customer of a rule set repeats the same specs.
    """
    by_meter: dict[str | None, list[MeterSpec]] = defaultdict(list)
    for spec in specs:
        by_meter[spec.meter].append(spec)
    cover: dict[MeterSpec, MeterSpec] = {}
    for meter_specs in by_meter.values():
        for members in _fewest_clusters(tuple(meter_specs), max_group_by):
            covering = covering_spec(members, max_group_by=max_group_by)
            assert covering is not None, "a cluster is coverable by construction"
            cover.update((member, covering) for member in members)
    coverings = sorted(set(cover.values()), key=_spec_key)
    return tuple(frozenset(r) for r in _deal(coverings, max_meters)), cover


def _deal(coverings: list[MeterSpec], max_meters: int) -> list[list[MeterSpec]]:
    """Covering specs (sorted, so one meter's are adjacent) dealt round-robin into
    ``max(ceil(n / max_meters), most specs of one meter)`` requests: adjacent specs of one meter
    land in distinct requests, and no request gets more than ``max_meters``. All-meters specs
    come last, alone."""
    alone = [[spec] for spec in coverings if spec.meter is None]
    metered = [spec for spec in coverings if spec.meter is not None]
    if not metered:
        return alone
    most = max(Counter(spec.meter for spec in metered).values())
    count = max(-(-len(metered) // max_meters), most)
    requests: list[list[MeterSpec]] = [[] for _ in range(count)]
    for i, spec in enumerate(metered):
        requests[i % count].append(spec)
    return requests + alone


def _query(key: GroupKey, request: frozenset[MeterSpec], needs: list[DataNeed]) -> UsageQuery:
    customer, granularity, timezone = key
    return UsageQuery(
        customer=customer,
        starts_at=min(n.starts_at for n in needs),
        ends_at=max(n.ends_at for n in needs),
        window=granularity,
        timezone=timezone,
        meters=tuple(sorted(request, key=_spec_key)),
    )


# --------------------------------------------------------------------------- partitioning


@dataclass(frozen=True, slots=True)
class _Cluster:
    """Specs of one meter that one covering spec serves, with what that spec needs."""

    members: tuple[MeterSpec, ...]
    tenant_filters: Filters
    shared: frozenset[tuple[str, tuple[str, ...]]]
    keys: frozenset[str]

    @classmethod
    def of(cls, spec: MeterSpec) -> _Cluster:
        return cls((spec,), spec.tenant_filters, frozenset(spec.dimension_filters),
                   frozenset(spec.group_by))

    def joined(self, spec: MeterSpec, max_group_by: int) -> _Cluster | None:
        """This cluster with ``spec`` added, or ``None`` when no single spec covers them."""
        if spec.tenant_filters != self.tenant_filters:
            return None
        pairs = frozenset(spec.dimension_filters)
        shared = self.shared & pairs
        # A filter no longer shared by every member must be grouped by instead.
        keys = self.keys | set(spec.group_by) | {key for key, _ in (self.shared | pairs) - shared}
        if len(keys) > max_group_by:
            return None
        return _Cluster((*self.members, spec), self.tenant_filters, shared, frozenset(keys))


class _PartitionSearch:
    """Fewest clusters for one meter's specs: depth first over "join a cluster or open one",
    pruned by the best partition found so far (first-fit to start with)."""

    def __init__(self, specs: tuple[MeterSpec, ...], max_group_by: int) -> None:
        # Specs with the most keys first: they constrain most, so pruning bites early.
        self.specs = sorted(specs, key=lambda s: -len(s.dimension_filters) - len(s.group_by))
        self.max_group_by = max_group_by
        self.budget = _SEARCH_BUDGET
        self.best = self._first_fit()

    def _first_fit(self) -> tuple[_Cluster, ...]:
        clusters: list[_Cluster] = []
        for spec in self.specs:
            for i, cluster in enumerate(clusters):
                joined = cluster.joined(spec, self.max_group_by)
                if joined is not None:
                    clusters[i] = joined
                    break
            else:
                clusters.append(_Cluster.of(spec))
        return tuple(clusters)

    def run(self) -> tuple[_Cluster, ...]:
        self._visit(0, ())
        return self.best

    def _visit(self, index: int, clusters: tuple[_Cluster, ...]) -> None:
        if len(clusters) >= len(self.best) or self.budget <= 0:
            return
        if index == len(self.specs):
            self.best = clusters
            return
        self.budget -= 1
        spec = self.specs[index]
        for i, cluster in enumerate(clusters):
            joined = cluster.joined(spec, self.max_group_by)
            if joined is not None:
                self._visit(index + 1, (*clusters[:i], joined, *clusters[i + 1:]))
        self._visit(index + 1, (*clusters, _Cluster.of(spec)))


def _fewest_clusters(specs: tuple[MeterSpec, ...], max_group_by: int
                     ) -> list[tuple[MeterSpec, ...]]:
    """A partition of one meter's distinct specs into the fewest coverable sets, in a stable
    order. Exact unless the search budget runs out (then the best partition found)."""
    if specs[0].meter is None:
        return [(spec,) for spec in specs]
    clusters = _PartitionSearch(specs, max_group_by).run()
    return sorted((tuple(sorted(c.members, key=_spec_key)) for c in clusters),
                  key=lambda members: _spec_key(members[0]))

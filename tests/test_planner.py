"""The request planner: tables for each merging and packing rule, and properties checked
against brute force (covering queries cut back equal direct queries; plans reach the lower
bound)."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Mapping, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alertd.model import DataNeed, Granularity, MeterSpec, UsageRow, make_filters
from alertd.planner import (
    RequestPlan,
    covering_spec,
    extract_rows,
    plan,
    serves,
    spec_limits_problems,
)
from bench.lower_bound import lower_bound

DAY = 86400
TOKENS = "mtr_tokens"


def spec(meter: str | None = TOKENS, *, filters: Mapping[str, str | list[str]] | None = None,
         tenants: Mapping[str, str | list[str]] | None = None,
         group_by: Sequence[str] = ()) -> MeterSpec:
    return MeterSpec(meter, make_filters(filters), make_filters(tenants), tuple(group_by))


def need(meter_spec: MeterSpec, *, customer: str = "cus_1", granularity: Granularity = "day",
         timezone: str = "UTC", starts_at: int = 0, ends_at: int = 3 * DAY) -> DataNeed:
    return DataNeed(customer, meter_spec, granularity, timezone, starts_at, ends_at)


def check_valid(result: RequestPlan, max_meters: int = 5) -> None:
    """Every request obeys the contract and every need's serving spec can serve it."""
    for query in result.queries:
        meters = [s.meter for s in query.meters]
        assert len(meters) <= max_meters
        assert len(set(meters)) == len(meters)
        assert None not in meters or len(meters) == 1
    for n in result.needs:
        query, serving = result.serving(n)
        assert serving in query.meters and serves(serving, n.spec)
        assert (query.customer, query.window, query.timezone) == (
            n.customer, n.granularity, n.timezone)
        assert query.starts_at <= n.starts_at and n.ends_at <= query.ends_at
        assert result.queries[result.query_index(n)] is query


# --------------------------------------------------------------------------- merging tables


def test_identical_specs_are_shared_between_rules() -> None:
    shared = spec(filters={"model": "gpt-4"})
    needs = [need(shared, ends_at=DAY), need(shared, starts_at=-7 * DAY, ends_at=DAY)]
    result = plan(needs)
    assert len(result.queries) == 1
    assert result.queries[0].meters == (shared,)
    assert [result.serving(n)[1] for n in needs] == [shared, shared]
    assert [result.query_index(n) for n in needs] == [0, 0]


def test_specs_of_one_meter_with_compatible_keys_share_a_covering_spec() -> None:
    specs = [spec(filters={"model": "gpt-4"}), spec(filters={"model": ["gpt-3.5", "gpt-4"]}),
             spec(group_by=["tier"]), spec(), spec(filters={"tier": "pro"}, group_by=["model"])]
    result = plan([need(s) for s in specs])
    covering = MeterSpec(TOKENS, (), (), ("model", "tier"))
    assert [q.meters for q in result.queries] == [(covering,)]
    assert {result.serving(n)[1] for n in result.needs} == {covering}
    check_valid(result)


def test_filters_every_spec_shares_stay_on_the_covering_spec() -> None:
    specs = [spec(filters={"model": "gpt-4"}), spec(filters={"model": "gpt-4"}, group_by=["tier"])]
    result = plan([need(s) for s in specs])
    assert result.queries[0].meters == (spec(filters={"model": "gpt-4"}, group_by=["tier"]),)


def test_a_spec_no_other_joins_is_requested_as_written() -> None:
    alone = spec(filters={"model": "gpt-4", "tier": "pro", "region": "eu"}, group_by=["b", "a"])
    result = plan([need(alone)])
    assert result.serving(result.needs[0])[1] is alone


@pytest.mark.parametrize(("first", "second"), [
    (spec(tenants={"user_id": "u1"}), spec()),
    (spec(tenants={"user_id": "u1"}), spec(tenants={"user_id": "u2"})),
    (spec(tenants={"user_id": "u1"}, filters={"model": "a"}),
     spec(tenants={"user_id": ["u1", "u2"]}, filters={"model": "a"})),
])
def test_specs_with_different_tenant_filters_never_share(first: MeterSpec,
                                                         second: MeterSpec) -> None:
    result = plan([need(first), need(second)])
    assert {q.meters for q in result.queries} == {(first,), (second,)}
    assert covering_spec([first, second]) is None


def test_identical_tenant_filters_are_kept_while_group_by_keys_are_united() -> None:
    tenant = {"user_id": "u1"}
    specs = [spec(tenants=tenant), spec(tenants=tenant, group_by=["model"])]
    result = plan([need(s) for s in specs])
    assert result.queries[0].meters == (spec(tenants=tenant, group_by=["model"]),)


@pytest.mark.parametrize("specs", [
    [spec(group_by=["model", "tier"]), spec(group_by=["region"])],
    [spec(filters={"model": "a"}), spec(filters={"tier": "b"}), spec(filters={"region": "c"},
                                                                     group_by=["model"])],
    [spec(filters={"model": "a"}, group_by=["tier"]), spec(filters={"model": "b"},
                                                           group_by=["region"])],
])
def test_a_union_of_more_than_two_keys_is_not_merged(specs: list[MeterSpec]) -> None:
    result = plan([need(s) for s in specs])
    assert len(result.queries) == 2
    for query in result.queries:
        (covering,) = query.meters
        assert len(covering.group_by) <= 2
    check_valid(result)


def test_the_partition_is_minimal_where_first_fit_is_not() -> None:
    # First fit puts the first two together and then needs a request for each of the others;
    # pairing the first with the third and the second with the fourth needs two.
    specs = [spec(filters={"model": "b", "region": "b"}, group_by=["tier"]),
             spec(filters={"model": "b"}, group_by=["tier"]),
             spec(filters={"region": "b", "tier": "b"}),
             spec(group_by=["model"])]
    needs = [need(s) for s in specs]
    result = plan(needs)
    assert len(result.queries) == 2 == lower_bound(needs)
    assert result.serving(needs[0])[1] == spec(filters={"region": "b"}, group_by=["model", "tier"])
    check_valid(result)


def test_max_group_by_is_a_parameter() -> None:
    specs = [spec(group_by=["model"]), spec(group_by=["tier"])]
    assert len(plan([need(s) for s in specs]).queries) == 1
    assert len(plan([need(s) for s in specs], max_group_by=1).queries) == 2


def test_covering_spec_needs_one_meter() -> None:
    assert covering_spec([spec("mtr_a"), spec("mtr_b")]) is None
    assert covering_spec([spec(), spec()]) == spec()


# --------------------------------------------------------------------------- packing tables


def test_six_distinct_meters_take_two_requests() -> None:
    needs = [need(spec(f"mtr_{i}")) for i in range(6)]
    result = plan(needs)
    assert len(result.queries) == 2 == lower_bound(needs)
    assert sorted(len(q.meters) for q in result.queries) == [3, 3]
    check_valid(result)


def test_five_distinct_meters_take_one_request_sorted_by_meter() -> None:
    needs = [need(spec(f"mtr_{i}")) for i in (3, 1, 4, 0, 2)]
    result = plan(needs)
    assert [s.meter for s in result.queries[0].meters] == [f"mtr_{i}" for i in range(5)]


def test_uncoverable_specs_of_one_meter_spread_over_requests_with_other_meters() -> None:
    needs = [need(spec(tenants={"user_id": f"u{i}"})) for i in range(3)]
    needs += [need(spec("mtr_calls")), need(spec("mtr_storage"))]
    result = plan(needs)
    assert len(result.queries) == 3 == lower_bound(needs)
    check_valid(result)


def test_the_all_meters_spec_travels_alone() -> None:
    needs = [need(spec(None)), need(spec("mtr_calls"))]
    result = plan(needs)
    assert sorted(len(q.meters) for q in result.queries) == [1, 1]
    assert len(result.queries) == lower_bound(needs) == 2
    check_valid(result)


@pytest.mark.parametrize(("other", "why"), [
    ({"timezone": "America/New_York"}, "time zone"),
    ({"granularity": "hour"}, "granularity"),
    ({"customer": "cus_2"}, "customer"),
])
def test_needs_in_different_groups_never_share(other: dict[str, str], why: str) -> None:
    base = spec("mtr_calls")
    needs = [need(base), need(base, **other)]  # type: ignore[arg-type]
    result = plan(needs)
    assert len(result.queries) == 2, why
    check_valid(result)


def test_a_request_spans_the_hull_of_the_needs_it_serves() -> None:
    needs = [need(spec(), starts_at=0, ends_at=3 * DAY),
             need(spec(group_by=["model"]), starts_at=2 * DAY, ends_at=5 * DAY),
             need(spec("mtr_calls"), starts_at=-DAY, ends_at=DAY)]
    (query,) = plan(needs).queries
    assert (query.starts_at, query.ends_at) == (-DAY, 5 * DAY)


def test_the_plan_does_not_depend_on_the_order_of_needs() -> None:
    needs = [need(spec(m, group_by=g), customer=c, granularity=gr)
             for m in ("mtr_a", "mtr_b", "mtr_c") for g in ((), ("model",))
             for c in ("cus_2", "cus_1") for gr in ("day", "hour")]
    expected = plan(needs).queries
    shuffled = list(needs)
    for seed in range(5):
        random.Random(seed).shuffle(shuffled)
        assert plan(shuffled).queries == expected
    assert [q.customer for q in expected] == sorted(q.customer for q in expected)


def test_a_plan_lists_the_distinct_needs_in_input_order() -> None:
    needs = [need(spec(f"mtr_{i}"), customer=f"cus_{i % 2}") for i in range(4)]
    result = plan(needs + needs[:1])
    assert result.needs == tuple(needs)
    assert len(result.assignments) == 4
    with pytest.raises(KeyError):
        result.serving(need(spec("mtr_unknown")))


# --------------------------------------------------------------------------- limits


@pytest.mark.parametrize(("meter_spec", "fragment"), [
    (spec(group_by=["a", "b", "c"]), "group_by: at most 2 keys, got 3"),
    (spec(filters={f"k{i}": "v" for i in range(11)}), "at most 10 dimension filters, got 11"),
    (spec(tenants={f"t{i}": "v" for i in range(4)}), "at most 3 tenant filters, got 4"),
    (spec(None, filters={"model": "a"}), "need a 'meter'"),
])
def test_spec_limits_problems_name_the_limit(meter_spec: MeterSpec, fragment: str) -> None:
    (problem,) = spec_limits_problems(meter_spec)
    assert fragment in problem
    with pytest.raises(ValueError, match=fragment):
        plan([need(meter_spec)])


def test_specs_within_the_limits_have_no_problems() -> None:
    full = spec(filters={f"k{i}": "v" for i in range(10)}, group_by=["a", "b"],
                tenants={"t1": "v", "t2": "v", "t3": "v"})
    assert spec_limits_problems(full) == []
    assert spec_limits_problems(spec(None)) == []


# --------------------------------------------------------------------------- extract_rows


def row(day: int, value: float, meter: str | None = TOKENS, **dims: str) -> UsageRow:
    return UsageRow(day * DAY, (day + 1) * DAY, value, meter, tuple(sorted(dims.items())))


COVERING_ROWS = [
    row(0, 10, model="gpt-4", tier="pro"), row(0, 5, model="gpt-4", tier="free"),
    row(0, 7, model="gpt-3.5", tier="pro"), row(1, 1, model="gpt-4", tier="pro"),
    row(1, 2, model="claude", tier="free"), row(1, 100, "mtr_calls", endpoint="/v1"),
]
COVERING = spec(group_by=["model", "tier"])


@pytest.mark.parametrize(("wanted", "starts_at", "expected"), [
    (spec(filters={"model": "gpt-4"}), 0, [row(0, 15), row(1, 1)]),
    (spec(group_by=["tier"]), 0, [row(0, 5, tier="free"), row(0, 17, tier="pro"),
                                  row(1, 2, tier="free"), row(1, 1, tier="pro")]),
    (spec(filters={"model": ["claude", "gpt-4"]}, group_by=["tier"]), DAY,
     [row(1, 2, tier="free"), row(1, 1, tier="pro")]),
    (spec(filters={"tier": "pro"}, group_by=["model"]), 0,
     [row(0, 7, model="gpt-3.5"), row(0, 10, model="gpt-4"), row(1, 1, model="gpt-4")]),
    (spec(), 0, [row(0, 22), row(1, 3)]),
    (spec(filters={"model": "mistral"}), 0, []),
])
def test_extract_rows_sums_a_covering_query_back_to_one_need(
        wanted: MeterSpec, starts_at: int, expected: list[UsageRow]) -> None:
    assert serves(COVERING, wanted)
    got = extract_rows(need(wanted, starts_at=starts_at), COVERING, COVERING_ROWS)
    assert got == expected


def test_extract_rows_of_the_all_meters_query_keeps_meterless_rows() -> None:
    rows = [row(0, 3, None), row(1, 4, None)]
    assert extract_rows(need(spec(None), ends_at=DAY), spec(None), rows) == [row(0, 3, None)]


def test_extract_rows_refuses_a_spec_that_cannot_serve_the_need() -> None:
    with pytest.raises(ValueError, match="cannot serve"):
        extract_rows(need(spec(group_by=["region"])), COVERING, COVERING_ROWS)


# --------------------------------------------------------------------------- properties

KEYS = ("model", "tier", "region")
VALUES = ("a", "b", "c")
METERS = ("mtr_a", "mtr_b", "mtr_c")


@st.composite
def specs(draw: st.DrawFn, meters: Sequence[str | None] = METERS) -> MeterSpec:
    meter = draw(st.sampled_from(meters))
    if meter is None:
        return MeterSpec(None)
    filter_keys = draw(st.lists(st.sampled_from(KEYS), unique=True, max_size=2))
    filters = {k: draw(st.lists(st.sampled_from(VALUES), min_size=1, max_size=2, unique=True))
               for k in filter_keys}
    group_by = draw(st.lists(st.sampled_from(KEYS), unique=True, max_size=2))
    tenants = draw(st.sampled_from([None, None, None, {"user_id": "u1"}, {"user_id": "u2"}]))
    return spec(meter, filters=filters, tenants=tenants, group_by=group_by)


@st.composite
def fine_rows(draw: st.DrawFn) -> list[UsageRow]:
    """Usage at the finest grain: every dimension a row can carry (some rows lack one)."""
    rows = []
    for _ in range(draw(st.integers(0, 30))):
        dims = {k: draw(st.sampled_from(VALUES)) for k in KEYS}
        if draw(st.booleans()) and draw(st.booleans()):
            del dims[draw(st.sampled_from(KEYS))]
        rows.append(row(draw(st.integers(0, 4)), draw(st.integers(0, 50)),
                        draw(st.sampled_from(METERS)), **dims))
    return rows


def direct_query(wanted: MeterSpec, rows: Sequence[UsageRow], starts_at: int,
                 ends_at: int) -> list[UsageRow]:
    """What Stripe returns for ``wanted`` alone, by brute force over the finest rows."""
    sums: dict[tuple[int, int, tuple[tuple[str, str], ...]], float] = defaultdict(float)
    for r in rows:
        dims = dict(r.dimensions)
        if r.meter != wanted.meter or not starts_at <= r.starts_at < ends_at:
            continue
        if all(dims.get(k) in values for k, values in wanted.dimension_filters):
            group = tuple((k, dims[k]) for k in sorted(wanted.group_by) if k in dims)
            sums[(r.starts_at, r.ends_at, group)] += r.value
    return [UsageRow(s, e, v, wanted.meter, g) for (s, e, g), v in sorted(sums.items())]


@settings(max_examples=300, deadline=None)
@given(rows=fine_rows(), wanted=st.lists(specs(meters=METERS[:1]), min_size=1, max_size=4),
       first_day=st.integers(0, 4), days=st.integers(1, 5))
def test_a_covering_query_cut_back_equals_each_direct_query(
        rows: list[UsageRow], wanted: list[MeterSpec], first_day: int, days: int) -> None:
    wanted = [w for w in wanted if not w.tenant_filters]  # tenant keys are not in the rows
    covering = covering_spec(wanted) if wanted else None
    if covering is None:
        return
    covering_rows = direct_query(covering, rows, 0, 5 * DAY)
    for w in wanted:
        start, end = first_day * DAY, (first_day + days) * DAY
        assert extract_rows(need(w, starts_at=start, ends_at=end), covering, covering_rows) == (
            direct_query(w, rows, start, end))


@st.composite
def need_sets(draw: st.DrawFn) -> list[DataNeed]:
    """Needs crowded into few groups and meters, so that merging and packing both matter
    (at most ten, so the lower bound partitions exactly)."""
    meters = draw(st.lists(st.sampled_from([*METERS, "mtr_d", "mtr_e", "mtr_f", None]),
                           min_size=1, max_size=7, unique=True))
    granularities: list[Granularity] = ["hour", "day"]
    groups = draw(st.lists(st.tuples(st.sampled_from(["cus_1", "cus_2"]),
                                     st.sampled_from(granularities),
                                     st.sampled_from(["UTC", "Europe/Paris"])),
                           min_size=1, max_size=3))
    needs = []
    for _ in range(draw(st.integers(1, 10))):
        customer, granularity, timezone = draw(st.sampled_from(groups))
        needs.append(need(draw(specs(meters=meters)), customer=customer,
                          granularity=granularity, timezone=timezone,
                          starts_at=draw(st.integers(-5, 0)) * DAY,
                          ends_at=draw(st.integers(1, 5)) * DAY))
    return needs


@settings(max_examples=300, deadline=None)
@given(needs=need_sets(), max_meters=st.integers(1, 5), max_group_by=st.integers(1, 2))
def test_plans_are_valid_and_reach_the_lower_bound(
        needs: list[DataNeed], max_meters: int, max_group_by: int) -> None:
    needs = [n for n in needs if len(n.spec.group_by) <= max_group_by]
    result = plan(needs, max_meters=max_meters, max_group_by=max_group_by)
    check_valid(result, max_meters)
    assert len(result.queries) == lower_bound(needs, max_meters=max_meters,
                                              max_group_by=max_group_by)


@settings(max_examples=40, deadline=None)
@given(wanted=st.lists(specs(meters=METERS[:1]), min_size=11, max_size=16))
def test_the_lower_bound_holds_beyond_exact_partitioning(wanted: list[MeterSpec]) -> None:
    needs = [need(w) for w in wanted]
    result = plan(needs)
    check_valid(result)
    assert lower_bound(needs) <= len(result.queries)


def test_an_extended_plan_serves_both_plans_needs_from_their_own_requests() -> None:
    first = [need(spec(TOKENS)), need(spec(TOKENS), customer="cus_2")]
    more = [need(spec(TOKENS), customer="cus_3", granularity="hour"), first[0]]
    a, b = plan(first), plan(more)
    both = a.extended(b)
    assert both.queries == (*a.queries, *b.queries)
    for n in first:  # a need of both stays served by the first plan's request
        assert both.serving(n) == a.serving(n)
        assert both.query_index(n) == a.query_index(n)
    assert both.serving(more[0]) == b.serving(more[0])
    assert both.query_index(more[0]) == len(a.queries) + b.query_index(more[0])

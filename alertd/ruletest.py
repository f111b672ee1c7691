"""Rule unit tests (``alertd test FILE…``): fixture usage series in, expected alerts out.

In the spirit of ``promtool test rules``. A test file names rule files, customers and usage
series as buckets; each test gives an instant and the alerts expected then. For each rule and
customer, the file's series are replayed once: rules are evaluated every ``every`` from the
earliest fixture bucket up to the last test's instant, through the same evaluators and the same
alert lifecycle the daemon uses (the steps ``backtest`` shares: :func:`alertd.backtest.judge`
and :class:`alertd.backtest.SeriesStates`), so ``for``, ``keep_firing_for``, levels and
once-per-period behave exactly as in production. Each test's alerts are a snapshot taken on
the way at its instant: the states after every step before it, plus one evaluation at the
instant itself. That look is taken on a copy when the instant falls between steps, so a test
never changes what the replay sees afterwards — the result of a test is the same whether or
not other tests share its file. A fixture bucket becomes visible once it has ended by
``refreshed_at`` (the evaluation instant minus ``refreshed_lag``).

The format is documented in ``rules/tests/threshold_test.yaml``; customers may also carry
``items`` (Stripe price objects with their billing periods) and ``credit`` for money rules
(``rules/tests/spend_test.yaml``, ``credit_test.yaml``)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from alertd import conditions
from alertd.backtest import SeriesStates, judge
from alertd.billing import BillingItem, Credit, CustomerBilling
from alertd.calendar import next_start
from alertd.clock import parse_instant
from alertd.config.settings import Duration, load_settings
from alertd.config.yamlpos import load_located, validation_problems
from alertd.errors import ConfigError
from alertd.model import (
    Customer,
    DataNeed,
    Dimensions,
    Finding,
    Granularity,
    Period,
    UsageRow,
    make_dimensions,
)
from alertd.pricing import parse_price
from alertd.rules.loader import RuleSet, load_rules
from alertd.rules.schema import AllCustomers, CustomerSearch, Rule
from alertd.source.search import SearchQueryError, parse_search

_REPEAT = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*x\s*(\d+)\s*$")


def expand_values(items: Sequence[float | str]) -> list[float]:
    """``[1, "5x3", 2]`` → ``[1, 5, 5, 5, 2]``."""
    values: list[float] = []
    for item in items:
        if isinstance(item, int | float):
            values.append(float(item))
            continue
        match = _REPEAT.match(str(item))
        if match is None:
            raise ValueError(f"not a value or AxN repetition: {item!r}")
        values.extend([float(match.group(1))] * int(match.group(2)))
    return values


def _instant(value: object) -> int:
    if isinstance(value, int):
        return value
    return parse_instant(str(value), now=0)


Instant = Annotated[int, BeforeValidator(_instant)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FixtureItem(_Model):
    """A subscription item: a Stripe price object as the API returns it (tiers included) and
    its current period."""

    price: dict[str, Any]
    period_start: Instant
    period_end: Instant


class FixtureCredit(_Model):
    """Credit in one currency, in major units (``"120.00"``)."""

    currency: str
    available: Decimal
    granted: Decimal


class FixtureCustomer(_Model):
    id: str
    name: str | None = None
    email: str | None = None
    metadata: dict[str, str] = {}
    #: Prices and credit for rules with ``measure: cost``, ``window: billing_period`` or
    #: ``credit`` (what :mod:`alertd.source.billing` would read from Stripe).
    items: list[FixtureItem] = []
    credit: list[FixtureCredit] = []

    def customer(self) -> Customer:
        billing = CustomerBilling(
            items=tuple(BillingItem(f"si_{self.id}_{n}", parse_price(item.price),
                                    Period(item.period_start, item.period_end))
                        for n, item in enumerate(self.items)),
            credit=tuple(Credit(c.currency.lower(), c.available, c.granted)
                         for c in self.credit),
        )
        return Customer(self.id, self.name, self.email, dict(self.metadata), billing=billing)


class FixtureSeries(_Model):
    customer: str
    meter: str | None = None
    dimensions: dict[str, str] = {}
    granularity: Granularity = "hour"
    timezone: str = "UTC"
    start: Instant
    values: list[float | str]


class ExpectedAlert(_Model):
    rule: str
    customer: str
    dimensions: dict[str, str] = {}
    state: str = "firing"
    level: str | None = None


class Case(_Model):
    name: str
    at: Instant
    expect: list[ExpectedAlert] = []


class TestFile(_Model):
    rule_files: list[str]
    config: str | None = None
    freshness_lag: Duration = 0.0
    refreshed_lag: Duration = 0.0
    customers: list[FixtureCustomer] = []
    series: list[FixtureSeries] = []
    tests: Annotated[list[Case], Field(min_length=1)]


@dataclass(frozen=True, slots=True)
class CaseResult:
    file: str
    name: str
    missing: tuple[str, ...]
    unexpected: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.missing and not self.unexpected


@dataclass(frozen=True, slots=True)
class _Fixture:
    rules: RuleSet
    customers: dict[str, Customer]
    rows: dict[str, list[tuple[UsageRow, str | None]]]
    start: int


def load_test_file(path: Path) -> tuple[TestFile, _Fixture]:
    doc = load_located(path.read_text(), str(path))
    try:
        spec = TestFile.model_validate(doc.data)
    except ValidationError as exc:
        raise ConfigError(validation_problems(exc, doc)) from None
    config = load_settings(path.parent / spec.config if spec.config else None)
    rules = load_rules([path.parent / f for f in spec.rule_files], config)
    customers = {c.id: c.customer() for c in spec.customers}
    rows: dict[str, list[tuple[UsageRow, str | None]]] = {}
    for series in spec.series:
        customers.setdefault(series.customer, Customer(series.customer))
        try:
            values = expand_values(series.values)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        rows.setdefault(series.customer, []).extend(_rows(series, values))
    start = min((s.start for s in spec.series), default=min(c.at for c in spec.tests))
    return spec, _Fixture(rules, customers, rows, start)


def _rows(series: FixtureSeries, values: list[float]) -> Iterable[tuple[UsageRow, str | None]]:
    instant = series.start
    dimensions = make_dimensions(series.dimensions)
    for value in values:
        following = next_start(instant, series.granularity, series.timezone)
        yield UsageRow(instant, following, value, series.meter, dimensions), series.meter
        instant = following


#: One alert as a test sees it: rule, customer, series dimensions, status and level.
_Observed = tuple[str, str, Dimensions, str, str | None]


def run_file(path: Path) -> list[CaseResult]:
    """The file's tests, in file order, each judged on one shared replay per rule and
    customer."""
    spec, fixture = load_test_file(path)
    instants = sorted({case.at for case in spec.tests})
    observed: dict[int, set[_Observed]] = {at: set() for at in instants}
    for rule in fixture.rules:
        for customer in fixture.customers.values():
            if _covers(rule, customer):
                for at, alerts in _replay(rule, customer, spec, fixture, instants):
                    observed[at] |= alerts
    return [_case_result(path, case, observed[case.at]) for case in spec.tests]


def _case_result(path: Path, case: Case, observed: set[_Observed]) -> CaseResult:
    expected = {
        (e.rule, e.customer, make_dimensions(e.dimensions), e.state, e.level) for e in case.expect
    }
    matched = {o for o in observed if _expected_match(o, expected)}
    missing = [e for e in expected if not any(_same(e, o) for o in observed)]
    return CaseResult(
        file=str(path),
        name=case.name,
        missing=tuple(sorted(_describe(e) for e in missing)),
        unexpected=tuple(sorted(_describe(o) for o in observed - matched)),
    )


def _covers(rule: Rule, customer: Customer) -> bool:
    """Whether the rule's customer selection includes this fixture customer. Searches are
    matched against the fixture's names, emails and metadata as Stripe's search would."""
    chosen = rule.customers
    if chosen is None or isinstance(chosen, AllCustomers):
        return True
    if isinstance(chosen, CustomerSearch):
        try:
            return parse_search(chosen.search).matches(customer)
        except SearchQueryError as exc:
            raise ConfigError(f"rule {rule.name}: customer search: {exc}") from None
    return customer.id in chosen


def _same(expected: _Observed, observed: _Observed) -> bool:
    level_ok = expected[4] is None or expected[4] == observed[4]
    return expected[:4] == observed[:4] and level_ok


def _expected_match(observed: _Observed, expected: set[_Observed]) -> bool:
    return any(_same(e, observed) for e in expected)


def _describe(alert: _Observed) -> str:
    rule, customer, dimensions, state, level = alert
    series = ",".join(f"{k}={v}" for k, v in dimensions)
    where = f"{rule} customer={customer}" + (f" {series}" if series else "")
    return f"{where} state={state}" + (f" level={level}" if level else "")


def _replay(
    rule: Rule, customer: Customer, spec: TestFile, fixture: _Fixture, instants: Sequence[int]
) -> Iterator[tuple[int, set[_Observed]]]:
    """Step the rule every ``every`` from the fixture's start, once, and yield the alerts at
    each of ``instants`` (ascending) on the way."""
    states = SeriesStates(rule)
    instant = fixture.start
    for at in instants:
        while instant < at:
            states.apply(_findings(rule, customer, spec, fixture, instant), instant)
            instant += int(rule.every)
        if instant == at:  # the instant is a step of the replay: take it and go on from it
            look = states
            instant += int(rule.every)
        else:  # between steps: a look on a copy, which the replay does not keep
            look = SeriesStates(rule)
            look.states.update(states.states)
        look.apply(_findings(rule, customer, spec, fixture, at), at)
        yield at, {
            (rule.name, customer.id, key.group, state.status, state.level)
            for key, state in look.states.items()
            if state.status in ("pending", "firing")
        }


def _findings(rule: Rule, customer: Customer, spec: TestFile, fixture: _Fixture, now: int
              ) -> list[Finding]:
    refreshed = now - int(spec.refreshed_lag)
    need = conditions.needs(rule, customer.id, now)[0]
    rows = [row for row, _ in fixture.rows.get(customer.id, ())
            if row.ends_at <= refreshed and _belongs(row, need)]
    return judge(rule, customer, need, rows, now, refreshed_at=refreshed,
                 freshness_lag=spec.freshness_lag)


def _belongs(row: UsageRow, need: DataNeed) -> bool:
    if need.spec.meter is not None and row.meter != need.spec.meter:
        return False
    dimensions = dict(row.dimensions)
    return all(dimensions.get(key) in values for key, values in need.spec.dimension_filters)


def format_results(results: Sequence[CaseResult]) -> str:
    lines = []
    for result in results:
        lines.append(f"{'PASS' if result.passed else 'FAIL'}  {result.file}: {result.name}")
        lines.extend(f"      - missing:    {m}" for m in result.missing)
        lines.extend(f"      + unexpected: {u}" for u in result.unexpected)
    failed = sum(not r.passed for r in results)
    lines.append(f"{len(results) - failed} passed, {failed} failed")
    return "\n".join(lines)


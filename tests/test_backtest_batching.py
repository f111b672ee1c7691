"""Replay judges a rule's customers together at each instant (:mod:`alertd.backtest.batching`)
and must come to exactly what judging one customer, one instant at a time, comes to.

The reference here is built from public functions only: :func:`replay_changes` of each
(rule, customer) — one customer, one ``evaluate_many`` per instant, as replay ran before
batches — merged in the documented time order, then through the same notification replay and
report. It is held against :func:`replay_all` (and the command's own
:func:`~alertd.commands.backtest.replay_prepared`) on simulator histories fetched through the
real command path, with anomaly (``exclude`` periods, an hour and a day window, ``group_by``),
absence (fixed and learned), lower and upper thresholds, forecast and change rules, some in
America/New_York across its 2025-03-09 DST change; and on hand-built rows with condition
kinds defined here whose evaluation breaks, alone or only together.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from alertd.backtest import (
    Change,
    Replayed,
    ReplayFailure,
    ReplayWindow,
    RuleFrame,
    evaluations,
    findings_at,
    firings_of,
    monotone,
    replay_all,
    replay_changes,
    within_data,
)
from alertd.backtest.batching import batched, evaluations_together, findings_together
from alertd.backtest.history import history_of
from alertd.backtest.replaying import BLOCK
from alertd.clock import FakeClock, parse_instant
from alertd.commands.backtest import Prepared, prepare, replay_prepared, report_of
from alertd.commands.backtest_report import backtest_json, backtest_text
from alertd.commands.output import dumps
from alertd.conditions import registry
from alertd.conditions.base import ConditionKind, ConditionModel, Sample
from alertd.conditions.series import data_need, finding, window_buckets
from alertd.model import (
    Customer,
    DataNeed,
    Finding,
    Granularity,
    Period,
    Series,
    UsageRow,
)
from alertd.rules.schema import Rule
from alertd.service.open import Collaborators, open_services
from alertd.service.world import load_world
from alertd.sim.testing import API_KEY, TEST_NOW, running_simulator

HOUR = 3600
DAY = 86400
#: 2025-03-05 12:00 UTC to the simulator's data end: America/New_York springs forward on
#: 2025-03-09, and the anomaly rules' exclude periods fall inside.
SINCE = TEST_NOW - 5 * DAY
RULES = """\
rules:
  - name: tokens-anomaly-ny
    meter: mtr_sim_tokens
    window: hour
    timezone: America/New_York
    every: 15m
    group_by: [model]
    condition:
      type: anomaly
      direction: both
      history: 35d
      min_volume: 100
      exclude:
        - 2025-03-06
        - {from: "2025-03-08T10:00", to: "2025-03-08T14:00"}
        - {weekdays: [sun], hours: [1, 3]}
    keep_firing_for: 2h
  - name: tokens-anomaly-daily
    meter: mtr_sim_tokens
    window: day
    timezone: Europe/Berlin
    condition: {type: anomaly, direction: up, history: 35d, exclude: [{dates: ["03-07"]}]}
  - name: calls-stopped
    meter: mtr_sim_api_calls
    window: hour
    every: 15m
    condition: {type: absence, duration: 4h, floor: 0}
    for: 30m
  - name: calls-stopped-learned
    meter: mtr_sim_api_calls
    window: hour
    timezone: America/New_York
    condition: {type: absence, floor: 0, history: 14d}
  - name: tokens-low
    meter: mtr_sim_tokens
    window: hour
    timezone: America/New_York
    condition: {type: threshold, op: "<", value: 50}
  - name: tokens-quota
    meter: mtr_sim_tokens
    window: day
    timezone: America/New_York
    condition: {type: threshold, op: ">", value_from: {metadata: daily_token_quota}}
  - name: tokens-month
    meter: mtr_sim_tokens
    window: month
    every: 1h
    condition: {type: forecast, value_from: {metadata: monthly_token_budget},
                min_elapsed: 3d, rate_window: 7d}
  - name: calls-doubled
    meter: mtr_sim_api_calls
    window: day
    condition: {type: change, direction: up, percent: 50}
"""


def reference(rules: Sequence[Rule], customers: Mapping[str, Sequence[Customer]],
              histories: Mapping[tuple[str, str], Sequence[UsageRow]], window: ReplayWindow,
              account: str = "") -> Replayed:
    """What replay made one customer at a time, one instant at a time: each (rule, customer)
    through :func:`replay_changes`, a raising one a failure, in :func:`replay_all`'s order."""
    changes: list[Change] = []
    failures: list[ReplayFailure] = []
    for rule in rules:
        frame = RuleFrame.of(rule, window)
        for customer in customers[rule.name]:
            try:
                changes += replay_changes(rule, customer, histories[(rule.name, customer.id)],
                                          window, frame, account)
            except Exception as exc:
                failures.append(ReplayFailure(rule.name, customer.id,
                                              f"{type(exc).__name__}: {exc}", account))
    changes.sort(key=lambda c: (c.at, c.finding.key.rule, c.finding.key.customer,
                                c.finding.key.group))
    return Replayed(tuple(firings_of(changes, window.since)), tuple(changes), tuple(failures))


# --------------------------------------------------------------------------- the simulator


@dataclass(frozen=True)
class Fetched:
    prepared: Prepared
    window: ReplayWindow
    #: :func:`reference` of every rule and customer.
    expected: Replayed


@pytest.fixture(scope="module")
def fetched(tmp_path_factory: pytest.TempPathFactory) -> Fetched:
    folder = tmp_path_factory.mktemp("batching")
    return asyncio.run(_fetch(folder))


async def _fetch(folder: Path) -> Fetched:
    async with running_simulator(customers=6, days=45, incident_rate=4.0, seed=3) as sim:
        (folder / "rules.yaml").write_text(RULES)
        config = folder / "alertd.yaml"
        config.write_text(
            f"stripe: {{api_base: '{sim.url}', api_key: {API_KEY}, freshness_lag: 5m}}\n"
            "rule_files: [rules.yaml]\ncustomers: {all: true}\n"
            "receivers: [{name: ops, email: {to: [ops@example.com]}}]\n"
            "route: {receiver: ops, repeat_interval: 4h}\n")
        world = load_world(config)
        window = ReplayWindow(SINCE, TEST_NOW, world.settings.stripe.freshness_lag)
        async with open_services(world, Collaborators(FakeClock(TEST_NOW)),
                                 deliver=False) as services:
            prepared = await prepare(services.lanes[0].engine, window, None, None, None)
    window = within_data(window, prepared.histories.refreshed_at)
    return Fetched(prepared, window, reference(prepared.rules, prepared.by_rule,
                                               prepared.histories.rows, window))


def test_batched_replay_equals_one_instant_at_a_time_on_the_simulator(fetched: Fetched
                                                                      ) -> None:
    prepared, window = fetched.prepared, fetched.window
    got = replay_all(prepared.rules, prepared.by_rule, prepared.histories.rows, window)
    assert got == fetched.expected
    # Not an empty comparison: the batched kinds fired and resolved, and more than one
    # customer (and more than one model of a customer) was judged at the same instants.
    fired = {f.finding.key.rule for f in got.firings}
    assert {"tokens-anomaly-ny", "calls-stopped", "tokens-low"} <= fired, fired
    assert any(c.transition.kind == "resolved" and c.finding.key.rule == "tokens-anomaly-ny"
               for c in got.changes)
    groups = {f.finding.key.group for f in got.firings if f.finding.key.rule
              == "tokens-anomaly-ny"}
    assert len(groups) > 1 and not got.failures
    # Batched: the kinds that judge batches their own way (anomaly), not bisected thresholds.
    assert {r.name for r in prepared.rules if batched(r)} == {"tokens-anomaly-ny",
                                                               "tokens-anomaly-daily"}


def test_the_commands_outputs_are_identical_in_every_format(fetched: Fetched) -> None:
    prepared, window = fetched.prepared, fetched.window
    expected = report_of(prepared, fetched.expected, window)
    got = replay_prepared(prepared, window, (), None)
    assert got.notifications == expected.notifications and got.notifications
    assert dumps(backtest_json(got, 7)) == dumps(backtest_json(expected, 7))
    assert backtest_text(got, 7) == backtest_text(expected, 7)


def test_findings_together_are_each_customers_findings_alone(fetched: Fetched) -> None:
    prepared, window = fetched.prepared, fetched.window
    for rule in prepared.rules:  # every kind: a kind that batches later must come to this
        if monotone(rule):
            continue
        frame = RuleFrame.of(rule, window)
        customers = list(prepared.by_rule[rule.name])
        histories = [history_of(frame, c, prepared.histories.rows[(rule.name, c.id)])
                     for c in customers]
        # Every 13th instant, the DST change's included: each customer's findings as alone.
        dst = parse_instant("2025-03-09T07:00:00Z", 0)
        picked = sorted({*frame.schedule[::13], *(t for t in frame.schedule
                                                 if dst - HOUR <= t <= dst + 3 * HOUR)})
        for instant in picked:
            together = findings_together(rule, histories, customers, instant, window)
            assert together == [findings_at(h, c, instant, window)
                                for h, c in zip(histories, customers, strict=True)], (
                rule.name, instant)
        if rule.window != "hour":  # (hourly rules' every instant: the replay tests above)
            judged = evaluations_together(rule, frame.schedule, histories, customers, window)
            assert judged == [evaluations(h, c, window)
                              for h, c in zip(histories, customers, strict=True)], rule.name


def test_accounts_stamp_the_batched_findings_as_they_did(fetched: Fetched) -> None:
    prepared, window = fetched.prepared, fetched.window
    rules = [r for r in prepared.rules
             if r.name in ("tokens-anomaly-daily", "calls-stopped", "tokens-quota")]
    rows = prepared.histories.rows
    got = replay_all(rules, prepared.by_rule, rows, window, account="eu")
    assert got == reference(rules, prepared.by_rule, rows, window, account="eu")
    assert got.changes and {c.finding.key.account for c in got.changes} == {"eu"}


# --------------------------------------------------------------------------- failures

D = parse_instant("2025-01-01T00:00:00Z", 0)
CUSTOMERS = [Customer(f"cus_{i}", f"Customer {i}") for i in range(5)]


class BrittleCondition(ConditionModel):
    type: Literal["brittle"]
    #: The customer whose series make the evaluation raise (every one of its instants).
    breaks_for: str = ""
    #: Whether judging more than one series at once raises (each alone is fine).
    alone_only: bool = False
    value: float = 40.0


class BrittleKind(ConditionKind):
    """The last complete hour's usage is above ``value``; raises on ``breaks_for``'s series,
    and, with ``alone_only``, whenever handed more than one series at once."""

    type = "brittle"
    model = BrittleCondition
    per_period = False

    def needs(self, rule: Rule, customer: str, now: int) -> tuple[DataNeed, ...]:
        return (data_need(rule, customer, now, now - 3 * HOUR, "hour"),)

    def evaluate(self, rule: Rule, series: Series, customer: Customer, now: int) -> Finding:
        condition = rule.condition
        assert isinstance(condition, BrittleCondition)
        if customer.id == condition.breaks_for:
            raise ZeroDivisionError(f"brittle breaks on {customer.id} at {now}")
        complete = [b for b in window_buckets(series, "hour", rule.timezone) if b.complete]
        last = complete[-1]
        active = last.value > condition.value
        window = Period(last.starts_at, last.ends_at, rule.timezone)
        return finding(rule, series, window, value=last.value, active=active, complete=True,
                       level=rule.severity if active else None, message=f"{last.value:g}")

    def evaluate_many(self, rule: Rule, items: Sequence[tuple[Series, Customer]], now: int
                      ) -> list[Finding]:
        condition = rule.condition
        assert isinstance(condition, BrittleCondition)
        if condition.alone_only and len(items) > 1:
            raise RuntimeError("brittle cannot judge series together")
        return super().evaluate_many(rule, items, now)

    def judged_at(self, rule: Rule) -> Granularity | None:
        return "hour"

    def reads_running_period(self, rule: Rule) -> bool:
        return False

    def sample(self, rule: Rule) -> Sample:
        return Sample(50.0, "50")


@pytest.fixture
def brittle() -> Iterator[None]:
    kind = BrittleKind()
    registry.register(kind)
    try:
        yield
    finally:
        registry.unregister(kind.type)


def brittle_rule(**condition: object) -> Rule:
    return Rule.model_validate({"name": "brittle", "meter": "mtr_1", "window": "hour",
                                "condition": {"type": "brittle", **condition}})


def bursts(customer: int) -> list[UsageRow]:
    """Two days of hours, 10 an hour, 90 in a few hours that differ per customer."""
    return [UsageRow(t, t + HOUR, 90.0 if (t // HOUR + customer) % 11 < 2 else 10.0, "mtr_1")
            for t in range(D - DAY, D + 2 * DAY, HOUR)]


def brittle_histories(rule: Rule) -> dict[tuple[str, str], list[UsageRow]]:
    return {(rule.name, c.id): bursts(i) for i, c in enumerate(CUSTOMERS)}


WINDOW = ReplayWindow(D, D + 2 * DAY, 300.0)


def test_a_customer_whose_series_break_the_evaluation_fails_alone(brittle: None) -> None:
    rule = brittle_rule(breaks_for="cus_2")
    histories = brittle_histories(rule)
    customers = {rule.name: CUSTOMERS}
    got = replay_all([rule], customers, histories, WINDOW)
    assert got == reference([rule], customers, histories, WINDOW)
    assert [(f.customer, f.message.split(" at ")[0]) for f in got.failures] == [
        ("cus_2", "ZeroDivisionError: brittle breaks on cus_2")]
    fired = {f.finding.key.customer for f in got.firings}
    assert fired == {c.id for c in CUSTOMERS} - {"cus_2"}


def test_a_kind_that_cannot_judge_together_is_judged_customer_by_customer(
        brittle: None) -> None:
    rule = brittle_rule(alone_only=True)
    histories = brittle_histories(rule)
    customers = {rule.name: CUSTOMERS}
    got = replay_all([rule], customers, histories, WINDOW)
    assert got == reference([rule], customers, histories, WINDOW)
    assert not got.failures and {f.finding.key.customer for f in got.firings} == {
        c.id for c in CUSTOMERS}


def test_a_missing_history_fails_its_customer_only(brittle: None) -> None:
    rule = brittle_rule()
    histories = brittle_histories(rule)
    del histories[(rule.name, "cus_3")]
    customers = {rule.name: CUSTOMERS}
    got = replay_all([rule], customers, histories, WINDOW)
    assert got == reference([rule], customers, histories, WINDOW)
    assert [f.customer for f in got.failures] == ["cus_3"]
    assert got.failures[0].message.startswith("KeyError")
    assert len({f.finding.key.customer for f in got.firings}) == 4


def test_customers_past_one_block_are_replayed_as_alone(brittle: None) -> None:
    many = [Customer(f"cus_{i:03d}", f"Customer {i}") for i in range(BLOCK + 6)]
    rule = brittle_rule(breaks_for=many[BLOCK + 2].id)  # in the second block
    histories = {(rule.name, c.id): bursts(i) for i, c in enumerate(many)}
    customers = {rule.name: many}
    got = replay_all([rule], customers, histories, WINDOW)
    assert got == reference([rule], customers, histories, WINDOW)
    assert [f.customer for f in got.failures] == [many[BLOCK + 2].id]
    assert len({f.finding.key.customer for f in got.firings}) == len(many) - 1

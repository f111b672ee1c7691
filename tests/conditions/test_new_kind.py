"""A condition type is one module plus one registry line: this test module is that module.

``divisible`` (fires when a complete day's usage is a multiple of ``by``) is defined here and
nowhere else, registered for the duration of each test, and run through the real commands in
this process (the kind must be registered where they run): ``validate`` (including the kind's
own rule check, located in the file), ``check --dry-run`` and ``backtest`` against the
simulator, and ``render``. No other module of alertd knows it.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import pytest

from alertd import calendar
from alertd.cli import main
from alertd.clock import iso
from alertd.conditions import registry
from alertd.conditions.base import ConditionKind, ConditionModel, RuleIssue, Sample
from alertd.conditions.series import (
    data_need,
    find_bucket,
    finding,
    no_complete_data,
    number,
    window_buckets,
)
from alertd.model import Customer, DataNeed, Figures, Finding, Granularity, Series
from alertd.sim.testing import API_KEY, TEST_NOW, running_simulator

if TYPE_CHECKING:
    from alertd.rules.schema import Rule

DAY = 86400


class DivisibleCondition(ConditionModel):
    type: Literal["divisible"]
    by: int = 2


@dataclass(frozen=True, slots=True)
class Divisor(Figures):
    """This kind's figures: the divisor, which the contract calls ``threshold``."""

    by: int

    def contract(self) -> dict[str, float]:
        return {"threshold": float(self.by)}

    def bound(self) -> tuple[str, float] | None:
        return ("÷", float(self.by))


def _condition(rule: Rule) -> DivisibleCondition:
    assert isinstance(rule.condition, DivisibleCondition)
    return rule.condition


class DivisibleKind(ConditionKind):
    """The last complete period's usage is a multiple of ``by``."""

    type = "divisible"
    model = DivisibleCondition
    per_period = True

    def needs(self, rule: Rule, customer: str, now: int) -> tuple[DataNeed, ...]:
        return (data_need(rule, customer, now, self._judged(rule, now).starts_at),)

    def evaluate(self, rule: Rule, series: Series, customer: Customer, now: int) -> Finding:
        period = self._judged(rule, now)
        bucket = find_bucket(window_buckets(series, rule.window, rule.timezone), period)
        if bucket is None or not bucket.complete:
            return no_complete_data(rule, series, period, "the last day")
        by = _condition(rule).by
        active = bucket.value % by == 0
        return finding(rule, series, period, value=bucket.value, active=active, complete=True,
                       level=rule.severity if active else None, figures=Divisor(by),
                       message=f"{number(bucket.value)} is {'' if active else 'not '}"
                               f"a multiple of {by}")

    def judged_at(self, rule: Rule) -> Granularity | None:
        return rule.window

    def reads_running_period(self, rule: Rule) -> bool:
        return False

    def check(self, rule: Rule) -> list[RuleIssue]:
        if _condition(rule).by >= 2:
            return []
        return [RuleIssue(("condition", "by"), "condition.by: at least 2, or every day fires")]

    def sample(self, rule: Rule) -> Sample:
        by = _condition(rule).by
        return Sample(by * 21_000.0, f"{number(by * 21_000.0)} is a multiple of {by}",
                      Divisor(by), recent_level=by * 20_000.0 + 1)

    @staticmethod
    def _judged(rule: Rule, now: int) -> calendar.Period:
        current = calendar.period_containing(now, rule.window, rule.timezone)
        return calendar.shift(current, rule.window, -1)


RULE = """\
rules:
  - name: divisible-days
    meter: mtr_sim_api_calls
    window: day
    condition:
      type: divisible
      by: {by}
    annotations:
      summary: "{{{{ customer.id }}}}: {{{{ message }}}}"
"""


@pytest.fixture
def divisible() -> Iterator[DivisibleKind]:
    kind = DivisibleKind()
    registry.register(kind)
    try:
        yield kind
    finally:
        registry.unregister(kind.type)


def write_config(folder: Path, url: str = "http://127.0.0.1:9", by: int = 2) -> Path:
    (folder / "rules.yaml").write_text(RULE.format(by=by))
    config = folder / "alertd.yaml"
    config.write_text(
        f"stripe: {{api_base: '{url}', api_key: {API_KEY}, freshness_lag: 5m}}\n"
        f"state: {{path: '{folder / 'alertd.db'}'}}\n"
        "rule_files: [rules.yaml]\ncustomers: {all: true}\n"
        "receivers: [{name: ops, webhook: {url: 'http://127.0.0.1:9/hook'}}]\n"
        "route: {receiver: ops, group_by: [rule]}\n"
    )
    return config


def test_validate_accepts_the_kind_and_locates_its_own_check(
    divisible: DivisibleKind, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", "-c", str(write_config(tmp_path))]) == 0
    capsys.readouterr()
    assert main(["validate", "-c", str(write_config(tmp_path, by=1))]) == 2
    err = capsys.readouterr().err
    assert re.search(r"rules\.yaml:7:\d+: .*condition\.by: at least 2", err), err


def test_an_unregistered_kind_is_an_unknown_type(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", "-c", str(write_config(tmp_path))]) == 2
    assert "divisible" in capsys.readouterr().err


def test_render_previews_the_kinds_sample(
    divisible: DivisibleKind, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["render", "-c", str(write_config(tmp_path)), "--rule", "divisible-days"]) == 0
    assert "42,000 is a multiple of 2" in capsys.readouterr().out


async def test_check_and_backtest_run_the_kind_against_the_simulator(
    divisible: DivisibleKind, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with running_simulator(customers=3, days=12, now=TEST_NOW) as sim:
        config = str(write_config(tmp_path, sim.url))
        checked = await asyncio.to_thread(main, ["check", "--dry-run", "-c", config,
                                                 "--at", iso(TEST_NOW) or "",
                                                 "--format", "json"])
        found = json.loads(capsys.readouterr().out)["findings"]
        replayed = await asyncio.to_thread(main, [
            "backtest", "-c", config, "--since", iso(TEST_NOW - 8 * DAY) or "",
            "--until", iso(TEST_NOW) or "", "--format", "json"])
        history = json.loads(capsys.readouterr().out)
    assert checked == 0 and replayed == 0
    assert {f["customer"] for f in found} == {f"cus_sim_00000{i}" for i in (1, 2, 3)}
    for item in found:
        assert item["threshold"] == 2.0
        assert (item["state"] == "firing") == (item["value"] % 2 == 0), item
    assert history["firings"], history
    assert all(f["rule"] == "divisible-days" for f in history["firings"])


class LoopWatchingKind(DivisibleKind):
    """``divisible``, noting for each series judged whether an event loop runs in the
    thread judging it."""

    def __init__(self) -> None:
        self.on_a_loop: list[bool] = []

    def evaluate(self, rule: Rule, series: Series, customer: Customer, now: int) -> Finding:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            self.on_a_loop.append(False)
        else:
            self.on_a_loop.append(True)
        return super().evaluate(rule, series, customer, now)


async def test_a_pass_judges_its_series_off_the_event_loops_thread(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Judging is CPU that would hold back every send and answer under way: the engine
    judges each batch in a worker thread (:meth:`alertd.service.engine.Engine._judge_batch`),
    so no series is judged where the pass's event loop runs."""
    kind = LoopWatchingKind()
    registry.register(kind)
    try:
        async with running_simulator(customers=3, days=12, now=TEST_NOW) as sim:
            checked = await asyncio.to_thread(main, [
                "check", "--dry-run", "-c", str(write_config(tmp_path, sim.url)),
                "--at", iso(TEST_NOW) or "", "--format", "json"])
    finally:
        registry.unregister(kind.type)
    found = json.loads(capsys.readouterr().out)["findings"]
    assert checked == 0 and len(found) == 3
    assert kind.on_a_loop == [False, False, False]

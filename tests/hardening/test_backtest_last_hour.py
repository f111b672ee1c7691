"""Backtest judges a period on its last hour: ``hourly usage > 10`` fires every hour it does
live (it used to report 0 firings) and each firing is announced, and a daily crossing in the
day's last hour is found.

History is hourly and an hour is visible only once it has ended, when its period is over;
each period of an upper threshold therefore gets a closing evaluation at its end.
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path
from typing import Any

import pytest

from alertd.backtest import ReplayWindow, replay, replay_all
from alertd.clock import FakeClock, iso, parse_instant
from alertd.commands.backtest import run_command
from alertd.conditions.threshold import ThresholdCondition
from alertd.model import Customer, UsageRow
from alertd.rules.schema import Rule
from alertd.service.world import load_world
from alertd.sim.testing import API_KEY, TEST_NOW, running_simulator

HOUR = 3600
DAY = 86400
LAG = 300.0
D = parse_instant("2025-01-01T00:00:00Z", 0)
CUSTOMER = Customer("cus_1")


def make_rule(condition: dict[str, Any], **fields: Any) -> Rule:
    return Rule.model_validate({"name": "r", "meter": "mtr_1", "condition": condition, **fields})


def hourly(start: int, end: int, usage: Any) -> list[UsageRow]:
    return [UsageRow(t, t + HOUR, float(usage(t)), "mtr_1") for t in range(start, end, HOUR)
            if usage(t)]


def test_an_hourly_threshold_fires_every_hour_it_holds() -> None:
    rule = make_rule({"type": "threshold", "op": ">", "value": 10}, window="hour")
    # 20 an hour, except 5 in the hours from 06:00 and 07:00.
    rows = hourly(D, D + DAY, lambda t: 5 if (t - D) // HOUR in (6, 7) else 20)
    firings = replay(rule, CUSTOMER, rows, ReplayWindow(D, D + DAY, LAG))
    expected = [D + (h + 1) * HOUR for h in range(24) if h not in (6, 7)]
    assert [f.at for f in firings] == expected
    assert all(f.kind == "fired" and f.finding.value == 20.0 for f in firings)
    assert [f.finding.window.starts_at for f in firings] == [t - HOUR for t in expected]


def test_a_daily_crossing_in_the_last_hour_fires_at_midnight() -> None:
    rule = make_rule({"type": "threshold", "op": ">", "value": 500})
    rows = hourly(D, D + 2 * DAY, lambda t: 400 if (t - D) // HOUR == 23 else 10)
    firings = replay(rule, CUSTOMER, rows, ReplayWindow(D, D + 2 * DAY, LAG))
    # 23 x 10 + 400 = 630 on day one, only once its last hour is seen; day two stays at 230.
    assert [(iso(f.at), f.finding.value) for f in firings] == [("2025-01-02T00:00:00Z", 630.0)]


def test_a_refresh_delay_moves_the_closing_evaluation() -> None:
    rule = make_rule({"type": "threshold", "op": ">=", "value": 20}, window="hour")
    rows = hourly(D, D + 6 * HOUR, lambda t: 20)
    firings = replay(rule, CUSTOMER, rows, ReplayWindow(D, D + 6 * HOUR, LAG, refresh_delay=60))
    assert [f.at for f in firings] == [D + h * HOUR + 60 for h in range(1, 6)]


def test_lower_thresholds_are_unchanged_by_closing() -> None:
    rule = make_rule({"type": "threshold", "op": "<", "value": 10}, window="hour")
    rows = hourly(D - 2 * HOUR, D + 6 * HOUR, lambda t: 5)
    firings = replay(rule, CUSTOMER, rows, ReplayWindow(D, D + 6 * HOUR, LAG))
    # Judged on complete hours only: freshness_lag after each hour ends, never at its end.
    assert [f.at for f in firings] == [D + h * HOUR + int(LAG) for h in range(6)]
    assert all(f.finding.complete for f in firings)


async def test_backtest_of_hourly_usage_against_the_simulator(tmp_path: Path) -> None:
    since, until = TEST_NOW - 2 * DAY, TEST_NOW - DAY
    async with running_simulator(customers=2, days=5) as sim:
        customer = sim.generator.profiles()[0].id
        totals = {}
        # The hour ending at --since is noticed at --since, so it is reported too.
        for hour in range(since - HOUR, until, HOUR):
            events = sim.generator.events(customer, "mtr_sim_api_calls", hour, hour + HOUR)
            totals[hour] = sum(e.value for e in events)
        bound = sorted(totals.values())[len(totals) // 2]  # about half the hours exceed it
        (tmp_path / "rules.yaml").write_text(
            "rules:\n  - name: busy-hour\n    meter: mtr_sim_api_calls\n"
            f"    customers: [{customer}]\n    when: \"hourly usage > {bound}\"\n")
        config = tmp_path / "alertd.yaml"
        config.write_text(
            f"stripe: {{api_base: '{sim.url}', api_key: {API_KEY}, freshness_lag: 5m}}\n"
            "rule_files: [rules.yaml]\n"
            "receivers: [{name: ops, email: {to: [ops@example.com]}}]\n"
            "route: {receiver: ops}\n")
        out = io.StringIO()
        code = await run_command(
            load_world(config),
            argparse.Namespace(since=iso(since), until=iso(until), rule=None, customer=None,
                               format="json"),
            clock=FakeClock(TEST_NOW), stdout=out, stderr=io.StringIO())
    assert code == 0
    firings = json.loads(out.getvalue())["firings"]
    busy = sorted(hour for hour, total in totals.items() if total > bound)
    assert 5 < len(busy) < len(totals) - 5
    assert [parse_instant(f["at"], 0) for f in firings] == [hour + HOUR for hour in busy]
    assert [f["value"] for f in firings] == [totals[hour] for hour in busy]
    # Each firing is announced (the next hour is judged only once it is visible, not at the
    # instant the closing evaluation fired, which would resolve it before group_wait).
    notifications = json.loads(out.getvalue())["notifications"]
    announced = [n for n in notifications if n["status"] == "firing"]
    # The firing at --until itself would be announced after the replay ends.
    assert [n["at"] for n in announced] == [
        iso(hour + HOUR + 30) for hour in busy if hour + HOUR < until]


def test_a_rule_whose_replay_raises_leaves_the_others_replayed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    good = make_rule({"type": "threshold", "op": ">", "value": 10}, window="hour")
    broken = make_rule({"type": "threshold", "op": ">", "value": 10}, window="hour")
    broken = broken.model_copy(update={"name": "broken", "condition": ThresholdCondition.
                                       model_construct(type="threshold", op="!=", value=1.0,
                                                       value_from=None, levels=None)})
    rows = hourly(D - DAY, D + 6 * HOUR, lambda t: 20)
    replayed = replay_all([broken, good], {"broken": [CUSTOMER], "r": [CUSTOMER]},
                          {("broken", "cus_1"): rows, ("r", "cus_1"): rows},
                          ReplayWindow(D, D + 6 * HOUR, LAG))
    assert [f.at for f in replayed.firings] == [D + h * HOUR for h in range(7)]
    assert {f.finding.rule for f in replayed.firings} == {"r"}
    assert "replay failed rule=broken customer=cus_1" in caplog.text
    # Reported in the result, so the command can say which series are missing.
    assert [(f.rule, f.customer) for f in replayed.failures] == [("broken", "cus_1")]
    assert replayed.failures[0].message.startswith("KeyError")


def test_a_crossing_a_later_correction_undoes_is_still_found() -> None:
    # Stripe accepts negative meter events, so a day's total can go down: 150 at 06:00 crosses
    # > 100 (the daemon fires at 07:00), a correction of -100 at 09:00 takes it back under.
    # The period's first and last evaluations agree (not firing), so bisection alone would
    # never look inside and the replay would report nothing.
    rule = make_rule({"type": "threshold", "op": ">", "value": 100})
    corrections = {6: 150, 9: -100}
    rows = hourly(D, D + DAY, lambda t: corrections.get((t - D) // HOUR, 0))
    replayed = replay(rule, CUSTOMER, rows, ReplayWindow(D, D + DAY, LAG))
    assert [(iso(f.at), f.kind, f.finding.value) for f in replayed] == [
        ("2025-01-01T07:00:00Z", "fired", 150.0)]


def test_the_command_reports_series_it_could_not_replay() -> None:
    from alertd.backtest import ReplayFailure
    from alertd.commands.backtest import BacktestResult, backtest_json, backtest_text

    result = BacktestResult(
        window=ReplayWindow(D, D + DAY, LAG), firings=(), notifications=(), rules=("r",),
        customers=1, queries=1, requests=1,
        failures=(ReplayFailure("r", "cus_1", "KeyError: '!='"),))
    assert backtest_json(result, 1)["errors"] == [
        {"rule": "r", "customer": "cus_1", "message": "KeyError: '!='"}]
    assert ("not replayed: rule=r customer=cus_1: KeyError: '!=' (its firings are missing "
            "above)") in backtest_text(result, 1)

"""``alertd backtest``: the pure replay on hand-built hourly rows, its incremental series
against ``build_series``, and the whole command against the real simulator."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import math
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from alertd import conditions
from alertd.backtest import (
    Firing,
    HistorySeries,
    NotificationReplay,
    ReplayWindow,
    RuleFrame,
    SeriesStates,
    closing_ends,
    closing_findings,
    findings_at,
    history_need,
    instants,
    replay,
    replay_all,
    select_rules,
    warm_start,
    within_data,
)
from alertd.cli import main as cli_main
from alertd.clock import FakeClock, iso, parse_instant
from alertd.commands.backtest import (
    BacktestResult,
    ProgressBar,
    backtest_text,
    replay_window,
    run_command,
)
from alertd.conditions.series import build_series
from alertd.config.settings import Receiver, RootRoute
from alertd.errors import ConfigError, SourceError
from alertd.model import Customer, Dimensions, Finding, SeriesKey, UsageRow
from alertd.notify.routing import RouteTree
from alertd.rules.schema import Rule
from alertd.service.world import load_world
from alertd.silences import Silence, new_silence
from alertd.sim.testing import API_KEY, TEST_NOW, running_simulator
from alertd.store.lock import exclusive
from alertd.store.sqlite import SqliteStore

HOUR = 3600
DAY = 86400
LAG = 300.0
#: Wednesday 2025-01-01 00:00 UTC.
D = parse_instant("2025-01-01T00:00:00Z", 0)
CUSTOMER = Customer("cus_1", "Acme", metadata={"quota": "1000"})


def make_rule(condition: dict[str, Any], **fields: Any) -> Rule:
    raw: dict[str, Any] = {"name": "r", "meter": "mtr_1", "condition": condition}
    raw.update(fields)
    return Rule.model_validate(raw)


def hourly(start: int, end: int, usage: Callable[[int], float] | float,
           dimensions: Dimensions = ()) -> list[UsageRow]:
    """UTC hour rows over ``[start, end)``, zeros left out (as Stripe leaves them out)."""
    rows = []
    for instant in range(start, end, HOUR):
        value = usage(instant) if callable(usage) else usage
        if value:
            rows.append(UsageRow(instant, instant + HOUR, float(value), "mtr_1", dimensions))
    return rows


def window(since: int, until: int) -> ReplayWindow:
    return ReplayWindow(since, until, LAG)


def summary(firings: Sequence[Firing]) -> list[tuple[str | None, str, str | None, float | None]]:
    return [(iso(f.at), f.kind, f.finding.level, f.finding.value) for f in firings]


# --------------------------------------------------------------------------- pure replay


LEVELS = {"type": "threshold", "op": ">", "levels": {"warning": 100, "critical": 200}}


def spiky_day(instant: int) -> float:
    """10 an hour, except 150 in the hour from 12:00 (UTC)."""
    return 150.0 if (instant // HOUR) % 24 == 12 else 10.0


def test_threshold_crossing_is_reported_once_at_the_end_of_the_crossing_hour() -> None:
    rule = make_rule({"type": "threshold", "op": ">", "value": 100})
    firings = replay(rule, CUSTOMER, hourly(D, D + DAY, 10), window(D, D + DAY - 1))
    # 11 hours of 10 make 110 > 100: the hour ending 11:00 is the one that crossed.
    assert summary(firings) == [("2025-01-01T11:00:00Z", "fired", "warning", 110.0)]
    assert firings[0].finding.threshold == 100


def test_escalation_and_the_next_day_firing_again() -> None:
    rule = make_rule(LEVELS)
    firings = replay(rule, CUSTOMER, hourly(D, D + 2 * DAY, spiky_day), window(D, D + 2 * DAY))
    assert summary(firings) == [
        ("2025-01-01T11:00:00Z", "fired", "warning", 110.0),
        ("2025-01-01T13:00:00Z", "escalated", "critical", 270.0),
        ("2025-01-02T11:00:00Z", "fired", "warning", 110.0),
        ("2025-01-02T13:00:00Z", "escalated", "critical", 270.0),
    ]
    assert firings[1].previous_level == "warning"


def test_quota_from_metadata_and_group_by_series_fire_separately() -> None:
    rule = make_rule({"type": "threshold", "op": ">=",
                      "value_from": {"metadata": "quota", "percent": 50}}, group_by=["model"])
    rows = (hourly(D, D + DAY, 100, (("model", "a"),))
            + hourly(D, D + DAY, 10, (("model", "b"),)))
    firings = replay(rule, CUSTOMER, rows, window(D, D + DAY))
    # a reaches 500 (50 % of 1000) after 5 hours; b reaches 240 only.
    assert [(iso(f.at), f.finding.dimensions) for f in firings] == [
        ("2025-01-01T05:00:00Z", (("model", "a"),)),
    ]


def test_complete_bucket_rule_fires_at_bucket_end_plus_freshness_lag() -> None:
    rule = make_rule({"type": "threshold", "op": "<", "value": 50})
    # The warm-up judges 2024-12-31 at the first instant: it needs rows too.
    quiet_second_day = hourly(D - DAY, D + 3 * DAY,
                              lambda t: 0 if D + DAY <= t < D + 2 * DAY else 10)
    firings = replay(rule, CUSTOMER, quiet_second_day, window(D, D + 3 * DAY))
    assert summary(firings) == [("2025-01-03T00:05:00Z", "fired", "warning", 0.0)]
    assert firings[0].at == D + 2 * DAY + LAG
    assert firings[0].finding.complete


def test_for_holds_on_the_every_grid_between_data_instants() -> None:
    rule = make_rule({"type": "threshold", "op": ">", "value": 100}, every="15m", **{"for": "30m"})
    firings = replay(rule, CUSTOMER, hourly(D, D + DAY, 10), window(D, D + DAY - 1))
    assert summary(firings) == [("2025-01-01T11:30:00Z", "fired", "warning", 110.0)]


def test_keep_firing_for_and_a_later_episode() -> None:
    rule = make_rule({"type": "absence", "duration": "2h"}, window="hour",
                     keep_firing_for="1h")
    silent = (D + 10 * HOUR, D + 14 * HOUR)
    rows = hourly(D - DAY, D + DAY, lambda t: 0 if silent[0] <= t < silent[1] else 5)
    rows += hourly(D + DAY, D + 2 * DAY, lambda t: 0 if t >= D + DAY + 5 * HOUR else 5)
    firings = replay(rule, CUSTOMER, rows, window(D, D + 2 * DAY))
    # Two silent hours are complete at 12:05; the second silence likewise at 07:05.
    assert [iso(f.at) for f in firings] == ["2025-01-01T12:05:00Z", "2025-01-02T07:05:00Z"]


def test_an_alert_already_firing_at_since_is_not_reported_again() -> None:
    rule = make_rule({"type": "threshold", "op": ">", "value": 100})
    rows = hourly(D, D + 2 * DAY, 10)
    firings = replay(rule, CUSTOMER, rows, window(D + 15 * HOUR, D + 2 * DAY))
    # Crossed at 11:00 on the first day (before --since): only the second day is new.
    assert [iso(f.at) for f in firings] == ["2025-01-02T11:00:00Z"]
    assert warm_start(rule, D + 15 * HOUR) == D


def test_change_rule_judges_the_first_step_thanks_to_warm_up() -> None:
    rule = make_rule({"type": "change", "percent": 100, "min_volume": 10})
    need = history_need(rule, CUSTOMER.id, D, D + DAY)
    # Replay starts on 2024-12-31 (the day before --since), which compares 12-30 with 12-29.
    assert need.granularity == "hour" and need.starts_at == D - 3 * DAY
    # 100 on 2024-12-30, 300 on 2024-12-31: judged at the first complete instant after --since.
    rows = hourly(D - 2 * DAY, D - DAY, lambda t: 100 if t == D - 2 * DAY else 0)
    rows += hourly(D - DAY, D, lambda t: 300 if t == D - DAY else 0)
    firings = replay(rule, CUSTOMER, rows, window(D, D + DAY))
    assert [(iso(f.at), f.finding.value, f.finding.baseline) for f in firings] == [
        ("2025-01-01T00:05:00Z", 300.0, 100.0),
    ]


def test_anomaly_rule_judges_the_first_hour_thanks_to_warm_up() -> None:
    rule = make_rule({"type": "anomaly", "history": "7d", "min_history": "3d",
                      "direction": "up"}, window="hour")
    noise = random.Random(3)
    rows = hourly(D - 8 * DAY, D, lambda t: 100 + noise.randint(-5, 5))
    rows += hourly(D, D + HOUR, 1000)
    rows += hourly(D + HOUR, D + 6 * HOUR, lambda t: 100 + noise.randint(-5, 5))
    assert history_need(rule, CUSTOMER.id, D, D + 6 * HOUR).starts_at <= D - 7 * DAY
    firings = replay(rule, CUSTOMER, rows, window(D, D + 6 * HOUR))
    assert [(iso(f.at), f.finding.value) for f in firings] == [("2025-01-01T01:05:00Z", 1000.0)]
    assert firings[0].finding.baseline is not None


def test_forecast_fires_when_the_projection_crosses_the_budget() -> None:
    rule = make_rule({"type": "forecast", "value": 31 * 24 * 12, "min_elapsed": "3d",
                      "rate_window": "2d"}, window="month")
    # 10 an hour projects to 7,440 < 8,928; from the 10th, 20 an hour lifts the projection.
    rows = hourly(D - 3 * DAY, D + 20 * DAY, lambda t: 10 if t < D + 9 * DAY else 20)
    firings = replay(rule, CUSTOMER, rows, window(D, D + 20 * DAY))
    assert len(firings) == 1
    fired = firings[0]
    assert D + 9 * DAY < fired.at < D + 12 * DAY
    assert fired.finding.projected is not None and fired.finding.projected > 31 * 24 * 12


# --------------------------------------------------------------------------- instants


def test_instants_of_a_complete_bucket_rule_are_bucket_ends_plus_lag() -> None:
    rule = make_rule({"type": "change", "percent": 50})
    found = instants(rule, D, window(D, D + 3 * DAY))
    assert found == [D, D + LAG, D + DAY + LAG, D + 2 * DAY + LAG, D + 3 * DAY]


def test_instants_of_an_upper_threshold_are_hour_ends() -> None:
    rule = make_rule({"type": "threshold", "op": ">", "value": 1})
    found = instants(rule, D, window(D, D + DAY))
    assert found == list(range(D, D + DAY + 1, HOUR))


def test_instants_honour_a_refresh_delay_and_the_rule_time_zone() -> None:
    rule = make_rule({"type": "threshold", "op": "<=", "value": 1}, timezone="Asia/Kolkata")
    found = instants(rule, D, ReplayWindow(D, D + 2 * DAY, LAG, refresh_delay=60))
    midnight = D + DAY - 5 * HOUR - 30 * 60  # 00:00 in Kolkata (UTC+05:30)
    assert midnight + LAG + 60 in found and midnight + DAY + LAG + 60 in found


# --------------------------------------------------------------------------- equivalences


NEW_YORK = "America/New_York"
DST = parse_instant("2025-03-09T12:00:00Z", 0)  # the US spring-forward day
RULES = [
    make_rule(LEVELS, timezone=NEW_YORK, group_by=["model"]),
    make_rule({"type": "threshold", "op": "<", "value": 5}, window="week", timezone=NEW_YORK),
    make_rule({"type": "anomaly", "history": "5d", "min_history": "2d"}, window="hour",
              timezone=NEW_YORK, group_by=["model"]),
    make_rule({"type": "anomaly", "history": "10d", "min_history": "3d"}, window="day"),
    make_rule({"type": "absence", "duration": "3h"}, window="hour", timezone=NEW_YORK),
    make_rule({"type": "forecast", "value": 1e6, "min_elapsed": "1d"}, window="month",
              timezone=NEW_YORK),
    make_rule({"type": "change", "percent": 30, "compare_to": "last_week"}, timezone=NEW_YORK,
              filters={"model": ["a", "b"]}),
]


def noisy_rows(since: int, until: int, seed: int) -> list[UsageRow]:
    noise = random.Random(seed)
    rows: list[UsageRow] = []
    for model in ("a", "b"):
        rows += hourly(since, until, lambda t: noise.choice([0, 0, 3, 7, 40]),
                       (("model", model),))
    return rows


@pytest.mark.parametrize("rule", RULES, ids=lambda r: f"{r.condition.type}-{r.window}")
def test_history_series_equals_build_series_at_every_instant(rule: Rule) -> None:
    replay_window_ = window(DST - 3 * DAY, DST + 3 * DAY)
    frame = RuleFrame.of(rule, replay_window_)
    need = history_need(rule, CUSTOMER.id, replay_window_.since, replay_window_.until)
    rows = noisy_rows(need.starts_at, need.ends_at, seed=len(rule.name) + len(frame.schedule))
    history = HistorySeries(frame, CUSTOMER.id, rows)
    odd = random.Random(5).sample(range(replay_window_.since, replay_window_.until), 40)
    for instant in [*frame.schedule, *odd]:
        wanted = conditions.needs(rule, CUSTOMER.id, instant)[0]
        visible = sorted((r for r in rows if r.ends_at <= instant
                          and r.starts_at >= wanted.starts_at),
                         key=lambda r: (r.starts_at, r.dimensions))
        expected = build_series(rule, wanted, visible, instant, now=instant, freshness_lag=LAG)
        assert history.series(wanted, instant, instant, LAG) == expected, iso(instant)


def brute_force(rule: Rule, rows: list[UsageRow], span: ReplayWindow) -> list[Firing]:
    """Every instant evaluated (a period's closing evaluation first, at its end), the
    lifecycle stepped every ``every`` in between."""
    frame = RuleFrame.of(rule, span)
    history = HistorySeries(frame, CUSTOMER.id, rows)
    states = SeriesStates(rule)
    closing = set(closing_ends(rule, frame.schedule, span))
    found: list[Firing] = []
    instant, findings = frame.schedule[0], []

    def step(findings: list[Finding]) -> None:
        for transition, finding in states.apply(findings, instant):
            if transition.kind in ("fired", "escalated") and instant >= span.since:
                found.append(Firing(instant, transition.kind, finding,
                                    transition.previous_level))

    while instant <= span.until:
        if instant in closing:  # refresh_delay is 0 here
            step(closing_findings(history, CUSTOMER, instant, span))
        if instant in frame.schedule:
            findings = findings_at(history, CUSTOMER, instant, span)
        step(findings)
        later = [t for t in frame.schedule if t > instant]
        instant = min([*later[:1], instant + int(rule.every)]) if states.live else (
            later[0] if later else span.until + 1)
    return found


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_bisection_of_upper_thresholds_finds_what_every_instant_finds(seed: int) -> None:
    rule = make_rule({"type": "threshold", "op": ">", "levels": {"low": 150, "high": 400}},
                     group_by=["model"], timezone=NEW_YORK, **{"for": "20m"})
    span = window(DST - 4 * DAY, DST + 4 * DAY)
    rows = noisy_rows(DST - 5 * DAY, DST + 5 * DAY, seed)
    fast = replay(rule, CUSTOMER, rows, span)
    assert fast == brute_force(rule, rows, span)
    assert len(fast) > 3


@pytest.mark.parametrize("seed", [4, 5])
def test_skipped_lifecycle_ticks_find_what_every_tick_finds(seed: int) -> None:
    rule = make_rule({"type": "absence", "duration": "2h", "floor": 4}, window="hour",
                     timezone=NEW_YORK, every="10m", keep_firing_for="95m", **{"for": "25m"})
    span = window(DST - 3 * DAY, DST + 3 * DAY)
    noise = random.Random(seed)
    rows = hourly(DST - 4 * DAY, DST + 4 * DAY, lambda t: noise.choice([0, 0, 0, 2, 9]))
    fast = replay(rule, CUSTOMER, rows, span)
    assert fast == brute_force(rule, rows, span)
    assert len(fast) > 3


# --------------------------------------------------------------------------- small pieces


def test_within_data_ends_the_replay_where_the_data_ends() -> None:
    span = window(D, D + DAY)
    assert within_data(span, None) == span
    assert within_data(span, D + 2 * DAY) == span
    assert within_data(span, D + 5 * HOUR).until == D + 5 * HOUR


def test_select_rules_names_unknown_rules() -> None:
    rules = [make_rule(LEVELS)]
    assert select_rules(rules, None) == rules
    with pytest.raises(ConfigError, match="no rule named 'nope'"):
        select_rules(rules, ["nope"])


def test_replay_window_reads_relative_and_iso_times() -> None:
    now = D + 40 * DAY
    assert replay_window("30d", None, now, LAG) == ReplayWindow(D + 10 * DAY, now, LAG)
    span = replay_window("2025-01-02T00:00:00Z", "2025-01-03T00:00:00Z", now, LAG)
    assert (span.since, span.until) == (D + DAY, D + 2 * DAY)
    assert replay_window("1d", "2099-01-01T00:00:00Z", now, LAG).until == now
    with pytest.raises(ConfigError, match="not a time"):
        replay_window("yesterday", None, now, LAG)
    with pytest.raises(ConfigError, match="must be before"):
        replay_window("1d", "2d", now, LAG)


def test_bad_since_is_a_usage_error_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "alertd.yaml").write_text("rule_files: []\n")
    code = cli_main(["backtest", "-c", str(tmp_path / "alertd.yaml"), "--since", "soon"])
    assert code == 2
    assert "not a time: 'soon'" in capsys.readouterr().err


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_draws_each_percent_once() -> None:
    screen = Terminal()
    bar = ProgressBar(screen, width=10)
    bar.start("fetching", 200)
    for _ in range(200):
        bar.advance()
    bar.finish()
    drawn = screen.getvalue()
    assert drawn.count("\r") == 101
    assert drawn.endswith("\rfetching   [##########] 100%  200/200\n")


# --------------------------------------------------------------------------- notifications

OPS = Receiver.model_validate({"name": "ops", "email": {"to": ["ops@example.com"]}})
ROUTE = RootRoute.model_validate({"receiver": "ops", "group_by": ["rule"], "group_wait": "30s",
                                  "group_interval": "5m", "repeat_interval": "4h"})
TWO = [Customer("cus_a", "A"), Customer("cus_b", "B")]


def two_customers_one_day(
    notifier: NotificationReplay,
) -> list[tuple[str | None, str, list[str], str]]:
    """a: warning at 11:00, critical at 13:00; b: warning at 17:00. Until 01:00 next day."""
    rule = make_rule(LEVELS)
    span = window(D, D + DAY + HOUR)
    histories = {("r", "cus_a"): hourly(D, D + DAY, spiky_day),
                 ("r", "cus_b"): hourly(D, D + DAY, 6)}
    replayed = replay_all([rule], {"r": TWO}, histories, span)
    sent = notifier.run(replayed.changes, {"r": rule}, {c.id: c for c in TWO}, span.until)
    return [(iso(n.at), n.notification.status,
             sorted(a.customer.id for a in n.notification.alerts), n.reason) for n in sent]


def test_notifications_are_grouped_deduplicated_repeated_and_resolved() -> None:
    sent = two_customers_one_day(NotificationReplay(RouteTree(ROUTE), [OPS]))
    both = ["cus_a", "cus_b"]
    # Flushes tick every 5 minutes from 11:00:30, so news waits for the next tick.
    assert sent == [
        ("2025-01-01T11:00:30Z", "firing", ["cus_a"], "1 new firing alert(s)"),
        ("2025-01-01T13:00:30Z", "firing", ["cus_a"], "an alert escalated to a higher level"),
        ("2025-01-01T17:00:30Z", "firing", both, "1 new firing alert(s)"),
        ("2025-01-01T21:00:30Z", "firing", both, "still firing; repeat_interval 14400s elapsed"),
        ("2025-01-02T00:00:30Z", "resolved", both, "2 alert(s) resolved"),
    ]


class EveryTimer(NotificationReplay):
    """The daemon's timer without the skip-ahead: a flush whenever any group is due."""

    def _next_flush(self, ident: tuple[str, str]) -> int:
        group = self.groups[ident]
        due = math.ceil(group.due_at)
        return due if group.flushed_at is None else max(due, group.flushed_at + 1)


MAINTENANCE = new_silence(["customer=cus_a"], starts_at=D, ends_at=D + 12 * HOUR,
                          comment="maintenance", created_by=None, now=D)


@pytest.mark.parametrize("silences", [[], [MAINTENANCE]], ids=["plain", "silenced"])
def test_skipping_flushes_that_only_dedup_changes_nothing(silences: list[Silence]) -> None:
    tree = RouteTree(ROUTE)
    assert two_customers_one_day(NotificationReplay(tree, [OPS], silences)) == (
        two_customers_one_day(EveryTimer(tree, [OPS], silences)))


def test_silences_mute_over_their_own_time_range() -> None:
    sent = two_customers_one_day(NotificationReplay(RouteTree(ROUTE), [OPS], [MAINTENANCE]))
    assert [(at, who, why) for at, _, who, why in sent] == [
        # Silenced when it fired at 11:00; the first tick after the silence tells.
        ("2025-01-01T12:00:30Z", ["cus_a"], "1 new firing alert(s)"),
        ("2025-01-01T13:00:30Z", ["cus_a"], "an alert escalated to a higher level"),
        ("2025-01-01T17:00:30Z", ["cus_a", "cus_b"], "1 new firing alert(s)"),
        ("2025-01-01T21:00:30Z", ["cus_a", "cus_b"],
         "still firing; repeat_interval 14400s elapsed"),
        ("2025-01-02T00:00:30Z", ["cus_a", "cus_b"], "2 alert(s) resolved"),
    ]


# --------------------------------------------------------------------------- the simulator

DAYS = 10
SINCE = TEST_NOW - DAYS * DAY
QUOTA_RULE = """\
rules:
  - name: token-quota
    meter: mtr_sim_tokens
    window: day
    timezone: UTC
    condition: {type: threshold, op: ">", value_from: {metadata: daily_token_quota}}
  - name: calls-stopped
    meter: mtr_sim_api_calls
    window: hour
    condition: {type: absence, duration: 12h}
"""


def day(instant: int) -> str:
    return (iso(instant) or "")[:10]


def write_config(folder: Path, url: str) -> Path:
    (folder / "rules.yaml").write_text(QUOTA_RULE)
    config = folder / "alertd.yaml"
    config.write_text(
        f"stripe: {{api_base: '{url}', api_key: {API_KEY}, freshness_lag: 5m}}\n"
        "rule_files: [rules.yaml]\ncustomers: {all: true}\n"
        "receivers: [{name: ops, email: {to: [ops@example.com]}}]\n"
        "route: {receiver: ops, repeat_interval: 24h}\n"
    )
    return config


def arguments(**overrides: Any) -> argparse.Namespace:
    values: dict[str, Any] = {"since": iso(SINCE), "until": None, "rule": None,
                              "customer": None, "format": "json"}
    values.update(overrides)
    return argparse.Namespace(**values)


async def test_backtest_against_the_simulator_finds_the_injected_overuse(
    tmp_path: Path,
) -> None:
    until = TEST_NOW - 2 * DAY  # no overuse incident is under way then
    async with running_simulator(customers=4, days=DAYS + 5, incident_rate=4.0,
                                 incident_weights={"overuse": 1.0}) as sim:
        world = load_world(write_config(tmp_path, sim.url))
        out, err = io.StringIO(), io.StringIO()
        code = await run_command(world, arguments(rule=["token-quota"], until=iso(until)),
                                 clock=FakeClock(TEST_NOW), stdout=out, stderr=err)
        stats = sim.stats()
        overuse = sim.generator.incidents(SINCE, until)
    assert code == 0 and err.getvalue() == ""  # not a terminal: no progress bar
    doc = json.loads(out.getvalue())
    assert list(doc) == ["since", "until", "requests", "firings", "notifications"]
    assert (doc["since"], doc["until"]) == (iso(SINCE), iso(until))
    # Every history was fetched once: one usage request per customer, however many steps.
    assert stats["by_endpoint"]["meter_usage"] == 4
    assert doc["requests"] == stats["ok"]
    assert len(overuse) >= 2 and {i.kind for i in overuse} == {"overuse"}
    found = {(f["customer"], f["window"]["starts_at"][:10]) for f in doc["firings"]}
    assert found == {(i.customer, day(i.starts_at)) for i in overuse}
    assert len(doc["firings"]) == len(overuse)
    for firing in doc["firings"]:
        incident = next(i for i in overuse if i.customer == firing["customer"]
                        and day(i.starts_at) == firing["window"]["starts_at"][:10])
        noticed = parse_instant(firing["at"], 0)
        assert incident.starts_at < noticed <= incident.ends_at + HOUR
        assert firing["rule"] == "token-quota" and firing["level"] == "warning"
        assert firing["kind"] == "fired" and firing["value"] > firing["threshold"]
        assert firing["dimensions"] == {} and firing["window"]["timezone"] == "UTC"
    # Grouped per rule and customer (the default route): each firing is told 30 s later.
    told = [n for n in doc["notifications"] if n["status"] == "firing"]
    assert [(parse_instant(n["at"], 0), n["receiver"], n["fingerprints"]) for n in told] == [
        (parse_instant(f["at"], 0) + 30, "ops",
         [SeriesKey("token-quota", f["customer"]).fingerprint]) for f in doc["firings"]
    ]


async def test_text_output_progress_bar_and_stops(tmp_path: Path) -> None:
    async with running_simulator(customers=3, days=DAYS + 5, incident_rate=4.0, seed=2,
                                 incident_weights={"stop": 1.0}) as sim:
        world = load_world(write_config(tmp_path, sim.url))
        out, screen = io.StringIO(), Terminal()
        await run_command(world, arguments(format="text", rule=["calls-stopped"]),
                          clock=FakeClock(TEST_NOW), stdout=out, stderr=screen)
        stops = [i for i in sim.generator.incidents(SINCE, TEST_NOW)
                 if i.meter == "mtr_sim_api_calls"]
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["AT", "(UTC)", "RULE", "CUSTOMER", "SERIES", "LEVEL", "VALUE",
                                "BOUND"]
    # A stop already under way at --since fired in the warm-up; the others 12 silent hours in.
    new = [i for i in stops if i.starts_at >= SINCE]
    assert len(new) == 2 and len(stops) == 3
    firings = [line.split() for line in lines[1:lines.index("")]]
    expected = [(i.customer, iso(-(-i.starts_at // HOUR) * HOUR + 12 * HOUR + 300) or "")
                for i in new]
    assert [(f[3], f"{f[0]}T{f[1]}Z") for f in firings] == expected
    notices = lines[lines.index("") + 1:-2]
    assert notices[0].split() == ["AT", "(UTC)", "RECEIVER", "STATUS", "ALERTS", "WHY"]
    told = [(f"{n[0]}T{n[1]}Z", n[3], " ".join(n[5:])) for n in map(str.split, notices[1:])]
    for customer, at in expected:
        heard = iso(parse_instant(at, 0) + 30)
        assert (heard, "firing", "1 new firing alert(s)") in told, customer
    # The stop under way at --since fired in the warm-up; its end is told in the window.
    assert told[0] == ("2025-02-28T17:05:30Z", "resolved", "1 alert(s) resolved")
    assert lines[-1].startswith(f"2 firings and {len(told)} notifications from ")
    assert "3 customers" in lines[-1]
    assert "1 rule," in lines[-1] and "3 history queries" in lines[-1]
    drawn = screen.getvalue()
    assert "fetching" in drawn and "replaying" in drawn and "100%" in drawn


async def test_a_failing_source_fails_the_backtest(tmp_path: Path) -> None:
    async with running_simulator(customers=2, days=DAYS + 5,
                                 api_keys=frozenset({"sk_test_other"})) as sim:
        world = load_world(write_config(tmp_path, sim.url))
        with pytest.raises(SourceError) as failure:
            await run_command(world, arguments(), clock=FakeClock(TEST_NOW),
                              stdout=io.StringIO(), stderr=io.StringIO())
    assert failure.value.exit_code == 3


async def test_the_command_line_end_to_end_with_a_stored_silence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    muted = new_silence(["customer=cus_sim_000001"], starts_at=SINCE - DAY, ends_at=TEST_NOW,
                        comment="migration", created_by=None, now=SINCE - DAY)
    async with SqliteStore(tmp_path / "alertd.db") as store:
        await store.add_silence(muted)
    async with running_simulator(customers=2, days=DAYS + 5, incident_rate=4.0,
                                 incident_weights={"overuse": 1.0}) as sim:
        config = write_config(tmp_path, sim.url)
        argv = ["backtest", "-c", str(config), "--since", iso(SINCE) or "",
                "--until", iso(TEST_NOW) or "", "--rule", "token-quota", "--format", "json"]
        code = await asyncio.to_thread(cli_main, argv)
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["until"] == iso(TEST_NOW - 60)  # where the simulator's data ends
    assert {f["customer"] for f in doc["firings"]} == {"cus_sim_000001", "cus_sim_000002"}
    told = {fingerprint for n in doc["notifications"] for fingerprint in n["fingerprints"]}
    assert told == {SeriesKey("token-quota", "cus_sim_000002").fingerprint}


async def test_backtest_reads_the_silences_while_a_daemon_holds_the_state(
    tmp_path: Path
) -> None:
    """The state is opened as ``check --dry-run`` opens it: the daemon's lock does not stop a
    backtest, which reads the stored silence and writes nothing (the file is unchanged); with
    no state file, none is created."""
    state = tmp_path / "alertd.db"
    muted = new_silence(["customer=cus_sim_000001"], starts_at=SINCE - DAY, ends_at=TEST_NOW,
                        comment="migration", created_by=None, now=SINCE - DAY)
    async with SqliteStore(state) as store:
        await store.add_silence(muted)
    async with running_simulator(customers=2, days=DAYS + 5, incident_rate=4.0,
                                 incident_weights={"overuse": 1.0}) as sim:
        world = load_world(write_config(tmp_path, sim.url))
        before = state.read_bytes()
        out = io.StringIO()
        with exclusive(state, "the daemon"):
            code = await run_command(world, arguments(rule=["token-quota"], until=iso(TEST_NOW)),
                                     clock=FakeClock(TEST_NOW), stdout=out,
                                     stderr=io.StringIO())
        assert code == 0 and state.read_bytes() == before
        told = {f for n in json.loads(out.getvalue())["notifications"] for f in n["fingerprints"]}
        assert told == {SeriesKey("token-quota", "cus_sim_000002").fingerprint}
        state.unlink()
        for extra in tmp_path.glob("alertd.db-*"):
            extra.unlink()
        await run_command(world, arguments(rule=["token-quota"], until=iso(TEST_NOW)),
                          clock=FakeClock(TEST_NOW), stdout=io.StringIO(), stderr=io.StringIO())
        assert not state.exists()


def test_text_without_firings_is_one_summary_line() -> None:
    result = BacktestResult(window(D, D + DAY), (), (), ("r",), 1, 1, 1)
    assert backtest_text(result, 2) == (
        "0 firings and 0 notifications from 2025-01-01T00:00:00Z to 2025-01-02T00:00:00Z; "
        "1 rule, 1 customer; 1 history query, 2 Stripe requests"
    )

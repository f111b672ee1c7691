"""The pipeline on a real SQLite file: grouping, timing, silences, dedup, dry runs, restarts.

Time is passed in as ``now`` (the pipeline reads no clock except in its daemon loop, which
runs on a FakeClock here).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from alertd import silences
from alertd.alerts import STALE_DATA, meta_finding
from alertd.clock import FakeClock
from alertd.conditions.base import Bound
from alertd.config.settings import Receiver, RootRoute
from alertd.model import Finding, FindingState, Notification, Period, SeriesKey
from alertd.notify.pipeline import Pipeline
from alertd.notify.routing import RouteTree
from alertd.notify.stages import dedup_decision
from alertd.rules.schema import Rule
from alertd.store.base import SentRecord
from alertd.store.sqlite import SqliteStore

NOW = 1_735_689_600  # 2025-01-01T00:00:00Z
DAY = Period(NOW, NOW + 86400)
RULE = Rule.model_validate({
    "name": "quota", "meter": "mtr_1",
    "condition": {"type": "threshold", "levels": {"warning": 100, "critical": 200}},
})
RULES = {RULE.name: RULE}
ROUTE: dict[str, Any] = {"receiver": "ops", "group_by": ["rule"], "group_wait": "30s",
                         "group_interval": "5m", "repeat_interval": "1h"}


def receivers(**send_resolved: bool) -> list[Receiver]:
    return [Receiver.model_validate({"name": name, "webhook": {"url": f"http://x/{name}"},
                                     "send_resolved": send_resolved.get(name, True)})
            for name in ("ops", "pager", "mail")]


def finding(customer: str, level: str | None = "warning", *, rule: str = "quota",
            period: str = "2025-01-01", state: FindingState = "inactive") -> Finding:
    return Finding(
        key=SeriesKey(rule, customer), meter="mtr_1", dimensions=(), window=DAY,
        complete=False, value=150.0 if level else 50.0, active=level is not None, level=level,
        state=state, message="", figures=Bound(100.0), period_key=period,
    )


def customers(count: int, level: str | None = "warning") -> list[Finding]:
    return [finding(f"cus_{i:02}", level) for i in range(count)]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    async with SqliteStore(tmp_path / "alertd.db") as opened:
        yield opened


def pipeline(store: SqliteStore, route: dict[str, Any] | None = None,
             configured: list[Receiver] | None = None, **kwargs: Any) -> Pipeline:
    tree = RouteTree(RootRoute.model_validate({**ROUTE, **(route or {})}))
    return Pipeline(store, tree, configured or receivers(), **kwargs)


def sent(notifications: tuple[Notification, ...]) -> list[tuple[str, str, list[str]]]:
    return [(n.receiver, n.status, sorted(a.customer.id for a in n.alerts))
            for n in notifications]


async def test_twenty_customers_crossing_at_once_are_one_digest(store: SqliteStore) -> None:
    p = pipeline(store)
    report = await p.apply(customers(20), RULES, NOW)
    assert [t.kind for t in report.transitions] == ["fired"] * 20
    (held,) = report.decisions
    assert held.suppressed_by == "group" and "group_wait" in held.reason
    assert len(held.fingerprints) == 20 and await store.outbox() == []
    assert (await p.flush(NOW + 29)).notifications == ()
    (digest,) = (await p.flush(NOW + 30)).notifications
    assert (digest.receiver, digest.status, len(digest.alerts)) == ("ops", "firing", 20)
    assert digest.group_labels == {"rule": "quota"}
    assert [r.id for r in await store.outbox()] == [digest.id]


async def test_group_interval_holds_changes_to_a_sent_group(store: SqliteStore) -> None:
    p = pipeline(store)
    await p.apply(customers(20), RULES, NOW)
    (first,) = (await p.flush(NOW + 30)).notifications
    report = await p.apply(customers(21), RULES, NOW + 60)
    (held,) = report.decisions
    assert held.suppressed_by == "group" and "group_interval" in held.reason
    assert (await p.flush(NOW + 329)).notifications == ()
    (second,) = (await p.flush(NOW + 330)).notifications
    assert len(second.alerts) == 21 and second.id != first.id


async def test_repeat_interval_only_while_firing_then_resolved(store: SqliteStore) -> None:
    p = pipeline(store)
    await p.apply(customers(2), RULES, NOW)
    (first,) = (await p.flush(NOW + 30)).notifications
    (quiet,) = (await p.flush(NOW + 330)).decisions
    assert quiet.suppressed_by == "dedup" and "already queued for delivery at" in quiet.reason
    (repeat,) = (await p.flush(NOW + 3630)).notifications
    assert repeat.id != first.id and sent((repeat,)) == sent((first,))
    report = await p.apply(customers(2, level=None), RULES, NOW + 3700)
    assert [t.kind for t in report.transitions] == ["resolved", "resolved"]
    assert report.decisions[0].suppressed_by == "group"
    (resolved,) = (await p.flush(NOW + 3930)).notifications
    assert sent((resolved,)) == [("ops", "resolved", ["cus_00", "cus_01"])]
    assert all(a.ends_at == NOW + 3700 for a in resolved.alerts)
    # Only the first firing opens the mail thread; the repeat and the resolve reply to it.
    assert (first.opens_thread, repeat.opens_thread, resolved.opens_thread) == (
        True, False, False)
    assert (await p.flush(NOW + 9999)).decisions == ()  # no repeats after the resolve
    assert await store.load_groups() == {}


async def test_escalation_sends_and_deescalation_does_not(store: SqliteStore) -> None:
    p = pipeline(store, {"group_wait": "0s"})
    assert len((await p.apply([finding("cus_1")], RULES, NOW)).notifications) == 1
    report = await p.apply([finding("cus_1", "critical")], RULES, NOW + 60)
    assert [t.kind for t in report.transitions] == ["escalated"]
    (escalated,) = (await p.flush(NOW + 300)).notifications
    assert escalated.alerts[0].severity == "critical"
    await p.apply([finding("cus_1", "warning")], RULES, NOW + 400)
    (dedup,) = (await p.flush(NOW + 600)).decisions
    assert dedup.suppressed_by == "dedup"
    await p.apply([finding("cus_1", "critical")], RULES, NOW + 700)
    assert (await p.flush(NOW + 900)).decisions[0].suppressed_by == "dedup"


async def test_silences_mute_and_expiring_one_lets_the_alert_through(
    store: SqliteStore,
) -> None:
    p = pipeline(store)
    muted = await silences.add(store, silences.new_silence(
        ["customer=cus_00"], starts_at=NOW, ends_at=NOW + 7200, comment="migration",
        created_by="ana", now=NOW))
    report = await p.apply(customers(2), RULES, NOW, immediate=True)
    silenced, delivered = report.decisions
    assert (silenced.suppressed_by, delivered.suppressed_by) == ("silence", None)
    assert silenced.fingerprints == (SeriesKey("quota", "cus_00").fingerprint,)
    assert sent(report.notifications) == [("ops", "firing", ["cus_01"])]
    await silences.expire(store, muted.id, NOW + 100)
    (after,) = (await p.flush(NOW + 300)).notifications
    assert sent((after,)) == [("ops", "firing", ["cus_00", "cus_01"])]


async def test_dry_run_writes_nothing_and_predicts_the_ids(tmp_path: Path) -> None:
    async with SqliteStore(tmp_path / "a.db") as a, SqliteStore(tmp_path / "b.db") as b:
        dry = await pipeline(a).apply(customers(3), RULES, NOW, dry_run=True,
                                         immediate=True)
        assert [f.state for f in dry.findings] == ["firing"] * 3
        assert await a.load_states() == {} and await a.load_groups() == {}
        assert await a.outbox() == [] and await a.load_sent() == {}
        real_a = await pipeline(a).apply(customers(3), RULES, NOW, immediate=True)
        real_b = await pipeline(b).apply(customers(3), RULES, NOW, immediate=True)
        ids = [n.id for n in dry.notifications]
        assert ids == [n.id for n in real_a.notifications] == [n.id for n in real_b.notifications]
        assert [d.to_json() for d in dry.decisions] == [{
            "receiver": "ops", "status": "firing", "suppressed_by": None,
            "fingerprints": [SeriesKey("quota", f"cus_0{i}").fingerprint for i in range(3)],
        }]


async def test_rule_receivers_bypass_routes(store: SqliteStore) -> None:
    own = Rule.model_validate({**RULE.model_dump(by_alias=True, exclude={"source"}),
                               "name": "spend", "receivers": ["mail"]})
    p = pipeline(store, {"routes": [{"match": {"severity": "critical"}, "receiver": "pager"}]})
    report = await p.apply([finding("cus_1", "critical", rule="spend"),
                               finding("cus_1", "critical")],
                              {**RULES, "spend": own}, NOW, immediate=True)
    by_rule = {n.alerts[0].rule: (n.receiver, n.group_key) for n in report.notifications}
    assert by_rule == {"spend": ("mail", '{}/{rule="spend"}:{rule="spend"}'),
                       "quota": ("pager", '{}/{severity="critical"}:{rule="quota"}')}


async def test_send_resolved_false_sends_no_resolve(store: SqliteStore) -> None:
    p = pipeline(store, {"group_wait": "0s"}, receivers(ops=False))
    assert len((await p.apply([finding("cus_1")], RULES, NOW)).notifications) == 1
    await p.apply([finding("cus_1", None)], RULES, NOW + 60)
    report = await p.flush(NOW + 300)
    assert report.notifications == () and await store.load_groups() == {}


async def test_missing_data_neither_resolves_nor_fires(store: SqliteStore) -> None:
    p = pipeline(store, {"group_wait": "0s"})
    await p.apply([finding("cus_1")], RULES, NOW)
    before = await store.load_states()
    report = await p.apply([finding("cus_1", None, state="nodata"),
                               finding("cus_2", "critical", state="error")], RULES, NOW + 60)
    assert report.transitions == () and [f.state for f in report.findings] == ["nodata",
                                                                                "error"]
    assert await store.load_states() == before
    assert (await p.flush(NOW + 300)).decisions[0].suppressed_by == "dedup"


async def test_the_period_end_resolves_the_old_period_alert(store: SqliteStore) -> None:
    p = pipeline(store, {"group_wait": "0s"})
    await p.apply([finding("cus_1")], RULES, NOW)
    report = await p.apply([finding("cus_1", None, period="2025-01-02")], RULES,
                              NOW + 86400)
    assert [f.state for f in report.findings] == ["resolved"]
    assert sent(report.notifications) == [("ops", "resolved", ["cus_1"])]


async def test_meta_alerts_use_the_same_pipeline(store: SqliteStore) -> None:
    p = pipeline(store, {"routes": [{"match": {"alertname": STALE_DATA}, "receiver": "pager"}]})
    stale = meta_finding(STALE_DATA, active=True, now=NOW, message="data 3h old")
    (note,) = (await p.apply([stale], RULES, NOW, immediate=True)).notifications
    assert note.receiver == "pager" and note.alerts[0].labels["alertname"] == STALE_DATA


async def test_state_and_timers_survive_a_restart(tmp_path: Path) -> None:
    slow = Rule.model_validate({**RULE.model_dump(by_alias=True, exclude={"source"}),
                                "for": "10m"})
    path = tmp_path / "alertd.db"
    async with SqliteStore(path) as store:
        report = await pipeline(store).apply([finding("cus_1")], {"quota": slow}, NOW)
        assert [t.kind for t in report.transitions] == ["pending"]
    async with SqliteStore(path) as store:
        report = await pipeline(store).apply([finding("cus_1")], {"quota": slow}, NOW + 600)
        assert [t.kind for t in report.transitions] == ["fired"]
    async with SqliteStore(path) as store:
        assert await store.next_group_due() == NOW + 630
        (note,) = (await pipeline(store).flush(NOW + 630)).notifications
        assert note.alerts[0].starts_at == NOW + 600


async def test_a_reload_that_reroutes_moves_the_alert_without_a_resolve(
    store: SqliteStore,
) -> None:
    await pipeline(store).apply([finding("cus_1")], RULES, NOW, immediate=True)
    rerouted = pipeline(store, {"receiver": "pager"})
    report = await rerouted.apply([finding("cus_1")], RULES, NOW + 60, immediate=True)
    assert sent(report.notifications) == [("pager", "firing", ["cus_1"])]
    await rerouted.flush(NOW + 400)  # the emptied ops group is dropped, without a resolve
    assert [(r.receiver, r.notification.status) for r in await store.outbox()] == [
        ("ops", "firing"), ("pager", "firing")]
    assert [g.receiver for g in (await store.load_groups()).values()] == ["pager"]


async def test_the_daemon_loop_flushes_when_group_wait_ends(store: SqliteStore) -> None:
    clock = FakeClock(NOW)
    stop = asyncio.Event()
    p = pipeline(store, on_commit=stop.set)
    await p.apply(customers(3), RULES, NOW)
    await asyncio.wait_for(p.run(stop, clock), timeout=10)
    (row,) = await store.outbox()
    assert row.created_at == NOW + 30 and len(row.notification.alerts) == 3


FP_A, FP_B = "a@1", "b@1"


def log(firing: dict[str, int], sent_at: int = NOW) -> SentRecord:
    return SentRecord("ops", "g", firing, frozenset(), sent_at, "n0")


@pytest.mark.parametrize(
    ("reason", "firing", "resolved", "previous", "now", "send_resolved", "expected"),
    [
        ("first notification of a group", {FP_A: 0}, [], None, NOW, True, True),
        ("same alerts, same levels, before repeat_interval", {FP_A: 0}, [], log({FP_A: 0}),
         NOW + 60, True, False),
        ("a new alert joins the group", {FP_A: 0, FP_B: 0}, [], log({FP_A: 0}), NOW + 60, True,
         True),
        ("an alert escalated", {FP_A: 1}, [], log({FP_A: 0}), NOW + 60, True, True),
        ("an alert de-escalated: not re-sent", {FP_A: 0}, [], log({FP_A: 1}), NOW + 60, True,
         False),
        ("still firing after repeat_interval", {FP_A: 0}, [], log({FP_A: 0}), NOW + 3600, True,
         True),
        ("an announced alert resolved", {FP_B: 0}, [FP_A], log({FP_A: 0, FP_B: 0}), NOW + 60,
         True, True),
        ("resolved but the receiver has send_resolved: false", {}, [FP_A], log({FP_A: 0}),
         NOW + 60, False, False),
        ("resolved before it was ever announced", {}, [FP_A], None, NOW + 60, True, False),
        ("nothing firing: no repeat", {}, [], log({FP_A: 0}), NOW + 9999, True, False),
    ],
)
def test_dedup_decision(
    reason: str, firing: dict[str, int], resolved: list[str], previous: SentRecord | None,
    now: int, send_resolved: bool, expected: bool,
) -> None:
    send, why = dedup_decision(firing, resolved, previous, now, 3600, send_resolved)
    assert send is expected, reason
    assert why


async def test_removing_a_rule_resolves_its_alerts_and_forgets_them(store: SqliteStore) -> None:
    p = pipeline(store, {"group_wait": "0s"})
    await p.apply(customers(2), RULES, NOW)
    report = await p.retire_rules(["quota"], NOW + 60, note="rule removed from the config")
    assert [(t.kind, t.reason) for t in report.transitions] == [
        ("resolved", "rule removed from the config")] * 2
    assert await store.load_states() == {}
    (resolved,) = (await p.flush(NOW + 300)).notifications
    assert sent((resolved,)) == [("ops", "resolved", ["cus_00", "cus_01"])]
    assert (await p.flush(NOW + 9999)).decisions == ()


async def test_background_timer_starts_and_stops(store: SqliteStore) -> None:
    clock = FakeClock(NOW)
    committed = asyncio.Event()
    p = pipeline(store, on_commit=committed.set)
    await p.apply(customers(1), RULES, NOW)
    await p.start(clock)
    await asyncio.wait_for(committed.wait(), timeout=10)
    await p.stop()
    assert len(await store.outbox()) == 1


def test_vanished_group_series_resolve_instead_of_firing_forever() -> None:
    from alertd.alerts import AlertState
    from alertd.model import Finding, Period, SeriesKey
    from alertd.notify.pipeline import vanished_series

    window = Period(0, 86400)
    gpt4 = SeriesKey("by-model", "cus_1", (("model", "gpt-4"),))
    mini = SeriesKey("by-model", "cus_1", (("model", "mini"),))
    other = SeriesKey("by-model", "cus_2", (("model", "gpt-4"),))
    present = Finding(key=mini, meter="m", dimensions=mini.group, window=window,
                      complete=False, value=5.0, active=False, level=None, state="inactive",
                      message="", period_key="d1")
    failed = Finding(key=SeriesKey("by-model", "cus_2"), meter="m", dimensions=(),
                     window=window, complete=False, value=None, active=False, level=None,
                     state="error", message="could not read usage")
    previous = {gpt4: AlertState(status="firing", firing_since=10),
                other: AlertState(status="firing", firing_since=10)}
    found = vanished_series([present, failed], previous)
    # cus_1's gpt-4 group vanished from a successful read: judged inactive with no usage.
    # cus_2's read failed: its groups are left alone.
    assert [(f.key, f.active, f.value, f.period_key) for f in found] == [
        (gpt4, False, 0.0, "d1")]

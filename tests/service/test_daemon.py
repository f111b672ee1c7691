"""The daemon, end to end: real processes, real sockets, real servers; nothing patched.

Two kinds of test:

* in-process: :meth:`Daemon.running` against an in-process simulator frozen at ``TEST_NOW``
  and a clock shifted to it, polling by hand (fast, deterministic);
* subprocess: ``python -m alertd run -c CONFIG`` with ``NOTIFY_SOCKET`` pointing at a Unix
  datagram socket bound here, against a simulator on real time, with loopback webhook sinks;
  signals are real signals.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import socket
import sqlite3
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from alertd.alerts import SOURCE_FAILURE, STALE_DATA
from alertd.clock import OffsetClock
from alertd.errors import StoreDamagedError, StoreError
from alertd.model import Finding, Period, SeriesKey
from alertd.rules.schema import Rule
from alertd.service.daemon import Daemon, load_checked
from alertd.service.heartbeat import Heartbeat, heartbeat_due
from alertd.service.polling import AlertCensus, has_news, poll_groups
from alertd.service.systemd import SystemdNotifier
from alertd.sim.faults import Fault
from alertd.sim.server import Simulator
from alertd.sim.testing import API_KEY, TEST_NOW, running_simulator
from alertd.sinks import serve_posts
from alertd.store.sqlite import SqliteStore

TOKENS = "mtr_sim_tokens"
CALLS = "mtr_sim_api_calls"
CONTRACT_METRICS = {
    "alertd_stripe_requests_total", "alertd_stripe_request_duration_seconds",
    "alertd_stripe_rate_limited_total", "alertd_stripe_refreshed_timestamp_seconds",
    "alertd_rule_evaluations_total", "alertd_rule_last_evaluation_timestamp_seconds",
    "alertd_alerts", "alertd_notifications_total", "alertd_outbox_pending", "alertd_build_info",
}


# --------------------------------------------------------------------------- helpers


def rule(name: str, *, meter: str = TOKENS, value: float = 0, every: str = "2s",
         op: str = ">=") -> dict[str, Any]:
    """A month-to-date threshold; ``>= 0`` fires for every customer, at any time of the month
    (a series without usage is zero-filled)."""
    return {"name": name, "meter": meter, "window": "month", "every": every,
            "condition": {"type": "threshold", "op": op, "value": value}}


def write_rules(folder: Path, rules: list[dict[str, Any]]) -> None:
    (folder / "rules").mkdir(exist_ok=True)
    (folder / "rules" / "test.yaml").write_text(yaml.safe_dump({"rules": rules}))


def write_config(folder: Path, sim_url: str, hook_url: str, rules: list[dict[str, Any]],
                 **overrides: Any) -> Path:
    write_rules(folder, rules)
    config: dict[str, Any] = {
        "stripe": {"api_base": sim_url, "api_key": API_KEY, "max_retries": 0,
                   "failure_alert_after": 2},
        "state": {"path": str(folder / "alertd.db")},
        "server": {"listen": "127.0.0.1:0"},
        "rule_files": ["rules/*.yaml"],
        "customers": {"all": True},
        "receivers": [{"name": "hooks", "webhook": {"url": f"{hook_url}/alertd",
                                                    "timeout": "60s"}}],
        "route": {"receiver": "hooks", "group_by": ["rule"], "group_wait": "0s",
                  "group_interval": "1s", "repeat_interval": "4h"},
        "delivery": {"initial_backoff": "1s"},
        "log_level": "info",
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    path = folder / "alertd.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


async def eventually(check: Callable[[], Any], timeout: float = 15.0,
                     what: str = "condition") -> Any:
    """``check()``'s first truthy result (awaited if it is awaitable), trying every 50 ms for
    up to ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@dataclass
class Hook:
    """One request a :class:`Hooks` sink received."""

    path: str
    headers: dict[str, str]
    body: Any

    @property
    def alerts(self) -> list[tuple[str, str]]:
        """(alertname, status) of every alert in an Alertmanager-shaped body."""
        return [(a["labels"]["alertname"], a["status"]) for a in self.body.get("alerts", [])]


@dataclass
class Hooks:
    """A webhook receiver on loopback; it holds the first ``hold`` requests for up to
    ``delay`` seconds (or until :attr:`release`) before answering 200."""

    url: str = ""
    hold: int = 0
    delay: float = 0.0
    arrived: list[Hook] = field(default_factory=list)
    answered: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        hook = Hook(request.path, dict(request.headers), json.loads(await request.read()))
        self.arrived.append(hook)
        if len(self.arrived) <= self.hold:
            with suppress(TimeoutError):
                await asyncio.wait_for(self.release.wait(), self.delay)
        self.answered += 1
        return web.json_response({"ok": True})

    def at(self, path: str) -> list[Hook]:
        return [hook for hook in self.arrived if hook.path == path]

    def alerts(self) -> list[tuple[str, str]]:
        return [alert for hook in self.at("/alertd") for alert in hook.alerts]


@asynccontextmanager
async def hooks_sink(hold: int = 0, delay: float = 0.0) -> AsyncIterator[Hooks]:
    sink = Hooks(hold=hold, delay=delay)
    async with serve_posts(sink.handle) as url:
        sink.url = url
        try:
            yield sink
        finally:
            sink.release.set()


def metric_samples(text: str) -> tuple[set[str], dict[tuple[str, tuple[tuple[str, str], ...]],
                                                      float]]:
    """(every metric name, counters with their ``_total``; samples by name and labels)."""
    names: set[str] = set()
    samples = {}
    for family in text_string_to_metric_families(text):
        names.add(family.name + ("_total" if family.type == "counter" else ""))
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return names, samples


# --------------------------------------------------------------------------- pure parts


@pytest.mark.parametrize(("previous", "refreshed_at", "news"), [
    (None, None, True),          # first poll
    (None, 100, True),
    (100, 100, False),           # Stripe has not refreshed since: nothing new to judge
    (100, 99, False),            # an older replica answered
    (100, 160, True),
    (100, None, True),           # a source without freshness (event summaries)
])
def test_has_news(previous: int | None, refreshed_at: int | None, news: bool) -> None:
    assert has_news(previous, refreshed_at) is news


def test_poll_groups_by_interval_shortest_first() -> None:
    rules = [Rule.model_validate(rule(name, every=every))
             for name, every in [("a", "15m"), ("b", "1h"), ("c", "15m"), ("d", "30s")]]
    assert poll_groups(rules) == {30.0: ("d",), 900.0: ("a", "c"), 3600.0: ("b",)}
    assert poll_groups(rules, every_override=5.0) == {5.0: ("a", "b", "c", "d")}


@pytest.mark.parametrize(("last", "now", "interval", "due"), [
    (None, 0.0, 300.0, True), (0.0, 299.9, 300.0, False), (0.0, 300.0, 300.0, True),
])
def test_heartbeat_due(last: float | None, now: float, interval: float, due: bool) -> None:
    assert heartbeat_due(last, now, interval) is due


def _finding(rule_name: str, customer: str, state: str) -> Finding:
    return Finding(key=SeriesKey(rule_name, customer), meter=TOKENS, dimensions=(),
                   window=Period(0, 1, "UTC"), complete=False, value=1.0, active=True,
                   level=None, state=state, message="")  # type: ignore[arg-type]


def test_census_replaces_a_groups_series_and_counts_every_state() -> None:
    census = AlertCensus()
    census.replace(["a", "b"], [_finding("a", "c1", "firing"), _finding("b", "c1", "pending"),
                                _finding("b", "c2", "inactive")])
    census.replace(["b"], [_finding("b", "c1", "firing")])  # c2 is gone from rule b
    assert census.counts() == {"inactive": 0, "pending": 0, "firing": 2, "resolved": 0,
                               "nodata": 0, "error": 0}
    census.forget(["a"])
    assert census.counts()["firing"] == 1


@pytest.mark.parametrize(("url", "secret"), [
    ("http://127.0.0.1:{port}/secret-token", "secret-token"),
    ("http://u:s3cr3tt0ken@127.0.0.1:{port}/", "s3cr3tt0ken"),  # as in https://u:tok@host/
    ("http://127.0.0.1:{port}/api/push/Xk3q9?status=up&msg=OK", "Xk3q9"),  # Uptime Kuma
])
async def test_heartbeat_failure_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture, url: str, secret: str,
) -> None:
    # An earlier in-process ``logs.configure`` may have left ``alertd`` at ERROR.
    caplog.set_level(logging.WARNING, logger="alertd.heartbeat")
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        url = url.format(port=probe.getsockname()[1])
    async with Heartbeat() as heartbeat:
        assert await heartbeat.send(url, {"status": "ok"}) is False
    assert "heartbeat failed" in caplog.text and secret not in caplog.text
    assert "127.0.0.1" in caplog.text  # which heartbeat, still


# --------------------------------------------------------------------------- in-process


@dataclass
class Setup:
    daemon: Daemon
    sim: Simulator
    hooks: Hooks
    folder: Path
    clock: OffsetClock

    def advance(self, seconds: float) -> None:
        """Moves Stripe's and alertd's time together (new data gets refreshed)."""
        self.sim.advance(seconds)
        self.clock.offset += seconds


@asynccontextmanager
async def in_process(tmp_path: Path, rules: list[dict[str, Any]], **overrides: Any
                     ) -> AsyncIterator[Setup]:
    async with running_simulator(customers=3, days=40, now=TEST_NOW) as sim, \
            hooks_sink() as hooks:
        config = write_config(tmp_path, sim.url, hooks.url, rules, **overrides)
        clock = OffsetClock(TEST_NOW - time.time())
        daemon = Daemon(config, clock=clock, systemd=SystemdNotifier(""))
        async with daemon.running(load_checked(config)):
            yield Setup(daemon, sim, hooks, tmp_path, clock)


async def get(url: str) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.get(url)


async def test_poll_records_then_waits_for_fresher_data(tmp_path: Path) -> None:
    async with in_process(tmp_path, [rule("tokens"), rule("calls", meter=CALLS)]) as s:
        url = s.daemon.server_url
        assert (await get(f"{url}/readyz")).status_code == 503  # no poll yet
        group = ("tokens", "calls")
        first = await s.daemon.poll(group)
        assert first.recorded and not first.failed
        firing = [f for f in first.findings if f.state == "firing"]
        assert {f.rule for f in firing} == {"tokens", "calls"}
        assert (await get(f"{url}/readyz")).status_code == 200
        _, samples = metric_samples((await get(f"{url}/metrics")).text)
        assert samples[("alertd_alerts", (("state", "firing"),))] == len(firing)
        assert samples[("alertd_rule_evaluations_total",
                        (("outcome", "firing"), ("rule", "tokens")))] == 3

        again = await s.daemon.poll(group)  # Stripe has not refreshed since
        assert not again.recorded
        assert {f.rule for f in again.findings} == {STALE_DATA, SOURCE_FAILURE}

        s.advance(300)
        assert (await s.daemon.poll(group)).recorded
        await eventually(lambda: len(s.hooks.at("/alertd")) == 2, what="two notifications")
        assert sorted(s.hooks.alerts()) == sorted([("tokens", "firing")] * 3
                                                  + [("calls", "firing")] * 3)


async def test_a_state_file_damaged_at_run_time_makes_the_daemon_unready(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="alertd.daemon")
    async with in_process(tmp_path, [rule("tokens")]) as s:
        url, group, state = s.daemon.server_url, ("tokens",), tmp_path / "alertd.db"
        assert (await s.daemon.poll(group)).recorded
        assert (await get(f"{url}/readyz")).status_code == 200
        damage(state)
        s.advance(300)
        with pytest.raises(StoreDamagedError):
            await s.daemon.poll(group)
        ready = await get(f"{url}/readyz")
        assert ready.status_code == 503 and "damaged" in ready.text and ".recover" in ready.text
        _, samples = metric_samples((await get(f"{url}/metrics")).text)
        assert samples[("alertd_store_errors_total", (("kind", "damaged"),))] >= 1
    told = [r.getMessage() for r in caplog.records if "state store failing" in r.getMessage()]
    assert len(told) == 1 and f"mv {state} {state}.damaged" in told[0]


async def test_one_fetch_serves_every_rule_polled_together(tmp_path: Path) -> None:
    rules = [rule("low"), rule("high", op=">", value=1e15), rule("calls", meter=CALLS)]
    async with in_process(tmp_path, rules) as s:
        alone = await s.daemon.poll(("low",))
        together = await s.daemon.poll(("low", "high"))
        # One usage query per customer, however many rules share it. (The first poll also
        # lists the customers, which later polls take from the directory's cache.)
        assert alone.result.queries == together.result.queries == 3
        assert together.result.requests == 3
        assert (await s.daemon.poll(("low", "high", "calls"))).result.requests == 3


async def test_failing_source_raises_its_alert_and_readiness_follows(tmp_path: Path) -> None:
    async with in_process(tmp_path, [rule("tokens")]) as s:
        url, group = s.daemon.server_url, ("tokens",)
        await s.daemon.poll(group)
        s.sim.add_fault(Fault("status", status=500, path="/v1/billing/analytics"))
        first, second = await s.daemon.poll(group), await s.daemon.poll(group)
        assert first.failed and second.failed
        assert [f.active for f in second.findings if f.rule == SOURCE_FAILURE] == [True]
        ready = await get(f"{url}/readyz")
        assert ready.status_code == 503 and "Stripe keeps failing" in ready.text
        await eventually(lambda: (SOURCE_FAILURE, "firing") in s.hooks.alerts(),
                         what="the source-failure alert")
        assert ("tokens", "resolved") not in s.hooks.alerts()  # errors never resolve usage

        s.sim.clear_faults()
        s.advance(60)
        assert not (await s.daemon.poll(group)).failed
        assert (await get(f"{url}/readyz")).status_code == 200
        await eventually(lambda: (SOURCE_FAILURE, "resolved") in s.hooks.alerts(),
                         what="the source-failure alert to resolve")


async def test_one_group_that_keeps_failing_holds_the_alert_while_others_succeed(
    tmp_path: Path,
) -> None:
    broken = {**rule("broken", every="1m"), "customers": ["cus_flaky"]}
    async with in_process(tmp_path, [rule("healthy"), broken]) as s:
        # A lookup that fails (a missing customer is a config problem, not a source failure).
        s.sim.add_fault(Fault("status", status=500, path="/v1/customers/cus_flaky"))
        states = []
        for group in [("broken",), ("healthy",), ("broken",), ("healthy",)]:
            outcome = await s.daemon.poll(group)
            states.append([f.active for f in outcome.findings if f.rule == SOURCE_FAILURE])
        assert states == [[False], [False], [True], [True]]  # no flapping
        await eventually(lambda: (SOURCE_FAILURE, "firing") in s.hooks.alerts(),
                         what="the source-failure alert")
        assert (SOURCE_FAILURE, "resolved") not in s.hooks.alerts()


async def test_stale_data_raises_its_alert(tmp_path: Path) -> None:
    async with in_process(tmp_path, [rule("tokens")], stripe={"stale_after": "10m"}) as s:
        s.sim.configure(lag=3600.0)
        outcome = await s.daemon.poll(("tokens",))
        assert [f.active for f in outcome.findings if f.rule == STALE_DATA] == [True]
        ready = await get(f"{s.daemon.server_url}/readyz")
        assert ready.status_code == 503 and "stale" in ready.text
        await eventually(lambda: (STALE_DATA, "firing") in s.hooks.alerts(),
                         what="the stale-data alert")


async def test_heartbeat_after_a_poll_at_most_every_interval(tmp_path: Path) -> None:
    async with hooks_sink() as beats:
        heartbeat = {"url": f"{beats.url}/ping", "interval": "1h"}
        async with in_process(tmp_path, [rule("tokens")], heartbeat=heartbeat) as s:
            for _ in range(3):
                await s.daemon.poll(("tokens",))
                s.advance(60)
            await eventually(lambda: beats.arrived, what="a heartbeat")
            await asyncio.sleep(0.2)
    assert len(beats.arrived) == 1
    body = beats.arrived[0].body
    assert body["service"] == "alertd" and body["status"] == "ok"
    assert body["rules"] == 1 and body["customers"] == 3 and body["stale"] is False


async def test_no_heartbeat_when_a_poll_judges_nothing(tmp_path: Path) -> None:
    # Every customer of the rule is missing: each finding is an error, so the dead man's
    # switch must not hear "alive"; a rule that judges something beats again.
    async with hooks_sink() as beats:
        heartbeat = {"url": f"{beats.url}/ping", "interval": "1s"}
        rules = [{**rule("ghost"), "customers": ["cus_ghost", "cus_gone"]}, rule("tokens")]
        async with in_process(tmp_path, rules, heartbeat=heartbeat) as s:
            heartbeat = s.daemon.heartbeat
            assert heartbeat is not None
            outcome = await s.daemon.poll(("ghost",))
            # The pass hands its findings to the recorder, which keeps the notable ones.
            assert outcome.result.findings == () and outcome.result.judged is False
            assert {f.state for f in outcome.findings if f.rule == "ghost"} == {"error"}
            assert "cus_ghost" in outcome.result.problem or "cus_gone" in outcome.result.problem
            # poll() starts a beat synchronously or not at all: none was started
            assert heartbeat.started == 0
            s.advance(60)
            await s.daemon.poll(("tokens",))
            assert heartbeat.started == 1
            await eventually(lambda: beats.arrived, what="a heartbeat after a judging poll")
            assert beats.arrived[0].path == "/ping" and heartbeat.sent == 1


async def test_reload_carries_state_resolves_removed_rules_refuses_invalid(
    tmp_path: Path,
) -> None:
    async with in_process(tmp_path, [rule("kept"), rule("dropped", meter=CALLS)]) as s:
        await s.daemon.poll(("kept", "dropped"))
        await eventually(lambda: len(s.hooks.alerts()) == 6, what="six firing alerts")
        customer_lists = s.sim.stats()["by_endpoint"]["customers.list"]

        write_rules(s.folder, [rule("kept"), rule("added", meter=CALLS)])
        assert await s.daemon.reload()
        assert s.daemon.world.rules.names() == ("kept", "added")
        await eventually(lambda: s.hooks.alerts().count(("dropped", "resolved")) == 3,
                         what="the removed rule's alerts to resolve")
        s.advance(60)
        await s.daemon.poll(("kept", "added"))
        await eventually(lambda: s.hooks.alerts().count(("added", "firing")) == 3,
                         what="the added rule to fire")
        await asyncio.sleep(0.3)
        # Alert state carried over: "kept" stayed firing and was not announced again.
        assert s.hooks.alerts().count(("kept", "firing")) == 3
        # The Stripe client (and its customer cache) was kept: no new customer listing.
        assert s.sim.stats()["by_endpoint"]["customers.list"] == customer_lists

        (s.folder / "rules" / "test.yaml").write_text("rules:\n  - name: Bad Name\n")
        assert not await s.daemon.reload()
        assert s.daemon.world.rules.names() == ("kept", "added")
        assert (await s.daemon.poll(("kept", "added"))).result.requests == 3


def damage(state: Path) -> None:
    """Checkpoints the WAL into ``state`` (as another process might), then ruins every page
    but the header: the next read of the store fails."""
    other = sqlite3.connect(state)
    other.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    other.close()
    with state.open("r+b") as file:
        for offset in range(4096, state.stat().st_size, 4096):
            file.seek(offset + 100)
            file.write(bytes(range(256)) * 2)


async def test_a_reload_failing_after_the_swap_still_closes_the_old_world(
    tmp_path: Path,
) -> None:
    async with in_process(tmp_path, [rule("kept"), rule("dropped", meter=CALLS)]) as s:
        await s.daemon.poll(("kept", "dropped"))
        await eventually(lambda: len(s.hooks.alerts()) == 6, what="six firing alerts")
        old = s.daemon.services
        write_rules(s.folder, [rule("kept")])  # retiring "dropped" needs the store...
        config = yaml.safe_load((s.folder / "alertd.yaml").read_text())
        config["stripe"]["max_retries"] = 1  # ...and a new Stripe client replaces the old
        (s.folder / "alertd.yaml").write_text(yaml.safe_dump(config))
        damage(tmp_path / "alertd.db")
        with pytest.raises(StoreError):
            await s.daemon.reload()
        assert s.daemon.services is not old
        assert old.closed and old.stripe.http.closed  # no leaked HTTP pools
        assert not s.daemon.services.stripe.http.closed


async def test_a_poll_cut_by_the_daemon_ends_quietly_any_other_cancel_propagates(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="alertd.daemon")
    async with in_process(tmp_path, [rule("tokens")]) as s:
        await s.daemon.poll(("tokens",))  # the customers are listed: only usage is asked now
        s.sim.add_fault(Fault("slow", delay=3.0, path="/v1/billing/analytics"))

        async def in_flight() -> asyncio.Task[None]:
            s.advance(300)
            before = s.sim.stats()["requests"]
            job = asyncio.create_task(s.daemon._poll_job(("tokens",)))  # as APScheduler runs it
            await eventually(lambda: s.sim.stats()["requests"] > before, what="a slow poll")
            return job

        job = await in_flight()
        job.cancel()  # not the daemon's doing: the cancellation reaches the canceller
        with pytest.raises(asyncio.CancelledError):
            await job
        assert job.cancelled()

        job = await in_flight()
        await s.daemon._pause_polls(0.0, asyncio.Event())  # what a reload or stop does
        assert job.done() and not job.cancelled() and job.exception() is None
    cancelled = [r for r in caplog.records if r.getMessage() == "poll cancelled rules=tokens"]
    assert len(cancelled) == 2


async def test_reload_without_an_api_key_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("STRIPE_API_KEY", raising=False)
    async with in_process(tmp_path, [rule("tokens")]) as s:
        config = yaml.safe_load((s.folder / "alertd.yaml").read_text())
        del config["stripe"]["api_key"]
        (s.folder / "alertd.yaml").write_text(yaml.safe_dump(config))
        assert not await s.daemon.reload()
        assert not (await s.daemon.poll(("tokens",))).failed  # the old client still works


async def test_alerts_of_rules_gone_while_stopped_resolve_at_start(tmp_path: Path) -> None:
    async with running_simulator(customers=3, days=40, now=TEST_NOW) as sim, \
            hooks_sink() as hooks:
        clock = OffsetClock(TEST_NOW - time.time())
        config = write_config(tmp_path, sim.url, hooks.url, [rule("old"), rule("new")])
        daemon = Daemon(config, clock=clock, systemd=SystemdNotifier(""))
        async with daemon.running(load_checked(config)):
            await daemon.poll(("old",))
            await eventually(lambda: len(hooks.alerts()) == 3, what="three firing alerts")
        write_rules(tmp_path, [rule("new")])
        daemon = Daemon(config, clock=clock, systemd=SystemdNotifier(""))
        async with daemon.running(load_checked(config)):
            await eventually(lambda: hooks.alerts().count(("old", "resolved")) == 3,
                             what="the old rule's alerts to resolve")


async def test_the_status_pages_since_survives_a_restart(tmp_path: Path) -> None:
    """``since`` is when the series began firing (the stored ``firing_since``), not the new
    process's first poll."""
    async with running_simulator(customers=3, days=40, now=TEST_NOW) as sim, \
            hooks_sink() as hooks:
        clock = OffsetClock(TEST_NOW - time.time())
        config = write_config(tmp_path, sim.url, hooks.url, [rule("tokens", every="1h")])
        daemon = Daemon(config, clock=clock, systemd=SystemdNotifier(""))
        async with daemon.running(load_checked(config)):
            first = await daemon.poll(("tokens",))
            began = {e.key.customer: e.since for e in daemon.board.entries.values()}
        assert first.recorded and len(began) == 3
        sim.advance(600)
        clock.offset += 600
        restarted = int(clock.now())
        daemon = Daemon(config, clock=clock, systemd=SystemdNotifier(""))
        async with daemon.running(load_checked(config)):
            assert (await daemon.poll(("tokens",))).recorded
            shown = (await get(f"{daemon.server_url}/api/v1/alerts")).json()["alerts"]
            # no fresher data: nothing judged, and the board keeps what it shows
            assert not (await daemon.poll(("tokens",))).recorded
            kept = {e.key.customer: e.since for e in daemon.board.entries.values()
                    if e.key.rule == "tokens"}
            sim.advance(300)
            clock.offset += 300
            assert (await daemon.poll(("tokens",))).recorded  # the board's own entries now
            later = {e.key.customer: e.since for e in daemon.board.entries.values()}
        assert {a["customer"]["id"]: a["since"] for a in shown} == began
        assert all(since < restarted for since in began.values())
        assert kept == began and later == began


# --------------------------------------------------------------------------- subprocess


class NotifySocket:
    """A Unix datagram socket standing in for systemd's; collects every message."""

    def __init__(self) -> None:
        # AF_UNIX paths are limited to ~108 bytes: pytest's tmp_path can be longer.
        self.folder = tempfile.mkdtemp(prefix="alertd-notify-")
        self.path = os.path.join(self.folder, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setblocking(False)
        self.messages: list[list[str]] = []
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> NotifySocket:
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        self.sock.close()
        os.unlink(self.path)
        os.rmdir(self.folder)

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            data = await loop.sock_recv(self.sock, 65536)
            self.messages.append(data.decode().split("\n"))

    def without_watchdog(self) -> list[list[str]]:
        return [m for m in self.messages if m != ["WATCHDOG=1"]]

    async def next(self, prefix: str, after: int = 0, timeout: float = 15.0) -> int:
        """The index of the first message from ``after`` on with a field starting ``prefix``."""
        def find() -> int | None:
            for index in range(after, len(self.messages)):
                if any(f.startswith(prefix) for f in self.messages[index]):
                    return index + 1  # truthy even for the first message
            return None

        found: int = await eventually(find, timeout, what=f"sd_notify {prefix}")
        return found - 1


class DaemonProcess:
    """``python -m alertd run -c CONFIG`` as a child process, stderr to a log file."""

    def __init__(self, config: Path, notify: NotifySocket, log: Path) -> None:
        self.config, self.notify, self.log = config, notify, log
        self.process: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> DaemonProcess:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("ALERTD_") and k != "STRIPE_API_KEY"}
        env.update(NOTIFY_SOCKET=self.notify.path, WATCHDOG_USEC="1000000")
        with self.log.open("ab") as stderr:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "alertd", "run", "-c", str(self.config),
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                stderr=stderr, env=env,
            )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    async def exit_code(self, timeout: float = 15.0) -> int:
        assert self.process is not None
        try:
            return await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            raise AssertionError(f"the daemon did not exit:\n{self.log.read_text()}") from None

    async def server_url(self) -> str:
        def find() -> str | None:
            match = re.search(r"serving metrics url=(\S+)/metrics", self.log.read_text())
            return match.group(1) if match else None

        url: str = await eventually(find, what="the metrics server")
        return url


@pytest.fixture
def log_file(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "alertd.log"
    path.touch()
    yield path
    sys.stderr.write(path.read_text()[-4000:])  # shown by pytest when the test failed


@asynccontextmanager
async def live_simulator() -> AsyncIterator[Simulator]:
    """A simulator on real time: ``refreshed_at`` advances as polls go by."""
    async with running_simulator(customers=2, days=40, now=None) as sim:
        yield sim


async def test_lifecycle_notify_metrics_health_heartbeat_and_clean_stop(
    tmp_path: Path, log_file: Path,
) -> None:
    async with live_simulator() as sim, hooks_sink() as hooks, NotifySocket() as notify:
        heartbeat = {"url": f"{hooks.url}/ping", "interval": "1s"}
        config = write_config(tmp_path, sim.url, hooks.url, [rule("tokens")],
                              heartbeat=heartbeat)
        async with DaemonProcess(config, notify, log_file) as daemon:
            ready = await notify.next("READY=1")
            assert notify.without_watchdog()[0] == ["READY=1", "STATUS=1 rules, 0 customers; "
                                                    "last poll not yet"]
            polled = await notify.next("STATUS=1 rules, 2 customers; last poll 20", ready)
            assert polled > ready
            url = await daemon.server_url()
            assert (await get(f"{url}/healthz")).status_code == 200
            await eventually(lambda: _status(f"{url}/readyz", 200), what="/readyz 200")
            await eventually(lambda: len(hooks.at("/alertd")) == 1, what="a notification")
            await eventually(lambda: len(hooks.at("/ping")) >= 2, what="two heartbeats")
            names, samples = metric_samples((await get(f"{url}/metrics")).text)
            assert names >= CONTRACT_METRICS
            assert samples[("alertd_alerts", (("state", "firing"),))] == 2
            assert samples[("alertd_notifications_total",
                            (("outcome", "delivered"), ("receiver", "hooks")))] == 1
            assert samples[("alertd_outbox_pending", ())] == 0
            assert notify.messages.count(["WATCHDOG=1"]) >= 2

            daemon.signal(signal.SIGTERM)
            assert await daemon.exit_code() == 0
            await notify.next("STOPPING=1", polled)
    assert hooks.at("/ping")[0].body["status"] == "ok"


async def _status(url: str, code: int) -> bool:
    return (await get(url)).status_code == code


async def test_sighup_swaps_a_valid_config_in_and_refuses_an_invalid_one(
    tmp_path: Path, log_file: Path,
) -> None:
    async with live_simulator() as sim, hooks_sink() as hooks, NotifySocket() as notify:
        config = write_config(tmp_path, sim.url, hooks.url,
                              [rule("kept"), rule("dropped", meter=CALLS)])
        async with DaemonProcess(config, notify, log_file) as daemon:
            await notify.next("READY=1")
            await eventually(lambda: len(hooks.alerts()) == 4, what="four firing alerts")

            # Valid: a rule removed, one added.
            mark = len(notify.messages)
            write_rules(tmp_path, [rule("kept"), rule("added", meter=CALLS)])
            daemon.signal(signal.SIGHUP)
            reloading = await notify.next("RELOADING=1", mark)
            fields = notify.messages[reloading]
            assert fields[0] == "RELOADING=1" and re.fullmatch(r"MONOTONIC_USEC=\d+", fields[1])
            ready = await notify.next("READY=1", reloading)
            assert notify.messages[ready][1].startswith("STATUS=2 rules")
            await eventually(lambda: hooks.alerts().count(("dropped", "resolved")) == 2,
                             what="the removed rule's alerts to resolve")
            await eventually(lambda: hooks.alerts().count(("added", "firing")) == 2,
                             what="the added rule to fire")
            assert hooks.alerts().count(("kept", "firing")) == 2  # state carried over

            # Invalid: refused, and the running config keeps polling.
            mark = len(notify.messages)
            write_rules(tmp_path, [{**rule("kept"), "every": "soon"}])
            daemon.signal(signal.SIGHUP)
            reloading = await notify.next("RELOADING=1", mark)
            ready = await notify.next("READY=1", reloading)
            status = notify.messages[ready][1]
            assert status.startswith("STATUS=reload failed: ") and "test.yaml:" in status
            assert "reload refused problem" in log_file.read_text()
            requests = sim.stats()["by_endpoint"]["meter_usage"]
            await notify.next("STATUS=2 rules, 2 customers; last poll", ready)
            await eventually(lambda: sim.stats()["by_endpoint"]["meter_usage"] > requests,
                             what="the running config to keep polling")
            daemon.signal(signal.SIGTERM)
            assert await daemon.exit_code() == 0


async def test_sigterm_finishes_a_delivery_in_flight(tmp_path: Path, log_file: Path) -> None:
    async with live_simulator() as sim, hooks_sink(hold=1, delay=1.0) as hooks, \
            NotifySocket() as notify:
        config = write_config(tmp_path, sim.url, hooks.url, [rule("tokens")])
        async with DaemonProcess(config, notify, log_file) as daemon:
            await eventually(lambda: hooks.arrived, what="a delivery to start")
            daemon.signal(signal.SIGTERM)
            assert await daemon.exit_code() == 0
            await notify.next("STOPPING=1")
    assert hooks.answered == 1 and len(hooks.arrived) == 1
    async with SqliteStore(tmp_path / "alertd.db") as store:
        assert [row.status for row in await store.outbox()] == ["delivered"]


async def test_second_signal_leaves_the_delivery_queued_for_the_restart(
    tmp_path: Path, log_file: Path,
) -> None:
    async with live_simulator() as sim, hooks_sink(hold=1, delay=60) as hooks, \
            NotifySocket() as notify:
        config = write_config(tmp_path, sim.url, hooks.url, [rule("tokens")])
        async with DaemonProcess(config, notify, log_file) as daemon:
            await eventually(lambda: hooks.arrived, what="a delivery to start")
            daemon.signal(signal.SIGTERM)
            await notify.next("STOPPING=1")
            started = time.monotonic()
            daemon.signal(signal.SIGTERM)
            # The held delivery would take 60 s: exiting well before it is the second signal.
            assert await daemon.exit_code(timeout=30) == 0
            assert time.monotonic() - started < 30
        async with SqliteStore(tmp_path / "alertd.db") as store:
            assert [row.status for row in await store.outbox()] == ["pending"]

        async with DaemonProcess(config, notify, log_file) as daemon:
            await eventually(lambda: len(hooks.arrived) == 2, what="the delivery after restart")
            daemon.signal(signal.SIGTERM)
            assert await daemon.exit_code() == 0
    first, again = hooks.arrived
    assert again.headers["Idempotency-Key"] == first.headers["Idempotency-Key"]
    assert again.body == first.body
    async with SqliteStore(tmp_path / "alertd.db") as store:
        assert [row.status for row in await store.outbox()] == ["delivered"]


async def test_invalid_config_at_start_exits_2_without_ready(
    tmp_path: Path, log_file: Path,
) -> None:
    config = write_config(tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9", [rule("x")])
    (tmp_path / "rules" / "test.yaml").write_text("rules:\n  - name: x\n    every: soon\n")
    async with NotifySocket() as notify, DaemonProcess(config, notify, log_file) as daemon:
        assert await daemon.exit_code() == 2
    assert "test.yaml:3:" in log_file.read_text()
    assert not notify.messages


def test_reload_names_settings_that_need_a_restart(tmp_path: Path) -> None:
    from alertd.config.settings import load_settings
    from alertd.service.daemon import restart_only_changes

    old_file, new_file = tmp_path / "old.yaml", tmp_path / "new.yaml"
    old_file.write_text("state: {path: a.db}\nserver: {listen: '127.0.0.1:9464'}\n")
    new_file.write_text("state: {path: b.db}\nserver: {listen: ''}\n")
    old, new = load_settings(old_file), load_settings(new_file)
    changed = restart_only_changes(old, new)
    assert [c.split(" ")[0] for c in changed] == ["state.path", "server.listen"]
    assert restart_only_changes(old, old) == []

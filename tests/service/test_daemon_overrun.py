"""A poll that overruns its interval: the next one starts at once, not at the next tick.

The daemon in-process against the simulator, with its real APScheduler. Each answer of the
simulator takes ``latency`` seconds, so the first poll (three customers read in full) takes
longer than a 2 s interval; or the test moves the daemon's clock by an hour mid-poll. What is
asserted is the scheduler's own account (its job events, the job's ``next_run_time``) and the
daemon's log line, never how long something took; the one bound on time is the generous wait
for a poll that, without the fix, would come an hour later.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from apscheduler.events import (
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MODIFIED,
    EVENT_JOB_SUBMITTED,
    JobEvent,
    JobExecutionEvent,
    JobSubmissionEvent,
)
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from alertd.clock import OffsetClock
from alertd.service.daemon import Daemon, Overrun, load_checked
from alertd.service.systemd import SystemdNotifier
from alertd.sim.testing import TEST_NOW, running_simulator
from tests.service.test_daemon import (
    Setup,
    eventually,
    get,
    hooks_sink,
    metric_samples,
    rule,
    write_config,
)

OVERRAN = "poll overran its interval"
HOUR_JOB = "poll-3600s"


@dataclass
class Seen:
    """One job event, as the scheduler dispatched it, and the job's next run time then."""

    kind: str
    job_id: str
    at: datetime
    next_run_time: datetime | None
    run_time: datetime | None = None
    retval: object = None


@dataclass
class JobLog:
    """Every event of the scheduler's poll jobs, in order (a listener added after the
    daemon's, so an ``executed`` entry shows the job as the daemon left it)."""

    scheduler: AsyncIOScheduler
    seen: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.scheduler.add_listener(self._on_event, EVENT_JOB_SUBMITTED | EVENT_JOB_EXECUTED
                                    | EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MODIFIED)

    def _on_event(self, event: JobEvent) -> None:
        job = self.scheduler.get_job(event.job_id)
        entry = Seen(_KINDS[event.code], event.job_id, datetime.now(UTC),
                     job.next_run_time if job is not None else None)
        if isinstance(event, JobSubmissionEvent):
            entry.run_time = event.scheduled_run_times[-1]
        if isinstance(event, JobExecutionEvent):
            entry.run_time, entry.retval = event.scheduled_run_time, event.retval
        self.seen.append(entry)

    def of(self, kind: str) -> list[Seen]:
        return [e for e in self.seen if e.kind == kind]

    def later(self, entry: Seen, kind: str | None = None) -> list[Seen]:
        """The events after ``entry`` (of ``kind`` only, when given)."""
        return [e for e in self.seen[self.seen.index(entry) + 1:] if kind in (None, e.kind)]

    def overruns(self) -> list[Seen]:
        """The runs that ended having overrun their interval (they returned an Overrun)."""
        return [e for e in self.of("executed") if isinstance(e.retval, Overrun)]


_KINDS = {EVENT_JOB_SUBMITTED: "submitted", EVENT_JOB_EXECUTED: "executed",
          EVENT_JOB_MAX_INSTANCES: "skipped", EVENT_JOB_MODIFIED: "modified"}


@asynccontextmanager
async def scheduled(tmp_path: Path, every: str, latency: float, deadlines: bool = False
                    ) -> AsyncIterator[tuple[Setup, JobLog]]:
    """The daemon with its scheduler running one poll group of ``every`` (deadlines off: the
    job's interval is ``every``; on: the tick, made ``every`` too) against a simulator
    answering after ``latency`` seconds; polls stopped as ``alertd run`` stops them."""
    async with running_simulator(customers=3, days=40, now=TEST_NOW, latency=latency) as sim, \
            hooks_sink() as hooks:
        config = write_config(tmp_path, sim.url, hooks.url, [rule("tokens", every=every)],
                              schedule={"deadlines": deadlines, "tick": every})
        clock = OffsetClock(TEST_NOW - time.time())
        daemon = Daemon(config, clock=clock, systemd=SystemdNotifier(""))
        async with daemon.running(load_checked(config)):
            daemon._start_scheduler()
            assert daemon._scheduler is not None
            try:
                yield Setup(daemon, sim, hooks, tmp_path, clock), JobLog(daemon._scheduler)
            finally:
                await daemon._pause_polls(10.0, asyncio.Event())
                daemon._stop_scheduler()


def overrun_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(OVERRAN)]


async def test_a_poll_longer_than_its_interval_is_followed_by_the_next_at_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    # 1.2 s an answer: the first poll waits for two answers in a row at least (the customers,
    # then their usage, read in full), over the 2 s interval; the later ones find no fresher
    # data in one answer and end within it.
    caplog.set_level(logging.INFO, logger="alertd.daemon")
    async with scheduled(tmp_path, "2s", latency=1.2) as (s, jobs):
        (first, *_) = await eventually(jobs.overruns, 30, "a poll that overran")
        await eventually(lambda: [e for e in jobs.later(first, "executed") if e.retval is None],
                         30, "a later poll within its interval")
        # The scheduler skipped a tick during that poll: it really overran.
        assert [e for e in jobs.of("skipped") if e.at < first.at]
        # As it ended, the daemon moved the job's next run to then (the daemon's listener runs
        # before this one's), and the next thing the scheduler did was run it.
        assert first.next_run_time is not None and first.next_run_time <= first.at
        moved = jobs.later(first)[0]
        assert (moved.kind, moved.run_time) == ("submitted", first.next_run_time)
        # One line per overrun, saying what to change; the polls within it moved nothing.
        lines = overrun_lines(caplog)
        assert len(lines) == len(jobs.overruns()) == len(jobs.of("modified"))
        assert lines[0].startswith(f"{OVERRAN} rules=tokens every=2s interval=2s seconds=")
        assert "account=- (the next poll starts now; more budget (requests_per_second" in lines[0]
        assert "a longer every, or the deadline scheduler (schedule.deadlines: true)" in lines[0]
        # The metrics count them too, and time every poll that ended.
        polls = await poll_metrics(s)
        assert polls["alertd_poll_overruns_total"] == len(lines)
        assert polls["alertd_poll_duration_seconds_count"] >= len(jobs.of("executed"))
        assert polls["alertd_poll_duration_seconds_sum"] >= 2.0 * len(lines)
        assert polls["alertd_poll_budget_idle_seconds_total"] >= 0


async def test_a_poll_within_its_interval_leaves_the_schedule_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="alertd.daemon")
    async with scheduled(tmp_path, "1h", latency=0.0) as (s, jobs):
        (first,) = await eventually(lambda: jobs.of("executed"), 30, "the first poll")
        assert first.retval is None
        # The job's next run is where the interval trigger put it: an hour after the first.
        assert first.run_time is not None and first.next_run_time is not None
        assert first.next_run_time - first.run_time >= timedelta(hours=1)
        assert not jobs.of("modified") and not overrun_lines(caplog)
        polls = await poll_metrics(s)
        assert polls["alertd_poll_overruns_total"] == 0  # there from the start
        assert polls["alertd_poll_duration_seconds_count"] == 1


async def poll_metrics(s: Setup) -> dict[str, float]:
    """The daemon's ``alertd_poll_*`` samples of the sole account, from its ``/metrics``."""
    assert s.daemon.server_url is not None
    _, samples = metric_samples((await get(f"{s.daemon.server_url}/metrics")).text)
    return {name: value for (name, labels), value in samples.items()
            if name.startswith("alertd_poll_") and labels == (("account", ""),)}


async def first_poll_overran_by_the_clock(s: Setup) -> None:
    """Waits for the first poll to be in flight, then moves the clocks an hour and a bit: the
    daemon times a poll on its clock (in production the scheduler's wall time), so that poll
    has overrun ``every: 1h``. Nothing is awaited between seeing it run and moving the clock."""
    await eventually(lambda: s.daemon._polls, 30, "the first poll in flight")
    s.advance(3700)


@pytest.mark.parametrize(("deadlines", "hint", "level"), [
    (False, "a longer every, or the deadline scheduler (schedule.deadlines: true)",
     logging.INFO),
    # A tick outlasting the tick is routine under load: not said at INFO every tick.
    (True, "slower than the budget: see alertd_stripe_request_duration_seconds", logging.DEBUG),
], ids=["full-polls", "deadlines"])
async def test_an_hour_long_poll_is_followed_by_the_next_at_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, deadlines: bool, hint: str, level: int,
) -> None:
    # Without the fix the next poll would come an hour after the first; here it comes at once.
    caplog.set_level(logging.DEBUG, logger="alertd.daemon")
    async with scheduled(tmp_path, "1h", latency=0.2, deadlines=deadlines) as (s, jobs):
        await first_poll_overran_by_the_clock(s)
        await eventually(lambda: len(jobs.of("submitted")) >= 2, 30, "the next poll")
        (overrun,) = jobs.overruns()
        assert isinstance(overrun.retval, Overrun)
        assert overrun.retval.slot.job_id == HOUR_JOB and overrun.retval.seconds >= 3600
        (line,) = overrun_lines(caplog)
        assert "every=3600s interval=3600s" in line and hint in line
        assert [r.levelno for r in caplog.records if r.getMessage() == line] == [level]


async def test_a_job_replaced_during_the_poll_keeps_its_own_schedule(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    # A takeover (or a reload) replaces the jobs under the same ids: the overrun of a poll
    # still running is not the new job's, whose next run stays where its trigger put it.
    caplog.set_level(logging.INFO, logger="alertd.daemon")
    async with scheduled(tmp_path, "1h", latency=0.2) as (s, jobs):
        await first_poll_overran_by_the_clock(s)
        s.daemon._reschedule()
        (overrun,) = await eventually(jobs.overruns, 30, "the first poll's end")
        assert s.daemon._scheduler is not None
        replaced = s.daemon._scheduler.get_job(HOUR_JOB)
        assert isinstance(overrun.retval, Overrun)
        assert replaced is not None and replaced.kwargs["slot"] != overrun.retval.slot
        assert replaced.next_run_time > datetime.now(UTC) + timedelta(minutes=30)
        assert not jobs.of("modified") and not overrun_lines(caplog)


@pytest.mark.parametrize("stopping", [True, False], ids=["stop", "reload-pause"])
async def test_pausing_the_polls_wins_over_an_overrun(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, stopping: bool,
) -> None:
    # A stop (SIGTERM sets stop_event, then _shutdown pauses the polls) or a reload's pause:
    # the poll in flight ends within the grace, having overrun, and nothing is restarted.
    caplog.set_level(logging.INFO, logger="alertd.daemon")
    async with scheduled(tmp_path, "1h", latency=0.2) as (s, jobs):
        await first_poll_overran_by_the_clock(s)
        if stopping:
            s.daemon.stop_event.set()
        await s.daemon._pause_polls(10.0, asyncio.Event())
        await eventually(jobs.overruns, 30, "the first poll's end")
        assert s.daemon._scheduler is not None and not s.daemon._scheduler.get_jobs()
        assert len(jobs.of("submitted")) == 1
        assert not jobs.of("modified") and not overrun_lines(caplog)

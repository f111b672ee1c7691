"""Soak: the real daemon against the simulator for ten minutes, with faults, then the figures.

Usage::

    python bench/soak.py [--minutes 10] [--customers 1000] [--speedup 15] [--no-reload]

What runs, each in its own process or server:

* the Stripe simulator (:class:`alertd.sim.testing.SimulatorProcess`): 1,000 customers,
  analytics limited to 100 requests per sliding second and general requests to 25, as Stripe;
* the daemon exactly as systemd starts it, ``python -m alertd run -c CONFIG``, on a copy of the
  example rules (``rules/*.yaml``) whose ``every`` is divided by ``--speedup`` (15m → 1m,
  1h → 4m: two poll groups), metrics on a free loopback port, JSON logs to a file;
* in this process, an SMTP sink (:func:`alertd.sinks.mail_sink`) and a webhook sink that can be
  switched to answer 503 (``soak_sinks.FlakyWebhookSink``). Every alert goes to both: receiver
  ``hooks`` (webhook, signed) and ``ops`` (email), grouped by rule and customer.

Clocks: the daemon runs on real time (``alertd run`` has no clock override, and shifting it
would mean preloading a fake-time library that also distorts the rate limiter's monotonic
clock). So the simulator runs on real time too, with its history ending at the present, and
two things make incidents likely: ``--incident-rate`` (default 4 per customer per 30 days: a
93 % chance per customer and week) and a history length chosen so that today falls in the
first days of the simulator's 7-day incident blocks, where incidents start. Most incidents the
soak sees were already under way when it started (drops and stops last hours to days), which
is what a daemon that has just been installed on a live account faces too.

Why 1 minute and not 20 s: one poll of the 15-minute group is about 2,500 analytics requests
for 1,000 customers, at least 26 s at the 97 requests/s the daemon paces to (100 less its
margin), and the other group adds 1,000 more; at 1 and 4 minutes the budget is about half used
and polls of one group never overlap. Shorter intervals make polls run back to back
(``max_instances=1`` and ``coalesce`` skip the overlapping runs, logged as warnings);
``--speedup 45`` does that on purpose.

Faults (``fault_schedule``): the webhook sink answers 503 from the daemon's start until 30 s
into the soak, so the first poll's notifications (most of a soak's alerts: incidents already
under way) must be retried; then every 2 minutes from 45 s on: 30 s of 503 answers with
probability 0.3; a burst of malformed analytics bodies (HTML, truncated JSON, wrong types,
missing fields; two of each); 20 s of slow answers (40 % delayed 2 s, two delayed 12 s, past
the config's 10 s request timeout); ten flapping requests (every other one 503); then 30 s of
webhook-sink outage (503). Faults stop a minute before the end. Midway, one SIGHUP reload with
a changed annotation (alert state must carry over: no repeat of what was already sent).

Printed, each beside its target:

* **RSS** (``/proc/PID/status`` VmRSS) once every rule has been evaluated and at the end,
  growth ≤ 10 %; peak; open **file descriptors** (``/proc/PID/fd``) at start and end;
* **Stripe traffic** from the simulator's ``/__stats``: requests ÷ elapsed, the most in any
  sliding second per budget (≤ 100 analytics, ≤ 25 general), 429s (target 0);
* the daemon's own ``/metrics`` (parsed by ``prometheus_client``'s parser);
* **incidents** per kind from a day before the soak to its end (``/__incidents``), beside the
  alerts of the rule meant to notice each kind (``soak_report.EXPECTED_RULES``) — a picture of
  what was noticed, not a recall figure (``bench/detection.py`` measures detection);
* **duplicates** (a message accepted twice, target 0) and **lost** notifications and firings
  (``soak_report``; target 0), after a final drain with faults off;
* the stop: SIGTERM, exit code 0 within the unit's ``TimeoutStopSec`` (45 s).
"""

from __future__ import annotations

import argparse
import asyncio
import calendar
import json
import os
import re
import shlex
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families
from soak_report import (
    Logged,
    Queued,
    accepted_ids,
    account,
    alerts_by_rule,
    delivered_pairs,
    incident_rows,
)
from soak_sinks import FlakyWebhookSink, Receipt, flaky_webhook_sink, receipts

from alertd.clock import iso, parse_duration
from alertd.sim.faults import Fault, MalformedBody
from alertd.sim.testing import SimulatorProcess
from alertd.sinks import Delivery, mail_sink
from alertd.store.sqlite import SqliteStore

RULES_DIR = Path(__file__).resolve().parents[1] / "rules"
WEBHOOK_SECRET = "soak-webhook-secret"
CHANNELS = {"hooks": "webhook", "ops": "email"}
TIMEOUT_STOP = 45.0  # systemd/alertd.service TimeoutStopSec
GROUP_WAIT, GROUP_INTERVAL = 5.0, 15.0
SAMPLE_EVERY = 15.0
RSS_GROWTH_TARGET = 0.10
LOOKBACK = 24 * 3600.0  # incidents listed from this long before the soak


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True, slots=True)
class Step:
    """Something the soak does ``at`` seconds after its start."""

    at: float
    what: str
    faults: tuple[Fault, ...] = ()
    clear: bool = False
    outage: bool | None = None
    reload: bool = False


def _cycle(start: float, index: int) -> list[Step]:
    analytics = "/v1/billing/analytics/"
    bodies: tuple[MalformedBody, ...] = ("html", "truncated", "wrong_types", "missing_fields")
    return [
        Step(start, "Stripe answers 503 with probability 0.3 for 30 s",
             (Fault("status", status=503, probability=0.3, seed=index),)),
        Step(start + 30, "faults cleared", clear=True),
        Step(start + 35, "malformed analytics bodies: 2 each of " + ", ".join(bodies),
             tuple(Fault("malformed", body=b, count=2, path=analytics) for b in bodies)),
        Step(start + 50, "slow answers for 20 s: two of 12 s, 40 % of 2 s",
             (Fault("slow", delay=12.0, count=2), Fault("slow", delay=2.0, probability=0.4,
                                                         seed=index))),
        Step(start + 70, "faults cleared", clear=True),
        Step(start + 75, "10 flapping requests (every other one 503)",
             (Fault("flap", count=10),)),
        Step(start + 80, "webhook sink outage (503) for 30 s", outage=True),
        Step(start + 110, "webhook sink back", outage=False),
        Step(start + 115, "faults cleared", clear=True),
    ]


def fault_schedule(seconds: float, reload: bool = True, cycle: float = 120.0) -> list[Step]:
    """The soak's timeline (pure): the webhook sink, down since the daemon started, comes back
    at 30 s; fault cycles from 45 s on, none in the quiet tail (the last minute, or quarter of
    a short run), which ends with everything cleared; the reload midway."""
    quiet_from = seconds - min(60.0, seconds / 4)
    steps = [Step(min(30.0, quiet_from), "webhook sink back (down since the daemon started)",
                  outage=False)]
    start, index = 45.0, 0
    while start < quiet_from:
        steps += [s for s in _cycle(start, index) if s.at < quiet_from]
        start, index = start + cycle, index + 1
    steps.append(Step(quiet_from, "quiet tail: faults cleared, sink up", clear=True,
                      outage=False))
    if reload:
        steps.append(Step(seconds / 2, "SIGHUP: reload with a changed annotation", reload=True))
    return sorted(steps, key=lambda s: s.at)


def incident_days(days: int = 84) -> int:
    """A history length (≥ ``days``) that puts today on day 1 of a 7-day incident block:
    incidents start in the first four days of a block."""
    return days - days % 7 + 1


# --------------------------------------------------------------------------- files


def write_rules(folder: Path, speedup: float, marker: str = "") -> Path:
    """A copy of the example rules with ``every`` divided by ``speedup`` (at least 10 s);
    ``marker`` is appended to every summary annotation (what the reload changes)."""
    folder.mkdir(parents=True, exist_ok=True)
    for source in sorted(RULES_DIR.glob("*.yaml")):
        document = yaml.safe_load(source.read_text())
        for rule in document["rules"]:
            every = parse_duration(str(rule.get("every", "15m")))
            rule["every"] = f"{max(10, round(every / speedup))}s"
            if marker and "summary" in rule.get("annotations", {}):
                rule["annotations"]["summary"] += marker
        (folder / source.name).write_text(yaml.safe_dump(document, sort_keys=False))
    return folder


def write_config(folder: Path, sim_url: str, smtp_port: int, hook_url: str,
                 metrics_port: int) -> Path:
    config = {
        "stripe": {"api_base": sim_url, "api_key": "sk_test_alertd_soak", "timeout": "10s",
                   "freshness_lag": "2m", "general_requests_per_second": 20},
        "state": {"path": str(folder / "alertd.db")},
        "server": {"listen": f"127.0.0.1:{metrics_port}"},
        "rule_files": [str(folder / "rules" / "*.yaml")],
        "customers": {"all": True, "refresh": "5m"},
        "smtp": {"host": "127.0.0.1", "port": smtp_port, "security": "none",
                 "from": "alertd-soak@localhost"},
        "receivers": [
            {"name": "ops", "email": {"to": ["ops@example.com"]}},
            {"name": "hooks", "webhook": {"url": f"{hook_url}/alertd",
                                          "secret": WEBHOOK_SECRET}},
        ],
        "route": {
            "receiver": "ops", "group_by": ["rule", "customer"],
            "group_wait": f"{GROUP_WAIT:g}s", "group_interval": f"{GROUP_INTERVAL:g}s",
            "repeat_interval": "4h",
            "routes": [{"receiver": "hooks", "continue": True}, {"receiver": "ops"}],
        },
        "delivery": {"initial_backoff": "1s", "max_backoff": "10s"},
        "log_format": "json",
        "log_level": "info",
    }
    path = folder / "alertd.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# --------------------------------------------------------------------------- the daemon


@dataclass(frozen=True, slots=True)
class Sample:
    at: float
    rss_kib: int
    fds: int
    cpu_seconds: float


def sample(pid: int) -> Sample:
    """RSS, open descriptors and CPU time of ``pid`` from ``/proc``."""
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return Sample(time.time(), int(match.group(1)) if match else 0,
                  len(os.listdir(f"/proc/{pid}/fd")),
                  (int(fields[11]) + int(fields[12])) / ticks)


class DaemonProcess:
    """``alertd run`` in a child process, its stdout and stderr in ``log``."""

    def __init__(self, command: Sequence[str], log: Path) -> None:
        self.command = list(command)
        self.log = log
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> int:
        env = {k: v for k, v in os.environ.items()
               if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "ALERTD_CONFIG")}
        with self.log.open("wb") as out:
            self.process = await asyncio.create_subprocess_exec(
                *self.command, stdin=asyncio.subprocess.DEVNULL, stdout=out,
                stderr=asyncio.subprocess.STDOUT, env=env)
        return self.process.pid

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def signal(self, signum: int) -> None:
        if self.alive():
            assert self.process is not None
            self.process.send_signal(signum)

    async def stop(self, timeout: float = TIMEOUT_STOP) -> tuple[int | None, float]:
        """SIGTERM, then wait up to ``timeout``: (exit code or None if killed, seconds)."""
        assert self.process is not None
        started = time.monotonic()
        self.signal(signal.SIGTERM)
        try:
            code: int | None = await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
            code = None
        return code, time.monotonic() - started


# --------------------------------------------------------------------------- observing


Metrics = dict[str, list[tuple[dict[str, str], float]]]


def parse_metrics(text: str) -> Metrics:
    """Sample name → (labels, value) rows, through ``prometheus_client``'s own parser."""
    found: Metrics = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found.setdefault(s.name, []).append((dict(s.labels), s.value))
    return found


def total(metrics: Metrics, name: str, **match: str) -> float:
    return sum(v for labels, v in metrics.get(name, [])
               if all(labels.get(k) == want for k, want in match.items()))


_EVENT = re.compile(r"^alert (fired|escalated|resolved) rule=(\S*) customer=(\S*)")
_QUEUED = re.compile(r"^notification queued receiver=(\S+) .* id=(\S+)")
_POLL = re.compile(r"^poll done (rules=\d+)")


@dataclass
class LogSummary:
    events: list[Logged] = field(default_factory=list)
    levels: Counter[str] = field(default_factory=Counter)
    problems: Counter[str] = field(default_factory=Counter)  # warnings and errors, by gist
    unparsed: int = 0
    reloaded: bool = False
    polls: Counter[str] = field(default_factory=Counter)  # "rules=N" → polls done
    poll_failures: int = 0


def read_log(path: Path) -> LogSummary:
    """The daemon's JSON log: alert and queue events, counts by level, the gist of problems."""
    summary = LogSummary()
    for line in path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            summary.unparsed += 1
            continue
        if isinstance(entry, dict):
            _note(summary, entry)
    return summary


def _note(summary: LogSummary, entry: Mapping[str, Any]) -> None:
    message, level = str(entry.get("message", "")), str(entry.get("level", "?"))
    summary.levels[level] += 1
    at = calendar.timegm(time.strptime(str(entry.get("ts")), "%Y-%m-%dT%H:%M:%SZ"))
    if (match := _EVENT.match(message)) is not None:
        summary.events.append(Logged(at, match.group(1), (match.group(2), match.group(3))))
    elif (match := _QUEUED.match(message)) is not None:
        summary.events.append(Logged(at, "queued", (match.group(1), match.group(2))))
    summary.reloaded |= message.startswith("reloaded ")
    if (match := _POLL.match(message)) is not None:
        summary.polls[match.group(1)] += 1
    summary.poll_failures += message.startswith("poll failed")
    if level in ("warning", "error", "critical"):
        gist = re.sub(r"=\S+", "=…", message.split("\n", 1)[0])[:140]
        summary.problems[f"{level}: {gist}"] += 1


# --------------------------------------------------------------------------- the soak


@dataclass
class Run:
    """What the soak collected while it ran."""

    started_at: float = 0.0
    samples: list[Sample] = field(default_factory=list)
    metrics_start: Metrics = field(default_factory=dict)
    metrics_end: Metrics = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    incidents: list[dict[str, Any]] = field(default_factory=list)
    mails: list[tuple[float, Delivery]] = field(default_factory=list)
    drained_in: float | None = None
    stop_code: int | None = None
    stop_seconds: float = 0.0
    outbox: list[Queued] = field(default_factory=list)
    receipts: list[Receipt] = field(default_factory=list)
    timeline: list[str] = field(default_factory=list)


class Soak:
    def __init__(self, options: argparse.Namespace, folder: Path) -> None:
        self.options = options
        self.folder = folder
        self.seconds = options.minutes * 60.0
        self.run = Run()
        self.metrics_url = ""
        self.rule_names: set[str] = set()

    async def __call__(self) -> Run:
        simulator = SimulatorProcess(
            customers=self.options.customers, seed=self.options.seed,
            days=incident_days(), rate=100, general_rate=25, latency=self.options.latency,
            incident_rate=self.options.incident_rate)
        async with (
            simulator as sim,
            mail_sink(lambda d: self.run.mails.append((time.time(), d))) as mail,
            flaky_webhook_sink(WEBHOOK_SECRET) as hooks,
            httpx.AsyncClient(timeout=30.0) as http,
        ):
            hooks.outage = True  # the first poll's notifications meet a failing receiver
            self.say(f"simulator {sim.url}: {self.options.customers} customers; "
                     f"mail 127.0.0.1:{mail.port}; webhooks {hooks.url}")
            daemon = await self.start_daemon(sim.url, mail.port, hooks.url)
            try:
                await self.observe(daemon, http, sim.url, hooks)
            finally:
                self.run.stop_code, self.run.stop_seconds = await daemon.stop()
            self.run.stats = (await http.get(f"{sim.url}/__stats")).json()
            self.run.incidents = await self.incidents(http, sim.url)
            self.run.receipts = receipts(hooks, self.run.mails)
        self.run.outbox = await read_outbox(self.folder / "alertd.db")
        return self.run

    def say(self, line: str) -> None:
        elapsed = time.time() - self.run.started_at if self.run.started_at else 0.0
        text = f"[{elapsed:6.0f}s] {line}"
        self.run.timeline.append(text)
        print(text, flush=True)

    async def start_daemon(self, sim_url: str, smtp_port: int, hook_url: str) -> DaemonProcess:
        write_rules(self.folder / "rules", self.options.speedup)
        self.rule_names = {r["name"] for p in (self.folder / "rules").glob("*.yaml")
                           for r in yaml.safe_load(p.read_text())["rules"]}
        port = free_port()
        self.metrics_url = f"http://127.0.0.1:{port}/metrics"
        config = write_config(self.folder, sim_url, smtp_port, hook_url, port)
        command = [part.replace("{config}", str(config))
                   for part in shlex.split(self.options.daemon)]
        daemon = DaemonProcess(command, self.folder / "alertd.log")
        pid = await daemon.start()
        self.say(f"daemon pid {pid}: {' '.join(command)}")
        return daemon

    async def observe(self, daemon: DaemonProcess, http: httpx.AsyncClient, sim_url: str,
                      hooks: FlakyWebhookSink) -> None:
        waited = await self.first_poll(daemon, http)
        self.run.started_at = time.time()
        self.run.samples.append(sample(daemon.pid))
        self.run.metrics_start = await self.scrape(http)
        self.say(f"every rule evaluated after {waited:.0f}s; soak starts "
                 f"({self.options.minutes:g} min)")
        await self.follow(daemon, http, sim_url, hooks)
        self.run.drained_in = await self.drain(daemon, http)
        self.run.samples.append(sample(daemon.pid))
        self.run.metrics_end = await self.scrape(http)

    async def scrape(self, http: httpx.AsyncClient) -> Metrics:
        response = await http.get(self.metrics_url)
        response.raise_for_status()
        return parse_metrics(response.text)

    async def first_poll(self, daemon: DaemonProcess, http: httpx.AsyncClient) -> float:
        """Seconds until every rule has a last-evaluation timestamp in ``/metrics``."""
        started = time.monotonic()
        while time.monotonic() - started < self.options.startup_timeout:
            if not daemon.alive():
                raise RuntimeError("the daemon exited during startup:\n" + tail(daemon.log))
            try:
                metrics = await self.scrape(http)
            except httpx.HTTPError:
                metrics = {}
            seen = {labels.get("rule") for labels, _ in
                    metrics.get("alertd_rule_last_evaluation_timestamp_seconds", [])}
            if self.rule_names <= seen:
                return time.monotonic() - started
            await asyncio.sleep(1.0)
        raise RuntimeError("not every rule was evaluated in time:\n" + tail(daemon.log))

    async def follow(self, daemon: DaemonProcess, http: httpx.AsyncClient, sim_url: str,
                     hooks: FlakyWebhookSink) -> None:
        """Carry out the timeline, sampling ``/proc`` every :data:`SAMPLE_EVERY` seconds."""
        steps = fault_schedule(self.seconds, reload=not self.options.no_reload)
        next_sample = SAMPLE_EVERY
        while (elapsed := time.time() - self.run.started_at) < self.seconds:
            if not daemon.alive():
                raise RuntimeError("the daemon died during the soak:\n" + tail(daemon.log))
            while steps and steps[0].at <= elapsed:
                await self.act(steps.pop(0), daemon, http, sim_url, hooks)
            if elapsed >= next_sample:
                self.run.samples.append(sample(daemon.pid))
                next_sample += SAMPLE_EVERY
            await asyncio.sleep(0.5)

    async def act(self, step: Step, daemon: DaemonProcess, http: httpx.AsyncClient,
                  sim_url: str, hooks: FlakyWebhookSink) -> None:
        if step.clear:
            (await http.delete(f"{sim_url}/__faults")).raise_for_status()
        if step.faults:
            body = {"faults": [f.to_json() for f in step.faults]}
            (await http.post(f"{sim_url}/__faults", json=body)).raise_for_status()
        if step.outage is not None:
            hooks.outage = step.outage
        if step.reload:
            write_rules(self.folder / "rules", self.options.speedup, marker=" (reloaded)")
            daemon.signal(signal.SIGHUP)
        self.say(step.what)

    async def drain(self, daemon: DaemonProcess, http: httpx.AsyncClient) -> float | None:
        """Wait (faults off) until the outbox is empty and no alert event or queued
        notification is younger than ``group_interval``; seconds taken, None if never."""
        started = time.monotonic()
        while time.monotonic() - started < self.options.drain_timeout:
            pending = total(await self.scrape(http), "alertd_outbox_pending")
            events = [e.at for e in read_log(daemon.log).events]
            quiet = not events or time.time() - max(events) > GROUP_INTERVAL + 2
            if pending == 0 and quiet:
                self.say(f"drained in {time.monotonic() - started:.0f}s")
                return time.monotonic() - started
            await asyncio.sleep(2.0)
        self.say(f"not drained after {self.options.drain_timeout:g}s; stopping anyway")
        return None

    async def incidents(self, http: httpx.AsyncClient, sim_url: str) -> list[dict[str, Any]]:
        since = int(self.run.started_at - LOOKBACK)
        query = {"since": str(since), "until": str(int(time.time()) + 1)}
        response = await http.get(f"{sim_url}/__incidents", params=query)
        response.raise_for_status()
        data: list[dict[str, Any]] = response.json()["data"]
        return data


async def read_outbox(path: Path) -> list[Queued]:
    """Every outbox row the daemon left in its state file (read after it stopped)."""
    async with SqliteStore(path) as store:
        rows = await store.outbox()
    return [
        Queued(r.id, r.receiver, r.status, r.attempts, r.last_error, r.created_at,
               frozenset((a.rule, a.customer.id) for a in r.notification.alerts
                         if a.status == "firing"))
        for r in rows
    ]


def tail(path: Path, lines: int = 25) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


# --------------------------------------------------------------------------- report


def report(run: Run, log: LogSummary, options: argparse.Namespace) -> list[str]:
    return [
        *resources(run.samples),
        *traffic(run.stats, run.samples),
        *daemon_metrics(run.metrics_start, run.metrics_end),
        *alerts_and_incidents(run, log),
        *delivery(run, log),
        *stop(run, log),
    ]


def resources(samples: Sequence[Sample]) -> list[str]:
    first, last = samples[0], samples[-1]
    growth = (last.rss_kib - first.rss_kib) / first.rss_kib
    peak = max(s.rss_kib for s in samples)
    minutes = (last.at - first.at) / 60
    cpu = (last.cpu_seconds - first.cpu_seconds) / max(minutes, 1e-9)
    verdict = "ok" if growth <= RSS_GROWTH_TARGET else "OVER TARGET"
    values = [f"{s.rss_kib / 1024:.0f}" for s in samples]
    rows = [" ".join(values[i:i + 20]) for i in range(0, len(values), 20)]
    third = max(1, len(samples) // 3)
    medians = [statistics.median(s.rss_kib for s in samples[i:i + third]) / 1024
               for i in range(0, third * 3, third)]
    return [
        "",
        "== daemon process",
        f"RSS start {first.rss_kib / 1024:.1f} MiB  end {last.rss_kib / 1024:.1f} MiB  "
        f"growth {growth:+.1%} (target <= +10 %: {verdict})  peak {peak / 1024:.1f} MiB",
        f"RSS every {SAMPLE_EVERY:g}s (MiB):",
        *(f"  {row}" for row in rows),
        "RSS median by third of the soak (the trend without the swing of each poll): "
        + " / ".join(f"{m:.0f}" for m in medians) + " MiB",
        f"open fds start {first.fds}  end {last.fds}  max {max(s.fds for s in samples)}",
        f"CPU {cpu:.1f} s per minute of soak ({minutes:.1f} min measured)",
    ]


def traffic(stats: Mapping[str, Any], samples: Sequence[Sample]) -> list[str]:
    elapsed = float(stats.get("elapsed") or 0.0)
    requests = int(stats.get("requests", 0))
    peaks = stats.get("peak_per_second", {})
    return [
        "",
        "== Stripe traffic (simulator /__stats, whole daemon lifetime)",
        f"requests {requests} in {elapsed:.0f}s = {requests / max(elapsed, 1e-9):.1f}/s  "
        f"by endpoint {json.dumps(stats.get('by_endpoint', {}))}",
        f"most in any sliding second: analytics {peaks.get('analytics', 0)} (budget 100), "
        f"general {peaks.get('general', 0)} (budget 25); 429s {stats.get('rate_limited', 0)} "
        f"(target 0)",
        f"answers by status {json.dumps(stats.get('by_status', {}))} (injected faults "
        f"included); most in flight {stats.get('max_in_flight')}",
    ]


def daemon_metrics(start: Metrics, end: Metrics) -> list[str]:
    by_code: Counter[str] = Counter()
    for labels, v in end.get("alertd_stripe_requests_total", []):
        by_code[labels.get("code", "?")] += int(v)
    outcomes: Counter[str] = Counter()
    for labels, v in end.get("alertd_rule_evaluations_total", []):
        outcomes[labels.get("outcome", "?")] += int(v)
    notes = {f"{labels.get('receiver')}/{labels.get('outcome')}": int(v)
             for labels, v in end.get("alertd_notifications_total", [])}
    alerts = {labels.get("state", "?"): int(v) for labels, v in end.get("alertd_alerts", [])}
    count = total(end, "alertd_stripe_request_duration_seconds_count")
    mean = total(end, "alertd_stripe_request_duration_seconds_sum") / max(count, 1)
    return [
        "",
        "== daemon /metrics at the end (prometheus_client parser)",
        f"alertd_stripe_requests_total by code {dict(sorted(by_code.items()))}; mean duration "
        f"{mean * 1000:.0f} ms; rate limited {total(end, 'alertd_stripe_rate_limited_total'):.0f}",
        f"alertd_rule_evaluations_total by outcome {dict(sorted(outcomes.items()))} "
        f"(+{sum(outcomes.values()) - _evaluations(start):.0f} during the soak)",
        f"alertd_notifications_total {notes}",
        f"alertd_alerts {alerts}; alertd_outbox_pending "
        f"{total(end, 'alertd_outbox_pending'):.0f}",
    ]


def _evaluations(metrics: Metrics) -> float:
    return total(metrics, "alertd_rule_evaluations_total")


def alerts_and_incidents(run: Run, log: LogSummary) -> list[str]:
    arrived = accepted_ids(run.receipts, CHANNELS)
    lines = ["", "== alerts delivered per rule (firing; notifications to both receivers)",
             f"{'rule':<24} {'notifications':>13} {'customers':>9}"]
    for rule, (notes, customers) in alerts_by_rule(run.outbox, arrived).items():
        lines.append(f"{rule:<24} {notes:>13} {customers:>9}")
    events = Counter(e.event for e in log.events)
    lines.append(f"daemon log: {events['fired']} fired, {events['escalated']} escalated, "
                 f"{events['resolved']} resolved, {events['queued']} notifications queued")
    lines += ["", f"== incidents (simulator /__incidents) from {LOOKBACK / 3600:g} h before the "
              "soak to its end, vs alerts",
              f"{'kind':<8} {'ended before':>12} {'under way':>9} {'started':>7}  "
              f"{'watched':>7} {'alerted':>7}  rule meant to notice it"]
    alerted = delivered_pairs(run.outbox, arrived)
    for row in incident_rows(run.incidents, alerted, run.started_at):
        lines.append(f"{row.kind:<8} {row.before:>12} {row.under_way:>9} {row.started:>7}  "
                     f"{row.watched:>7} {row.alerted:>7}  {row.expected}")
    lines += [
        "(started: during the soak; watched: on a meter the rule reads; alerted: the rule",
        " alerted that customer while the daemon ran. Not a recall figure: a day's quota resets",
        " at midnight, anomaly and absence judge complete hours only, an incident that ended",
        " yesterday is in no current window; bench/detection.py measures detection.)",
    ]
    return lines


def delivery(run: Run, log: LogSummary) -> list[str]:
    rows = run.receipts
    result = account(run.outbox, rows, log.events, CHANNELS)
    statuses = Counter(q.status for q in run.outbox)
    refused = sum(not r.accepted for r in rows)
    lines = [
        "",
        "== delivery",
        f"outbox rows {len(run.outbox)} by status {dict(sorted(statuses.items()))}",
        f"sinks: {sum(r.accepted and r.channel == 'webhook' for r in rows)} webhooks and "
        f"{sum(r.channel == 'email' for r in rows)} emails accepted, {refused} webhook "
        f"attempts refused during outages, {result.retried} of those accepted on a retry",
        f"final drain: {_seconds(run.drained_in)}",
        f"duplicates {sum(result.duplicates.values())} (target 0)",
        f"lost {len(result.lost)} (target 0)",
    ]
    lines += [f"  duplicate: {m} x{n + 1}" for m, n in list(result.duplicates.items())[:10]]
    lines += [f"  lost: {item}" for item in result.lost[:20]]
    if len(result.lost) > 20:
        lines.append(f"  … and {len(result.lost) - 20} more")
    return lines


def _seconds(value: float | None) -> str:
    return "timed out" if value is None else f"{value:.0f}s"


def stop(run: Run, log: LogSummary) -> list[str]:
    code = "killed" if run.stop_code is None else str(run.stop_code)
    ok = run.stop_code == 0 and run.stop_seconds <= TIMEOUT_STOP
    lines = [
        "",
        "== stop and log",
        f"SIGTERM: exit {code} after {run.stop_seconds:.1f}s (target 0 within "
        f"{TIMEOUT_STOP:g}s: {'ok' if ok else 'FAILED'}); reload "
        f"{'logged' if log.reloaded else 'NOT logged'}",
        f"polls done {dict(sorted(log.polls.items()))}; polls failed {log.poll_failures}",
        f"log lines by level {dict(sorted(log.levels.items()))}; not JSON {log.unparsed}",
    ]
    lines += [f"  {n:>5} x {gist}" for gist, n in log.problems.most_common(12)]
    return lines


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--incident-rate", type=float, default=4.0,
                        help="incidents per customer per 30 days")
    parser.add_argument("--speedup", type=float, default=15.0,
                        help="divide each rule's every by this (15m -> 60s, 1h -> 240s)")
    parser.add_argument("--latency", type=float, default=0.0,
                        help="seconds the simulator adds to every answer")
    parser.add_argument("--no-reload", action="store_true", help="skip the SIGHUP midway")
    parser.add_argument("--startup-timeout", type=float, default=300.0)
    parser.add_argument("--drain-timeout", type=float, default=120.0)
    parser.add_argument("--daemon", default=f"{sys.executable} -m alertd run -c {{config}}",
                        help="the daemon's command line; {config} is replaced")
    parser.add_argument("--keep", metavar="DIR", help="keep config, rules, log and state here")
    return parser.parse_args(argv)


async def main_async(options: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="alertd-soak-") as temporary:
        folder = Path(options.keep or temporary)
        folder.mkdir(parents=True, exist_ok=True)
        soak = Soak(options, folder)
        run = await soak()
        log = read_log(folder / "alertd.log")
        print(f"\nalertd soak: {options.minutes:g} min from {iso(int(run.started_at))}, "
              f"{options.customers} customers, rules every "
              f"{', '.join(sorted(_intervals(folder)))}")
        for line in report(run, log, options):
            print(line)
    return 0


def _intervals(folder: Path) -> set[str]:
    return {str(r["every"]) for p in (folder / "rules").glob("*.yaml")
            for r in yaml.safe_load(p.read_text())["rules"]}


def main(argv: Sequence[str] | None = None) -> int:
    return asyncio.run(main_async(parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())

"""``alertd backtest``: when each rule would have fired, and what would have been sent.

The shell around the pure core in :mod:`alertd.backtest`: load the configuration, list each
rule's customers, plan one hourly history per (rule, customer) and fetch each planned request
once, replay, run the transitions through the notification stages, and print a table or the
contract's JSON (``{"since", "until", "requests", "firings": [...], "notifications": [...]}``,
plus, only when there are any, ``"errors"``: the (rule, customer) pairs that could not be
replayed, whose firings are therefore missing).
A progress bar is drawn on stderr only when stderr is a terminal, so pipes and files see
nothing but the result. Silences come from the state file when there is one (it is only
read, through the same opening as ``check --dry-run``: no lock, nothing written); grouping and
dedup start empty at the warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from alertd.backtest import (
    Firing,
    NoProgress,
    NotificationReplay,
    Progress,
    ReplayFailure,
    ReplayWindow,
    SentNotification,
    history_needs,
    replay_all,
    select_rules,
    within_data,
)
from alertd.clock import Clock, SystemClock, iso, parse_instant
from alertd.commands.output import (
    bound,
    bounds_json,
    dumps,
    number,
    series_label,
    table,
    window_json,
)
from alertd.errors import EXIT_OK, ConfigError, SourceError
from alertd.logs import configure
from alertd.model import DataNeed, UsageQuery, UsageResult, UsageRow
from alertd.notify.routing import RouteTree
from alertd.planner import RequestPlan, extract_rows, plan
from alertd.service.engine import Engine
from alertd.service.open import Collaborators, Services, open_services
from alertd.service.world import World, load_world
from alertd.silences import Silence

if TYPE_CHECKING:
    from alertd.source import Source

FIRING_COLUMNS = ("AT (UTC)", "RULE", "CUSTOMER", "SERIES", "LEVEL", "VALUE", "BOUND")
NOTIFICATION_COLUMNS = ("AT (UTC)", "RECEIVER", "STATUS", "ALERTS", "WHY")


def main(args: argparse.Namespace) -> int:
    world = load_world(args.config)
    configure(world.settings.log_level, world.settings.log_format)
    return asyncio.run(run_command(world, args))


async def run_command(
    world: World,
    args: argparse.Namespace,
    *,
    clock: Clock | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Runs one backtest and prints it; a :class:`~alertd.errors.SourceError` propagates
    (exit 3 in the CLI), bad times are a :class:`ConfigError` (exit 2)."""
    clock = clock or SystemClock()
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    window = replay_window(args.since, args.until, clock.now(),
                           world.settings.stripe.freshness_lag)
    progress: Progress = ProgressBar(stderr) if stderr.isatty() else NoProgress()
    # The state is opened as 'check --dry-run' opens it, only to read the silences: no lock (a
    # running daemon keeps its own), nothing recorded, no file created where there is none.
    async with open_services(world, Collaborators(clock), state=state_to_read(world),
                             deliver=False) as services:
        silences = await stored_silences(services)
        result = await run_backtest(services.engine, window, rule_names=args.rule,
                                    customer_ids=args.customer, progress=progress,
                                    silences=silences)
        requests = services.stripe.http.requests
    if args.format == "json":
        print(dumps(backtest_json(result, requests)), file=stdout)
    else:
        print(backtest_text(result, requests), file=stdout)
    return EXIT_OK


def state_to_read(world: World) -> Path | None:
    """The state a backtest reads its silences from (``None``: no state file yet)."""
    path = world.settings.state_path()
    return path if world.settings.state.url is not None or path.exists() else None


async def stored_silences(services: Services) -> list[Silence]:
    """Every silence in the state, expired ones included (each applies over its own time
    range); none without a state."""
    if services.pipeline is None:
        return []
    return await services.pipeline.store.silences(0, include_expired=True)


# --------------------------------------------------------------------------- the run


@dataclass(frozen=True, slots=True)
class Histories:
    """The fetched history of every (rule name, customer id), and what fetching cost."""

    rows: Mapping[tuple[str, str], tuple[UsageRow, ...]]
    queries: int
    requests: int
    #: The oldest freshness the source reported (``None``: none reported one).
    refreshed_at: int | None = None


@dataclass(frozen=True, slots=True)
class BacktestResult:
    """What a backtest found: firings and notifications in time order, and what it cost."""

    window: ReplayWindow
    firings: tuple[Firing, ...]
    notifications: tuple[SentNotification, ...]
    rules: tuple[str, ...]
    customers: int
    queries: int
    requests: int
    #: (rule, customer) pairs whose replay raised; their firings are missing from the above.
    failures: tuple[ReplayFailure, ...] = ()


async def run_backtest(
    engine: Engine,
    window: ReplayWindow,
    *,
    rule_names: Iterable[str] | None = None,
    customer_ids: Iterable[str] | None = None,
    progress: Progress | None = None,
    silences: Sequence[Silence] = (),
) -> BacktestResult:
    """The whole backtest: each rule's customers from the engine's directory, every history
    fetched once through its source, then replay and the notification stages."""
    rules = select_rules(engine.rules.rules, rule_names)
    only = set(customer_ids) if customer_ids else None
    by_rule = await engine.customers_by_rule(rules, only)
    # Money rules are replayed with today's prices and credit (Stripe keeps no history of a
    # balance summary), their periods moved to each instant's (billing.period_at).
    by_rule = await engine.with_billing(rules, dict(by_rule), window.until)
    needs = {
        (rule.name, customer.id): history_needs(rule, customer, window)
        for rule in rules
        for customer in by_rule[rule.name]
    }
    histories = await fetch_histories(engine.source, needs, progress)
    window = within_data(window, histories.refreshed_at)
    replayed = replay_all(rules, by_rule, histories.rows, window, progress)
    customers = {customer.id: customer for group in by_rule.values() for customer in group}
    notifier = NotificationReplay(RouteTree.from_settings(engine.settings),
                                  engine.settings.receivers, silences)
    sent = notifier.run(replayed.changes, {rule.name: rule for rule in rules}, customers,
                        window.until)
    return BacktestResult(
        window=window,
        firings=replayed.firings,
        notifications=tuple(n for n in sent if n.at >= window.since),
        rules=tuple(rule.name for rule in rules),
        customers=len(customers),
        queries=histories.queries,
        requests=histories.requests,
        failures=replayed.failures,
    )


async def fetch_histories(
    source: Source,
    needs: Mapping[tuple[str, str], Sequence[DataNeed]],
    progress: Progress | None = None,
) -> Histories:
    """Each planned request sent once; the first :class:`SourceError` fails the backtest
    (a history with holes would report false silences), cancelling the rest. A pair's rows
    are those of all its needs (each row names its meter)."""
    progress = progress or NoProgress()
    the_plan = plan(need for group in needs.values() for need in group)
    progress.start("fetching", len(the_plan.queries))
    results = await _fetch_each(source, the_plan.queries, progress.advance)
    progress.finish()
    return Histories(
        rows={key: tuple(row for need in group for row in _rows_of(the_plan, results, need))
              for key, group in needs.items()},
        queries=len(the_plan.queries),
        requests=sum(result.requests for result in results),
        refreshed_at=min((r.refreshed_at for r in results if r.refreshed_at is not None),
                         default=None),
    )


def _rows_of(the_plan: RequestPlan, results: Sequence[UsageResult], need: DataNeed
             ) -> Sequence[UsageRow]:
    _, spec = the_plan.serving(need)
    return extract_rows(need, spec, results[the_plan.query_index(need)].rows)


async def _fetch_each(
    source: Source, queries: Sequence[UsageQuery], done: Callable[[], None]
) -> list[UsageResult]:
    async def one(query: UsageQuery) -> UsageResult:
        result = await source.fetch(query)
        done()
        return result

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(query)) for query in queries]
    except ExceptionGroup as failed:
        raise _first_failure(failed) from None
    return [task.result() for task in tasks]


def _first_failure(group: BaseExceptionGroup[Exception]) -> Exception:
    """The first :class:`SourceError` of a failed fetch (else the first error)."""
    leaves: list[Exception] = []
    pending: list[BaseException] = [group]
    while pending:
        error = pending.pop(0)
        if isinstance(error, BaseExceptionGroup):
            pending.extend(error.exceptions)
        elif isinstance(error, Exception):
            leaves.append(error)
    return next((e for e in leaves if isinstance(e, SourceError)), leaves[0])


def replay_window(since: str, until: str | None, now: float, freshness_lag: float
                  ) -> ReplayWindow:
    """``--since``/``--until`` (ISO 8601 or relative, ``until`` default now and never later
    than now: there is no history after it) as a :class:`ReplayWindow`."""
    start = parse_instant(since, now, option="--since")
    end = int(now) if until is None else min(parse_instant(until, now, option="--until"),
                                             int(now))
    if end <= start:
        raise ConfigError(f"backtest: --since {iso(start)} must be before --until {iso(end)}")
    return ReplayWindow(start, end, freshness_lag)


# --------------------------------------------------------------------------- output


def firing_json(firing: Firing) -> dict[str, Any]:
    """One firing in the contract's ``backtest`` shape (``window`` as in findings)."""
    finding = firing.finding
    entry: dict[str, Any] = {
        "at": iso(firing.at),
        "rule": finding.rule,
        "customer": finding.customer,
        "meter": finding.meter,
        "dimensions": dict(finding.dimensions),
        "kind": firing.kind,
        "level": finding.level,
        "previous_level": firing.previous_level,
        "value": finding.value,
    }
    entry.update(bounds_json(finding))
    entry.update(window=window_json(finding), complete=finding.complete,
                 message=finding.message)
    return entry


def notification_json(sent: SentNotification) -> dict[str, Any]:
    """One notification that would have been sent, in the ``check`` shape plus when."""
    notification = sent.notification
    return {
        "at": iso(sent.at),
        "receiver": notification.receiver,
        "status": notification.status,
        "fingerprints": [alert.fingerprint for alert in notification.alerts],
        "group_key": notification.group_key,
        "reason": sent.reason,
    }


def backtest_json(result: BacktestResult, requests: int) -> dict[str, Any]:
    """The contract's ``backtest --format json`` document. ``requests`` counts every HTTP
    request of the run (customers, usage, retries)."""
    document: dict[str, Any] = {
        "since": iso(result.window.since),
        "until": iso(result.window.until),
        "requests": requests,
        "firings": [firing_json(f) for f in result.firings],
        "notifications": [notification_json(n) for n in result.notifications],
    }
    if result.failures:  # only then, so a clean run keeps the contract's keys exactly
        document["errors"] = [{"rule": f.rule, "customer": f.customer, "message": f.message}
                              for f in result.failures]
    return document


def firing_row(firing: Firing) -> tuple[str, ...]:
    finding = firing.finding
    level = finding.level or "-"
    if firing.kind == "escalated":
        level = f"{firing.previous_level or '-'} → {level}"
    return (_when(firing.at), finding.rule, finding.customer, series_label(finding), level,
            number(finding.value), bound(finding))


def notification_row(sent: SentNotification) -> tuple[str, ...]:
    notification = sent.notification
    return (_when(sent.at), notification.receiver, notification.status,
            str(len(notification.alerts)), sent.reason)


def _when(instant: int) -> str:
    return (iso(instant) or "").replace("T", " ").removesuffix("Z")


def backtest_text(result: BacktestResult, requests: int) -> str:
    """Firings in time order, then the notifications they would have caused, then one
    summary line."""
    lines = []
    if result.firings:
        lines += [table(FIRING_COLUMNS, (firing_row(f) for f in result.firings)), ""]
    if result.notifications:
        lines += [table(NOTIFICATION_COLUMNS, map(notification_row, result.notifications)), ""]
    lines += [f"not replayed: rule={f.rule} customer={f.customer}: {f.message} "
              "(its firings are missing above)" for f in result.failures]
    lines.append(_summary(result, requests))
    return "\n".join(lines)


def _summary(result: BacktestResult, requests: int) -> str:
    kinds = Counter(f.kind for f in result.firings)
    what = _count(result.firings, "firing")
    if kinds["escalated"]:
        what += f" ({kinds['fired']} fired, {kinds['escalated']} escalated)"
    return (f"{what} and {_count(result.notifications, 'notification')} from "
            f"{iso(result.window.since)} to {iso(result.window.until)}; "
            f"{_count(result.rules, 'rule')}, {_count(range(result.customers), 'customer')}; "
            f"{result.queries} history quer{'ies' if result.queries != 1 else 'y'}, "
            f"{requests} Stripe requests")


def _count(items: Sized, noun: str) -> str:
    return f"{len(items)} {noun}{'s' if len(items) != 1 else ''}"


# --------------------------------------------------------------------------- progress


class ProgressBar:
    """``fetching   [##########----------]  50%  500/1000`` redrawn in place on ``stream``
    (a terminal), at most once per percent, so a long run writes a few hundred bytes."""

    def __init__(self, stream: TextIO, width: int = 30) -> None:
        self.stream = stream
        self.width = width
        self.phase = ""
        self.total = 0
        self.done = 0
        self._shown = -1

    def start(self, phase: str, total: int) -> None:
        self.phase, self.total, self.done, self._shown = phase, total, 0, -1
        self._draw()

    def advance(self, done: int = 1) -> None:
        self.done += done
        self._draw()

    def finish(self) -> None:
        self.done = self.total
        self._draw()
        self.stream.write("\n")
        self.stream.flush()

    def _draw(self) -> None:
        percent = 100 if self.total <= 0 else min(100, self.done * 100 // self.total)
        if percent == self._shown:
            return
        self._shown = percent
        filled = self.width * percent // 100
        bar = "#" * filled + "-" * (self.width - filled)
        self.stream.write(f"\r{self.phase:<10} [{bar}] {percent:3d}%  {self.done}/{self.total}")
        self.stream.flush()

"""``alertd backtest``: when each rule would have fired, and what would have been sent.

The shell around the pure core in :mod:`alertd.backtest`: load the configuration, list each
rule's customers, plan one hourly history per (rule, customer) and fetch each planned request
once, replay, run the transitions through the notification stages, and print a table or the
contract's JSON (``{"since", "until", "requests", "firings": [...], "notifications": [...]}``,
plus, only when there are any, ``"errors"``: the (rule, customer) pairs that could not be
replayed, whose firings are therefore missing).
With ``accounts:`` every account is replayed (``--account NAME``: that one), each through its
own Stripe client and rules, and each firing, notification and error names its ``account``
(the keys appear only with ``accounts:``, so a one-key document is the first release's).
What a backtest found and how it is printed live in :mod:`alertd.commands.backtest_report`.
A progress bar is drawn on stderr only when stderr is a terminal, so pipes and files see
nothing but the result. Silences come from the state file when there is one (it is only
read, through the same opening as ``check --dry-run``: no lock, nothing written); grouping and
dedup start empty at the warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from alertd.backtest import (
    NoProgress,
    NotificationReplay,
    Progress,
    Replayed,
    ReplayWindow,
    history_needs,
    replay_all,
    select_rules,
    within_data,
)
from alertd.clock import Clock, SystemClock, iso, parse_instant
from alertd.commands.backtest_report import (
    BacktestResult,
    ProgressBar,
    backtest_json,
    backtest_text,
    merged_results,
)
from alertd.commands.output import dumps
from alertd.errors import EXIT_OK, ConfigError, SourceError
from alertd.logs import configure
from alertd.model import Customer, DataNeed, UsageQuery, UsageResult, UsageRow
from alertd.notify.routing import RouteTree
from alertd.planner import RequestPlan, extract_rows, plan
from alertd.rules.schema import Rule
from alertd.service.engine import Engine
from alertd.service.open import Collaborators, Services, open_services
from alertd.service.world import World, load_world
from alertd.silences import Silence

if TYPE_CHECKING:
    from alertd.source import Source

__all__ = ["BacktestResult", "ProgressBar", "backtest_json", "backtest_text", "main",
           "replay_window", "run_backtests", "run_command"]



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
    """Runs one backtest of every account (or of ``--account``) and prints it; a
    :class:`~alertd.errors.SourceError` propagates (exit 3 in the CLI), bad times and an
    unknown account are a :class:`ConfigError` (exit 2)."""
    clock = clock or SystemClock()
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    window = replay_window(args.since, args.until, clock.now(),
                           world.settings.stripe.freshness_lag)
    chosen = chosen_accounts(world, getattr(args, "account", None))
    progress: Progress = ProgressBar(stderr) if stderr.isatty() else NoProgress()
    # The state is opened as 'check --dry-run' opens it, only to read the silences: no lock (a
    # running daemon keeps its own), nothing recorded, no file created where there is none.
    async with open_services(world, Collaborators(clock), state=state_to_read(world),
                             deliver=False) as services:
        silences = await stored_silences(services)
        lanes = [lane for lane in services.lanes if lane.account.name in chosen]
        result = await run_backtests([lane.engine for lane in lanes], window,
                                     rule_names=args.rule, customer_ids=args.customer,
                                     progress=progress, silences=silences)
        requests = sum(lane.stripe.http.requests for lane in services.lanes)
    if args.format == "json":
        print(dumps(backtest_json(result, requests)), file=stdout)
    else:
        print(backtest_text(result, requests), file=stdout)
    return EXIT_OK


def chosen_accounts(world: World, account: str | None) -> list[str]:
    """The accounts a backtest replays: every account, or the one ``--account`` names
    (:class:`ConfigError` when the configuration has no such account)."""
    names = [entry.name for entry in world.settings.accounts]
    if account is None:
        return names or [""]
    if account not in names:
        configured = ", ".join(names) if names else "none: the config has no accounts: list"
        raise ConfigError(f"backtest: --account {account}: no such account (configured "
                          f"accounts: {configured})")
    return [account]


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
class Prepared:
    """One account's backtest before replay: its engine, rules, each rule's customers (by
    rule name) and their fetched histories."""

    engine: Engine
    rules: tuple[Rule, ...]
    by_rule: Mapping[str, Sequence[Customer]]
    histories: Histories


async def run_backtests(
    engines: Sequence[Engine],
    window: ReplayWindow,
    *,
    rule_names: Iterable[str] | None = None,
    customer_ids: Iterable[str] | None = None,
    progress: Progress | None = None,
    silences: Sequence[Silence] = (),
) -> BacktestResult:
    """The backtest of one or several accounts (one engine each, :mod:`alertd.accounts`) as
    one: each rule's customers from the account's directory, every history fetched once
    through its source (every account's first), the window ended where the oldest data ends,
    then each account replayed and notified on its own (a group never spans accounts, as in
    the daemon) with the same silences, and the results merged in time order. An unknown
    ``rule_names`` entry is a :class:`ConfigError`; an account none of them watches is
    skipped."""
    wanted = None if rule_names is None else list(rule_names)
    if engines and wanted is not None:
        select_rules([r for e in engines for r in e.rules.rules], wanted)
    prepared = []
    for engine in engines:
        names = None if wanted is None else [n for n in wanted if n in engine.rules.names()]
        if names is None or names:
            prepared.append(await prepare(engine, window, names, customer_ids, progress))
    refreshed = [p.histories.refreshed_at for p in prepared
                 if p.histories.refreshed_at is not None]
    window = within_data(window, min(refreshed, default=None))
    return merged_results(
        [replay_prepared(p, window, silences, progress) for p in prepared], window)


async def prepare(
    engine: Engine, window: ReplayWindow, rule_names: Iterable[str] | None,
    customer_ids: Iterable[str] | None, progress: Progress | None,
) -> Prepared:
    """One account's rules, their customers and every history, fetched once."""
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
    return Prepared(engine, tuple(rules), by_rule, histories)


def replay_prepared(prepared: Prepared, window: ReplayWindow, silences: Sequence[Silence],
                    progress: Progress | None) -> BacktestResult:
    """One account replayed over ``window`` and through the notification stages (pure
    apart from ``progress``)."""
    replayed = replay_all(prepared.rules, prepared.by_rule, prepared.histories.rows, window,
                          progress, account=prepared.engine.account)
    return report_of(prepared, replayed, window, silences)


def report_of(prepared: Prepared, replayed: Replayed, window: ReplayWindow,
              silences: Sequence[Silence] = ()) -> BacktestResult:
    """The report on ``replayed`` (``prepared``'s replay over ``window``): its changes sent
    through the notification stages, as :func:`replay_prepared` reports."""
    engine, rules = prepared.engine, prepared.rules
    customers = {c.id: c for group in prepared.by_rule.values() for c in group}
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
        queries=prepared.histories.queries,
        requests=prepared.histories.requests,
        failures=replayed.failures,
        accounts=(engine.account,) if engine.account else (),
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

"""``alertd check`` and ``alertd --dry-run``: one evaluation pass, now or as of ``--at``.

Without ``--dry-run`` the pass is recorded like a daemon poll: alert states and the
notifications they cause are committed together, then delivered for at most
``delivery_timeout``; what is still undelivered stays in the outbox for the daemon and is
listed. With ``--dry-run`` the stored state is only read, and every finding and every
notification that would be sent (after grouping, dedup and silences) is printed; nothing is
sent or written.
"""

from __future__ import annotations

import argparse
import asyncio
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from alertd.alerts import SOURCE_FAILURE, STALE_DATA
from alertd.clock import SystemClock, iso, parse_instant
from alertd.commands.output import FINDING_COLUMNS, dumps, finding_json, finding_row, table
from alertd.errors import EXIT_OK, EXIT_SOURCE, ConfigError
from alertd.logs import configure
from alertd.model import Finding, Meter
from alertd.notify.stages import Decision
from alertd.rules.loader import select_rules
from alertd.service.engine import PassResult
from alertd.service.open import Collaborators, Lane, Services, open_services
from alertd.service.recording import PassOutcome, meta_findings, record_pass
from alertd.service.world import World, load_world
from alertd.store.base import Attempt, OutboxRow

META_RULES = frozenset({STALE_DATA, SOURCE_FAILURE})
#: Up to this many findings the text output lists inactive ones too.
FULL_LISTING = 50


def main(args: argparse.Namespace) -> int:
    world = load_world(args.config)
    configure(world.settings.log_level, world.settings.log_format)
    return asyncio.run(run_check(world, args))


async def run_check(world: World, args: argparse.Namespace) -> int:
    clock = SystemClock()
    # ``alertd --dry-run`` has only the top-level options: default the rest.
    at, rules, customers = (getattr(args, n, None) for n in ("at", "rule", "customer"))
    output = getattr(args, "format", "text")
    now = parse_instant(at, clock.now(), option="--at") if at else int(clock.now())
    dry_run = bool(getattr(args, "dry_run", False))
    if at and not dry_run:
        raise ConfigError("--at evaluates the past: use it with --dry-run (recording it would "
                          "mix past alert states into the live ones)")
    path = world.settings.state_path()
    # A dry run with no state file yet evaluates against an empty in-memory store, so it
    # creates nothing on disk; it takes no lock and delivers nothing.
    fresh = dry_run and not path.exists() and world.settings.state.url is None
    state = ":memory:" if fresh else path
    async with open_services(
        world, Collaborators(clock), state=state, deliver=not dry_run,
        lock_holder=None if dry_run else "'alertd check' without --dry-run",
    ) as services:
        result, outcome = await check_accounts(services, now, rules, customers,
                                               dry_run=dry_run)
        requests = sum(lane.stripe.http.requests for lane in services.lanes)
    if output == "json":
        print(dumps(check_json(result, outcome, requests, rules)))
    else:
        print(check_text(result, outcome, requests, dry_run=dry_run, rules=rules))
    return EXIT_SOURCE if result.failures else EXIT_OK


async def check_accounts(
    services: Services, now: int, rules: Sequence[str] | None,
    customers: Sequence[str] | None, *, dry_run: bool,
) -> tuple[PassResult, PassOutcome]:
    """One pass of every watched account (:mod:`alertd.accounts`), each recorded by its own
    pipeline, then delivered together; the findings and notifications of them all."""
    select_rules(services.world.rules.rules, rules)  # an unknown --rule is a usage error
    results, outcomes = [], []
    for lane in services.lanes:
        names = None if rules is None else [r for r in rules if r in lane.world.rules.names()]
        if names is not None and not names:
            continue
        result = await lane.engine.run_pass(now, rule_names=names, customer_ids=customers)
        results.append(result)
        outcomes.append(await record(lane, result, await lane.stripe.directory.meters(),
                                     dry_run=dry_run))
    outcome = PassOutcome(tuple(f for o in outcomes for f in o.findings),
                          tuple(d for o in outcomes for d in o.decisions))
    return merged(results, now), await deliver(services, outcome)


def merged(results: Sequence[PassResult], now: int) -> PassResult:
    """The passes of several accounts as one (pure; the one pass itself for one account)."""
    if len(results) == 1:
        return results[0]
    refreshed = [r.refreshed_at for r in results if r.refreshed_at is not None]
    return PassResult(
        now=now, findings=tuple(f for r in results for f in r.findings),
        requests=sum(r.requests for r in results),
        refreshed_at=min(refreshed) if refreshed else None,
        customers={k: c for r in results for k, c in r.customers.items()},
        series={k: v for r in results for k, v in r.series.items()},
        failures=tuple(e for r in results for e in r.failures),
        queries=sum(r.queries for r in results))


async def record(
    lane: Lane, result: PassResult, meters: Mapping[str, Meter], *, dry_run: bool,
) -> PassOutcome:
    """Run one account's findings through its pipeline (committed unless ``dry_run``)."""
    # Only the stale-data check makes sense for one pass: the source-failure alert counts
    # failed polls in a row, which only the daemon sees (a pass of its own would resolve it).
    extra = [f for f in meta_findings(result, lane.world.settings, 0) if f.rule == STALE_DATA]
    return await record_pass(lane.recorder, lane.world.rules, result, meters, extra=extra,
                             dry_run=dry_run, immediate=True)


async def deliver(services: Services, outcome: PassOutcome) -> PassOutcome:
    """Deliver what the passes queued, for at most ``delivery_timeout`` (not in a dry run);
    what is left is listed."""
    world = services.world
    if services.outbox is None:
        return outcome
    report = await services.outbox.run_until_idle(world.settings.delivery.delivery_timeout)
    timeout = world.settings.delivery.delivery_timeout
    undelivered = tuple(_gave_up(row, attempt) for row, attempt in report.gave_up) + tuple(
        f"kept in the outbox for the daemon: {row.receiver} {row.id}: "
        + (f"last attempt failed: {row.last_error}" if row.last_error else
           f"not delivered within delivery_timeout {timeout:g}s")
        for row in report.pending)
    return replace(outcome, undelivered=undelivered)


def _gave_up(row: OutboxRow, attempt: Attempt) -> str:
    """A row that ended undelivered in this run: never "kept", it will not be retried."""
    what = ("undeliverable (permanent, not retried)" if attempt.status == "undeliverable"
            else "failed (retries exhausted)")
    return f"{what}: {row.receiver} {row.id}: {attempt.error or attempt.status}"


def shown_findings(outcome: PassOutcome) -> list[Finding]:
    """Every evaluated series, and the meta alerts (stale data, source failure) only when
    they are not quietly inactive."""
    return [f for f in outcome.findings
            if not (f.rule in META_RULES and f.state == "inactive")]


def check_json(result: PassResult, outcome: PassOutcome, requests: int,
               rules: Sequence[str] | None = None) -> dict[str, Any]:
    """The contract's ``check --format json`` document."""
    return {
        "evaluated_at": iso(result.now),
        "refreshed_at": iso(result.refreshed_at),
        "requests": requests,
        "findings": [finding_json(f) for f in shown_findings(outcome)],
        "notifications": [d.to_json() for d in _selected(outcome.decisions, rules)],
    }


def check_text(
    result: PassResult, outcome: PassOutcome, requests: int, *, dry_run: bool,
    rules: Sequence[str] | None = None,
) -> str:
    findings = shown_findings(outcome)
    shown = findings if len(findings) <= FULL_LISTING else [
        f for f in findings if f.state != "inactive"
    ]
    lines = [table(FINDING_COLUMNS, (finding_row(f) for f in _ordered(shown)))]
    if len(shown) < len(findings):
        lines.append(f"({len(findings) - len(shown)} inactive series not listed; "
                     "--format json lists every one)")
    lines.append("")
    lines.append(_summary(result, findings, requests))
    lines.extend(_problems(findings))
    lines.append("")
    lines.append(_notifications_text(_selected(outcome.decisions, rules), dry_run=dry_run))
    lines.extend(outcome.undelivered)
    return "\n".join(lines)


_STATE_ORDER = {"firing": 0, "pending": 1, "resolved": 2, "error": 3, "nodata": 4, "inactive": 5}


def _ordered(findings: Sequence[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: (_STATE_ORDER.get(f.state, 9), f.rule, f.customer))


def _summary(result: PassResult, findings: Sequence[Finding], requests: int) -> str:
    counts: Counter[str] = Counter(f.state for f in findings)
    states = ", ".join(f"{counts[s]} {s}" for s in _STATE_ORDER if counts[s])
    refreshed = iso(result.refreshed_at) or "unknown"
    return (f"evaluated {len(findings)} series at {iso(result.now)} ({states or 'none'}); "
            f"data refreshed {refreshed}; {requests} Stripe requests")


def _problems(findings: Sequence[Finding]) -> list[str]:
    return [f"{f.state}: {f.rule} customer={f.customer}: {f.message}"
            for f in findings if f.state in ("error", "nodata")][:20]


def _selected(decisions: Sequence[Decision], rules: Sequence[str] | None) -> list[Decision]:
    """With ``--rule``, the notifications about those rules only (the others' pending groups
    and alertd's own alerts are not what was asked about)."""
    if not rules:
        return list(decisions)
    return [d for d in decisions if set(d.rules) & set(rules)]


def _shown_names(names: Sequence[str], noun: str) -> str:
    if len(names) == 1:
        return names[0] or "(all)"
    return f"{len(names)} {noun}" if names else "-"


def _notifications_text(decisions: Sequence[Decision], *, dry_run: bool) -> str:
    if not decisions:
        return "no notifications" + (" would be sent" if dry_run else "")
    verb = "would send" if dry_run else "send"
    rows = []
    for decision in decisions:
        what = verb if decision.suppressed_by is None else f"suppressed ({decision.suppressed_by})"
        rows.append((decision.receiver, _shown_names(decision.rules, "rules"),
                     _shown_names(decision.customers, "customers"), decision.status,
                     str(len(decision.fingerprints)), what, decision.reason))
    return table(("RECEIVER", "RULE", "CUSTOMER", "STATUS", "ALERTS", "OUTCOME", "WHY"), rows)


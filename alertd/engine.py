"""One evaluation pass: customers → needs → plan → fetch → series → findings.

This is the imperative shell around the pure core, shared by ``check``, ``--dry-run``,
``backtest`` and the daemon. It asks the directory which customers each rule covers, asks each
evaluator what data it needs, lets the planner fold all needs into the fewest requests, fetches
them concurrently (the rate budgets inside the source pace them), and hands every series to its
evaluator. Nothing here decides anything: every decision is a pure function it calls.

A request that fails turns into an ``error`` finding for every (rule, customer) it served, and
data older than ``stale_after`` into ``nodata`` findings: a failure never becomes a false
"usage dropped" alert.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from alertd import evaluate
from alertd.errors import SourceError
from alertd.evaluate.series import build_series, is_stale
from alertd.evaluate.windows import period_containing, period_key
from alertd.model import (
    Customer,
    DataNeed,
    Finding,
    Meter,
    Period,
    Series,
    SeriesKey,
    UsageQuery,
    UsageResult,
)
from alertd.planner import Plan, extract_rows, plan
from alertd.rules.loader import RuleSet, select_rules
from alertd.rules.schema import AllCustomers, CustomerSearch, Rule
from alertd.settings import CustomerSelection, Settings
from alertd.source import Source
from alertd.source.directory import Directory

log = logging.getLogger("alertd.engine")


#: Customers planned, fetched and judged together; see :meth:`Engine.run_pass`.
BATCH_CUSTOMERS = 50
#: Buckets kept of an active series, for the "recent usage" table of its notification.
RECENT_BUCKETS = 24


@dataclass(slots=True)
class _Tally:
    """What the batches of one pass add up to."""

    findings: list[Finding] = field(default_factory=list)
    series: dict[SeriesKey, Series] = field(default_factory=dict)
    refreshed: list[int] = field(default_factory=list)
    failures: list[SourceError] = field(default_factory=list)
    queries: int = 0
    requests: int = 0


@dataclass(frozen=True, slots=True)
class PassResult:
    """Everything one pass learned. ``series`` lets notifications show recent buckets."""

    now: int
    findings: tuple[Finding, ...]
    requests: int
    refreshed_at: int | None
    customers: Mapping[str, Customer]
    series: Mapping[SeriesKey, Series] = field(default_factory=dict)
    failures: tuple[SourceError, ...] = ()
    #: Usage queries planned for the pass (``failures`` are among them).
    queries: int = 0


def selection_for(rule: Rule, default: CustomerSelection) -> CustomerSelection:
    """The customer selection a rule covers: its own, else the config's default."""
    chosen = rule.customers
    if chosen is None:
        return default
    if isinstance(chosen, AllCustomers):
        return CustomerSelection(all=True, refresh=default.refresh)
    if isinstance(chosen, CustomerSearch):
        return CustomerSelection(search=chosen.search, refresh=default.refresh)
    return CustomerSelection(ids=list(chosen), refresh=default.refresh)


class Engine:
    """Runs evaluation passes for one configuration (a reload builds a new Engine)."""

    def __init__(
        self,
        settings: Settings,
        rules: RuleSet,
        source: Source,
        directory: Directory,
        *,
        sent: Callable[[], int] | None = None,
        batch_customers: int = BATCH_CUSTOMERS,
    ) -> None:
        """``sent`` reads the HTTP client's count of requests sent (retries, customers and
        meters included); without it a pass counts one request per usage query."""
        self.settings = settings
        self.rules = rules
        self.source = source
        self.directory = directory
        self._sent = sent
        self.batch_customers = batch_customers

    async def customers_by_rule(
        self, rules: Sequence[Rule], only: set[str] | None = None
    ) -> dict[str, list[Customer]]:
        """Each rule's customers, fetched once per distinct selection (the directory caches)."""
        result: dict[str, list[Customer]] = {}
        for rule in rules:
            selection = selection_for(rule, self.settings.customers)
            customers = await self.directory.customers(selection)
            result[rule.name] = [c for c in customers if only is None or c.id in only]
        return result

    async def meters(self) -> dict[str, Meter]:
        return await self.directory.meters()

    async def run_pass(
        self,
        now: int,
        *,
        rule_names: Iterable[str] | None = None,
        customer_ids: Iterable[str] | None = None,
    ) -> PassResult:
        """Evaluate the rules (all, or those named) for their customers at ``now``.

        Customers are taken in batches of :data:`BATCH_CUSTOMERS`: needs of different customers
        never share a request, so planning per batch costs no request, and a batch's answers
        and series are dropped before the next is fetched — memory stays flat however many
        customers the account has. Only the series of active findings are kept (trimmed to
        their last :data:`RECENT_BUCKETS`), for the notifications' recent-usage table.
        """
        sent_before = self._sent() if self._sent is not None else 0
        rules = select_rules(self.rules.rules, rule_names)
        only = set(customer_ids) if customer_ids else None
        by_rule = await self.customers_by_rule(rules, only)
        customers = {c.id: c for cs in by_rule.values() for c in cs}
        total = _Tally()
        ids = list(customers)
        for start in range(0, len(ids), self.batch_customers):
            batch = set(ids[start:start + self.batch_customers])
            await self._run_batch(rules, by_rule, batch, now, total)
        if self._sent is not None:
            total.requests = self._sent() - sent_before
        return PassResult(
            now=now,
            findings=tuple(total.findings),
            requests=total.requests,
            queries=total.queries,
            refreshed_at=min(total.refreshed) if total.refreshed else None,
            customers=customers,
            series=total.series,
            failures=tuple(total.failures),
        )

    async def _run_batch(
        self,
        rules: Sequence[Rule],
        by_rule: Mapping[str, list[Customer]],
        batch: set[str],
        now: int,
        total: _Tally,
    ) -> None:
        in_batch = {name: [c for c in cs if c.id in batch] for name, cs in by_rule.items()}
        needs = {
            (rule.name, customer.id): evaluate.needs(rule, customer.id, now)[0]
            for rule in rules
            for customer in in_batch[rule.name]
        }
        the_plan = plan(needs.values())
        outcomes = await self._fetch_all(the_plan.queries)
        findings, series, refreshed = self._judge(rules, in_batch, needs, the_plan, outcomes, now)
        failures = [o for o in outcomes if isinstance(o, SourceError)]
        total.findings.extend(findings)
        total.series.update(series)
        total.refreshed.extend(refreshed)
        total.failures.extend(failures)
        total.queries += len(the_plan.queries)
        total.requests += sum(o.requests for o in outcomes if isinstance(o, UsageResult))
        total.requests += len(failures)

    async def _fetch_all(
        self, queries: Sequence[UsageQuery]
    ) -> list[UsageResult | SourceError]:
        async def one(query: UsageQuery) -> UsageResult | SourceError:
            try:
                return await self.source.fetch(query)
            except SourceError as exc:
                log.warning(
                    "usage request failed customer=%s error=%s request_id=%s",
                    query.customer, exc, exc.request_id,
                )
                return exc

        return list(await asyncio.gather(*(one(q) for q in queries)))

    def _judge(
        self,
        rules: Sequence[Rule],
        by_rule: Mapping[str, list[Customer]],
        needs: Mapping[tuple[str, str], DataNeed],
        the_plan: Plan,
        outcomes: Sequence[UsageResult | SourceError],
        now: int,
    ) -> tuple[list[Finding], dict[SeriesKey, Series], list[int]]:
        findings: list[Finding] = []
        all_series: dict[SeriesKey, Series] = {}
        refreshed: list[int] = []
        lag = self.settings.stripe.freshness_lag
        stale_after = self.settings.stripe.stale_after
        for rule in rules:
            for customer in by_rule[rule.name]:
                need = needs[(rule.name, customer.id)]
                _, spec = the_plan.serving(need)
                outcome = outcomes[the_plan.query_index(need)]
                if isinstance(outcome, SourceError):
                    findings.append(problem_finding(rule, customer.id, now, "error", outcome))
                    continue
                if outcome.refreshed_at is not None:
                    # As of --at, anything refreshed later is not yet refreshed.
                    refreshed.append(min(outcome.refreshed_at, now))
                if self._stale(outcome, now, stale_after):
                    findings.append(problem_finding(rule, customer.id, now, "nodata", outcome))
                    continue
                rows = extract_rows(need, spec, outcome.rows)
                for series in build_series(
                    rule, need, rows, outcome.refreshed_at, now=now, freshness_lag=lag
                ):
                    finding = evaluate.evaluate(rule, series, customer, now)
                    findings.append(finding)
                    if finding.active:
                        all_series[series.key] = replace(
                            series, buckets=series.buckets[-RECENT_BUCKETS:]
                        )
        return findings, all_series, refreshed

    def _stale(self, result: UsageResult, now: int, stale_after: float) -> bool:
        if self.settings.stripe.source == "event_summaries" and result.refreshed_at is None:
            return False  # the GA endpoint reports no freshness at all
        return is_stale(result.refreshed_at, now, stale_after)


def problem_finding(
    rule: Rule, customer: str, now: int, state: str, cause: SourceError | UsageResult
) -> Finding:
    """A ``nodata``/``error`` finding for a whole (rule, customer): never a usage verdict."""
    window: Period = period_containing(now, rule.window, rule.timezone)
    if isinstance(cause, SourceError):
        message = f"could not read usage: {cause}"
    else:
        message = "usage data is stale: refreshed_at " + (
            "missing" if cause.refreshed_at is None else f"{now - cause.refreshed_at}s old"
        )
    return Finding(
        key=SeriesKey(rule.name, customer),
        meter=rule.meter,
        dimensions=(),
        window=window,
        complete=False,
        value=None,
        active=False,
        level=None,
        state="error" if state == "error" else "nodata",
        message=message,
        period_key=period_key(window, rule.window),
    )

"""One evaluation pass: customers → needs → plan → fetch → series → findings.

This is the imperative shell around the pure core, shared by ``check``, ``--dry-run``,
``backtest`` and the daemon. It asks the directory which customers each rule covers, asks each
evaluator what data it needs, lets the planner fold all needs into the fewest requests, fetches
them concurrently (the rate budgets inside the source pace them), and hands every series to its
evaluator. Nothing here decides anything: every decision is a pure function it calls.

Isolation: whatever goes wrong stays inside the (rule, customer) it belongs to, which gets an
``error`` finding naming it; every other (rule, customer) is evaluated as usual.

* A customer id Stripe does not have (unknown or deleted): an ``error`` finding for each rule
  naming it. A configuration problem, not a source failure (``failures`` does not list it).
* A customer lookup, list or search that fails after retries: ``error`` findings for the rules
  it served (the customer ``""`` when a whole list failed), and a source failure. A first
  listing that fails midway has had the customers it listed judged all the same.
* A request that fails after retries (a malformed answer included): an ``error`` finding for
  every (rule, customer) it served, and a source failure.
* A query Stripe would refuse (e.g. filters without a meter), caught before sending: ``error``
  findings for its rules; not a source failure.
* Any exception while working out a need or judging a series (a bug, a value out of range):
  an ``error`` finding for that series, logged with ``rule=`` and ``customer=``; not a source
  failure.

Data older than ``stale_after`` becomes ``nodata`` findings. Neither ``error`` nor ``nodata``
fires or resolves anything: a failure never becomes a false "usage dropped" alert.

Why over 400 lines: one pass's order of steps (customers, billing, cache reads, plan, fetch,
judge, save) is read top to bottom here; the decisions each step calls live elsewhere. The
next seam, when it grows: billing attachment (:meth:`Engine.with_billing`) into its own module.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from alertd.accounts import with_account
from alertd.conditions.money import sums_meters, wants_billing, wants_credit
from alertd.conditions.series import build_series, is_stale
from alertd.config.settings import CustomerSelection, Settings
from alertd.errors import NotFoundError, SourceError
from alertd.model import (
    Customer,
    DataNeed,
    Finding,
    Meter,
    Series,
    SeriesKey,
    UsageQuery,
    UsageResult,
)
from alertd.planner import plan
from alertd.rules.loader import RuleSet, select_rules
from alertd.rules.schema import AllCustomers, CustomerSearch, Rule
from alertd.service.guarded import (
    error_finding,
    evaluate_many_or_error,
    internal_error,
    need_or_error,
    source_failure,
    stale_finding,
    unread,
)
from alertd.service.reads import (
    AHEAD_ROWS,
    FETCHED_WEIGHT,
    FIRST_BATCH,
    ROWS_AHEAD,
    BatchReads,
    BucketCache,
    CacheCounts,
    HeldAhead,
    Reading,
    load_entries,
    next_batch_size,
    prepare,
    prune,
    save,
    widening_needs,
)
from alertd.service.roster import Covered, CustomerProblem, Roster, Taken, problems_of
from alertd.service.summed import judge_summed, summed_needs
from alertd.source import Source
from alertd.source.billing import BillingSource
from alertd.source.directory import Directory, Listing, Selected, selection_key
from alertd.source.inflight import batches_ahead, ewma
from alertd.source.ratelimit import BudgetName, RateBudget

log = logging.getLogger("alertd.engine")


#: Customers planned, fetched and judged together; see :meth:`Engine.run_pass`.
BATCH_CUSTOMERS = 50
#: Batches whose requests are queued while the oldest one's answers are awaited and judged,
#: at least; more when the budget × (Stripe's latency + the engine's work on a batch) needs
#: them (:meth:`Engine._ahead`).
FETCH_AHEAD = 1
#: Weight of each batch in :attr:`Engine.batch_work`'s moving average (about the last 10
#: batches count: a pass's customers differ in work, and a pass has few batches).
BATCH_WORK_WEIGHT = 0.1
#: Buckets kept of an active series, for the "recent usage" table of its notification.
RECENT_BUCKETS = 24


@dataclass(frozen=True, slots=True)
class BatchFindings:
    """The findings of one judged batch of a pass, as :meth:`Engine.run_pass` hands them to
    its ``on_batch`` (the account's identity already in their keys)."""

    findings: tuple[Finding, ...]
    #: The series of the batch's active findings (trimmed to :data:`RECENT_BUCKETS`).
    series: Mapping[SeriesKey, Series]
    #: Every customer of the pass taken so far, the batch's included (shared, not copied,
    #: and growing while the pass goes on), for the alerts' customer details.
    customers: Mapping[str, Customer]
    #: The ids of the batch's customers (none for the findings of customers the directory
    #: could not serve).
    read: frozenset[str]
    #: The oldest ``refreshed_at`` of the batch's answers (``None``: none said).
    refreshed_at: int | None


#: What :meth:`Engine.run_pass` hands each batch's findings to, instead of keeping them.
OnBatch = Callable[[BatchFindings], Awaitable[None]]


@dataclass(slots=True)
class _Tally:
    """What the batches of one pass add up to."""

    #: Every finding; with ``on_batch``, none (each batch's went on; the recorder keeps the
    #: notable ones, once: :class:`~alertd.service.recording.RecordedTally`).
    findings: list[Finding] = field(default_factory=list)
    on_batch: OnBatch | None = None
    customers: Mapping[str, Customer] = field(default_factory=dict)
    account: str = ""
    #: With ``on_batch``: whether any finding judged a series (not an ``error``), how many
    #: findings were handed on, and the first ``error`` finding's message.
    judged: bool = False
    handed: int = 0
    problem: str = ""
    series: dict[SeriesKey, Series] = field(default_factory=dict)
    refreshed: list[int] = field(default_factory=list)
    failures: list[SourceError] = field(default_factory=list)
    queries: int = 0
    requests: int = 0
    rows: int = 0
    #: Rows the batches read from the bucket cache.
    cached: int = 0


@dataclass(frozen=True, slots=True)
class _Batch:
    """One batch whose requests are under way: what judging its answers needs."""

    customers: dict[str, list[Customer]]
    needs: dict[tuple[str, str], DataNeed]
    summed: dict[tuple[str, str], tuple[DataNeed, ...]]  # alertd.service.summed
    reading: Reading
    outcomes: asyncio.Future[list[UsageResult | SourceError | Exception]]
    early: list[Finding]  # needs that could not be worked out: error findings
    index: int = 0  # its place in the pass (alertd.service.reads.HeldAhead)
    prepared: float = 0.0  # seconds its start took (needs, cache reads, plan): Engine._ahead


@dataclass(frozen=True, slots=True)
class PassResult:
    """Everything one pass learned. ``series`` lets notifications show recent buckets.

    With ``on_batch`` the findings and series went to it batch by batch: ``findings`` and
    ``series`` are empty then (what recorded them keeps what it needs), and ``judged`` and
    ``problem`` say what the pass's findings were."""

    now: int
    findings: tuple[Finding, ...]
    requests: int
    refreshed_at: int | None
    customers: Mapping[str, Customer]
    series: Mapping[SeriesKey, Series] = field(default_factory=dict)
    failures: tuple[SourceError, ...] = ()
    #: Usage queries planned for the pass, plus customer lookups that failed (``failures``
    #: are among them).
    queries: int = 0
    #: The Stripe account of ``accounts:`` the pass read (its findings' keys carry it).
    account: str = ""
    #: Usage rows Stripe answered with (what the bucket cache saves shows here).
    rows: int = 0
    #: With ``on_batch``: whether the pass judged any series (``findings`` is then empty);
    #: ``None`` when ``findings`` holds every finding.
    judged: bool | None = None
    #: With ``on_batch``: the message of the pass's first ``error`` finding (``""``: none).
    problem: str = ""


@dataclass(frozen=True, slots=True)
class Selection:
    """Each rule's customers, and the (rule, customer) pairs that could not be had."""

    by_rule: dict[str, list[Customer]]
    problems: tuple[CustomerProblem, ...] = ()


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
        billing: BillingSource | None = None,
        cache: BucketCache | None = None,
        account: str = "",
        ahead_rows: int = AHEAD_ROWS,
    ) -> None:
        """``sent`` reads the HTTP client's count of requests sent (retries, customers and
        meters included); without it a pass counts one request per usage query. ``billing``
        reads prices and credit for the rules that price usage (default: on the directory's
        client, kept for ``stripe.billing_refresh``). With ``cache`` a pass reads from Stripe
        only what may still change (:mod:`alertd.buckets`). ``account`` names the Stripe
        account of ``accounts:`` the pass reads, for its findings' identity. ``ahead_rows``
        bounds the rows the batches queued ahead hold (:class:`~alertd.service.reads.HeldAhead`)."""
        self.settings = settings
        self.account = account
        self.rules = rules
        self.source = source
        self.directory = directory
        self.billing = billing or BillingSource(
            directory.http, clock=directory.http.clock,
            refresh=settings.stripe.billing_refresh)
        self._sent = sent
        self.batch_customers = batch_customers
        self.cache = cache
        self.ahead_rows = ahead_rows
        #: What the cache saved, over this engine's passes.
        self.cache_counts = CacheCounts()
        #: The rows the last pass held ahead of the batch it judged (for benches and tests).
        self.held_ahead = HeldAhead(ahead_rows)
        #: Seconds a batch keeps the engine busy besides awaiting its answers (started, then
        #: judged, saved and handed over), a moving average (``ewma``): :meth:`_ahead`.
        self.batch_work: float | None = None
        #: The most batches under way at once in the last pass (for benches and tests).
        self.most_under_way = 0

    async def select_customers(
        self, rules: Sequence[Rule], only: set[str] | None = None
    ) -> Selection:
        """Each rule's customers (the directory caches each distinct selection), and every
        (rule, customer) that could not be had, each logged once per call."""
        by_rule: dict[str, list[Customer]] = {}
        problems: list[CustomerProblem] = []
        # A failed load is not cached, so rules sharing a selection share its failure here.
        loaded: dict[tuple[str, ...], Selected | SourceError] = {}
        for rule in rules:
            selection = selection_for(rule, self.settings.customers)
            key = selection_key(selection)
            if key not in loaded:
                loaded[key] = await self._select(selection)
            selected = loaded[key]
            problems += problems_of(rule.name, selected, only)
            by_rule[rule.name] = [] if isinstance(selected, SourceError) else [
                c for c in selected.customers if only is None or c.id in only]
        _log_problems(problems)
        return Selection(by_rule, tuple(problems))

    async def _select(self, selection: CustomerSelection) -> Selected | SourceError:
        try:
            return await self.directory.select(selection)
        except SourceError as exc:
            return exc

    async def customers_by_rule(
        self, rules: Sequence[Rule], only: set[str] | None = None
    ) -> dict[str, list[Customer]]:
        """Each rule's customers, all or nothing (for ``backtest``, where a history with
        holes would mislead): the first customer that could not be had raises, an unknown one
        as :class:`~alertd.errors.NotFoundError`; a deleted one is left out (it is logged)."""
        selection = await self.select_customers(rules, only)
        for problem in selection.problems:
            if problem.failure is not None:
                raise problem.failure
            if not problem.deleted:
                raise NotFoundError(problem.message, status=404, code="resource_missing")
        return selection.by_rule

    async def meters(self) -> dict[str, Meter]:
        return await self.directory.meters()

    async def run_pass(
        self,
        now: int,
        *,
        rule_names: Iterable[str] | None = None,
        customer_ids: Iterable[str] | None = None,
        on_batch: OnBatch | None = None,
    ) -> PassResult:
        """Evaluate the rules (all, or those named) for their customers at ``now``.

        With ``on_batch``, each batch's findings and active series are handed to it as soon
        as the batch is judged (those of customers the directory could not serve first) and
        the pass keeps none of them, only counts: what a pass holds then does not grow with
        the number of customers (the daemon records alert states batch by batch this way,
        and its recorder and status board keep what they show).

        A first listing (nothing cached) does not hold the pass up: batches start with the
        first page's customers while the next pages are read (:mod:`alertd.service.roster`);
        the findings are those of a pass from the cached list, in the same order.

        Customers are taken in batches of up to :data:`BATCH_CUSTOMERS`: needs of different
        customers never share a request, so planning per batch costs no request, and a batch's
        answers and series are dropped once it is judged — memory stays flat however many
        customers the account has. A batch is sized by the rows the last judged one held per
        customer, fetched and cached (:func:`~alertd.service.reads.next_batch_size`), so
        memory is bounded by rows, not by customers or rules: the batch judged, plus what the
        batches fetched ahead hold — :data:`FETCH_AHEAD` batches, or more when the budget ×
        (Stripe's latency + the engine's work on a batch) needs more (:meth:`_ahead`; the
        next batches are fetched while one is awaited and judged, so the rate budget is not
        left idle between batches), but never more than ``ahead_rows`` rows held ahead
        (:class:`~alertd.service.reads.HeldAhead`). Only the series of active findings are
        kept (trimmed to their last :data:`RECENT_BUCKETS`), for the notifications'
        recent-usage table, and with ``on_batch`` only until the batch is handed on.
        """
        sent_before = self._sent() if self._sent is not None else 0
        rules = select_rules(self.rules.rules, rule_names)
        roster = await self._roster(rules, customer_ids)
        customers = roster.customers  # complete once the batches are done
        total = _Tally(on_batch=on_batch, customers=customers, account=self.account)
        await self._run_batches(rules, roster, now, total)
        await prune(self.cache, now)
        if self._sent is not None:
            total.requests = self._sent() - sent_before
        findings, series = with_account(tuple(total.findings), total.series, self.account)
        return PassResult(
            now=now,
            findings=findings,
            requests=total.requests,
            queries=total.queries,
            rows=total.rows,
            refreshed_at=min(total.refreshed) if total.refreshed else None,
            customers=customers,
            series=series,
            failures=tuple(total.failures),
            account=self.account,
            judged=(total.judged or not total.handed) if on_batch is not None else None,
            problem=total.problem,
        )

    async def _roster(self, rules: Sequence[Rule], customer_ids: Iterable[str] | None
                      ) -> Roster:
        """Each distinct selection of ``rules`` once: explicit ids looked up now (in
        parallel), a list or search as the directory has it (cached, or listed as it goes;
        :mod:`alertd.service.roster`), only the customers of ``customer_ids`` when given."""
        covered: dict[tuple[str, ...], Covered] = {}
        explicit: list[tuple[Covered, CustomerSelection]] = []
        for rule in rules:
            selection = selection_for(rule, self.settings.customers)
            key = selection_key(selection)
            if key in covered:
                covered[key].rules.append(rule.name)
            elif selection.ids is not None:
                covered[key] = Covered([rule.name], Listing(done=True))
                explicit.append((covered[key], selection))
            else:  # started now: it goes on while the ids are looked up
                covered[key] = Covered([rule.name], self.directory.listing(selection))
        for chosen, selection in explicit:
            chosen.selected = await self.directory.select(selection)
            chosen.listing = Listing(list(chosen.selected.customers), done=True)
        return Roster(list(covered.values()), set(customer_ids) if customer_ids else None)

    async def _report(self, roster: Roster, rules: Mapping[str, Rule], now: int,
                      total: _Tally) -> None:
        """The ``error`` findings of what the roster's selections could not serve, not yet
        reported (handed on at once with ``on_batch``)."""
        problems = roster.problems()
        if not problems:
            return
        _log_problems(problems)
        _tally_problems(problems, rules, now, total)
        if total.on_batch is not None:
            found, total.findings = total.findings, []
            await _hand_over(total, found, {}, frozenset(), None)

    async def _run_batches(
        self, rules: Sequence[Rule], roster: Roster, now: int, total: _Tally
    ) -> None:
        """The roster's customers batch by batch, each batch started as soon as its
        customers are listed (a first listing goes on meanwhile: :class:`Roster`), with the
        next batches' requests already queued while this one's last answers come in and are
        judged: the rate budget never waits for a batch's slowest answer (at 1 s latency,
        most of a batch's time). As many batches go ahead as the budget × (the latency + the
        work) needs (:meth:`_ahead`), while the rows they hold stay under ``ahead_rows``
        (:class:`~alertd.service.reads.HeldAhead`: a request of a batch ahead waits there
        while they are over it). Each new batch is sized by the last judged one (the first by
        :data:`FIRST_BATCH`). What the selections could not serve becomes ``error`` findings
        as soon as it is known."""
        pending: list[tuple[_Batch, int]] = []
        held = self.held_ahead = HeldAhead(self.ahead_rows)
        self.most_under_way = 0
        size, index = min(FIRST_BATCH, self.batch_customers), 0
        by_name = {rule.name: rule for rule in rules}
        try:
            while True:
                await self._report(roster, by_name, now, total)
                may_start = roster.ready and (not pending or (
                    len(pending) <= self._ahead(pending[-1][0]) and held.may_start(index)))
                taken = roster.take(size) if may_start else []
                if taken:
                    pending.append((await self._start_batch(rules, roster, taken, now, held,
                                                            index), len(taken)))
                    self._load_ahead(pending, held)
                    index += 1
                    self.most_under_way = max(self.most_under_way, len(pending))
                    continue
                if not pending:
                    if roster.done:
                        break
                    await roster.wait()
                    continue
                oldest = pending[0][0].outcomes
                if may_start and not roster.done and not oldest.done():
                    await _answers_or_customers(oldest, roster)  # whichever comes first
                    continue
                started, count = pending[0]
                rows, cached = total.rows, total.cached
                await self._finish_batch(rules, started, now, total)
                pending.pop(0)  # only now: cancelled while judged, its load is ended below
                held.advance()
                self._load_ahead(pending, held)
                size = next_batch_size(total.rows - rows, total.cached - cached, count,
                                       self.batch_customers)
            await self._report(roster, by_name, now, total)  # a listing failed meanwhile
        finally:
            # An error or a cancellation: the batches under way stop their requests too.
            loads = [left.reading.reads.loading for left, _ in pending]
            for left, _ in pending:
                left.outcomes.cancel()
            for load in loads:
                if load is not None:
                    load.cancel()
            await asyncio.gather(*(left.outcomes for left, _ in pending),
                                 *(load for load in loads if load is not None),
                                 return_exceptions=True)

    def _load_ahead(self, pending: Sequence[tuple[_Batch, int]], held: HeldAhead) -> None:
        """Starts loading the cached rows of the batch judged next and of the
        :data:`~alertd.service.reads.ROWS_AHEAD` after it, each once: the batches further
        ahead hold only their extents (:mod:`alertd.service.reads`)."""
        for started, _ in pending[:ROWS_AHEAD + 1]:
            reads = started.reading.reads
            if reads.loading is None:
                reads.loading = asyncio.ensure_future(
                    self._load_entries(reads, held, started.index))

    async def _load_entries(self, reads: BatchReads, held: HeldAhead, index: int) -> None:
        await load_entries(self.cache, reads)
        held.hold(index, reads.cached_rows)

    def _ahead(self, latest: _Batch) -> int:
        """Batches under way beyond the awaited one: :data:`FETCH_AHEAD`, or as many as the
        budget needs to stay busy (:func:`batches_ahead`) for as long as a batch holds the
        pass up: Stripe's measured latency (its last answers) plus the engine's own work on
        it (:attr:`batch_work`: started, judged, saved, handed over; the next batch is
        started only after). Latency alone undercounts in steady cycles, where a batch's
        requests are few and quick and the work is most of its time. Measured
        (``bench/steady.py --daemon``, 3,000 customers × 16 rules, 20 ms): 93.9 requests/s
        before, 92.1 after, within the runs' spread; kept for the reason, which holds
        whatever the ratio of work to latency."""
        http = self.directory.http
        latency, work = http.concurrency(self.budget_name).latency, self.batch_work
        hold = None if latency is None and work is None else (latency or 0.0) + (work or 0.0)
        return batches_ahead(self.budget().rate, hold, len(latest.reading.plan.queries),
                             least=FETCH_AHEAD)

    @property
    def budget_name(self) -> BudgetName:
        """The rate budget usage reads draw on (event summaries: the general one)."""
        return "general" if self.settings.stripe.source == "event_summaries" else "analytics"

    def budget(self) -> RateBudget:
        """The rate budget usage reads draw on (its idle seconds: :class:`Poller`)."""
        return self.directory.http.budgets.get(self.budget_name)

    async def _start_batch(
        self,
        rules: Sequence[Rule],
        roster: Roster,
        batch: Sequence[Taken],
        now: int,
        held: HeldAhead | None = None,
        index: int = 0,
    ) -> _Batch:
        """A batch's customers, needs, cache reads and plan, and its fetch under way (each
        request of a batch ahead waiting for ``held`` to be under its bound)."""
        began = time.monotonic()
        in_batch = await self.with_billing(rules, roster.in_batch(batch), now)
        needs: dict[tuple[str, str], DataNeed] = {}
        summed: dict[tuple[str, str], tuple[DataNeed, ...]] = {}
        early: list[Finding] = []
        for rule in rules:
            for customer in in_batch[rule.name]:
                if sums_meters(rule):  # one need per priced meter: alertd.service.summed
                    got = summed_needs(rule, customer, now)
                    if isinstance(got, Finding):
                        early.append(got)
                    else:
                        summed[(rule.name, customer.id)] = got
                    continue
                need = need_or_error(rule, customer.id, now)
                if isinstance(need, Finding):
                    early.append(need)
                else:
                    needs[(rule.name, customer.id)] = need
        names = {rule.name for rule in rules}
        others = [r for r in self.rules.rules if r.name not in names] if self.cache else []
        every_need = [*needs.values(), *(n for pair in summed.values() for n in pair)]
        reads = await prepare(self.cache, every_need, now, self.cache_counts,
                              widening_needs(others, sorted(t.customer.id for t in batch),
                                             now))
        the_plan = plan(reads.fetch_needs)
        fetching = asyncio.ensure_future(self._fetch_all(the_plan.queries, held, index))
        return _Batch(in_batch, needs, summed, Reading(the_plan, reads), fetching, early,
                      index, prepared=time.monotonic() - began)

    async def _finish_batch(
        self, rules: Sequence[Rule], started: _Batch, now: int, total: _Tally
    ) -> None:
        """Wait for a batch's answers, judge them, and save what the cache may keep."""
        outcomes = await started.outcomes
        began = time.monotonic()
        the_plan, reads = started.reading.plan, started.reading.reads
        assert reads.loading is not None  # the front batch's load: _load_ahead started it
        await reads.loading
        if reads.unserved:  # gone, unreadable or replaced since planned: read in full now
            repair = plan(reads.repair())
            self.cache_counts.full += len(repair.needs)
            outcomes = [*outcomes, *await self._fetch_all(repair.queries)]
            the_plan = the_plan.extended(repair)
            started = replace(started, reading=Reading(the_plan, reads))
        reads.take_alongside(the_plan, outcomes)
        rows = sum(len(o.rows) for o in outcomes if isinstance(o, UsageResult))
        self.cache_counts.rows_fetched += rows
        total.rows += rows
        total.cached += reads.cached_rows
        # Judged in a worker thread: CPU that would hold the loop (see _judge_batch).
        findings, series, refreshed, good = await asyncio.to_thread(
            self._judge_batch, rules, started, outcomes, now)
        await save(self.cache, reads, good, now)
        failures = [o for o in outcomes if isinstance(o, SourceError) and source_failure(o)]
        if total.on_batch is not None:
            await _hand_over(total, [*started.early, *findings], series,
                             frozenset(c.id for cs in started.customers.values() for c in cs),
                             min(refreshed, default=None))
        else:
            total.findings.extend(started.early)
            total.findings.extend(findings)
            total.series.update(series)
        if refreshed:  # only the oldest counts: one per pass, not one per series
            total.refreshed = [min([*total.refreshed, *refreshed])]
        total.failures.extend(failures)
        total.queries += len(the_plan.queries)
        total.requests += sum(o.requests for o in outcomes if isinstance(o, UsageResult))
        total.requests += len(failures)
        self.batch_work = ewma(self.batch_work, started.prepared + time.monotonic() - began,
                               BATCH_WORK_WEIGHT)

    async def with_billing(
        self, rules: Sequence[Rule], in_batch: dict[str, list[Customer]], now: int
    ) -> dict[str, list[Customer]]:
        """The customers of rules that price usage, with their billing attached (read on the
        general budget, cached; a failure is carried as the billing's ``problem``)."""
        credit: dict[str, bool] = {}
        for rule in rules:
            if wants_billing(rule):
                for customer in in_batch[rule.name]:
                    credit[customer.id] = credit.get(customer.id, False) or wants_credit(rule)
        if not credit:
            return in_batch
        found = await asyncio.gather(*(self.billing.billing(cid, credit=flag, now=now)
                                       for cid, flag in credit.items()))
        billing = dict(zip(credit, found, strict=True))
        return {name: [replace(c, billing=billing[c.id]) if c.id in billing else c for c in cs]
                for name, cs in in_batch.items()}

    async def _fetch_all(
        self, queries: Sequence[UsageQuery], held: HeldAhead | None = None, index: int = 0,
    ) -> list[UsageResult | SourceError | Exception]:
        async def one(query: UsageQuery) -> UsageResult | SourceError | Exception:
            try:
                if held is None:
                    return await self.source.fetch(query)
                reserved, rows = await held.admit(index), 0
                try:
                    result = await self.source.fetch(query)
                    rows = FETCHED_WEIGHT * len(result.rows)
                    return result
                finally:
                    held.answered(index, rows, reserved)
            except SourceError as exc:
                log.warning(
                    "usage request failed customer=%s error=%s request_id=%s",
                    query.customer, exc, exc.request_id,
                )
                return exc
            except Exception as exc:  # a bug reading an answer: only this query's series
                log.exception("usage request failed unexpectedly customer=%s", query.customer)
                return exc

        return list(await asyncio.gather(*(one(q) for q in queries)))

    def _judge_batch(
        self, rules: Sequence[Rule], started: _Batch,
        outcomes: Sequence[UsageResult | SourceError | Exception], now: int,
    ) -> tuple[list[Finding], dict[SeriesKey, Series], list[int], list[DataNeed]]:
        """A batch's findings and what :meth:`_judge` returns, summed rules included.

        Called in a worker thread (:func:`asyncio.to_thread`), never on the event loop's:
        judging a batch is pure CPU (series built, the anomaly detector over a rule's series
        at once) of 0.1–0.3 s, and on the loop's thread it held back every send and answer of
        the batches fetched meanwhile. Yielding to the loop between rules, then between
        customers, was tried first: one rule's share of a batch still took 15–40 ms (3,000
        customers, most of it the anomaly detector judging a rule's series together, which it
        does about four times cheaper per series than in small groups), the sends due
        meanwhile went late, and the rate budget's log of sends held the next second's starts
        back by as much (93–94 req/s of the 97 the pacing allows). In a thread, the loop waits
        for the interpreter lock at most its switch interval (5 ms) whenever it has something
        to do, and the detector keeps its batches. Safe because judging touches only this
        batch's own objects and pure functions; the batch's reads (memoised rows) are used
        again only after it returns (:func:`~alertd.service.reads.save`)."""
        findings, series, refreshed, good = self._judge(
            rules, started.customers, started.needs, started.reading, outcomes, now)
        more = judge_summed(rules, started.customers, started.summed, started.reading,
                            outcomes, now, freshness_lag=self.settings.stripe.freshness_lag,
                            stale=lambda result: self._stale(result, now),
                            recent=RECENT_BUCKETS)
        findings += more.findings
        series.update(more.series)
        refreshed += more.refreshed
        good += more.good
        return findings, series, refreshed, good

    def _judge(
        self,
        rules: Sequence[Rule],
        by_rule: Mapping[str, list[Customer]],
        needs: Mapping[tuple[str, str], DataNeed],
        reading: Reading,
        outcomes: Sequence[UsageResult | SourceError | Exception],
        now: int,
    ) -> tuple[list[Finding], dict[SeriesKey, Series], list[int], list[DataNeed]]:
        """Findings, active series, freshness seen, and the needs whose answers were good
        (fresh and read), whose keys the cache may keep (in a worker thread:
        :meth:`_judge_batch`)."""
        findings: list[Finding] = []
        all_series: dict[SeriesKey, Series] = {}
        refreshed: list[int] = []
        good: list[DataNeed] = []
        for rule in rules:
            # Findings in order, with the series still to judge in their places: the rule's
            # series of the whole batch are judged together (a kind may batch its verdicts).
            slots: list[Finding | tuple[Series, Customer]] = []
            for customer in by_rule[rule.name]:
                need = needs.get((rule.name, customer.id))
                if need is None:
                    continue  # its need could not be worked out: already an error finding
                outcome = outcomes[reading.query_index(need)]
                if isinstance(outcome, Exception):
                    slots.append(error_finding(rule, customer.id, now, unread(outcome)))
                    continue
                if outcome.refreshed_at is not None:
                    # As of --at, anything refreshed later is not yet refreshed.
                    refreshed.append(min(outcome.refreshed_at, now))
                if self._stale(outcome, now):
                    slots.append(stale_finding(rule, customer.id, now, outcome))
                    continue
                good.append(need)
                built = self._series_of(rule, customer, need, reading, outcome, now)
                if isinstance(built, Finding):
                    slots.append(built)
                else:
                    slots.extend((series, customer) for series in built)
            _settle(rule, slots, now, findings, all_series)
        return findings, all_series, refreshed, good

    def _series_of(
        self, rule: Rule, customer: Customer, need: DataNeed, reading: Reading,
        outcome: UsageResult, now: int,
    ) -> list[Series] | Finding:
        """The series of one (rule, customer), or the ``error`` finding that stands for them
        when building them raised (judging one only fails that series)."""
        try:
            rows = reading.reads.rows_of(need, reading.plan, outcome)
            return build_series(rule, need, rows, outcome.refreshed_at, now=now,
                                freshness_lag=self.settings.stripe.freshness_lag)
        except Exception as exc:
            log.exception("building series failed rule=%s customer=%s", rule.name, customer.id)
            return error_finding(rule, customer.id, now, internal_error(exc))

    def _stale(self, result: UsageResult, now: int) -> bool:
        if self.settings.stripe.source == "event_summaries" and result.refreshed_at is None:
            return False  # the GA endpoint reports no freshness at all
        return is_stale(result.refreshed_at, now, self.settings.stripe.stale_after)


def _settle(rule: Rule, slots: Sequence[Finding | tuple[Series, Customer]], now: int,
            findings: list[Finding], all_series: dict[SeriesKey, Series]) -> None:
    """Judge the series among ``slots`` together and add every finding in order; an active
    series is kept (its last :data:`RECENT_BUCKETS`) for its notification."""
    pending = [slot for slot in slots if isinstance(slot, tuple)]
    verdicts = iter(evaluate_many_or_error(rule, pending, now))
    for slot in slots:
        if not isinstance(slot, tuple):
            findings.append(slot)
            continue
        finding, series = next(verdicts), slot[0]
        findings.append(finding)
        if finding.active:
            all_series[series.key] = replace(series, buckets=series.buckets[-RECENT_BUCKETS:])


async def _hand_over(total: _Tally, findings: Sequence[Finding],
                     series: Mapping[SeriesKey, Series], read: frozenset[str],
                     refreshed_at: int | None) -> None:
    """Hands one batch's findings to ``on_batch``, keeping only what they add up to."""
    assert total.on_batch is not None
    if not findings and not read:
        return
    owned, owned_series = with_account(tuple(findings), dict(series), total.account)
    total.judged = total.judged or any(f.state != "error" for f in owned)
    total.handed += len(owned)
    if not total.problem:
        total.problem = next((f.message for f in owned if f.state == "error"), "")
    await total.on_batch(BatchFindings(owned, owned_series, total.customers, read,
                                       refreshed_at))


async def _answers_or_customers(answers: asyncio.Future[Any], roster: Roster) -> None:
    """Returns once a batch's ``answers`` are in or the roster has customers to take."""
    listed = asyncio.ensure_future(roster.wait())
    try:
        await asyncio.wait((answers, listed), return_when=asyncio.FIRST_COMPLETED)
    finally:
        listed.cancel()
        await asyncio.gather(listed, return_exceptions=True)


def _log_problems(problems: Iterable[CustomerProblem]) -> None:
    for problem in problems:
        log.warning("customer unavailable rule=%s customer=%s error=%s", problem.rule,
                    problem.customer or "*", problem.message)


def _tally_problems(
    problems: Iterable[CustomerProblem], rules: Mapping[str, Rule], now: int, total: _Tally
) -> None:
    """An ``error`` finding per (rule, customer) the directory could not serve; the lookups
    that failed are source failures, each standing in for the query it would have had."""
    for problem in problems:
        total.findings.append(error_finding(rules[problem.rule], problem.customer, now,
                                            problem.message))
    failed = list(dict.fromkeys(p.failure for p in problems if p.failure is not None))
    total.failures.extend(failed)
    total.queries += len(failed)

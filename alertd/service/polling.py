"""One scheduled poll of a group of rules: fetch, freshness gate, record, observe.

Where it sits: the daemon's scheduler fires one job per poll group → :meth:`Poller.poll` →
:meth:`Engine.run_pass <alertd.service.engine.Engine.run_pass>` (one plan, so one fetch serves every
rule of the group that needs the same data; the Stripe client's rate budgets pace it) → the
freshness gate → :class:`~alertd.service.recording.PassRecorder` (each batch's lifecycle as the
pass goes, committed a few batches at a time, alert states and outbox rows in one transaction
each time) → metrics, readiness and the
systemd ``STATUS=`` line. A poll keeps of its findings only the notable ones (not ``inactive``)
and counts the rest: what it holds does not grow with the number of customers.

The freshness gate: when a group's ``refreshed_at`` has not advanced since its previous poll,
Stripe has told us nothing new, so the usage findings are not recorded (evaluation waits for
data fresh enough; the recorder judges it batch by batch, on each batch's oldest answer, since
it commits batches as the pass goes); the meta findings (stale data, failing source) always
are, because "no news for too long" is exactly what the stale-data alert is about.

A scheduled tick (:mod:`alertd.service.schedule`) is a poll of some of the group's customers:
its findings are recorded without the gate (its customers were last read at other refreshes),
and it updates the census and the customers seen for those customers only.

A poll never raises a :class:`~alertd.errors.SourceError`: a failed read becomes a failed
pass, counted towards the source-failure meta alert, and never a usage verdict.

Readiness (``/readyz``) is 503, with the reason, while any of these holds:

* the data is stale (the stale-data meta alert is firing);
* one group's polls failed to read Stripe ``stripe.failure_alert_after`` times in a row (the
  source-failure meta alert is firing);
* no poll has evaluated anything that many times in a row, in every group: each one either
  crashed (a bug; the daemon logs it) or made only ``error`` findings (every customer missing,
  every rule broken). Then alertd judges nothing at all.

Anything less stays inside its rules: an ``error`` finding is counted in
``alertd_rule_evaluations_total{rule, outcome="error"}`` (a crashed poll counts one for each
of its rules), and neither raises the source-failure alert nor turns readiness while anything
else is judged — one bad rule does not take the daemon out of service.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, get_args

from alertd.alerts import META_POLICIES, SOURCE_FAILURE, STALE_DATA, AlertState
from alertd.clock import iso
from alertd.config.settings import Settings
from alertd.errors import SourceError
from alertd.model import Customer, Finding, FindingState, Meter, Series, SeriesKey
from alertd.notify.pipeline import Pipeline
from alertd.rules.schema import Rule
from alertd.service.engine import BatchFindings, Engine, PassResult
from alertd.service.http import Health
from alertd.service.metrics import Metrics
from alertd.service.recording import (
    PassRecorder,
    RecordedTally,
    has_news,
    judged_any,
    meta_findings,
    poll_failed,
)
from alertd.service.trim import release
from alertd.service.world import World

log = logging.getLogger("alertd.poll")

FINDING_STATES: tuple[str, ...] = get_args(FindingState)
PollGroup = tuple[str, ...]


def poll_groups(rules: Iterable[Rule], every_override: float | None = None
                ) -> dict[float, PollGroup]:
    """Rule names by evaluation interval, shortest first (pure): each is one scheduler job.
    ``every_override`` (the demo's short interval) folds every rule into one group."""
    groups: dict[float, list[str]] = defaultdict(list)
    for rule in rules:
        groups[every_override or rule.every].append(rule.name)
    return {every: tuple(names) for every, names in sorted(groups.items())}


class PassObserver(Protocol):
    """What else watches a poll's batches as they are judged (the deadline scheduler's
    :meth:`~alertd.service.schedule.DuePolls.reading`)."""

    def batch(self, found: BatchFindings) -> None: ...

    def done(self, result: PassResult) -> None: ...


class RecordedSink(Protocol):
    """What takes each recorded batch's findings with lifecycle states as the poll goes
    (the status board's :class:`~alertd.web.board.BoardPass`): the only copy of the batch's
    series a poll keeps is what this makes of them."""

    def add(self, findings: Iterable[Finding], *,
            customers: Mapping[str, Customer] | None = None,
            series: Mapping[SeriesKey, Series] | None = None,
            states: Mapping[SeriesKey, AlertState] | None = None) -> None: ...


class AlertCensus:
    """The latest lifecycle state of every alert series seen, for ``alertd_alerts{state}``
    (one census for every account's poller).

    Series not ``inactive`` are kept by key; quiet ones of a poll group only as a count per
    customer (:meth:`record`), which is most series and a few bytes a customer."""

    def __init__(self) -> None:
        self._states: dict[SeriesKey, str] = {}
        #: (account, poll group) → customer → quiet series.
        self._quiet: dict[tuple[str, PollGroup], dict[str, int]] = {}

    def replace(self, rules: Iterable[str], findings: Iterable[Finding], account: str = ""
                ) -> None:
        """The series of ``rules`` of ``account`` are exactly those of ``findings`` now."""
        gone = set(rules)
        self._states = {k: s for k, s in self._states.items()
                        if k.rule not in gone or k.account != account}
        self._states.update((f.key, f.state) for f in findings)

    def update(self, findings: Iterable[Finding]) -> None:
        """The series of ``findings`` are in these states now; the others are as they were."""
        self._states.update((f.key, f.state) for f in findings)

    def record(self, group: PollGroup, tally: RecordedTally, account: str = "",
               read: Iterable[str] | None = None) -> None:
        """The series of ``group``'s rules of ``account`` are those ``tally`` counted now:
        all of them, or (``read``) those of the customers read."""
        rules = set(group)
        customers = None if read is None else {*read, *tally.inactive,
                                               *(k.customer for k in tally.notable)}
        self._states = {k: s for k, s in self._states.items()
                        if k.rule not in rules or k.account != account
                        or (customers is not None and k.customer not in customers)}
        self._states.update((k, f.state) for k, f in tally.notable.items())
        quiet = {} if customers is None else self._quiet.get((account, group), {})
        for customer in customers or ():
            quiet.pop(customer, None)
        quiet.update(tally.inactive)
        self._quiet[(account, group)] = quiet

    def forget(self, rules: Iterable[str], account: str = "",
               groups: Iterable[PollGroup] | None = None) -> None:
        """Drops ``rules``' series of ``account`` (and, given ``groups``, the quiet counts
        of every other group of the account)."""
        self.replace(rules, (), account)
        if groups is not None:
            current = set(groups)
            self._quiet = {(a, g): q for (a, g), q in self._quiet.items()
                           if a != account or g in current}

    def counts(self) -> dict[str, int]:
        """Series per state, every state present (0 included) so the gauge never has gaps."""
        counted = Counter(self._states.values())
        counted["inactive"] += sum(sum(q.values()) for q in self._quiet.values())
        return {state: counted.get(state, 0) for state in FINDING_STATES}


@dataclass(frozen=True, slots=True)
class PollOutcome:
    """What one poll did. ``findings`` are the recorded ones, with lifecycle states: the
    group's usage findings when ``recorded``, and the meta findings always."""

    group: PollGroup
    result: PassResult
    recorded: bool
    failed: bool
    findings: tuple[Finding, ...]
    #: Only some of the group's customers were read (a scheduled tick).
    partial: bool = False
    #: What the recorded usage findings added up to (``findings`` has the notable ones).
    tally: RecordedTally = field(default_factory=RecordedTally)
    #: Wall seconds from the poll's start to its record (``seconds=`` of ``poll done``): what
    #: a poll takes, apart from the wait for its next tick.
    seconds: float = 0.0
    #: Seconds of the poll in which the rate budget had a slot free and no request asked
    #: for it (``budget_idle=``; :meth:`RateBudget.idle_seconds
    #: <alertd.source.ratelimit.RateBudget.idle_seconds>`): a poll slower than its requests ÷
    #: the rate with little idle was paced by the budget; with much, by alertd's own work.
    budget_idle: float = 0.0


class Poller:
    """Polls groups for the daemon and keeps what polls taught it across reloads: each
    group's consecutive failures and last ``refreshed_at``, the customers seen, the census.

    The source-failure alert counts the worst group's failures in a row, so one group that
    keeps failing holds it firing while other groups succeed (instead of flapping)."""

    def __init__(self, metrics: Metrics, health: Health, *, census: AlertCensus | None = None,
                 account: str = "") -> None:
        """``account`` names the Stripe account of ``accounts:`` it polls; ``census`` is
        shared by every account's poller."""
        self.metrics = metrics
        self.health = health
        self.account = account
        self.census = census or AlertCensus()
        self.stale = False
        self.last_poll: int | None = None
        self.last_refreshed: int | None = None
        self._refreshed: dict[PollGroup, int] = {}
        self._failures: dict[PollGroup, int] = {}
        self._fruitless: dict[PollGroup, tuple[int, str]] = {}
        self._customers: dict[PollGroup, frozenset[str]] = {}
        self._set_alert_gauge()

    async def poll(
        self, engine: Engine, pipeline: Pipeline, world: World, group: PollGroup, now: int,
        customers: Sequence[str] | None = None, observe: PassObserver | None = None,
        recorded: RecordedSink | None = None,
    ) -> PollOutcome:
        """One poll of the rules in ``group`` as of ``now``: of all their customers, or of
        ``customers`` only (a deadline scheduler's tick, :mod:`alertd.service.schedule`);
        ``observe`` sees each batch's findings, then the pass; ``recorded`` each recorded
        batch's findings with their lifecycle states, series and stepped states. An
        exception (a bug; the caller logs it) counts as a poll that evaluated nothing, then
        propagates."""
        try:
            return await self._poll(engine, pipeline, world, group, now, customers, observe,
                                    recorded)
        except Exception as exc:
            self._count_fruitless(group, True, f"the poll crashed: {type(exc).__name__}: {exc}")
            for name in group:
                self.metrics.rule_evaluations.labels(rule=name, outcome="error").inc()
            self.health.stale_reason = self.not_ready_reason(world.settings)
            raise

    async def _poll(
        self, engine: Engine, pipeline: Pipeline, world: World, group: PollGroup, now: int,
        customers: Sequence[str] | None, observe: PassObserver | None,
        sink: RecordedSink | None,
    ) -> PollOutcome:
        # The gate compares a group's polls of the same customers; a scheduled tick reads
        # customers whose last reads were at other refreshes (min_interval apart at least).
        started, idle = time.monotonic(), engine.budget().idle_seconds()
        gate = None if customers is not None else self._refreshed.get(group)
        recorder = await PassRecorder.start(pipeline, world.rules, group, now,
                                            lambda: self._meters(engine), gate=gate)

        async def on_batch(found: BatchFindings) -> None:
            if observe is not None:
                observe.batch(found)
            done = await recorder.batch(found)
            if done is not None and sink is not None:
                sink.add(done.findings, customers=found.customers, series=found.series,
                         states=done.states)
            release()  # the batch's answers are gone: give their pages back (service.trim)

        result = await self._fetch(engine, group, now, customers, on_batch)
        failed = poll_failed(result)
        self._failures[group] = self._failures.get(group, 0) + 1 if failed else 0
        extra = meta_findings(result, world.settings, self.failures)
        # The recorder gated batch by batch; a pass with news had it in every batch.
        fresh = has_news(gate, result.refreshed_at)
        recorded = await recorder.finish(extra)
        if observe is not None:
            observe.done(result)
        # Counted only once recorded: a poll that crashes while recording adds to the count
        # (in poll) instead of resetting it first.
        # judged_any holds for a pass with no findings at all (no series is no failure)
        problem = result.problem or next(
            (f.message for f in result.findings if f.state == "error"), "")
        self._count_fruitless(group, not failed and not judged_any(result), problem)
        if result.refreshed_at is not None and customers is None:
            self._refreshed[group] = result.refreshed_at
        outcome = PollOutcome(group, result, fresh, failed, recorded.findings,
                              partial=customers is not None, tally=recorder.tally,
                              seconds=time.monotonic() - started,
                              budget_idle=engine.budget().idle_seconds() - idle)
        self._observe(outcome, world.settings)
        _log_poll(outcome)
        return outcome

    def forget(self, removed_rules: Iterable[str], groups: Iterable[PollGroup]) -> None:
        """After a reload: drop removed rules' series and the memory of old groups."""
        current = set(groups)
        self.census.forget(removed_rules, self.account, current)
        self._refreshed = {g: r for g, r in self._refreshed.items() if g in current}
        self._customers = {g: c for g, c in self._customers.items() if g in current}
        self._failures = {g: n for g, n in self._failures.items() if g in current}
        self._fruitless = {g: n for g, n in self._fruitless.items() if g in current}
        self._set_alert_gauge()

    @property
    def failures(self) -> int:
        """Polls in a row that failed to read Stripe, in the worst group."""
        return max(self._failures.values(), default=0)

    def not_ready_reason(self, settings: Settings) -> str | None:
        """Why ``/readyz`` should say 503 (besides "no poll yet"), or ``None``."""
        if self.stale:
            return f"usage data is stale (refreshed_at {iso(self.last_refreshed)})"
        if self.failures >= settings.stripe.failure_alert_after:
            return f"Stripe keeps failing ({self.failures} polls in a row)"
        count, problem = min(self._fruitless.values(), default=(0, ""))
        if count >= settings.stripe.failure_alert_after:
            return (f"no poll has evaluated anything for {count} polls in a row "
                    f"(last problem: {problem})")
        return None

    def _count_fruitless(self, group: PollGroup, fruitless: bool, problem: str) -> None:
        """Counts polls in a row of ``group`` that evaluated nothing (crashed, or made only
        ``error`` findings); any poll that judged something resets the count."""
        count = self._fruitless.get(group, (0, ""))[0]
        self._fruitless[group] = (count + 1, problem) if fruitless else (0, "")

    def customer_count(self) -> int:
        return len(frozenset().union(*self._customers.values()))

    def status(self, rules: int, settings: Settings) -> str:
        """The systemd ``STATUS=`` line: rules, customers, last poll, and trouble if any."""
        line = (f"{rules} rules, {self.customer_count()} customers; "
                f"last poll {iso(self.last_poll) or 'not yet'}")
        reason = self.not_ready_reason(settings)
        return f"{line}; {reason}" if reason else line

    def summary(self, rules: int) -> dict[str, Any]:
        """What a heartbeat tells the monitor about the last poll."""
        return {"at": iso(self.last_poll), "rules": rules, "customers": self.customer_count(),
                "refreshed_at": iso(self.last_refreshed), "stale": self.stale}

    # ------------------------------------------------------------------ internals

    async def _fetch(self, engine: Engine, group: PollGroup, now: int,
                     customers: Sequence[str] | None,
                     on_batch: Callable[[BatchFindings], Awaitable[None]]) -> PassResult:
        try:
            return await engine.run_pass(now, rule_names=group, customer_ids=customers,
                                         on_batch=on_batch)
        except SourceError as exc:  # the customer directory could not be read
            log.error("poll failed rules=%s error=%s request_id=%s", ",".join(group), exc,
                      exc.request_id)
            return PassResult(now=now, findings=(), requests=0, refreshed_at=None,
                              customers={}, failures=(exc,))

    async def _meters(self, engine: Engine) -> Mapping[str, Meter]:
        try:
            return await engine.meters()
        except SourceError as exc:  # display names only: alert without them
            log.warning("meter names unavailable error=%s request_id=%s", exc, exc.request_id)
            return {}

    def _observe(self, outcome: PollOutcome, settings: Settings) -> None:
        result = outcome.result
        self.last_poll = result.now
        if not outcome.failed:
            self.health.first_poll_done = True
            seen = self._customers.get(outcome.group, frozenset()) if outcome.partial else ()
            self._customers[outcome.group] = frozenset(result.customers).union(seen)
        if result.refreshed_at is not None:
            self.last_refreshed = result.refreshed_at
            self.metrics.stripe_refreshed.set(result.refreshed_at)
        meta = [f for f in outcome.findings if f.rule in META_POLICIES]
        self.stale = next((f.active for f in meta if f.rule == STALE_DATA), self.stale)
        tally = outcome.tally
        for (rule, state), count in tally.by_rule_state.items():
            self.metrics.rule_evaluations.labels(rule=rule, outcome=state).inc(count)
            self.metrics.rule_last_evaluation.labels(rule=rule).set(result.now)
        self.census.replace({f.rule for f in meta}, meta, self.account)
        if outcome.recorded and outcome.partial:
            self.census.record(outcome.group, tally, self.account, read=result.customers)
        elif outcome.recorded and (tally.by_rule_state or not outcome.failed):
            self.census.record(outcome.group, tally, self.account)
        self._set_alert_gauge()
        self.metrics.on_poll(self.account, outcome.seconds, outcome.budget_idle)
        self.health.stale_reason = self.not_ready_reason(settings)

    def _set_alert_gauge(self) -> None:
        for state, count in self.census.counts().items():
            self.metrics.alerts.labels(state=state).set(count)


def _log_poll(outcome: PollOutcome) -> None:
    result = outcome.result
    states = Counter(f.state for f in outcome.findings if f.rule not in META_POLICIES)
    failing = any(f.rule == SOURCE_FAILURE and f.active for f in outcome.findings)
    log.info(
        "poll done rules=%d customers=%d requests=%d queries=%d rows=%d failures=%d "
        "refreshed_at=%s recorded=%s firing=%d pending=%d source_failing=%s seconds=%.1f "
        "budget_idle=%.1f",
        len(outcome.group), len(result.customers), result.requests, result.queries,
        result.rows, len(result.failures),
        iso(result.refreshed_at), outcome.recorded, states["firing"], states["pending"],
        failing, outcome.seconds, outcome.budget_idle,
    )

"""From one evaluation pass to recorded alert states and queued notifications.

Shared by ``check`` (once, optionally dry) and the daemon (every poll): the pass's findings,
plus the meta findings about the data itself (stale data, a failing source), go through the
notification :class:`~alertd.notify.pipeline.Pipeline`, which commits alert states and outbox
rows in one transaction (or, dry, only computes them).

The daemon records a pass as it goes (:class:`PassRecorder`): each batch's findings go through
the lifecycle as soon as the batch is judged, and its step (changed states, transitions, the
announced alerts' group updates) is committed through :meth:`Pipeline.record
<alertd.notify.pipeline.Pipeline.record>` once :data:`COMMIT_SERIES` series' worth has
gathered — a few batches, never the whole pass — then dropped. What the recorder holds
therefore stays bounded whatever the number of customers: the step not yet committed, the
stored states of the customers not yet judged (each customer's are dropped once its batch is
stepped), the notable findings (for the poll's outcome and the census: the pass's only copy
of them, the engine keeps none) and counts. Each recorded batch's findings with their
lifecycle states, and the stepped states of the pending and firing ones, are returned
(:class:`Recorded`) so that the status board makes their entries then, with the batch's
series (:class:`~alertd.web.board.BoardPass`), instead of the pass keeping every active
series to its end.

Why per commit and not per pass: a pass's step was one transaction at its end, so the changed
states, transitions and announced alerts (each with its recent buckets) of every alerting
series of the pass stayed in RAM until then — what grew with the number of customers
(issue 13). Each commit keeps the store's guarantee: alert states and the outbox rows they
cause are written in one transaction (``Pipeline.record`` files the updates in their groups
and flushes the due groups in the same commit).

Crash safety: a pass killed after some commits has those states, group entries and outbox rows
on disk and nothing of the rest. The next pass judges every customer again from the stored
states: a committed series is already in its new state (an announced alert is not announced
again: its group's notification log says it was sent), an uncommitted one makes the same step
anew. So no notification is lost and none is sent twice.

What changes against one commit per pass: notification groups are flushed at each commit, so a
group whose alerts come from several batches (a ``group_by`` that spans customers) can be
flushed with the alerts of the first commits, the later ones following at ``group_interval``
(as an Alertmanager group does when alerts arrive over time). With the default
``group_by: [rule, customer]`` a group's alerts all come from one batch. The freshness gate
(:mod:`alertd.service.polling`) is applied per batch: a batch is recorded when its answers are
fresher than the group's previous poll (``gate``); a pass that has news has it in every batch.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from alertd.alerts import (
    META_POLICIES,
    SOURCE_FAILURE,
    STALE_DATA,
    AlertState,
    Transition,
    meta_finding,
)
from alertd.clock import format_duration, readable_duration
from alertd.config.settings import Settings
from alertd.model import Finding, Meter, SeriesKey
from alertd.notify.grouping import Update
from alertd.notify.pipeline import (
    AlertContext,
    Lifecycle,
    Pipeline,
    Report,
    lifecycle,
    vanished_series,
)
from alertd.notify.stages import Decision
from alertd.rules.loader import RuleSet
from alertd.rules.schema import Rule
from alertd.service.engine import BatchFindings, PassResult


@dataclass(frozen=True, slots=True)
class PassOutcome:
    """Findings with their lifecycle state, and what became of each would-be notification."""

    findings: tuple[Finding, ...]
    decisions: tuple[Decision, ...]
    undelivered: tuple[str, ...] = ()


def poll_failed(result: PassResult) -> bool:
    """A poll counts as failed when at least half of its usage queries failed after retries."""
    failed = len(result.failures)
    return failed > 0 and failed * 2 >= max(result.queries, failed)


def judged_any(result: PassResult) -> bool:
    """Whether the pass judged at least one series (a pass of only ``error`` findings did
    not; a pass with no series at all, e.g. no customers yet, is not a failure either)."""
    if result.judged is not None:
        return result.judged
    return not result.findings or any(f.state != "error" for f in result.findings)


def meta_findings(
    result: PassResult, settings: Settings, consecutive_failures: int
) -> list[Finding]:
    """The stale-data and source-failure findings for this pass (pure).

    Stale data is judged only when some response told us its freshness; a pass where every
    request failed says nothing about staleness, only about the source.
    """
    now = result.now
    findings = []
    if result.refreshed_at is not None:
        age = now - result.refreshed_at
        stale = age > settings.stripe.stale_after
        stale_limit = format_duration(settings.stripe.stale_after)
        findings.append(meta_finding(
            STALE_DATA, active=stale, now=now, account=result.account,
            message=(f"usage data is {readable_duration(age, units=2)} old (stale_after "
                     f"{stale_limit}): no drop or absence alerts are judged until it is fresh "
                     "again") if stale
            else (f"usage data is fresh again ({readable_duration(age, units=2)} old, "
                  f"within stale_after {stale_limit})"),
        ))
    limit = settings.stripe.failure_alert_after
    failing = consecutive_failures >= limit
    detail = "; ".join(sorted({str(f) for f in result.failures})[:3])
    findings.append(meta_finding(
        SOURCE_FAILURE, active=failing, now=now, account=result.account,
        message=f"{consecutive_failures} polls in a row failed to read Stripe: {detail}"
        if failing else "Stripe answers again",
    ))
    return findings


async def record_pass(
    pipeline: Pipeline,
    rules: RuleSet,
    result: PassResult,
    meters: Mapping[str, Meter],
    *,
    extra: Sequence[Finding] = (),
    dry_run: bool = False,
    immediate: bool = False,
) -> PassOutcome:
    """Run the pass's findings (and ``extra`` meta findings) through the pipeline."""
    context = AlertContext(
        customers=result.customers,
        series=result.series,
        meter_names={m.id: m.display_name or m.id for m in meters.values()},
    )
    report = await pipeline.apply(
        [*result.findings, *extra],
        {rule.name: rule for rule in rules},
        result.now,
        context=context,
        dry_run=dry_run,
        immediate=immediate,
    )
    return PassOutcome(report.findings, report.decisions)


@dataclass(slots=True)
class RecordedTally:
    """What a pass's recorded usage findings add up to, without the findings themselves."""

    #: The series not ``inactive`` now (pending, firing, resolved, nodata, error), by key.
    notable: dict[SeriesKey, Finding] = field(default_factory=dict)
    #: Quiet (``inactive``) series per customer.
    inactive: Counter[str] = field(default_factory=Counter)
    #: Findings per (rule, lifecycle state), for ``alertd_rule_evaluations_total``.
    by_rule_state: Counter[tuple[str, str]] = field(default_factory=Counter)

    def add(self, findings: Iterable[Finding]) -> None:
        for finding in findings:
            self.by_rule_state[(finding.rule, finding.state)] += 1
            if finding.state == "inactive":
                self.inactive[finding.key.customer] += 1
            else:
                self.notable[finding.key] = finding


@dataclass(frozen=True, slots=True)
class Recorded:
    """What :meth:`PassRecorder.batch` recorded of one batch: its findings with their
    lifecycle states, and the stepped states of the pending and firing ones."""

    findings: tuple[Finding, ...]
    states: Mapping[SeriesKey, AlertState]


#: Changed states plus group updates a :class:`PassRecorder` gathers before it commits them
#: (and at the end of the pass, whatever is left). Each commit is a transaction and flushes
#: the groups it touches or that are due (``Store.load_scope``), so fewer, larger commits
#: cost less than one per batch; at this size a commit holds a few MB at most (an announced
#: alert's update carries its recent buckets, ~3 KB).
COMMIT_SERIES = 500


class PassRecorder:
    """Records one daemon pass batch by batch and commits it a few batches at a time (see the
    module docstring): give :meth:`batch` to :meth:`Engine.run_pass
    <alertd.service.engine.Engine.run_pass>` as its ``on_batch``, then :meth:`finish`
    commits what is left with the meta findings.

    The stored states of the pass's rules are loaded once, at the start, by customer; each
    batch's findings (and the group-by series that vanished from them,
    :func:`~alertd.notify.pipeline.vanished_series`) go through
    :func:`~alertd.notify.pipeline.lifecycle` against the states of the batch's customers,
    which are pure per series, so the states committed are those a single
    :meth:`Pipeline.apply` of all the findings would have made. A customer's states are
    dropped once its batch is stepped (a pass reads a customer in one batch).

    ``gate`` is the previous poll's ``refreshed_at`` of the group (``None``: no gate): a batch
    whose oldest answer is not fresher is not recorded (:func:`~alertd.service.polling.has_news`).
    """

    def __init__(self, pipeline: Pipeline, rules: RuleSet, now: int,
                 previous: Mapping[SeriesKey, AlertState],
                 meters: Callable[[], Awaitable[Mapping[str, Meter]]], *,
                 gate: int | None = None, commit_series: int = COMMIT_SERIES) -> None:
        self.pipeline = pipeline
        self.now = now
        self.tally = RecordedTally()
        self.gate = gate
        self.commit_series = commit_series
        #: Batches recorded, held back by the freshness gate, and commits made so far.
        self.recorded = 0
        self.held_back = 0
        self.commits = 0
        self._rules: dict[str, Rule] = {rule.name: rule for rule in rules}
        self._meters = meters
        self._meter_names: Mapping[str, str] | None = None
        self._states: dict[str, dict[SeriesKey, AlertState]] = defaultdict(dict)
        for key, state in previous.items():
            self._states[key.customer][key] = state
        self._changed: dict[SeriesKey, AlertState | None] = {}
        self._transitions: list[Transition] = []
        self._updates: list[Update] = []

    @classmethod
    async def start(cls, pipeline: Pipeline, rules: RuleSet, group: Iterable[str], now: int,
                    meters: Callable[[], Awaitable[Mapping[str, Meter]]], *,
                    gate: int | None = None, commit_series: int = COMMIT_SERIES
                    ) -> PassRecorder:
        """A recorder for a pass of the rules ``group`` at ``now`` (their states loaded)."""
        previous = await pipeline.store.load_states({*group, *META_POLICIES})
        return cls(pipeline, rules, now, previous, meters, gate=gate,
                   commit_series=commit_series)

    @property
    def pending(self) -> int:
        """Changed states and group updates worked out and not committed yet."""
        return len(self._changed) + len(self._updates)

    async def batch(self, found: BatchFindings) -> Recorded | None:
        """Works one batch's lifecycle step out, and commits once enough has gathered; what
        was recorded (``None``: nothing, the batch was empty or held back by the gate)."""
        if not found.findings:
            return None
        if found.read and not has_news(self.gate, found.refreshed_at):
            self.held_back += 1  # Stripe told nothing new of these customers
            self._forget(found.read)
            return None
        if self._meter_names is None:
            meters = await self._meters()
            self._meter_names = {m.id: m.display_name or m.id for m in meters.values()}
        context = AlertContext(customers=found.customers, series=found.series,
                               meter_names=self._meter_names)
        step = self._step(found.findings, context)
        self.tally.add(step.findings)
        self.recorded += 1
        recorded = Recorded(step.findings, self._active_states(step.findings))
        self._forget(found.read)
        if self.pending >= self.commit_series:
            await self._commit(())
        return recorded

    def _active_states(self, findings: Iterable[Finding]) -> dict[SeriesKey, AlertState]:
        """The states (as now stepped) of the pending and firing ``findings``: what the store
        holds of them once committed, for the status board's ``since``."""
        states: dict[SeriesKey, AlertState] = {}
        for finding in findings:
            if finding.state in ("firing", "pending"):
                state = self._states.get(finding.key.customer, {}).get(finding.key)
                if state is not None:
                    states[finding.key] = state
        return states

    def _forget(self, customers: Iterable[str]) -> None:
        """Drops the states of customers whose batch is done (the step keeps what changed)."""
        for customer in customers:
            self._states.pop(customer, None)

    def _step(self, findings: Sequence[Finding], context: AlertContext) -> Lifecycle:
        previous = {k: s for customer in {f.key.customer for f in findings}
                    for k, s in self._states.get(customer, {}).items()}
        findings = [*findings, *vanished_series(findings, previous)]
        step = lifecycle(findings, previous, self._rules, self.now, context)
        for key, state in step.states.items():
            if state is None:
                self._states.get(key.customer, {}).pop(key, None)
            else:
                self._states[key.customer][key] = state
        self._changed.update(step.states)
        self._transitions.extend(step.transitions)
        self._updates.extend(step.updates)
        return step

    async def _commit(self, findings: tuple[Finding, ...]) -> Report:
        """Commits the step gathered so far (alert states, group updates and the outbox rows
        of the groups due, in one transaction), then forgets it."""
        step = Lifecycle(findings, self._changed, tuple(self._transitions),
                         tuple(self._updates))
        report = await self.pipeline.record(step, self.now)
        self._changed = {}
        self._transitions = []
        self._updates = []
        self.commits += 1
        return report

    async def finish(self, extra: Sequence[Finding]) -> PassOutcome:
        """Commits what is left of the pass with the ``extra`` meta findings' step. The
        outcome's findings are the notable usage ones recorded and the meta ones; its
        decisions are the last commit's."""
        meta = self._step(extra, AlertContext())
        report = await self._commit(meta.findings)
        return PassOutcome((*self.tally.notable.values(), *report.findings), report.decisions)


def has_news(previous: int | None, refreshed_at: int | None) -> bool:
    """Whether data as of ``refreshed_at`` is fresher than a group's previous poll (pure). A
    source that reports no freshness (``event_summaries``) always counts as news."""
    return previous is None or refreshed_at is None or refreshed_at > previous

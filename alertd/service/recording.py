"""From one evaluation pass to recorded alert states and queued notifications.

Shared by ``check`` (once, optionally dry) and the daemon (every poll): the pass's findings,
plus the meta findings about the data itself (stale data, a failing source), go through the
notification :class:`~alertd.notify.pipeline.Pipeline`, which commits alert states and outbox
rows in one transaction (or, dry, only computes them).

The daemon records a pass as it goes (:class:`PassRecorder`): each batch's findings go through
the lifecycle as soon as the batch is judged, and only what the commit needs is kept — the
changed states and the announced alerts, which grow with the alerting series, not with the
customers — plus a tally of the rest for metrics and the census. The commit itself stays one
transaction at the end of the pass, as for ``check``: a crash before it loses nothing, and a
notification group is flushed once with every alert of the pass (writing the outbox batch by
batch would split a due group's notification across batches).
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
from alertd.notify.pipeline import AlertContext, Lifecycle, Pipeline, lifecycle, vanished_series
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


class PassRecorder:
    """Records one daemon pass batch by batch (see the module docstring): give
    :meth:`batch` to :meth:`Engine.run_pass <alertd.service.engine.Engine.run_pass>` as its
    ``on_batch``, then :meth:`finish` commits.

    The alert states of the pass's rules are loaded once, at the start; each batch's
    findings (and the group-by series that vanished from them,
    :func:`~alertd.notify.pipeline.vanished_series`) go through
    :func:`~alertd.notify.pipeline.lifecycle` against the states of the batch's customers,
    which are pure per series, so the step the pass commits is the one a single
    :meth:`Pipeline.apply` of all the findings would have made.
    """

    def __init__(self, pipeline: Pipeline, rules: RuleSet, now: int,
                 previous: Mapping[SeriesKey, AlertState],
                 meters: Callable[[], Awaitable[Mapping[str, Meter]]]) -> None:
        self.pipeline = pipeline
        self.now = now
        self.tally = RecordedTally()
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
                    meters: Callable[[], Awaitable[Mapping[str, Meter]]]) -> PassRecorder:
        """A recorder for a pass of the rules ``group`` at ``now`` (their states loaded)."""
        previous = await pipeline.store.load_states({*group, *META_POLICIES})
        return cls(pipeline, rules, now, previous, meters)

    async def batch(self, found: BatchFindings) -> None:
        """Works one batch's lifecycle step out and keeps what the commit needs."""
        if not found.findings:
            return
        if self._meter_names is None:
            meters = await self._meters()
            self._meter_names = {m.id: m.display_name or m.id for m in meters.values()}
        context = AlertContext(customers=found.customers, series=found.series,
                               meter_names=self._meter_names)
        step = self._step(found.findings, context)
        self.tally.add(step.findings)

    def _step(self, findings: Sequence[Finding], context: AlertContext) -> Lifecycle:
        previous = {k: s for customer in {f.key.customer for f in findings}
                    for k, s in self._states.get(customer, {}).items()}
        findings = [*findings, *vanished_series(findings, previous)]
        step = lifecycle(findings, previous, self._rules, self.now, context)
        for key, state in step.states.items():
            if state is None:
                self._states[key.customer].pop(key, None)
            else:
                self._states[key.customer][key] = state
        self._changed.update(step.states)
        self._transitions.extend(step.transitions)
        self._updates.extend(step.updates)
        return step

    async def finish(self, extra: Sequence[Finding], *, usage: bool = True) -> PassOutcome:
        """Commits the pass: its usage findings' step (unless ``usage`` is false: the
        freshness gate held them back) and the ``extra`` meta findings'. The outcome's
        findings are the notable usage ones (when recorded) and the meta ones."""
        if not usage:
            self._changed.clear()
            self._transitions.clear()
            self._updates.clear()
            self.tally = RecordedTally()
        meta = self._step(extra, AlertContext())
        step = Lifecycle(meta.findings, self._changed, tuple(self._transitions),
                         tuple(self._updates))
        report = await self.pipeline.record(step, self.now)
        return PassOutcome((*self.tally.notable.values(), *report.findings), report.decisions)

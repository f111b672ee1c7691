"""From one evaluation pass to recorded alert states and queued notifications.

Shared by ``check`` (once, optionally dry) and the daemon (every poll): the pass's findings,
plus the meta findings about the data itself (stale data, a failing source), go through the
notification :class:`~alertd.notify.pipeline.Pipeline`, which commits alert states and outbox
rows in one transaction (or, dry, only computes them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from alertd.alerts import SOURCE_FAILURE, STALE_DATA, meta_finding
from alertd.clock import format_duration, readable_duration
from alertd.config.settings import Settings
from alertd.model import Finding, Meter
from alertd.notify.pipeline import AlertContext, Pipeline
from alertd.notify.stages import Decision
from alertd.rules.loader import RuleSet
from alertd.service.engine import PassResult


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

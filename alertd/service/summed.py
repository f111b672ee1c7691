"""Cost rules summed over a customer's meters, inside a pass: one need per priced meter, one
series put together from their answers.

Where it sits: :meth:`~alertd.service.engine.Engine._run_batch` asks :func:`summed_needs` for
each (rule, customer) of a summed cost rule (:func:`~alertd.conditions.money.sums_meters`)
once billing is attached, plans those needs with all the others (each is the hourly UTC need a
cost rule of that one meter has, so the planner folds a customer's meters into its one request,
up to five meters a request, and shares them with rules of the same meters), and hands the
answers to :func:`judge_summed`, which builds each meter's series, adds them into one
:class:`~alertd.conditions.money.SummedSeries` and judges it.

A customer whose sum cannot be stated (no metered price, several currencies, an unsupported
price shape, billing unread) has no needs at all: nothing is read for it, and the evaluator's
``error`` finding says why. As for any rule, a failure stays inside its (rule, customer): an
unread answer for any of its meters is an ``error`` finding, a stale one ``nodata``, an
exception while building or judging an ``error`` finding, logged with ``rule=`` and
``customer=``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from alertd.conditions.money import SummedSeries, meter_needs, summed_series
from alertd.conditions.series import build_series
from alertd.model import Customer, DataNeed, Finding, SeriesKey, UsageResult
from alertd.rules.schema import Rule
from alertd.service.guarded import (
    error_finding,
    evaluate_or_error,
    internal_error,
    stale_finding,
    unread,
)
from alertd.service.reads import Reading

log = logging.getLogger("alertd.engine")

Outcome = UsageResult | Exception


def summed_needs(rule: Rule, customer: Customer, now: int) -> tuple[DataNeed, ...] | Finding:
    """The (rule, customer)'s needs, one per priced meter, or an ``error`` finding when they
    cannot be worked out (a bug: logged)."""
    try:
        return meter_needs(rule, customer, now)
    except Exception as exc:
        log.exception("working out the data need failed rule=%s customer=%s", rule.name,
                      customer.id)
        return error_finding(rule, customer.id, now, internal_error(exc))


@dataclass(slots=True)
class SummedJudged:
    """What judging the summed (rule, customer) pairs of a batch found, as the engine's own
    judging returns it: findings, active series, freshness seen and the needs read well."""

    findings: list[Finding] = field(default_factory=list)
    series: dict[SeriesKey, SummedSeries] = field(default_factory=dict)
    refreshed: list[int] = field(default_factory=list)
    good: list[DataNeed] = field(default_factory=list)


def judge_summed(
    rules: Sequence[Rule],
    by_rule: Mapping[str, list[Customer]],
    needs: Mapping[tuple[str, str], tuple[DataNeed, ...]],
    reading: Reading,
    outcomes: Sequence[Outcome],
    now: int,
    *,
    freshness_lag: float,
    stale: Callable[[UsageResult], bool],
    recent: int,
) -> SummedJudged:
    """Every summed (rule, customer) of the batch judged on its meters' answers; an active
    series is kept with its last ``recent`` buckets (and no parts), for notifications."""
    judged = SummedJudged()
    for rule in rules:
        for customer in by_rule[rule.name]:
            pair = needs.get((rule.name, customer.id))
            if pair is not None:
                _judge_one(rule, customer, pair, reading, outcomes, now, freshness_lag,
                           stale, judged)
    judged.series = {key: replace(series, buckets=series.buckets[-recent:], parts={})
                     for key, series in judged.series.items()}
    return judged


def _judge_one(rule: Rule, customer: Customer, needs: tuple[DataNeed, ...], reading: Reading,
               outcomes: Sequence[Outcome], now: int, freshness_lag: float,
               stale: Callable[[UsageResult], bool], judged: SummedJudged) -> None:
    answers: list[tuple[DataNeed, UsageResult]] = []
    for need in needs:
        outcome = outcomes[reading.query_index(need)]
        if isinstance(outcome, Exception):
            judged.findings.append(error_finding(rule, customer.id, now, unread(outcome)))
            return
        if outcome.refreshed_at is not None:
            judged.refreshed.append(min(outcome.refreshed_at, now))
        if stale(outcome):
            judged.findings.append(stale_finding(rule, customer.id, now, outcome))
            return
        answers.append((need, outcome))
    judged.good.extend(needs)
    try:
        parts = {}
        for need, outcome in answers:
            rows = reading.reads.rows_of(need, reading.plan, outcome)
            built = build_series(rule, need, rows, outcome.refreshed_at, now=now,
                                 freshness_lag=freshness_lag)
            parts[str(need.spec.meter)] = built[0]
        series = summed_series(SeriesKey(rule.name, customer.id), parts)
    except Exception as exc:
        log.exception("building series failed rule=%s customer=%s", rule.name, customer.id)
        judged.findings.append(error_finding(rule, customer.id, now, internal_error(exc)))
        return
    finding = evaluate_or_error(rule, series, customer, now)
    judged.findings.append(finding)
    if finding.active:
        judged.series[series.key] = series

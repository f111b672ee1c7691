"""The steps of an evaluation pass that can fail for one (rule, customer), guarded so that
the failure becomes that (rule, customer)'s ``error`` finding and nothing else.

Where it sits: :class:`~alertd.service.engine.Engine` calls these around the pure core — working
out a need (:func:`need_or_error`), judging a series (:func:`evaluate_or_error`; a rule's series
together, :func:`evaluate_many_or_error`) — and builds the findings for what could not be read
(:func:`error_finding`, :func:`stale_finding`). Each
failure is logged once with ``rule=`` and ``customer=``; :func:`source_failure` says which
errors count towards the source-failure meta alert (see :mod:`alertd.service.engine`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace

from alertd import conditions
from alertd.calendar import period_containing, period_key
from alertd.clock import iso, readable_duration
from alertd.errors import InvalidRequestError, SourceError
from alertd.model import Customer, DataNeed, Finding, Period, Series, SeriesKey, UsageResult
from alertd.planner import spec_limits_problems
from alertd.rules.schema import Rule

log = logging.getLogger("alertd.engine")


def source_failure(error: SourceError) -> bool:
    """Whether ``error`` counts as the data source failing. A query the source refused
    before sending it (an :class:`InvalidRequestError` without an HTTP status: a rule Stripe
    could not serve) is the rule's problem, not Stripe's."""
    return not (isinstance(error, InvalidRequestError) and error.status is None)


def need_or_error(rule: Rule, customer: str, now: int) -> DataNeed | Finding:
    """The (rule, customer)'s need, or an ``error`` finding when it cannot be had or Stripe
    would refuse it (which ``validate`` reports first; this holds if one slips past)."""
    try:
        need = conditions.needs(rule, customer, now)[0]
    except Exception as exc:
        log.exception("working out the data need failed rule=%s customer=%s", rule.name,
                      customer)
        return error_finding(rule, customer, now, internal_error(exc))
    refusals = spec_limits_problems(need.spec)
    if refusals:
        log.warning("rule cannot be served rule=%s customer=%s error=%s", rule.name, customer,
                    "; ".join(refusals))
        return error_finding(rule, customer, now,
                             f"Stripe would refuse this rule's request: {'; '.join(refusals)}")
    return need


def evaluate_or_error(rule: Rule, series: Series, customer: Customer, now: int) -> Finding:
    try:
        return conditions.evaluate(rule, series, customer, now)
    except Exception as exc:
        log.exception("evaluation failed rule=%s customer=%s series=%s", rule.name,
                      customer.id, ",".join(f"{k}={v}" for k, v in series.key.group) or "-")
        return error_finding(rule, customer.id, now, internal_error(exc), series)


def evaluate_many_or_error(rule: Rule, items: Sequence[tuple[Series, Customer]], now: int
                           ) -> list[Finding]:
    """The findings of ``items``, judged together; when that raises, each series is judged
    alone (:func:`evaluate_or_error`), so a failure is that series' ``error`` finding only."""
    try:
        return conditions.evaluate_many(rule, items, now)
    except Exception:
        return [evaluate_or_error(rule, series, customer, now) for series, customer in items]


def internal_error(exc: Exception) -> str:
    return (f"internal error while evaluating ({type(exc).__name__}: {exc}); the other rules "
            "and customers were evaluated; please report this")


def unread(exc: Exception) -> str:
    if isinstance(exc, SourceError):
        return f"could not read usage: {exc}"
    return f"could not read usage: unexpected {type(exc).__name__}: {exc}"


def error_finding(
    rule: Rule, customer: str, now: int, message: str, series: Series | None = None
) -> Finding:
    """An ``error`` finding for a (rule, customer), or for one ``series`` of it: never a
    usage verdict, so the alert lifecycle leaves the series as it was."""
    window: Period = period_containing(now, rule.window, rule.timezone)
    return Finding(
        key=series.key if series is not None else SeriesKey(rule.name, customer),
        meter=rule.meter,
        dimensions=series.dimensions if series is not None else (),
        window=window,
        complete=False,
        value=None,
        active=False,
        level=None,
        state="error",
        message=message,
        period_key=period_key(window, rule.window),
    )


def _freshness(refreshed_at: int | None, now: int) -> str:
    if refreshed_at is None or refreshed_at <= 0:
        return "Stripe gave no refreshed_at"
    return f"refreshed {iso(refreshed_at)}, {readable_duration(now - refreshed_at, units=2)} ago"


def stale_finding(rule: Rule, customer: str, now: int, usage: UsageResult) -> Finding:
    """The ``nodata`` finding for a (rule, customer) whose usage is too stale to judge:
    never a usage verdict. (Unreadable usage is an :func:`error_finding`.)"""
    message = "usage data is stale: " + _freshness(usage.refreshed_at, now)
    return replace(error_finding(rule, customer, now, message), state="nodata")

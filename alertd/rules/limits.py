"""Checks a schema cannot express: Stripe's request limits, the data source, condition sanity.

Pure functions of a validated :class:`~alertd.rules.schema.Rule` (and the configured source).
The loader runs them at load time, so ``alertd validate`` refuses a rule that could only fail
at run time: a request Stripe would reject, a source that cannot serve the rule, or a
condition that could never fire. Each :class:`RuleIssue` names the path inside the rule it is
about; the loader turns that into ``FILE:LINE:COL``.

Judgement calls, so users can predict them:

* Limits count keys per meter spec (one spec per rule): a filter with a list of values
  (``model: [gpt-4, gpt-4o]``) is one dimension filter.
Condition checks are each kind's own (:meth:`~alertd.conditions.base.ConditionKind.check`):

* ``absence``: a silence shorter than one bucket cannot be observed. Buckets are an hour for
  ``window: hour`` and a day otherwise (longer windows are summed from days), so
  ``duration`` must be at least ``1h`` or ``1d`` respectively.
* ``forecast``: ``min_elapsed`` must be shorter than the window's shortest period (a day, a
  week, 28 days), else the forecast could never be made; its default (``3d``) therefore needs
  ``window: week`` or ``month``, or an explicit ``min_elapsed``.
* ``anomaly``: ``min_history`` cannot exceed ``history``.
* ``for`` and ``keep_firing_for`` are already non-negative by the schema's duration type.
"""

from __future__ import annotations

from collections.abc import Sequence

from alertd.conditions import kind_of
from alertd.conditions.base import RuleIssue
from alertd.config.settings import StripeSettings
from alertd.rules.schema import Rule
from alertd.stripe_limits import LimitBreach, spec_breaches

_USE_METER_USAGE = "or set stripe.source: meter_usage (the Meter Usage Analytics API)"


def group_by_issue(keys: Sequence[object]) -> RuleIssue | None:
    """Too many ``group_by`` keys for one request (checked on the raw rule: the schema caps
    the list too, with a message that does not say why)."""
    breaches = spec_breaches(group_by=len(keys))
    return _limit_issue(breaches[0]) if breaches else None


def rule_issues(rule: Rule, stripe: StripeSettings) -> list[RuleIssue]:
    """Every problem of ``rule`` that pydantic does not see, in a stable order."""
    issues = [*request_limit_issues(rule), *condition_issues(rule)]
    if stripe.source == "event_summaries":
        issues += event_summaries_issues(rule)  # says what needs a meter there, and more
    else:
        issues += needs_meter_issues(rule)
    return issues


def request_limit_issues(rule: Rule) -> list[RuleIssue]:
    """Stripe's per-request limits for the rule's meter spec."""
    breaches = spec_breaches(dimension_filters=len(rule.filters),
                             tenant_filters=len(rule.tenant_filters))
    return [_limit_issue(breach) for breach in breaches]


def _limit_issue(breach: LimitBreach) -> RuleIssue:
    return RuleIssue((breach.rule_field,), breach.message())


def needs_meter_issues(rule: Rule) -> list[RuleIssue]:
    """Dimension and tenant filters and group-by keys belong to one meter: Stripe refuses
    them on a request that sums every meter, so such a rule could only fail at each poll."""
    if rule.meter is not None:
        return []
    return [
        RuleIssue(
            (field,),
            f"{field}: needs a 'meter' (dimensions belong to one meter; a rule without "
            "'meter:' sums every meter of the customer); add meter: <meter id> or remove "
            f"{field}",
        )
        for field in ("filters", "tenant_filters", "group_by")
        if getattr(rule, field)
    ]


def event_summaries_issues(rule: Rule) -> list[RuleIssue]:
    """What the GA meter event summaries endpoint cannot serve.

    It reads one meter at a time, in hour or UTC-day buckets, without dimension or tenant
    filters and without grouping.
    """
    issues = []
    if rule.meter is None:
        issues.append(RuleIssue(
            ("meter",),
            "meter: required with stripe.source: event_summaries (event summaries are read "
            f"one meter at a time); name the meter, {_USE_METER_USAGE} to sum all meters",
            at_value=False,
        ))
    for field, what in (
        ("filters", "filter by dimension"),
        ("tenant_filters", "filter by tenant"),
        ("group_by", "group by dimension"),
    ):
        if getattr(rule, field):
            issues.append(RuleIssue(
                (field,),
                f"{field}: stripe.source: event_summaries cannot {what} (Stripe offers that "
                f"on meter event summaries only in a private preview); remove {field}, "
                f"{_USE_METER_USAGE}",
            ))
    if rule.window in ("week", "month"):
        issues.append(RuleIssue(
            ("window",),
            f"window: {rule.window!r} needs stripe.source: meter_usage (event summaries come "
            "in hour or day buckets only); use window: day or hour",
        ))
    if rule.timezone != "UTC":
        issues.append(RuleIssue(
            ("timezone",),
            f"timezone: {rule.timezone!r} needs stripe.source: meter_usage (event summaries "
            "only have UTC day boundaries); use timezone: UTC",
        ))
    return issues


def condition_issues(rule: Rule) -> list[RuleIssue]:
    """Conditions that could never fire, or could not be evaluated, with this rule's window
    (each kind says: :meth:`~alertd.conditions.base.ConditionKind.check`)."""
    return kind_of(rule).check(rule)

"""Stripe's limits on one Meter Usage Analytics request, defined once and checked once.

Where it sits: the rule loader (:mod:`alertd.rules.limits`) refuses a rule whose meter spec
breaks them, the planner (:mod:`alertd.planner`) never builds a request that does, and the
form encoder (:mod:`alertd.source.analytics`) refuses such a query before sending it; all
three ask :func:`spec_breaches` and word a breach with :meth:`LimitBreach.message`. The
simulator (:mod:`alertd.sim.validate`) keeps its own copy on purpose: it plays Stripe, so it
must not agree with alertd merely because both read the same constant.

The limits are the product guide's (``/work/shared/reference/stripe-api-facts.md``): at most
5 meters per request and, per ``meters[i]`` entry, 2 ``dimension_group_by_keys``, 10
``dimension_filters`` and 3 ``tenant_filters``. A filter with a list of values is one filter.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_METERS = 5
MAX_GROUP_BY = 2
MAX_DIMENSION_FILTERS = 10
MAX_TENANT_FILTERS = 3


@dataclass(frozen=True, slots=True)
class LimitBreach:
    """One per-entry limit broken: ``count`` of a kind where Stripe allows ``limit``.

    ``rule_field`` is the rule's YAML key (``group_by``), ``param`` Stripe's parameter
    (``dimension_group_by_keys``), ``noun`` how the message counts them (``keys``).
    """

    rule_field: str
    param: str
    noun: str
    count: int
    limit: int

    def message(self) -> str:
        """``group_by: at most 2 keys, got 3 (Stripe's limit of dimension_group_by_keys in one
        request)``."""
        return (f"{self.rule_field}: at most {self.limit} {self.noun}, got {self.count} "
                f"(Stripe's limit of {self.param} in one request)")


def spec_breaches(*, group_by: int = 0, dimension_filters: int = 0,
                  tenant_filters: int = 0) -> list[LimitBreach]:
    """The per-entry limits that counts of this size break, in a stable order."""
    checks = (
        ("group_by", "dimension_group_by_keys", "keys", group_by, MAX_GROUP_BY),
        ("filters", "dimension_filters", "dimension filters", dimension_filters,
         MAX_DIMENSION_FILTERS),
        ("tenant_filters", "tenant_filters", "tenant filters", tenant_filters,
         MAX_TENANT_FILTERS),
    )
    return [LimitBreach(field, param, noun, count, limit)
            for field, param, noun, count, limit in checks if count > limit]

"""Reading Stripe: usage sources, the customer and meter directory, rate budgets, HTTP.

Where it sits::

    planner → UsageQuery → Source.fetch → UsageResult → series.build
                              │
                              └─ StripeHTTP (auth, retries, errors) ─ RateBudget (one per limit)

:class:`Source` is the one interface the engine knows; :func:`build_source` picks the
implementation from ``stripe.source``: :class:`~alertd.source.analytics.MeterUsageSource`
(the Meter Usage Analytics API) or :class:`~alertd.source.summaries.EventSummariesSource`
(meter event summaries, the GA fallback). Both share one :class:`~alertd.source.http.StripeHTTP`
with the :class:`~alertd.source.directory.Directory`, so every request of the process draws
on the same rate budgets.
"""

from __future__ import annotations

from typing import Protocol

from alertd.config.settings import StripeSettings
from alertd.model import UsageQuery, UsageResult
from alertd.source.analytics import MeterUsageSource
from alertd.source.http import StripeHTTP
from alertd.source.summaries import EventSummariesSource


class Source(Protocol):
    """Reads the usage one :class:`UsageQuery` asks for.

    Raises a :class:`~alertd.errors.SourceError` when it cannot; never returns rows it did
    not read (no zero stands in for missing data).
    """

    async def fetch(self, query: UsageQuery) -> UsageResult: ...


def build_source(http: StripeHTTP, settings: StripeSettings) -> Source:
    """The source ``stripe.source`` names, reading through ``http``."""
    if settings.source == "event_summaries":
        return EventSummariesSource(http, settings)
    return MeterUsageSource(http, settings)


__all__ = ["EventSummariesSource", "MeterUsageSource", "Source", "StripeHTTP", "build_source"]

"""Builders shared by the evaluation tests: rules from plain dicts, instants from readable
local times, and series made the way the engine makes them (needs → rows → build_series)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from alertd import calendar, conditions
from alertd.conditions.series import build_series
from alertd.model import (
    Customer,
    DataNeed,
    Dimensions,
    Finding,
    Granularity,
    Period,
    Series,
    UsageRow,
)
from alertd.rules.schema import Rule

HOUR = 3600
DAY = 86400
LAG = 300.0

#: Usage of one bucket, from its start (unix seconds) — or one number for every bucket.
Usage = Callable[[int], float] | float


def at(text: str, tz: str = "UTC") -> int:
    """``"2025-01-06 10:20"`` read as wall time in ``tz`` (an explicit offset wins)."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(tz))
    return int(moment.timestamp())


def local(instant: int, tz: str) -> str:
    """An instant as ``2025-01-06 10:20+05:30`` in ``tz``, for readable assertions."""
    return datetime.fromtimestamp(instant, ZoneInfo(tz)).isoformat(sep=" ", timespec="minutes")


def make_rule(condition: Mapping[str, Any], **fields: Any) -> Rule:
    """A validated rule named ``r`` (fields as in a rule file; ``for`` spelled ``for_``)."""
    raw: dict[str, Any] = {"name": "r", "meter": "mtr_1", "condition": dict(condition)}
    raw.update(fields)
    return Rule.model_validate(raw)


@lru_cache(maxsize=4096)
def _periods(starts_at: int, ends_at: int, granularity: Granularity, tz: str) -> list[Period]:
    return calendar.periods(starts_at, ends_at, granularity, tz)


def rows_for(
    need: DataNeed, usage: Usage, dimensions: Dimensions = (), *, prorate: bool = False
) -> list[UsageRow]:
    """One row per bucket of ``need`` (clipped to its range, as Stripe clips), zeros left out.
    With ``prorate``, a clipped bucket holds the share of its usage that fits the range (usage
    spread evenly over the bucket), as a running day would."""
    rows = []
    for period in _periods(need.starts_at, need.ends_at, need.granularity, need.timezone):
        value = usage(period.starts_at) if callable(usage) else usage
        if prorate:
            inside = min(period.ends_at, need.ends_at) - max(period.starts_at, need.starts_at)
            value *= inside / (period.ends_at - period.starts_at)
        if value:
            rows.append(UsageRow(
                max(period.starts_at, need.starts_at), min(period.ends_at, need.ends_at),
                float(value), need.spec.meter, dimensions,
            ))
    return rows


def series_for(
    rule: Rule,
    now: int,
    usage: Usage,
    *,
    refreshed_at: int | None = None,
    lag: float = LAG,
    customer: str = "cus_1",
    groups: Sequence[Dimensions] = (),
    prorate: bool = False,
) -> list[Series]:
    """The series the engine would build for ``rule`` at ``now`` (fresh data by default:
    refreshed a minute ago)."""
    (need,) = conditions.needs(rule, customer, now)
    rows: list[UsageRow] = []
    for group in groups or [()]:
        rows += rows_for(need, usage, group, prorate=prorate)
    refreshed = now - 60 if refreshed_at is None else refreshed_at
    return build_series(rule, need, rows, refreshed, now=now, freshness_lag=lag)


def judge(
    rule: Rule,
    now: int,
    usage: Usage,
    *,
    refreshed_at: int | None = None,
    lag: float = LAG,
    customer: Customer | None = None,
    prorate: bool = False,
) -> Finding:
    """The finding on the rule's one series at ``now``."""
    who = customer or Customer("cus_1", "Acme")
    (series,) = series_for(rule, now, usage, refreshed_at=refreshed_at, lag=lag, customer=who.id,
                           prorate=prorate)
    return conditions.evaluate(rule, series, who, now)

"""Deadlines: for each alert series, the earliest instant a new read of it could matter.

Where it sits: the daemon's deadline scheduler (:mod:`alertd.service.schedule`) hands every
finding of a poll to :func:`series_deadline` and polls a customer again when the earliest
deadline of its series comes; :mod:`bench.latency` drives the same functions on a virtual
clock. Everything here is pure: data and ``now`` in, an instant out.

Why a read can wait, kind by kind (``every``, the rule's interval, stays the longest a series
goes unread, except where noted; ``min_interval``, or ``every`` when that is shorter, the
shortest):

* **A firing or pending series** (or any active verdict) is read at ``every``: a pending one
  must be judged again once ``for`` has passed, a firing one must be seen to resolve.
* **An upper threshold** (``>``/``>=`` on usage; the verdict only climbs within a period) at
  value ``v`` below its lowest bound ``B`` cannot cross before ``at + (B − v) / (safety · r)``,
  where ``at`` is the data's instant (``refreshed_at``, not ``now``: the data lags), ``r`` the
  series' recent peak growth rate (:func:`remember`) and ``safety`` covers what the peak has
  not seen yet (a busier hour of the day, a burst). If that instant is past the period's end,
  the window resets: the next period starts at zero and needs ``B / (safety · r)`` from its
  start. A series with no usage at all has ``r = 0``: it cannot cross at its recent pace, so it
  is read at ``every`` and no more ("a customer with no usage for weeks needs little"). A
  sudden burst faster than ``safety`` times the recent peak is what ``every`` bounds.
* **A kind judged on completed buckets** (``judged_at`` set, not reading the running period:
  anomaly, change, lower thresholds on their window; absence on hours) cannot change its
  verdict before the next judged bucket completes, ``freshness_lag`` (and the data's own delay)
  after its end. Such a series is read once per completed bucket, and no more often than
  ``every`` allows: at the first completion at least ``every − bucket`` from now. So an hourly
  anomaly rule with ``every: 15m`` is read once an hour, right after each hour completes; one
  with ``every: 6h`` every five to six hours, at a completion. (Here the longest gap is
  ``max(every, one bucket)``: nothing that could change the verdict is missed.)
* **Everything else** (forecasts, credit, cost thresholds whose tiered prices can steepen,
  ``nodata`` and ``error`` findings) is read at ``every``, as without deadlines.

A series nothing is known of (a new customer, after a restart or reload) is due now.

The recent peak rate (:func:`remember`) is the largest of: the growth between this read and
the previous one of the same period; the period's mean so far; and the previous peak, halved
every ``peak_half_life`` (a day by default, so yesterday's busy afternoon is remembered
through tonight's quiet hours). A correction (negative meter events) never lowers it below
zero. Over-estimating only reads sooner; the clamp to ``every`` keeps an under-estimate's cost
bounded.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

from alertd import calendar
from alertd.conditions.money import wants_billing
from alertd.conditions.registry import kind_of
from alertd.conditions.series import NOMINAL_SECONDS
from alertd.model import Finding, Granularity
from alertd.rules.schema import Rule

#: Finding states read at ``every`` whatever their numbers say.
WATCHED_STATES = frozenset({"pending", "firing", "nodata", "error"})


@dataclass(frozen=True, slots=True)
class Pacing:
    """How deadlines are worked out (the ``schedule:`` settings)."""

    #: The recent peak growth rate is multiplied by this before a crossing is projected.
    safety: float = 3.0
    #: A series is never read again sooner than this after a read.
    min_interval: float = 60.0
    #: The remembered peak rate halves over this long without a higher one.
    peak_half_life: float = 86_400.0
    #: ``stripe.freshness_lag``: how long after its end a bucket counts as complete.
    freshness_lag: float = 300.0


@dataclass(frozen=True, slots=True)
class Memory:
    """What earlier reads taught about one series: its last value in its period, as of the
    data instant ``at``, and its recent peak growth rate (units per second)."""

    at: float
    value: float
    period_key: str
    peak_rate: float


def remember(
    previous: Memory | None, finding: Finding, at: float, pacing: Pacing
) -> Memory | None:
    """The series' memory after a read whose data is as of ``at``; ``None`` when the finding
    carries no usage value (an error, no data)."""
    if finding.value is None or not math.isfinite(finding.value):
        return previous
    value = finding.value
    elapsed = max(at - finding.window.starts_at, pacing.min_interval)
    rates = [max(value, 0.0) / elapsed]
    if previous is not None:
        decay = 0.5 ** (max(at - previous.at, 0.0) / pacing.peak_half_life)
        rates.append(previous.peak_rate * decay)
        if previous.period_key == finding.period_key and at > previous.at:
            rates.append((value - previous.value) / (at - previous.at))
    # Interned: every series of a period shares one key string.
    return Memory(at, value, sys.intern(finding.period_key), max(0.0, *rates))


def crossing_deadline(
    value: float, bound: float, rate: float, at: float, period_end: float
) -> float:
    """The earliest instant a total of ``value`` at ``at``, growing at most ``rate`` per
    second and reset to zero at ``period_end``, can reach ``bound`` (``inf``: never)."""
    if value >= bound:
        return at
    if rate <= 0:
        return math.inf
    crossing = at + (bound - value) / rate
    if crossing < period_end:
        return crossing
    return period_end + max(bound, 0.0) / rate


def completion_deadline(
    now: float, every: float, granularity: Granularity, timezone: str, delay: float
) -> float:
    """The first instant, at least ``every − one bucket`` from ``now`` and after ``now``, at
    which a newly completed bucket of ``granularity`` can be read: a bucket boundary plus
    ``delay`` (the freshness lag and the data's own delay behind ``now``)."""
    earliest = now + max(0.0, every - NOMINAL_SECONDS[granularity])
    # The first boundary b with b + delay > earliest.
    boundary = calendar.next_start(math.floor(earliest - delay), granularity, timezone)
    return boundary + delay


def series_deadline(
    rule: Rule, finding: Finding, memory: Memory | None, now: float, pacing: Pacing, *,
    every: float | None = None, data_delay: float = 0.0,
) -> float:
    """When ``finding``'s series should next be read (see the module docstring). ``memory``
    is its state after this read (:func:`remember`); ``every`` the poll group's interval
    (default: the rule's); ``data_delay`` how far the data lags ``now`` (``now −
    refreshed_at``, at least 0)."""
    every = rule.every if every is None else every
    data_delay = max(0.0, data_delay)
    due = now + every
    kind = kind_of(rule)
    if finding.active or finding.state in WATCHED_STATES:
        pass
    elif projectable(rule, finding):
        assert finding.value is not None and finding.threshold is not None
        rate = pacing.safety * (memory.peak_rate if memory is not None else 0.0)
        crossing = crossing_deadline(finding.value, finding.threshold, rate,
                                     now - data_delay, finding.window.ends_at)
        due = min(due, crossing + data_delay)
    else:
        judged = kind.judged_at(rule)
        if judged is not None and not kind.reads_running_period(rule):
            due = completion_deadline(now, every, judged, rule.timezone,
                                      pacing.freshness_lag + data_delay)
    return max(due, now + min(pacing.min_interval, every))


def projectable(rule: Rule, finding: Finding) -> bool:
    """Whether the finding is an upper bound on a total that only grows within its period:
    the only series whose deadline reads its :class:`Memory` (so the only ones to keep one)."""
    kind = kind_of(rule)
    return (kind.grows_within_period(rule) and kind.reads_running_period(rule)
            and not wants_billing(rule) and finding.value is not None
            and finding.threshold is not None and math.isfinite(finding.threshold))

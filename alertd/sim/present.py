"""Where ``alertd simulate`` starts its history, so that incidents are under way *now*.

Incidents are placed in 7-day blocks counted from the history start (:mod:`alertd.sim.incidents`),
so with a history starting at midnight ``days`` ago the present may fall in a quiet part of
every block, and the tour's ``alertd --dry-run`` against the simulator would show nothing
firing. :func:`lively_start` moves the start back by whole hours, up to one block, to the
offset where the most customers have an incident a dry run can see at ``now``. Pure and
deterministic: the same seed, customers, rate and hour give the same start.

An incident counts when a pass at ``now`` judges it: a quota overuse earlier today (UTC)
(upper thresholds fire on the running day), or a spike, drop or stop that covers the last
complete hours (those rules judge complete buckets only).
"""

from __future__ import annotations

from alertd.sim.incidents import BLOCK_SECONDS, HOUR, Incident, IncidentSchedule
from alertd.sim.profiles import DAY_SECONDS

#: The last complete hours a pass can judge, relative to now (freshness lag included).
_JUDGED = (3 * HOUR, HOUR)


def visible(incident: Incident, now: int) -> bool:
    """Whether a pass at ``now`` can see ``incident``."""
    if incident.kind == "overuse":
        return now // DAY_SECONDS * DAY_SECONDS <= incident.starts_at <= now - HOUR
    if incident.kind == "late":
        return False
    return incident.overlaps(now - _JUDGED[0], now - _JUDGED[1])


def lively_start(seed: int, customers: int, rate: float, days: int, now: int) -> int:
    """The history start (at most one block before midnight ``days`` ago) under which the
    most customers have a :func:`visible` incident at ``now``."""
    base = now // DAY_SECONDS * DAY_SECONDS - days * DAY_SECONDS
    best, best_count = base, -1
    for shift in range(0, BLOCK_SECONDS, HOUR):
        start = base - shift
        count = _visible_count(IncidentSchedule(seed, start, rate), customers, now)
        if count > best_count:
            best, best_count = start, count
    return best


def _visible_count(schedule: IncidentSchedule, customers: int, now: int) -> int:
    since = now - 4 * DAY_SECONDS  # long drops and stops started up to 3 days back
    found = 0
    for index in range(customers):
        incidents = schedule.for_customer(index, f"cus_{index}", since, now)
        found += any(visible(i, now) for i in incidents)
    return found

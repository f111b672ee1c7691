"""The soak's accounting: duplicates, losses and incidents against alerts. Pure functions.

Inputs are what the soak collected: the sinks' :class:`~soak_sinks.Receipt` rows, the daemon's
outbox read from its state file after it stopped (:class:`Queued`), the events it logged
(:class:`Logged`) and the simulator's labelled incidents.

* **duplicate**: a message (``Idempotency-Key`` / ``Message-ID``) accepted more than once. A
  message the sink refused (503) and got again later is a retry, not a duplicate.
* **lost**: a notification the outbox ended with as ``failed``, ``undeliverable`` or still
  ``pending``; one it marked ``delivered`` that no sink accepted; one the daemon logged as
  queued that no sink accepted; a firing (or escalation) the daemon logged that no accepted
  notification to a receiver carried.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from soak_sinks import Receipt

Pair = tuple[str, str]  # (rule, customer)

#: Which example rules are meant to notice an incident of a kind on a meter (absent: none).
#: An overuse crosses the daily quota (UTC day) and, for free-plan customers, the gpt-4 daily
#: limit (New York day). Spikes and drops of API calls reach ``api-calls-doubled`` only when a
#: whole day doubles, which a 1-2 hour spike does not; storage has no example rule; late data
#: is no alert condition.
EXPECTED_RULES: Mapping[tuple[str, str], tuple[str, ...]] = {
    ("overuse", "mtr_sim_tokens"): ("daily-token-quota", "gpt4-daily-usage"),
    ("spike", "mtr_sim_tokens"): ("token-usage-anomaly",),
    ("drop", "mtr_sim_tokens"): ("token-usage-anomaly",),
    ("stop", "mtr_sim_tokens"): ("token-usage-anomaly",),
    ("stop", "mtr_sim_api_calls"): ("api-calls-stopped",),
}


@dataclass(frozen=True, slots=True)
class Queued:
    """One outbox row as the daemon left it."""

    id: str
    receiver: str
    status: str
    attempts: int
    error: str | None
    created_at: float
    firing: frozenset[Pair]


@dataclass(frozen=True, slots=True)
class Logged:
    """One event from the daemon's JSON log: ``fired``/``escalated``/``resolved`` for an
    alert (``key`` = (rule, customer)), or ``queued`` for a notification (``key`` =
    (receiver, id))."""

    at: float
    event: str
    key: Pair


@dataclass(frozen=True, slots=True)
class Accounting:
    duplicates: Mapping[str, int]  # message → extra acceptances
    retried: int  # messages refused at least once, then accepted
    lost: tuple[str, ...]  # one line per lost item, with the reason


def duplicates(receipts: Iterable[Receipt]) -> dict[str, int]:
    """Messages accepted more than once, with how many extra times."""
    counts = Counter(r.message for r in receipts if r.accepted)
    return {message: n - 1 for message, n in counts.items() if n > 1}


def retried(receipts: Sequence[Receipt]) -> int:
    refused = {r.message for r in receipts if not r.accepted}
    return len(refused & {r.message for r in receipts if r.accepted})


def accepted_ids(receipts: Iterable[Receipt], channels: Mapping[str, str]) -> set[Pair]:
    """``(receiver, notification id)`` of everything accepted; ``channels``: receiver →
    channel (one receiver per channel in the soak's config)."""
    receiver_of = {channel: receiver for receiver, channel in channels.items()}
    return {(receiver_of[r.channel], r.key) for r in receipts if r.accepted}


def lost_items(
    outbox: Sequence[Queued], receipts: Sequence[Receipt], logged: Sequence[Logged],
    channels: Mapping[str, str],
) -> list[str]:
    """Every notification or firing that did not reach its receiver, one line each."""
    arrived = accepted_ids(receipts, channels)
    lines = [f"outbox {q.status}: {q.receiver} {q.id} after {q.attempts} attempts ({q.error})"
             for q in outbox if q.status != "delivered"]
    lines += [f"outbox delivered but never accepted by a sink: {q.receiver} {q.id}"
              for q in outbox if q.status == "delivered" and (q.receiver, q.id) not in arrived]
    lines += [f"logged as queued, never accepted: {e.key[0]} {e.key[1]}"
              for e in logged if e.event == "queued" and e.key not in arrived]
    lines += unannounced_firings(outbox, arrived, logged, channels)
    return lines


def unannounced_firings(
    outbox: Sequence[Queued], arrived: set[Pair], logged: Sequence[Logged],
    channels: Mapping[str, str],
) -> list[str]:
    """Firings logged that no accepted notification of some receiver carried as firing."""
    carried: dict[str, set[Pair]] = defaultdict(set)
    for q in outbox:
        if (q.receiver, q.id) in arrived:
            carried[q.receiver] |= q.firing
    lines = []
    for event in logged:
        if event.event not in ("fired", "escalated"):
            continue
        missing = [r for r in channels if event.key not in carried[r]]
        if missing:
            lines.append(f"{event.event} {event.key[0]} {event.key[1]} at {event.at:.0f}: "
                         f"no firing notification reached {', '.join(missing)}"
                         f"{_resolved_note(event, logged)}")
    return lines


def _resolved_note(event: Logged, logged: Sequence[Logged]) -> str:
    later = [e.at for e in logged if e.event == "resolved" and e.key == event.key
             and e.at >= event.at]
    return f" (resolved {min(later) - event.at:.0f}s later)" if later else ""


def account(
    outbox: Sequence[Queued], receipts: Sequence[Receipt], logged: Sequence[Logged],
    channels: Mapping[str, str],
) -> Accounting:
    return Accounting(duplicates(receipts), retried(receipts),
                      tuple(lost_items(outbox, receipts, logged, channels)))


# --------------------------------------------------------------------------- incidents


@dataclass(frozen=True, slots=True)
class KindRow:
    kind: str
    before: int  # ended in the lookback before the soak started
    under_way: int  # already under way when the soak started
    started: int  # started during the soak
    expected: str  # the rules meant to notice them
    watched: int  # incidents on a meter such a rule reads
    alerted: int  # of those, incidents whose customer one of those rules alerted


def incident_rows(
    incidents: Sequence[Mapping[str, Any]], alerted: set[Pair], started_at: float
) -> list[KindRow]:
    """Per incident kind: how many the simulator placed before, across and during the soak,
    and how many the mapped rule alerted (an alert of that rule for that customer delivered
    while the daemon ran)."""
    rows = []
    for kind in ("overuse", "spike", "drop", "stop", "late"):
        mine = [i for i in incidents if i["kind"] == kind]
        watched = [i for i in mine if (kind, i["meter"]) in EXPECTED_RULES]
        rules = sorted({r for i in watched for r in EXPECTED_RULES[(kind, i["meter"])]})
        hit = [i for i in watched if any(
            (r, i["customer"]) in alerted for r in EXPECTED_RULES[(kind, i["meter"])])]
        rows.append(KindRow(
            kind,
            before=sum(i["ends_at"] <= started_at for i in mine),
            under_way=sum(i["starts_at"] < started_at < i["ends_at"] for i in mine),
            started=sum(i["starts_at"] >= started_at for i in mine),
            expected=", ".join(rules) or "-", watched=len(watched), alerted=len(hit)))
    return rows


def alerts_by_rule(outbox: Iterable[Queued], arrived: set[Pair]) -> dict[str, tuple[int, int]]:
    """Rule → (notifications delivered carrying it as firing, customers alerted)."""
    notes: Counter[str] = Counter()
    customers: dict[str, set[str]] = defaultdict(set)
    for q in outbox:
        if (q.receiver, q.id) not in arrived:
            continue
        for rule, customer in q.firing:
            notes[rule] += 1
            customers[rule].add(customer)
    return {rule: (notes[rule], len(customers[rule])) for rule in sorted(notes)}


def delivered_pairs(outbox: Iterable[Queued], arrived: set[Pair]) -> set[Pair]:
    return {pair for q in outbox if (q.receiver, q.id) in arrived for pair in q.firing}

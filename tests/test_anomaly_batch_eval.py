"""The anomaly evaluator's batch entry: ``conditions.evaluate_many`` over all series of a rule
gives each series the finding ``conditions.evaluate`` gives it alone, in order — series of
different lengths (customers who started later), other zones (DST), ``exclude`` periods, a
burst, and the cases settled before the detector (no usage, a negative bucket, too little
history) mixed in one batch."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import pytest

from alertd import conditions
from alertd.calendar import periods
from alertd.clock import parse_instant
from alertd.conditions import anomaly_eval
from alertd.conditions.anomaly import AnomalyCondition
from alertd.conditions.anomaly_model import Array
from alertd.conditions.columns import columns_of
from alertd.conditions.series import build_series
from alertd.model import Customer, Series, UsageRow
from alertd.rules.schema import Rule

HOUR = 3600
NOW = int(parse_instant("2025-03-12T15:37:00Z", 0))
Usage = Callable[[int], float]


def rule(window: str, timezone: str, exclude: list[object]) -> Rule:
    return Rule.model_validate({
        "name": f"spike-{window}", "meter": "mtr_1", "window": window,
        "timezone": timezone, "group_by": ["model"],
        "condition": {"type": "anomaly", "exclude": exclude},
    })


def usage(rng: random.Random, kind: str) -> Usage:
    """Hourly usage with a daily cycle; ``kind`` makes it start late, burst, go negative at
    the end, stop, or never start."""
    scale = rng.uniform(50, 5000)
    started = NOW - rng.randint(2, 20) * 86400 if kind == "late" else 0

    def value(start: int) -> float:
        if kind == "none" or start < started:
            return 0.0
        if kind == "negative" and start >= NOW - 2 * HOUR:
            return -scale
        if kind == "stopped" and start >= NOW - 5 * HOUR:
            return 0.0
        hour = (start // HOUR) % 24
        level = scale * (1 + 0.5 * math.sin(2 * math.pi * hour / 24)) * rng.uniform(0.8, 1.2)
        if kind == "burst" and start >= NOW - 4 * HOUR:
            level *= 6
        return float(round(level))

    return value


KINDS = ("plain", "plain", "late", "burst", "negative", "stopped", "none")


def laid_out(judged: Rule, series: Series) -> Array | None:
    """The values the detector is handed for ``series`` (``None``: not judged)."""
    columns = columns_of(series.buckets)
    at = anomaly_eval.latest_complete(columns)
    if at is None or columns.values[at] < 0:
        return None
    condition = judged.condition
    assert isinstance(condition, AnomalyCondition)
    return anomaly_eval.judged_values(columns, at, anomaly_eval.plan_for(judged.window),
                                      judged.timezone, condition.exclude)


def series_of(judged: Rule, customer: str, value: Usage) -> list[Series]:
    (need,) = conditions.needs(judged, customer, NOW)
    rows = [UsageRow(p.starts_at, p.ends_at, v, "mtr_1", (("model", model),))
            for model in ("a", "b")
            for p in periods(need.starts_at, need.ends_at, "hour", need.timezone)
            if (v := value(p.starts_at)) != 0 and p.starts_at < NOW]
    return build_series(judged, need, rows, NOW - 60, now=NOW, freshness_lag=300)


@pytest.mark.parametrize("window", ["hour", "day"])
@pytest.mark.parametrize(("timezone", "exclude"), [
    ("UTC", []),
    ("America/New_York", []),  # 2025-03-09: a DST change inside the history
    ("Europe/Berlin", [{"weekdays": ["sun"]}, "2025-03-01"]),
])
def test_evaluate_many_equals_evaluate_series_by_series(
    window: str, timezone: str, exclude: list[object]
) -> None:
    judged = rule(window, timezone, exclude)
    rng = random.Random(f"{window}{timezone}")
    items = []
    for index in range(24):
        customer = Customer(f"cus_{index}")
        kind = KINDS[index % len(KINDS)]
        items += [(s, customer) for s in series_of(judged, customer.id, usage(rng, kind))]
    together = conditions.evaluate_many(judged, items, NOW)
    alone = [conditions.evaluate(judged, s, c, NOW) for s, c in items]
    assert together == alone
    states = {(f.state, f.active) for f in together}
    assert ("inactive", False) in states
    if window == "hour":
        assert ("inactive", True) in states  # the bursts
    # Customers who started later are laid out shorter: the batch held several lengths.
    lengths = {len(v) for s, _ in items if (v := laid_out(judged, s)) is not None}
    assert len(lengths) > 1

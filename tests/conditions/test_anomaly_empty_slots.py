"""A gappy customer's hour that was empty every time before, through the evaluator's finding:
the finding says what was expected there (nothing: an idle slot) and a band, never "expected
nan (nan–nan)" (``EMPTY_SLOTS`` in :mod:`alertd.conditions.anomaly_model`; the reason is in
:mod:`alertd.conditions.anomaly_level`)."""

from __future__ import annotations

import math
import random
from functools import cache

import pytest
from usage_series_builders import HOUR, at, judge, make_rule

from alertd.conditions.series import number

JUDGED = "2025-02-12 13:00"


def bursty(judged: float) -> object:
    """Busy 08:00-20:00 UTC on a strong daily profile, about a third of those hours empty
    (a customer who uses the product in bursts), and 13:00 empty every day: ``judged`` at
    13:00 on 2025-02-12."""

    @cache
    def usage(start: int) -> float:
        if start == at(JUDGED):
            return judged
        hour = start // HOUR % 24
        rng = random.Random(start)
        if not 8 <= hour < 20 or hour == 13 or rng.random() < 0.3:
            return 0.0
        return float(round(100 * (1 + (hour - 8) ** 2) * (0.9 + 0.2 * rng.random())))

    return usage


@pytest.mark.parametrize(
    ("judged", "active"),
    [
        (0.0, False),  # empty, as always
        (3000.0, False),  # a use about the size of the customer's busy hours: not unusual
        (50_000.0, True),  # far above them
    ],
)
def test_a_slot_empty_every_time_before_expects_nothing(judged: float, active: bool) -> None:
    rule = make_rule({"type": "anomaly"}, window="hour")
    finding = judge(rule, at(JUDGED) + HOUR + 600, bursty(judged))  # type: ignore[arg-type]
    assert finding.window.starts_at == at(JUDGED)
    assert "nan" not in finding.message, finding.message
    assert finding.baseline == 0.0
    low, high = finding.details["band"]
    assert low == 0.0 and math.isfinite(high) and high > 0
    assert f"expected 0 ({number(low)}–{number(high)}, " in finding.message
    assert finding.active is active, finding.message

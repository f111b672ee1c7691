"""What the detector expects where nothing was expected (:mod:`alertd.conditions.anomaly_level`):
quiet buckets are a ratio of 1 in the adaptation factor (``QUIET_RATIO``), and a gappy series'
slot that was always empty expects nothing (``EMPTY_SLOTS``: an idle slot) instead of giving no
verdict. ``QUIET_RATIO`` is off by default, ``EMPTY_SLOTS`` on (the module docstring has why);
the behavioural tests check the shipped setting either way, so switching one shows here."""

from __future__ import annotations

import math

import numpy as np
import pytest

from alertd.conditions.anomaly_level import empty_expected, quiet_ratios
from alertd.conditions.anomaly_model import EMPTY_SLOTS, QUIET_RATIO, Settings, assess, seasonal


@pytest.mark.parametrize(
    ("value", "center", "ratio"),
    [
        (0.0, 0.0, 1.0),  # nothing expected, nothing used: the level as usual
        (50.0, 0.0, math.nan),  # a use where nothing was expected: no ratio to measure
        (0.0, 10.0, 0.0),  # nothing where usage was expected: a ratio of 0
        (30.0, 10.0, 3.0),
    ],
)
def test_quiet_ratios(value: float, center: float, ratio: float) -> None:
    plain = np.asarray([value / center if center > 0 else math.nan])
    got = quiet_ratios(plain, np.asarray([value]), np.asarray([center])).tolist()
    assert got == [pytest.approx(ratio, nan_ok=True)]


def test_one_burst_among_quiet_hours_does_not_move_the_factor() -> None:
    """Same slot of two earlier days: nights empty, one busy hour. A burst at the end of a
    quiet night is judged against the anchor, not against a factor it raised itself."""
    day = np.zeros(24)
    day[8:20] = 100.0
    values = np.concatenate([day, day, day])
    values[-16] = 900.0  # 08:00 of the last day, the first busy hour: 9 times its anchor
    adapted, anchor = seasonal(values[np.newaxis], len(values) - 15, 24, 6)
    # 09:00, the hour after the burst: of the six ratios before it, five are 0/0 (without
    # QUIET_RATIO: the burst's own ratio alone, so 900 expected and a band grown nine times).
    assert anchor[0, 0] == 100.0
    assert adapted[0, 0] == (100.0 if QUIET_RATIO else 900.0)


def test_empty_expected() -> None:
    assert empty_expected(np.asarray([np.nan, 0.0, 5.0])).tolist() == [0.0, 0.0, 5.0]


def _gappy_day(seed: int) -> np.ndarray:
    """Four weeks of a bursty customer: busy 08:00-20:00 on a strong daily profile, a third
    of those hours empty, and 13:00 always empty (its slot has no earlier value)."""
    hours = np.arange(28 * 24)
    rng = np.random.default_rng(seed)
    busy = (hours % 24 >= 8) & (hours % 24 < 20) & (hours % 24 != 13)
    values = np.where(
        busy, 100 * (1 + (hours % 24 - 8) ** 2) * rng.lognormal(0, 0.1, len(hours)), 0.0
    )
    values[busy & (rng.random(len(hours)) < 0.3)] = 0.0
    return values[: 27 * 24 + 14]  # judged: 13:00 of the last day


@pytest.mark.parametrize(
    ("judged", "active"),
    [
        (0.0, False),  # the slot is empty as always
        (3000.0, False),  # a use, below the customer's busy hours: not unusual
        (20_000.0, True),  # far above the busy hours: unusual (without EMPTY_SLOTS: no verdict)
    ],
)
def test_a_gappy_series_judges_a_slot_that_was_always_empty(judged: float, active: bool) -> None:
    """Judged without its empty buckets, a gappy series' 13:00 slot has no earlier value; it
    expects nothing there (an idle slot: unusual above 1.3 x the busy buckets' 90 %
    quantile), rather than giving no expectation and no verdict at all."""
    values = _gappy_day(11)
    values[-1] = judged
    verdict = assess(values, Settings(adaptation=6, seasons=((24, "day"), (168, "week"))))
    assert verdict is not None and verdict.method == "day"
    if not EMPTY_SLOTS:  # the shipped default: no expectation, so never unusual
        assert math.isnan(verdict.expected) and not verdict.active
        return
    assert verdict.expected == 0.0 and verdict.low == 0.0
    assert math.isfinite(verdict.high) and verdict.active is active

"""Drops judged as factors (:mod:`alertd.conditions.anomaly_ratio`, ``Settings.drop_ratio``;
off by default, the model's docstring has the figures): on a bursty series whose linear band
reaches down to 0, a drop to a thousandth of the usual is unusual, a drop as deep as the
pool's usual ones is not, and where empty hours are common an empty hour is not either."""

from __future__ import annotations

import math

import numpy as np
import pytest

from alertd.conditions.anomaly_model import DROP_RATIO, Settings, assess, assess_many
from alertd.conditions.anomaly_ratio import FLOOR, drop_scores, drop_tail, log_ratios


@pytest.mark.parametrize(
    ("value", "reference", "ratio"),
    [
        (50.0, 100.0, math.log(0.5)),
        (100.0, 100.0, 0.0),
        (0.0, 100.0, math.log(FLOOR)),  # an empty hour: a finite, large drop
        (5.0, 0.0, math.nan),  # nothing expected: no factor to measure
    ],
)
def test_log_ratios(value: float, reference: float, ratio: float) -> None:
    got = log_ratios(np.asarray([value]), np.asarray([reference])).tolist()
    assert got == [pytest.approx(ratio, nan_ok=True)]


@pytest.mark.parametrize(
    ("below", "count", "tail"),
    [
        (0.5, 20, -math.log(0.5)),  # every drop halves: the tail is a halving
        (0.5, 11, math.nan),  # fewer than MIN_SIDE drops: no tail
    ],
)
def test_drop_tail(below: float, count: int, tail: float) -> None:
    history = np.full((1, 40), 100.0)
    history[0, :count] = 100.0 * below
    got = drop_tail(history, np.full((1, 40), 100.0), 0.99, 12)
    assert got.shape == (1, 1)
    assert got[0, 0] == pytest.approx(tail, nan_ok=True)


@pytest.mark.parametrize(
    ("value", "beyond"),
    [
        (50.0, False),  # as deep as the usual drops: well inside (score -4 / 1.3)
        (30.0, True),  # beyond 1.3 times the usual drop's log ratio
        (0.0, True),
        (120.0, None),  # not a drop: no score
    ],
)
def test_drop_scores(value: float, beyond: bool | None) -> None:
    score = drop_scores(np.asarray([[value]]), np.asarray([[100.0]]),
                        np.asarray([[-math.log(0.5)]]), 1.3, 4.0)[0, 0]
    if beyond is None:
        assert math.isnan(score)
    else:
        assert bool(score < -4.0) is beyond


def _bursty(seed: int, empty_share: float = 0.0) -> np.ndarray:
    """Two weeks of hours around 100 that fall to a fifth now and then and burst up to ten
    times: the band below reaches 0 (a drop can't leave it linearly)."""
    rng = np.random.default_rng(seed)
    values = 100 * rng.lognormal(0, 0.1, 14 * 24)
    values[rng.random(len(values)) < 0.08] = 20.0
    values[rng.random(len(values)) < 0.05] *= 10
    values[rng.random(len(values)) < empty_share] = 0.0
    return values


@pytest.mark.parametrize(
    ("last", "empty_share", "ratio_alerts"),
    [
        (0.1, 0.0, True),  # a thousandth of the usual: far beyond the usual fifth
        (20.0, 0.0, False),  # the usual drop to a fifth
        (0.1, 0.05, False),  # empty hours are common: a near-empty hour is not unusual
    ],
)
def test_a_deep_drop_on_a_bursty_series(last: float, empty_share: float,
                                        ratio_alerts: bool) -> None:
    values = _bursty(3, empty_share)
    values[-1] = last
    plain = assess(values, Settings(drop_ratio=False))
    ratio = assess(values, Settings(drop_ratio=True))
    assert plain is not None and ratio is not None
    assert plain.low == 0.0 and not plain.active  # linearly, no drop can leave the band
    assert ratio.active is ratio_alerts
    assert ratio.outside is ratio_alerts
    assert ratio.low > 0.0 or not ratio_alerts


def test_batch_is_one_by_one() -> None:
    block = np.stack([_bursty(seed, share) for seed, share in ((1, 0.0), (2, 0.05), (4, 0.0))])
    block[:, -1] = [0.1, 0.1, 60.0]
    settings = Settings(drop_ratio=True)
    assert assess_many(block, settings) == [assess(row, settings) for row in block]


def test_off_by_default() -> None:
    assert DROP_RATIO is False
    values = _bursty(3)
    values[-1] = 0.1
    assert assess(values, Settings()) == assess(values, Settings(drop_ratio=False))

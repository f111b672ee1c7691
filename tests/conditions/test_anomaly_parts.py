"""The pure pieces of the anomaly evaluator: local hour numbers across DST, the dense timeline,
seasonal medians (the fast path agrees with the obvious one), the band and score of one or two
expectations, idle slots, direction, and where history starts."""

from __future__ import annotations

import random
import statistics
from itertools import pairwise

import pytest
from usage_series_builders import at

from alertd.calendar import period_containing
from alertd.conditions.anomaly import (
    MAX_SEASONS,
    METHOD_IDLE,
    Expectation,
    Reference,
    Season,
    Timeline,
    history_start,
    idle_expectation,
    local_units,
    median,
    outside,
    trailing_expectation,
)


@pytest.mark.parametrize(
    ("tz", "first", "hours", "steps"),
    [
        ("UTC", "2025-03-08 00:00", 72, {1}),
        # Spring forward: the local hour 02:00 does not exist, so one step is two hours.
        ("America/New_York", "2025-03-08 00:00", 72, {1, 2}),
        # Fall back: 01:00 happens twice, so one step is zero hours.
        ("America/New_York", "2025-11-01 00:00", 72, {0, 1}),
        ("Asia/Kolkata", "2025-03-08 00:00", 48, {1}),
    ],
)
def test_local_hour_numbers(tz: str, first: str, hours: int, steps: set[int]) -> None:
    start = period_containing(at(first, tz), "hour", tz).starts_at
    starts = [start + 3600 * n for n in range(hours)]
    units = local_units(starts, 3600, tz)
    assert {b - a for a, b in pairwise(units)} == steps
    # Unit numbers are local wall-clock hours: their hour of day is the local hour.
    assert units[0] % 24 == 0


def test_local_day_numbers_follow_local_midnight() -> None:
    starts = [at("2025-03-08 00:00", "America/New_York"), at("2025-03-09 00:00",
              "America/New_York"), at("2025-03-10 00:00", "America/New_York")]
    units = local_units(starts, 86400, "America/New_York")
    assert units[1] - units[0] == units[2] - units[1] == 1
    assert (units[0] + 3) % 7 == 5  # day 0 was a Thursday; 2025-03-08 is a Saturday


@pytest.mark.parametrize(
    ("lo", "hi", "expected"),
    [
        (10, 13, [1.0, 2.0, None]),
        (8, 11, [None, None, 1.0]),
        (13, 15, [None, None]),
        (5, 7, [None, None]),
    ],
)
def test_timeline_window(lo: int, hi: int, expected: list[float | None]) -> None:
    assert Timeline(10, [1.0, 2.0, None]).window(lo, hi) == expected


def test_timeline_starts_at_the_local_day_of_first_use() -> None:
    values: list[float | None] = [*([0.0] * 30), 5.0, 0.0, 7.0]
    line = Timeline(48, values)
    trimmed = line.since_first_use(24)
    assert trimmed.first == 72 and trimmed.values == [0.0] * 6 + [5.0, 0.0, 7.0]
    assert Timeline(0, [0.0, 0.0]).since_first_use(24) == Timeline(0, [0.0, 0.0])


@pytest.mark.parametrize("gaps", [False, True])
@pytest.mark.parametrize("length", [1, 7, 24, 168])
def test_seasonal_medians_agree_with_the_obvious_ones(length: int, gaps: bool) -> None:
    rng = random.Random(length)
    values: list[float | None] = [float(rng.randrange(100)) for _ in range(900)]
    if gaps:
        for index in rng.sample(range(900), 20):
            values[index] = None
    season = Season(Timeline(1000, values), length)

    def obvious(unit: int) -> float | None:
        earlier = [values[unit - 1000 - length * k] for k in range(1, MAX_SEASONS + 1)
                   if unit - 1000 - length * k >= 0]
        present = [v for v in earlier if v is not None]
        return statistics.median(present) if present else None

    for units in (range(1000, 1900), range(1100, 1900, 2), range(1899, 1900)):
        assert season.centers(units) == [obvious(unit) for unit in units]


@pytest.mark.parametrize(
    ("values", "expected"),
    [([3.0], 3.0), ([4.0, 1.0], 2.5), ([5.0, 1.0, 3.0], 3.0), ([1.0, 9.0, 2.0, 4.0], 3.0)],
)
def test_median(values: list[float], expected: float) -> None:
    assert median(values) == expected


def test_median_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="no values"):
        median([])


SEASONAL = Reference(100.0, 10.0)
RECENT = Reference(300.0, 30.0)


@pytest.mark.parametrize(
    ("references", "value", "score", "band"),
    [
        ((SEASONAL,), 150.0, 5.0, (60.0, 140.0)),
        ((SEASONAL,), 40.0, -6.0, (60.0, 140.0)),
        # Two expectations (the seasonal one and the recent level's): the band is their hull,
        # the score is measured from the nearest, and anything between them scores 0.
        ((SEASONAL, RECENT), 200.0, 0.0, (60.0, 420.0)),
        ((SEASONAL, RECENT), 450.0, 5.0, (60.0, 420.0)),
        ((SEASONAL, RECENT), 50.0, -5.0, (60.0, 420.0)),
        # A band reaching below zero reads from zero.
        ((Reference(10.0, 5.0),), 0.0, -2.0, (0.0, 30.0)),
    ],
)
def test_score_and_band(references: tuple[Reference, ...], value: float, score: float,
                        band: tuple[float, float]) -> None:
    expectation = Expectation(references, 4.0, "m", 4)
    assert expectation.score(value) == pytest.approx(score)
    assert expectation.band == pytest.approx(band)
    low, high = expectation.band
    assert (abs(expectation.score(value)) > 4.0) == (not low <= value <= high)


def test_idle_slot_judges_a_use_against_the_usual_busy_buckets() -> None:
    expectation = idle_expectation([0.0, 0.0, 100.0, 120.0, 80.0, 0.0], 4.0, 6)
    assert expectation.method == METHOD_IDLE and expectation.band[0] == 0.0
    assert expectation.score(0.0) == 0.0
    assert abs(expectation.score(110.0)) < 4.0 < expectation.score(500.0)


def test_trailing_needs_three_samples() -> None:
    assert trailing_expectation([1.0, 2.0], 4.0) is None
    found = trailing_expectation([100.0, 110.0, 90.0], 4.0)
    assert found is not None and found.method == "trailing median/MAD"
    (reference,) = found.references
    assert reference.center == 100.0 and reference.spread == pytest.approx(14.826)


@pytest.mark.parametrize(
    ("direction", "score", "expected"),
    [("up", 5.0, True), ("up", -5.0, False), ("down", -5.0, True), ("down", 5.0, False),
     ("both", 5.0, True), ("both", -5.0, True), ("both", 3.9, False), ("both", 4.0, False)],
)
def test_outside(direction: str, score: float, expected: bool) -> None:
    assert outside(score, 4.0, direction) is expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("start", "granularity", "history", "expected"),
    [
        ("2025-03-12 00:00", "day", "35d", "2025-02-05 00:00"),
        ("2025-03-12 10:00", "hour", "35d", "2025-02-05 10:00"),
        ("2025-11-05 00:00", "day", "7d", "2025-10-29 00:00"),
        ("2025-03-10 00:00", "hour", "1d", "2025-03-09 00:00"),
    ],
)
def test_history_start_counts_local_time(start: str, granularity: str, history: str,
                                         expected: str) -> None:
    tz = "America/New_York"
    days = {"35d": 35, "7d": 7, "1d": 1}[history]
    current = period_containing(at(start, tz), granularity, tz)  # type: ignore[arg-type]
    assert history_start(current, granularity, days * 86400.0) == at(expected, tz)  # type: ignore[arg-type]

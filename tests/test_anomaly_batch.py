"""``assess_many`` (the detector over many series at once) equals ``assess`` row by row,
exactly: every field of every assessment, bit for bit (``NaN`` equal to ``NaN``), on batches
drawn by hypothesis — young and long histories, excluded (``NaN``) runs, idle slots, gappy
series, ties between predictors, constant and integer series, every setting (with pool
buckets judged in an episode left out, ``pool_out``, too) — and on hourly
and daily series as the evaluator builds them.

Also: the evaluator's batch entry (``evaluate_many``) gives each series the finding
``evaluate`` gives it, across lengths, zones, exclusions and the cases judged before the
detector (no complete bucket, negative usage, short history)."""

from __future__ import annotations

import math
import random
from dataclasses import astuple

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from alertd.conditions.anomaly_eval import DAILY, HOURLY, Plan
from alertd.conditions.anomaly_model import Assessment, Settings, assess, assess_many

SEASONS = ((6, "short season"), (24, "long season"))


def exact(assessment: Assessment | None) -> object:
    """The assessment's fields with floats as their bits (so ``NaN`` equals ``NaN``, and
    ``-0.0`` does not equal ``0.0``)."""
    if assessment is None:
        return None
    return tuple(float.hex(f) if isinstance(f, float) else f for f in astuple(assessment))


def series(rng: random.Random, length: int, recipe: dict[str, float]) -> list[float]:
    """One series of ``length`` buckets: a level with a cycle, noise, idle slots, gaps, a
    level shift, spikes, excluded runs; rounded to integers where the recipe says."""
    level = recipe["level"]
    shift_at = int(recipe["shift_at"] * length)
    values = []
    for t in range(length):
        value = level * (1 + recipe["cycle"] * math.sin(2 * math.pi * t / 6))
        value *= rng.lognormvariate(0, recipe["noise"]) if recipe["noise"] else 1.0
        if t >= shift_at:
            value *= recipe["shift"]
        if t % 6 < recipe["idle"]:
            value = 0.0
        if rng.random() < recipe["gaps"]:
            value = 0.0
        if rng.random() < recipe["spikes"]:
            value *= 10
        if recipe["integers"]:
            value = float(round(value))
        values.append(value)
    for _ in range(int(recipe["excluded"])):
        start = rng.randrange(length)
        for t in range(start, min(length, start + rng.randint(1, 8))):
            values[t] = math.nan
    return values


recipes = st.fixed_dictionaries({
    "level": st.sampled_from([0.5, 3.0, 1000.0, 123456.789]),
    "cycle": st.sampled_from([0.0, 0.5, 0.95]),
    "noise": st.sampled_from([0.0, 0.05, 0.5, 1.5]),
    "shift_at": st.floats(0.0, 1.0),
    "shift": st.sampled_from([1.0, 0.1, 3.0]),
    "idle": st.integers(0, 3),
    "gaps": st.sampled_from([0.0, 0.05, 0.2, 0.6]),
    "spikes": st.sampled_from([0.0, 0.02, 0.2]),
    "integers": st.booleans(),
    "excluded": st.integers(0, 3),
})

detector_settings = st.builds(
    Settings,
    sensitivity=st.sampled_from([1.0, 3.0, 4.0, 6.0]),
    adaptation=st.integers(2, 6),
    pool=st.integers(8, 60),
    lookback=st.integers(2, 12),
    hold=st.integers(0, 2),
    seasons=st.sampled_from([(), SEASONS[:1], SEASONS]),
    direction=st.sampled_from(["up", "down", "both"]),
    min_volume=st.sampled_from([0.0, 2.0, 500.0]),
    min_errors=st.integers(3, 12),
    pool_out=st.sampled_from(["", "spread", "both"]),
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    length=st.one_of(st.integers(2, 40), st.integers(40, 260)),
    rows=st.lists(recipes, min_size=1, max_size=6),
    copies=st.integers(0, 2),
    repeats=st.integers(1, 3),
    config=detector_settings,
    seed=st.integers(0, 2**32 - 1),
)
def test_assess_many_equals_assess_row_by_row(
    length: int, rows: list[dict[str, float]], copies: int, repeats: int, config: Settings,
    seed: int,
) -> None:
    """Batches of 1 to 21 rows: below and above MANY, where episodes are stepped through for
    all rows at once."""
    rng = random.Random(seed)
    block = [series(rng, length, recipe) for recipe in rows * repeats]
    # Equal rows and rows a rounding apart: the choice between predictors on near ties.
    block += [list(block[0]) for _ in range(copies)]
    if copies:
        block.append([v * (1 + 1e-15) for v in block[0]])
    values = np.asarray(block, np.float64)
    many = assess_many(values, config)
    assert [exact(a) for a in many] == [exact(assess(row, config)) for row in values]


def hourly(rng: random.Random, length: int, kind: str) -> list[float]:
    """An hour-of-week profile with noise; ``kind`` adds what real customers have."""
    values = []
    for t in range(length):
        hour, weekday = t % 24, (t // 24) % 7
        value = 500 * (1 + 0.6 * math.sin(2 * math.pi * hour / 24)) * (0.4 if weekday >= 5
                                                                      else 1.0)
        value *= rng.lognormvariate(0, 0.2)
        idle = kind == "nights" and (hour < 7 or weekday >= 5)
        if idle or (kind == "gappy" and rng.random() < 0.3):
            value = 0.0
        elif kind == "burst" and length - 6 <= t < length - 1:
            value *= 8
        elif kind == "excluded" and weekday == 6:
            value = math.nan
        values.append(value if math.isnan(value) else float(round(value)))
    return values


def plan_settings(plan: Plan, adaptation: int) -> Settings:
    return Settings(adaptation=adaptation, pool=plan.pool, lookback=plan.lookback,
                    hold=plan.hold, seasons=plan.seasons, min_errors=plan.min_errors)


KINDS = ("plain", "nights", "gappy", "burst", "excluded")


@settings(max_examples=25, deadline=None, derandomize=True)
@given(length=st.sampled_from([30, 200, 400, 855]), seed=st.integers(0, 2**32 - 1),
       adaptation=st.sampled_from([2, 6, 24]))
def test_hourly_and_daily_plans(length: int, seed: int, adaptation: int) -> None:
    """The evaluator's own plans, at the lengths a pass hands over (35 days of hours)."""
    rng = random.Random(seed)
    values = np.asarray([hourly(rng, length, kind) for kind in KINDS for _ in range(3)])
    for plan in (HOURLY, DAILY):
        config = plan_settings(plan, adaptation)
        many = assess_many(values, config)
        assert [exact(a) for a in many] == [exact(assess(row, config)) for row in values]
        assert any(a is not None for a in many)

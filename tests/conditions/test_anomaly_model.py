"""The pure pieces of the detector and of the vectorised series builder, against the obvious
implementations: quantiles and medians equal numpy's, trailing and seasonal predictions equal
a loop's, episodes follow the entry/exit bands, and ``build_series`` equals a per-row loop on
random rows (group-by, rows outside the range, clipped ends, DST)."""

from __future__ import annotations

import random
import statistics

import numpy as np
import pytest
from usage_series_builders import HOUR, at, make_rule

from alertd import calendar
from alertd.conditions.anomaly_model import (
    DEFAULT_SENSITIVITY,
    MARGIN,
    ROBUST_Q,
    TAIL,
    Settings,
    _each_beyond,
    _episode,
    _median,
    _spread,
    _winsorised,
    assess,
    quantile,
    quantiles,
    rolling_mean,
    seasonal,
    trailing_median,
)
from alertd.conditions.series import build_series
from alertd.model import Bucket, DataNeed, MeterSpec, UsageRow


@pytest.mark.parametrize("count", [1, 2, 7, 168])
@pytest.mark.parametrize("q", [0.0, 0.5, 0.9, 0.99, 1.0])
def test_quantile_is_numpys(count: int, q: float) -> None:
    values = np.asarray([random.Random(count).lognormvariate(0, 2) for _ in range(count)])
    assert quantile(values, q) == pytest.approx(float(np.quantile(values, q)))


def test_median_with_and_without_nan() -> None:
    block = np.asarray([[1.0, 5.0, 2.0, 8.0], [3.0, 1.0, 4.0, 1.0], [9.0, 9.0, 0.0, 2.0]])
    assert _median(block, 0).tolist() == np.median(block, axis=0).tolist()
    assert _median(block, 1).tolist() == np.median(block, axis=1).tolist()
    block[0, 0] = np.nan
    assert _median(block, 0).tolist() == [6.0, 5.0, 2.0, 2.0]


def test_trailing_median_is_the_median_of_the_buckets_before() -> None:
    values = np.asarray([float(random.Random(i).randint(0, 99)) for i in range(50)])
    for first in (0, 3, 6, 20):
        got = trailing_median(values, first, 6)
        for offset, t in enumerate(range(first, 50)):
            before = values[max(0, t - 6):t]
            expected = statistics.median(before) if len(before) else None
            assert (np.isnan(got[offset]) if expected is None
                    else got[offset] == expected), (first, t)


def test_seasonal_center_is_the_same_slot_of_earlier_seasons_scaled_to_the_recent_level() -> None:
    season = [1.0, 2.0, 3.0, 4.0]
    values = np.asarray(season * 6 + [2 * v for v in season] * 2)  # the level doubles
    adapted, anchor = seasonal(values, 24, 4, adaptation=4)
    assert anchor.tolist() == season * 2  # the old normal, slot by slot
    # The adaptation window has caught up once four doubled buckets are behind.
    assert adapted[4:].tolist() == [2 * v for v in season]


@pytest.mark.parametrize(
    ("scores", "started"),
    [
        ([0, 0, 5, 3, 3, 1], None),          # entered, then inside the exit band: over
        ([0, 0, 5, 3, 3, 2.5], 3),           # still outside the exit band (2): one episode
        ([0, 5, 1, 5, 3, 3], 2),             # left, re-entered: a new episode
        ([0, 0, 0, 0, 3, 3.5], None),        # never beyond the entry band (4)
        ([0, 0, 0, 0, 0, -5], 0),            # both directions by default
    ],
)
def test_episodes_enter_beyond_the_band_and_leave_inside_the_exit_band(
    scores: list[float], started: int | None
) -> None:
    recent = np.full(len(scores), 100.0)
    assert _episode(recent, recent, np.asarray(scores), Settings()) == started


def test_hold_bridges_short_dips() -> None:
    scores, recent = np.asarray([0.0, 5, 1, 5, 3]), np.full(5, 100.0)
    assert _episode(recent, recent, scores, Settings()) == 1  # re-entered at index 3
    assert _episode(recent, recent, scores, Settings(hold=1)) == 3  # one episode from 1


def test_direction_and_min_volume_gate_episodes() -> None:
    scores = np.asarray([0.0, -6.0])
    recent = np.asarray([100.0, 100.0])
    assert _episode(recent, recent, scores, Settings(direction="up")) is None
    assert _episode(recent, recent, scores, Settings(direction="down")) == 0
    assert _episode(recent, recent, scores, Settings(min_volume=1000)) is None


def test_assess_flat_series_spike_and_exclusion() -> None:
    rng = random.Random(3)
    values = np.asarray([100.0 + rng.gauss(0, 3) for _ in range(400)] + [400.0])
    found = assess(values, Settings(seasons=((24, "day"),)))
    assert found is not None and found.active and found.started == 0 and found.score > 4
    assert found.low <= found.expected <= found.high < 400
    values[-1] = np.nan
    assert assess(values, Settings()) is None


# --------------------------------------------------------------------------- build_series


def loop_build(rule_group_by: list[str], need: DataNeed, rows: list[UsageRow]
               ) -> dict[tuple[tuple[str, str], ...], list[float]]:
    """The obvious per-row implementation."""
    periods = calendar.periods(need.starts_at, need.ends_at, need.granularity, need.timezone)
    sums: dict[tuple[tuple[str, str], ...], list[float]] = {}
    if not rule_group_by:
        sums[()] = [0.0] * len(periods)
    for row in rows:
        if not need.starts_at <= row.starts_at < need.ends_at:
            continue
        for index, period in enumerate(periods):
            if period.contains(row.starts_at):
                found = dict(row.dimensions)
                group = tuple(sorted((k, found.get(k, "")) for k in rule_group_by))
                sums.setdefault(group, [0.0] * len(periods))[index] += row.value
    return sums


@pytest.mark.parametrize("count", [5, 500])  # a loop below FEW_ROWS, numpy from there
@pytest.mark.parametrize("group_by", [[], ["model"], ["model", "tier"]])
@pytest.mark.parametrize(("tz", "start"), [("UTC", "2025-01-06 00:30"),
                                           ("America/New_York", "2025-03-08 00:00")])
def test_build_series_equals_a_per_row_loop(
    group_by: list[str], tz: str, start: str, count: int
) -> None:
    rng = random.Random(len(group_by))
    need = DataNeed("cus_1", MeterSpec("mtr_1"), "hour", tz, at(start, tz),
                    at(start, tz) + 60 * HOUR + 900)
    rows = [
        UsageRow(need.starts_at - 7200 + rng.randrange(0, 70 * HOUR), 0,
                 rng.choice([0.5, 1.0, 3.25, 1e6]), "mtr_1",
                 tuple(sorted({"model": rng.choice("abc"),
                               **({"tier": "pro"} if rng.random() < 0.5 else {})}.items())))
        for _ in range(count)
    ]
    rule = make_rule({"type": "threshold", "value": 1}, window="hour", timezone=tz,
                     group_by=group_by)
    built = build_series(rule, need, rows, need.ends_at, now=need.ends_at, freshness_lag=300)
    expected = loop_build(group_by, need, rows)
    assert {s.key.group: [b.value for b in s.buckets] for s in built} == expected
    periods = calendar.periods(need.starts_at, need.ends_at, "hour", tz)
    for series in built:
        assert series.buckets == tuple(
            Bucket(max(p.starts_at, need.starts_at), min(p.ends_at, need.ends_at), value,
                   p.ends_at <= min(need.ends_at - 300, need.ends_at))
            for p, value in zip(periods, expected[series.key.group], strict=True)
        )


def gappy_usage(hours: int, seed: int = 3) -> np.ndarray:
    """About 100 an hour, but a fifth of the hours empty at random (a customer who reports in
    batches, or uses the product in bursts)."""
    rng = random.Random(seed)
    return np.asarray([0.0 if rng.random() < 0.2 else 100.0 * rng.uniform(0.9, 1.1)
                       for _ in range(hours)])


def test_a_gappy_series_is_judged_on_its_non_empty_buckets() -> None:
    """Its empty hours are as usual, and do not widen the band: a doubling still alerts, and is
    the narrower for the gaps being left out of what is learned."""
    settings = Settings(seasons=((24, "day"), (168, "week")))
    history = gappy_usage(35 * 24)
    empty = assess(np.append(history, 0.0), settings)
    assert empty is not None and not empty.active and empty.score == 0.0
    doubled = assess(np.append(history, 200.0), settings)
    assert doubled is not None and doubled.active and doubled.score > settings.sensitivity
    assert doubled.high < 150.0
    steady = np.asarray([100.0 * random.Random(i).uniform(0.9, 1.1) for i in range(35 * 24)])
    plain = assess(np.append(steady, 200.0), settings)
    assert plain is not None and plain.active and not plain.gappy


def test_empty_night_hours_are_not_gaps() -> None:
    """Empty hours the profile predicts (nights) make no series gappy: a stop in its busy hours
    is still judged as one."""
    day = [0.0] * 8 + [100.0] * 16
    values = np.asarray([v * random.Random(i).uniform(0.9, 1.1)
                         for i, v in enumerate(day * 35)])
    values = values[:-6]  # the judged hour is 17:00 of the last day...
    values[-2:] = 0.0  # ...and usage stopped at 16:00
    found = assess(values, Settings(seasons=((24, "day"), (168, "week"))))
    assert found is not None and not found.gappy and found.active and found.score < 0


@pytest.mark.parametrize(
    ("scores", "started"),
    [
        ([0, 0, 5, -3, -3], None),           # the dip after a spike does not keep it up
        ([0, 0, 5, 3, -5], 0),               # beyond the band on the other side: a new one
        ([0, 0, -5, -3, -2.5], 2),           # a drop kept by buckets below its exit band
    ],
)
def test_an_episode_is_kept_only_by_buckets_on_its_own_side(
    scores: list[float], started: int | None
) -> None:
    recent = np.full(len(scores), 100.0)
    assert _episode(recent, recent, np.asarray(scores), Settings()) == started


@pytest.mark.parametrize("count", [3, 12, 168])
def test_quantiles_by_one_partition_are_numpys(count: int) -> None:
    values = np.asarray([random.Random(count).gauss(0, 3) for _ in range(count)])
    qs = (0.0, 0.5, 0.9, 0.99)
    assert quantiles(values, qs) == pytest.approx([float(np.quantile(values, q)) for q in qs])


@pytest.mark.parametrize("seed", range(4))
def test_spread_from_sorted_errors_is_each_sides_tail(seed: int) -> None:
    """Each side's TAIL quantile times MARGIN over the default sensitivity, at least the
    floor; a side with too few errors uses both sides' absolute errors."""
    rng = random.Random(seed)
    errors = np.asarray([rng.lognormvariate(0, 1) * rng.choice((-1, 1, 1))
                         for _ in range(100)] + [0.0] * 3)
    above, below = _spread(np.sort(errors), 0.01)
    scale = MARGIN / DEFAULT_SENSITIVITY
    assert above == pytest.approx(float(np.quantile(errors[errors > 0], TAIL)) * scale)
    assert below == pytest.approx(float(np.quantile(-errors[errors < 0], TAIL)) * scale)
    lopsided = np.sort(np.concatenate((np.abs(errors), [-1.0])))
    assert _spread(lopsided, 0.01)[1] == pytest.approx(
        float(np.quantile(np.abs(lopsided), TAIL)) * scale)
    assert _spread(np.sort(errors), 1e9) == (1e9, 1e9)


@pytest.mark.parametrize("seed", range(4))
def test_winsorised_errors_are_clipped_at_a_multiple_of_each_sides_quantile(seed: int) -> None:
    """The robust pool (``ROBUST``): errors beyond ``factor`` times their side's ``q``
    quantile are set to that limit, the rest, the order and the trailing NaN stay."""
    rng = random.Random(seed)
    errors = np.asarray([rng.gauss(0, 1) for _ in range(80)] + [40.0, 55.0, -30.0])
    ranked = np.sort(np.concatenate((errors, [np.nan, np.nan])))
    clipped = _winsorised(ranked, 0.01, 3.0)
    up = 3.0 * float(np.quantile(errors[errors > 0], ROBUST_Q))
    down = 3.0 * float(np.quantile(-errors[errors < 0], ROBUST_Q))
    expected = np.sort(np.clip(errors, -down, up))
    assert clipped[:-2] == pytest.approx(expected)
    assert np.isnan(clipped[-2:]).all()
    assert clipped[-3] == pytest.approx(up) and clipped[0] == pytest.approx(-down)
    assert np.all(np.diff(clipped[:-2]) >= 0)
    # The band is then no longer set by the three outliers.
    assert _spread(clipped, 0.01)[0] < _spread(ranked, 0.01)[0] / 3


def test_rolling_means_and_runs_beyond_a_limit() -> None:
    values = np.asarray([1.0, 3.0, np.nan, 5.0, 7.0])
    got = rolling_mean(values, 2)
    assert np.isnan(got[0]) and got[1] == 2.0 and np.isnan(got[2]) and np.isnan(got[3])
    assert got[4] == 6.0
    scores = np.asarray([3.0, 3.0, 1.0, -3.0, -3.0])
    up = np.asarray([True, True, True, False, False])
    assert _each_beyond(scores, 2, 2.0, up).tolist() == [False, True, False, False, True]


def test_a_steady_trend_does_not_alert() -> None:
    """Usage growing 50 % a week (with a daily cycle): the recent level follows it."""
    hours = np.arange(28 * 24 + 1)
    rng = np.random.default_rng(3)
    values = (1000 * 1.5 ** (hours / 168) * (1.2 + np.sin(2 * np.pi * hours / 24))
              * rng.lognormal(0, 0.05, len(hours)))
    settings = Settings(adaptation=6, seasons=((24, "day"), (168, "week")))
    verdicts = [assess(values[:end], settings) for end in range(21 * 24, len(values) + 1)]
    assert all(v is not None for v in verdicts)
    # The growth never alerts as such: at most a chance hour at the edge of the band (the
    # band is the tail of a week's errors, so about one hour a week of noise is at its edge).
    assert sum(v.active for v in verdicts if v is not None) <= 2


def test_a_seasonal_series_with_idle_nights_is_quiet_and_a_night_use_is_not() -> None:
    """Busy 09:00-17:00, nothing at night: the empty nights are no anomaly, a night-time
    burst as large as a busy hour is."""
    hours = np.arange(28 * 24 + 1)
    rng = np.random.default_rng(5)
    day = (hours % 24 >= 9) & (hours % 24 < 17)
    values = np.where(day, 500 * rng.lognormal(0, 0.1, len(hours)), 0.0)
    settings = Settings(adaptation=6, seasons=((24, "day"), (168, "week")))
    quiet = [assess(values[:end], settings) for end in range(21 * 24, len(values) + 1)]
    assert all(v is not None for v in quiet)
    assert sum(v.active for v in quiet if v is not None) <= 2  # the nights never alert
    night = values.copy()
    night[-1] = 4000.0  # the last hour (hour 0 of a day) is a night hour
    assert hours[-1] % 24 == 0
    burst = assess(night, settings)
    assert burst is not None and burst.active and burst.score > 0

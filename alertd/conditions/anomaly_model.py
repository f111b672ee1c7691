"""The anomaly detector itself: pure numpy over one series of equally long buckets.

:func:`assess` takes the values of a series (oldest first, the judged bucket last; ``NaN``
where a bucket is excluded or missing: such buckets are neither judged nor learned from) and
returns an :class:`Assessment` of the last one. :mod:`alertd.conditions.anomaly` turns local
time, ``exclude`` periods and rule settings into that array and the assessment into a finding.

What it does, and why (chosen on principles, then checked on real labelled series that nobody
here generated — NAB, see ``bench/detection.py`` — and on the simulator):

**Expected value: the best of a few simple predictors.** Each bucket ``t`` is predicted by

* *recent level* — the median of the last ``adaptation`` buckets;
* *same time of day* / *same time of week* (``seasons``) — the median of the same slot in up
  to :data:`MAX_SEASONS` earlier seasons (the *anchor*), times the median ratio of values to
  it over the last ``adaptation`` buckets: usage changes by factors, and this is how a lasting
  change of level (a new customer's ramp, a lost integration) becomes the new normal.

The predictor whose errors were smallest (mean absolute error) over the ``pool`` buckets before
the recent ``lookback`` wins. So a seasonal profile is used only where it predicts better than
"like the last few hours": a series without a rhythm, or too young to have one, uses the recent
level. A level shift alerts once, and after about half of ``adaptation`` the predictors have
caught up. Medians, not means: one outlier moves none of them.

**Band: what that predictor's own errors look like.** Real usage is heavy-tailed and bursty, so
a standard deviation (or a MAD alone) under-states how far normal buckets stray, and the tails
are one-sided (bursts go up, idle hours go down). Each side's spread is the larger of the
normal-consistent MAD of those errors (``x`` :data:`MAD_SCALE`) and the :data:`TAIL` quantile
of that side's errors ``x`` :data:`MARGIN` ``/`` the default sensitivity — at default settings
a bucket must stray 30 % further than all but the largest 1 % of recent errors on its side, so
a series whose bursts are normal gets a band that contains them, without widening the other
side — and at least :data:`RELATIVE_FLOOR` of the expected value. The band is ``expected -
sensitivity x spread below`` to ``expected + sensitivity x spread above``.
It grows with the adapted level (usage that has tripled strays three times as far; it never
shrinks, so a drop does not narrow it into false alerts). A bucket the anchor (the old normal)
explains is not unusual either, so the end of a stop does not alert. In *idle* slots (next to
nothing expected: a customer who uses the product a few days a month, or never at night) a use
is unusual only above :data:`MARGIN` times the customer's :data:`BUSY` quantile of busy buckets.

**A lasting shift, too.** A change too small for any one bucket to leave the band but that
lasts (a slow failure, a partial outage) shows in the mean of the last :data:`SUSTAIN`
buckets' deviations: it is judged the same way against the spread of such means over the same
pool (its own tail quantile and MAD, so the errors' autocorrelation is measured, not assumed),
and counts only where each of those buckets is beyond :data:`EACH` of the entry band on the
same side (so one burst averaged with an ordinary hour is not a second alert). The finding
then says so (``span``: the verdict is on the mean). **Off by default** (:data:`SUSTAIN` is
1) until it is tuned: with two buckets it raised the NAB score (``bench/detection.py``) from
50.0 to 54.6, on both halves of the files (42.2 → 50.5, 58.6 → 59.2), but on the simulator
it took false alerts from about 1.0 to 1.7 per customer-month at the same recall.

**Episodes, with hysteresis.** An episode starts when a bucket leaves the band (in the rule's
``direction``) and lasts while buckets stay outside the *exit* band on the same side
(:data:`EXIT` of the entry band's width; ``hold`` buckets inside it are bridged; the dip
after a spike does not keep the spike's episode up, and a bucket beyond the entry band on the
other side starts a new one). It is reconstructed from the last
``lookback`` buckets at every judgement, so the verdict is a pure function of the data
(restarts change nothing) and a burst that flickers around the band is one episode; the band
is learned from the buckets *before* the lookback, so an anomaly never widens the band it is
judged against. A rule's ``keep_firing_for`` then bridges dips below the exit band.

**Gappy series.** Some customers leave many hours empty where usage was expected (they use the
product in bursts, or report in batches): when at least :data:`GAPS` of the history's buckets
in non-idle slots are empty, the empty hours are normal for them, say nothing, and would widen
the band on both sides if learned from. Such a series is judged a second time with its empty
buckets left out (``NaN``), and an empty judged bucket is as usual (a stop is the ``absence``
kind's to tell, which learns each customer's usual gaps). Empty hours that the profile predicts
(nights, weekends) are idle slots, not gaps.

No model, no training step, no download: a few partitions over at most ``pool + lookback``
buckets, each step over whole arrays (medians of a few seasons by comparisons, of trailing
windows by one partition), a fraction of a millisecond per judgement.

Why over 400 lines: one method, documented here once, whose steps read each other's arrays;
split, its docstring would describe code in another module.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]
Mask = NDArray[np.bool_]

#: MAD times this estimates the standard deviation of normally distributed data.
MAD_SCALE = 1.4826
#: The quantile of recent absolute errors that sets the band on heavy-tailed series...
TAIL = 0.99
#: ...and how far beyond it (at the default sensitivity) a bucket must be to be unusual.
MARGIN = 1.3
#: The sensitivity the tail term is calibrated at (``medium``).
DEFAULT_SENSITIVITY = 4.0
#: Each side's tail needs this many errors on that side (else both sides share one).
MIN_SIDE = 12
#: A slot is idle where the expected value is below this fraction of the customer's median
#: non-zero bucket...
IDLE = 0.05
#: ...and there a use is unusual above MARGIN times this quantile of their non-zero buckets.
BUSY = 0.9
#: A series is gappy when this fraction of its busy-expected buckets were empty.
GAPS = 0.1
#: The exit band is this fraction of the entry band.
EXIT = 0.5
#: The spread is at least this fraction of the expected value.
RELATIVE_FLOOR = 0.01
#: ...and never zero.
EPSILON = 1e-9
#: A seasonal center is the median of at most this many earlier seasons.
MAX_SEASONS = 4
#: The sustained test judges the mean of this many buckets (1: no sustained test, the
#: default for now: see the module docstring).
SUSTAIN = 1
#: ...each of them beyond this fraction of the entry band.
EACH = 0.5

METHOD_RECENT = "recent level"


@dataclass(frozen=True, slots=True)
class Settings:
    """How one series is judged, in buckets. ``seasons``: (length, name) pairs."""

    sensitivity: float = DEFAULT_SENSITIVITY
    adaptation: int = 6
    pool: int = 168
    lookback: int = 24
    hold: int = 0
    seasons: tuple[tuple[int, str], ...] = ()
    direction: str = "both"
    min_volume: float = 0.0
    #: A predictor needs this many measured errors in the pool to be chosen.
    min_errors: int = 12


@dataclass(frozen=True, slots=True)
class Assessment:
    """The verdict on the last bucket. ``score``: spreads from ``expected`` (signed);
    ``active``: the bucket belongs to an episode; ``started``: buckets since that episode
    began (0: it begins here), ``None`` when inactive."""

    value: float
    expected: float
    spread: float
    low: float
    high: float
    score: float
    method: str
    errors: int
    active: bool
    started: int | None
    #: Whether empty buckets where usage was expected are common in this series' history.
    gappy: bool = False
    #: How many buckets the verdict is on: 1, or :data:`SUSTAIN` when the mean of the last
    #: buckets is the more unusual (``value``, ``expected`` and the band are then means).
    span: int = 1

    @property
    def outside(self) -> bool:
        return self.value < self.low or self.value > self.high


def assess(values: Array, settings: Settings) -> Assessment | None:
    """The assessment of ``values[-1]``; ``None`` when no predictor has ``min_errors``
    measured errors yet, or the judged bucket is excluded (``NaN``).

    A *gappy* series (:func:`gappy`: empty buckets where usage was expected are common) is
    judged a second time on its non-empty buckets only, and an empty bucket in it is as usual."""
    if len(values) < 2 or np.isnan(values[-1]):
        return None
    first = _assess(values, settings, gaps=False)
    if first is None or not first.gappy:
        return first
    return _assess(np.where(values == 0, np.nan, values), settings, gaps=True,
                   judged=float(values[-1]))


def _assess(values: Array, settings: Settings, *, gaps: bool, judged: float | None = None
            ) -> Assessment | None:
    """:func:`assess`; with ``gaps``, the empty buckets are ``NaN`` in ``values`` and the
    judged bucket's own value is ``judged``."""
    if gaps and judged == 0:
        values = values.copy()
        values[-1] = 0.0
    end = len(values)
    first = max(0, end - settings.lookback - settings.pool)
    split = max(first, end - settings.lookback - 1)
    # A young series: a shorter lookback, so its pool has the errors a verdict needs.
    split = max(split, min(end - 1, first + settings.min_errors + settings.adaptation))
    chosen = _choose(values, first, split, settings)
    if chosen is None:
        return None
    method, predicted, anchors, sides, mean_sides = chosen
    recent = values[split:]
    expected, anchor = predicted[split - first:], anchors[split - first:]
    history = values[first:split]
    growth = _growth(expected, anchor)
    k = settings.sensitivity
    typical, busy = _busy(history)
    idle = _idle(typical, busy, expected, k)
    deviations = _deviations(recent, expected, anchor)
    if gaps:  # an empty bucket of a gappy series is as usual, and ends no episode by itself
        deviations = np.where(recent == 0, np.nan, deviations)
    scores, ups, downs = _scored(deviations, sides, growth, idle)
    # The sustained test: the mean deviation of the last SUSTAIN buckets, against the spread
    # of such means in the pool (a shift too small for one bucket, but lasting, is caught).
    combined, stronger = scores, np.zeros(len(scores), dtype=bool)
    if SUSTAIN > 1:
        means = rolling_mean(deviations, SUSTAIN)
        sustained, mean_ups, mean_downs = _scored(means, mean_sides, growth, idle)
        # ...and only where each of those buckets is beyond EACH of the band on that side.
        sustained = np.where(_each_beyond(scores, SUSTAIN, EACH * k, sustained > 0),
                             sustained, 0.0)
        stronger = np.abs(sustained) > np.abs(scores)  # NaN compares False
        combined = np.where(stronger, sustained, scores)
    episode = _episode(recent, expected, combined, settings)
    value, center, span = float(values[-1]), float(expected[-1]), 1
    if stronger[-1]:  # the verdict is on the mean of the last SUSTAIN buckets
        span, ups, downs = SUSTAIN, mean_ups, mean_downs
        value = float(np.mean(recent[-SUSTAIN:]))
        center = value - float(means[-1])
    elif not np.isnan(anchor[-1]) and abs(value - anchor[-1]) < abs(value - center):
        center = float(anchor[-1])  # the usual explains it better than the adapted level
    up, down = float(ups[-1]), float(downs[-1])
    score = 0.0 if np.isnan(combined[-1]) else float(combined[-1])
    return Assessment(
        value=value, expected=center, spread=up if value >= center else down,
        low=max(center - k * down, 0.0), high=center + k * up, score=score, method=method,
        errors=int(np.count_nonzero(~np.isnan(history))),
        active=episode is not None, started=episode,
        gappy=not gaps and gappy(history, predicted[:split - first], typical), span=span,
    )


def _choose(
    values: Array, first: int, split: int, settings: Settings
) -> tuple[str, Array, Array, tuple[float, float], tuple[float, float]] | None:
    """The predictor with the smallest mean absolute error over ``[first, split)``: its name,
    its predictions and anchors for ``[first, end)`` and the spread of its errors."""
    best: tuple[float, str, Array, Array, Array, Array] | None = None
    for method, predicted, anchor in _predictors(values, first, settings):
        ordered = values[first:split] - predicted[:split - first]
        errors = ordered[~np.isnan(ordered)]
        if len(errors) < settings.min_errors:
            continue
        mae = float(np.abs(errors).sum()) / len(errors)
        if best is None or mae < best[0]:
            best = (mae, method, predicted, anchor, errors, ordered)
    if best is None:
        return None
    _, method, predicted, anchor, errors, ordered = best
    ranked = np.sort(errors)
    sides = _spread(ranked, _floor(ranked, float(predicted[-1])))
    if SUSTAIN == 1:
        return method, predicted, anchor, sides, sides
    means = rolling_mean(ordered, SUSTAIN)
    means = np.sort(means[~np.isnan(means)])
    sustained = (np.inf, np.inf) if len(means) < len(errors) // 2 else _spread(
        means, _floor(means, float(predicted[-1])))
    return method, predicted, anchor, sides, sustained


def _floor(ranked: Array, center: float) -> float:
    """The least spread: the normal-consistent MAD of the (sorted) errors, at least
    :data:`RELATIVE_FLOOR` of the expected value, never zero."""
    mad = MAD_SCALE * quantile(np.abs(ranked - _ranked_quantile(ranked, 0.5)), 0.5)
    return max(mad, RELATIVE_FLOOR * abs(center), EPSILON)


def _spread(ranked: Array, floor: float) -> tuple[float, float]:
    """``(above, below)``: the spread for values above and below the expectation, from the
    sorted errors ``ranked``: each side's :data:`TAIL` quantile (both sides' together when a
    side has too few errors) times :data:`MARGIN` over the default sensitivity, at least
    ``floor``."""
    count = len(ranked)
    negative = int(np.searchsorted(ranked, 0.0, side="left"))
    positive = count - int(np.searchsorted(ranked, 0.0, side="right"))
    above = below = np.nan
    if positive >= MIN_SIDE:
        above = _ranked_quantile(ranked[count - positive:], TAIL)
    if negative >= MIN_SIDE:
        below = _ranked_quantile(-ranked[negative - 1::-1], TAIL)
    if np.isnan(above) or np.isnan(below):
        tail = quantile(np.abs(ranked), TAIL)
        above, below = (tail if np.isnan(above) else above), (tail if np.isnan(below) else below)
    scale = MARGIN / DEFAULT_SENSITIVITY
    return max(floor, above * scale), max(floor, below * scale)


def _ranked_quantile(ranked: Array, q: float) -> float:
    """:func:`quantile` of values already sorted."""
    position = q * (len(ranked) - 1)
    lo = int(position)
    hi = min(lo + 1, len(ranked) - 1)
    return float(ranked[lo] + (ranked[hi] - ranked[lo]) * (position - lo))


def _each_beyond(scores: Array, width: int, limit: float, up: Mask) -> Mask:
    """Whether each of the ``width`` scores ending at each position is beyond ``limit`` on
    the side ``up`` says (above when true, below when false)."""
    signed = np.where(up, scores, -scores)
    beyond = signed > limit  # NaN compares False
    for lag in range(1, width):
        beyond[lag:] &= np.where(up[lag:], scores[:-lag], -scores[:-lag]) > limit
    beyond[:width - 1] = False
    return beyond


def rolling_mean(values: Array, width: int) -> Array:
    """For each position, the mean of the ``width`` values ending there (``NaN`` where fewer
    precede it, or any of them is ``NaN``)."""
    total = values.copy()
    for lag in range(1, width):
        total[lag:] += values[:-lag]
    total[:width - 1] = np.nan
    return total / width


def quantile(values: Array, q: float) -> float:
    """``np.quantile(values, q)`` (linear interpolation) by one partition: several times
    cheaper on the few hundred values of a judgement."""
    return quantiles(values, (q,))[0]


def quantiles(values: Array, qs: tuple[float, ...]) -> list[float]:
    """:func:`quantile` of each of ``qs``, by one partition."""
    count = len(values)
    positions = [q * (count - 1) for q in qs]
    indices = sorted({i for p in positions for i in (int(p), min(int(p) + 1, count - 1))})
    part = np.partition(values, indices)
    return [float(part[int(p)] + (part[min(int(p) + 1, count - 1)] - part[int(p)])
                  * (p - int(p))) for p in positions]


def _predictors(
    values: Array, first: int, settings: Settings
) -> list[tuple[str, Array, Array]]:
    """Each predictor's prediction of every bucket in ``[first, end)`` (``NaN``: none), and its
    anchor: what the bucket would be without adaptation (``NaN`` for the recent level, which
    *is* the adaptation: a long-run median as its anchor explained real failures away)."""
    recent = trailing_median(values, first, settings.adaptation)
    found = [(METHOD_RECENT, recent, np.full(len(recent), np.nan))]
    for length, name in settings.seasons:
        if len(values) - 1 >= 2 * length:  # two earlier seasons of the judged bucket at least
            adapted, anchor = seasonal(values, first, length, settings.adaptation)
            found.append((name, adapted, anchor))
    return found


def _median(block: Array, axis: int = 0) -> Array:
    """Medians along ``axis`` of a 2-D block, ignoring ``NaN`` (all-``NaN``: ``NaN``).

    Exact either way: a few rows by a comparison network over whole rows (the seasons),
    else one partition of the middle two (sorting is several times slower on short rows)."""
    if np.isnan(block.sum()):  # one reduction; the values are finite otherwise
        with warnings.catch_warnings():  # an all-NaN column is a NaN median, as meant
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.asarray(np.nanmedian(block, axis=axis), dtype=np.float64)
    size = block.shape[axis]
    if axis == 0 and size <= 4:
        return _few_median(block)
    lo, hi = (size - 1) // 2, size // 2
    middle = np.partition(block, (lo, hi), axis=axis)
    low, high = np.take(middle, lo, axis=axis), np.take(middle, hi, axis=axis)
    return np.asarray(low if lo == hi else (low + high) * 0.5, np.float64)


def _few_median(rows: Array) -> Array:
    """The median of one to four rows, column by column, by comparisons."""
    if len(rows) == 1:
        return np.asarray(rows[0], np.float64)
    if len(rows) == 2:
        return np.asarray((rows[0] + rows[1]) * 0.5, np.float64)
    low, high = np.minimum(rows[0], rows[1]), np.maximum(rows[0], rows[1])
    if len(rows) == 3:
        return np.asarray(np.maximum(low, np.minimum(high, rows[2])), np.float64)
    # Of four, the middle two are the larger of the pair minima and the smaller of the maxima.
    low2, high2 = np.minimum(rows[2], rows[3]), np.maximum(rows[2], rows[3])
    return np.asarray((np.maximum(low, low2) + np.minimum(high, high2)) * 0.5, np.float64)


def _shifted(source: Array, width: int, count: int) -> Array:
    """Row ``i`` is ``source[i:i + width]``: the windows of a trailing statistic (a few
    column copies cost less than a strided view's set-up)."""
    block = np.empty((count, width))
    for column in range(width):
        block[:, column] = source[column:column + count]
    return block


def trailing_median(values: Array, first: int, width: int) -> Array:
    """For each bucket from ``first`` on, the median of the ``width`` buckets before it
    (``NaN`` where there are none)."""
    end = len(values)
    if first >= width:
        source = values[first - width:end - 1]
    else:
        # Window i ends just before bucket first + i.
        source = np.concatenate((np.full(width - first, np.nan), values[:end - 1]))
    return _median(_shifted(source, width, end - first), 1)


def seasonal(values: Array, first: int, length: int, adaptation: int) -> tuple[Array, Array]:
    """For each bucket from ``first`` on: the same slot's median over up to
    :data:`MAX_SEASONS` earlier seasons (the *anchor*; as many as the earliest of them has, so
    every bucket is judged alike), and the same scaled by the median ratio of values to it over
    the ``adaptation`` buckets before (so a lasting change of level, which in usage is a
    factor, becomes normal)."""
    end = len(values)
    start = max(0, first - adaptation)
    seasons = min(MAX_SEASONS, start // length)
    if seasons:
        block = np.empty((seasons, end - start))
        for k in range(1, seasons + 1):
            block[k - 1] = values[start - k * length:end - k * length]
        centers = _median(block)
    else:  # a young series: each bucket has the seasons it has
        block = np.full((MAX_SEASONS, end - start), np.nan)
        for k in range(1, MAX_SEASONS + 1):
            if end - k * length > 0:
                take = values[max(start - k * length, 0):end - k * length]
                block[k - 1, end - start - len(take):] = take
        centers = _median(block)
    ratios = np.divide(values[start:], centers, out=np.full(end - start, np.nan),
                       where=centers > 0)
    factor = trailing_median(ratios, first - start, adaptation)
    factor[np.isnan(factor)] = 1.0
    anchor = centers[first - start:]
    return anchor * factor, anchor


def _busy(history: Array) -> tuple[float, float]:
    """The median and the :data:`BUSY` quantile of the history's non-zero buckets (``NaN``
    with fewer than three)."""
    busy = history[history > 0]  # NaN compares False
    if len(busy) < 3:
        return np.nan, np.nan
    typical, high = quantiles(busy, (0.5, BUSY))
    return typical, high


def _idle(typical: float, busy: float, expected: Array, sensitivity: float
          ) -> tuple[Mask, float] | None:
    """Idle slots: where next to nothing is expected (a customer who uses the product a few
    days a month, or never at night), any use would be many spreads away. There, a use is
    unusual only well above the customer's own busy buckets: :data:`MARGIN` times the
    :data:`BUSY` quantile of their non-zero buckets. ``(which slots, the spread there)``."""
    if np.isnan(typical):
        return None
    idle = expected <= IDLE * typical
    return (idle, busy * MARGIN / sensitivity) if idle.any() else None


def _scored(deviations: Array, sides: tuple[float, float], growth: Array,
            idle: tuple[Mask, float] | None) -> tuple[Array, Array, Array]:
    """``(scores, spreads above, spreads below)``: the deviations in spreads of their side,
    grown with the level, the spread above at least the idle slots' where idle."""
    ups, downs = sides[0] * growth, sides[1] * growth
    if idle is not None:
        ups = np.where(idle[0], np.maximum(ups, idle[1]), ups)
    return deviations / np.where(deviations >= 0, ups, downs), ups, downs


def gappy(history: Array, predicted: Array, typical: float) -> bool:
    """Whether the series' empty buckets are part of its normal: at least :data:`GAPS` of the
    history buckets where the predictor expected real usage (not an idle slot; ``typical``:
    the median non-zero bucket) were empty. Such a customer uses the product in bursts with
    empty hours between (or reports in batches): an empty hour says nothing, and learning
    from it would widen the band on both sides (the prediction dips, the errors grow),
    hiding the real changes."""
    if np.isnan(typical) or np.count_nonzero(history > 0) < MIN_SIDE:
        return False
    expecting = predicted > IDLE * typical
    expecting &= ~np.isnan(history)
    if np.count_nonzero(expecting) < MIN_SIDE:
        return False
    return bool(np.count_nonzero(history[expecting] == 0) >= GAPS * np.count_nonzero(expecting))


def _growth(expected: Array, anchor: Array) -> Array:
    """How much a spread grows with the level: usage that has tripled strays three times as
    far (never shrunk, so a drop does not narrow the band into false alerts)."""
    factor = np.divide(expected, anchor, out=np.ones(len(anchor)), where=anchor > 0)
    return np.fmax(factor, 1.0)  # fmax: NaN counts as 1


def _deviations(recent: Array, expected: Array, anchor: Array) -> Array:
    """Deviations from the nearer of the adapted prediction and its anchor; 0 between them:
    a value the old normal or the new level explains is not unusual (so the end of a stop, a
    return to the usual, does not alert)."""
    adapted = recent - expected
    usual = np.where(np.isnan(anchor), adapted, recent - anchor)
    nearer = np.where(np.abs(usual) < np.abs(adapted), usual, adapted)
    return np.where(np.sign(usual) * np.sign(adapted) < 0, 0.0, nearer)


def _episode(recent: Array, expected: Array, scores: Array, settings: Settings) -> int | None:
    """Buckets since the episode the last bucket belongs to began, or ``None``.

    An episode begins beyond the entry band (in an allowed direction) and lasts while buckets
    stay beyond the exit band *on its side* (a spike is not kept up by the dip after it;
    ``hold`` buckets inside are bridged); a bucket beyond the entry band on the other side
    begins a new one."""
    k = settings.sensitivity
    allowed = np.where(scores > 0, settings.direction != "down", settings.direction != "up")
    # NaN (excluded) and quiet (below min_volume) buckets neither start nor extend one.
    allowed &= ~np.isnan(scores) & ~((recent < settings.min_volume)
                                     & (expected < settings.min_volume))
    size = np.abs(scores)
    hits, keeps = (allowed & (size > k)).tolist(), (allowed & (size > EXIT * k)).tolist()
    started: int | None = None
    last, side = -1, False
    for index, (hit, keep, up) in enumerate(zip(hits, keeps, (scores > 0).tolist(),
                                                strict=True)):
        if started is not None and keep and up == side:
            last = index
        elif started is not None and not hit and index - last <= settings.hold:
            continue  # bridged
        elif hit:
            started, last, side = index, index, up
        else:
            started = None
    if started is None or len(recent) - 1 - last > settings.hold:
        return None
    return len(recent) - 1 - started

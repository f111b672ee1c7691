"""Drops judged as factors: the lower side of the band in log ratios (a setting, off).

The band is linear: ``expected - sensitivity x spread below``. On a bursty series whose normal
hours fall to a quarter of the expectation now and then, the lower edge is at 0, and then no
drop can leave it — not even to a thousandth of the usual (``bench/nab_fast.py --missed``:
NAB's ``ec2_network_in_5abac7`` falls from 7.5 million to 829 inside its label window, band
0–29 million). Usage changes by factors, so a drop is measured as one too: the log of the
value over the expectation it deviates from, against the :data:`~anomaly_model.TAIL` quantile
of such logs below 0 in the pool (where the prediction expected something; a value under
:data:`FLOOR` of it counts as that fraction, so an empty hour is a finite, large drop, and
where empty hours are common the quantile says so). Where that score is the more unusual, it
is the bucket's score (same sensitivity, same :data:`~anomaly_model.MARGIN`, same episodes).

Pure, row by row (a batch's row is judged as it alone would be: each row's quantile is its
own, :func:`numpy.nanquantile` along the row).
"""

from __future__ import annotations

import warnings

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]

#: A value below this fraction of its expectation counts as this fraction (an empty hour).
FLOOR = 1e-3


def log_ratios(values: Array, reference: Array) -> Array:
    """``log(value / reference)`` where ``reference > 0`` (``NaN`` elsewhere), the value
    taken as at least :data:`FLOOR` of the reference."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(reference > 0, np.maximum(values, FLOOR * reference) / reference,
                         np.nan)
        return np.asarray(np.log(ratio), np.float64)


def drop_tail(history: Array, predicted: Array, tail: float, min_side: int) -> Array:
    """Each row's ``tail`` quantile of ``-log(value / prediction)`` over its pool buckets
    below their prediction (a column; ``NaN`` where fewer than ``min_side``)."""
    drops = -log_ratios(history, predicted)
    drops = np.where(drops > 0, drops, np.nan)
    count = np.count_nonzero(~np.isnan(drops), axis=-1)
    with warnings.catch_warnings():  # an all-NaN row: no tail, as meant
        warnings.simplefilter("ignore", RuntimeWarning)
        found = np.nanquantile(drops, tail, axis=-1)
    return np.where(count >= min_side, found, np.nan)[:, np.newaxis]


def drop_scores(recent: Array, reference: Array, tail: Array, margin: float,
                calibrated: float) -> Array:
    """Scores (negative spreads, as the band's) of the drops of ``recent`` below
    ``reference``: ``sensitivity`` spreads away where the log ratio is ``margin`` times the
    tail quantile at the ``calibrated`` sensitivity; ``NaN`` where not measurable."""
    ratios = log_ratios(recent, reference)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(np.where(ratios < 0, ratios * calibrated / (margin * tail), np.nan),
                          np.float64)

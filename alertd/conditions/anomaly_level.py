"""What the anomaly detector expects where nothing was expected: idle buckets in the adaptation
factor, and slots a gappy series never used.

Two small rules of :mod:`alertd.conditions.anomaly_model`, each behind a module constant there
(:data:`~alertd.conditions.anomaly_model.QUIET_RATIO`,
:data:`~alertd.conditions.anomaly_model.EMPTY_SLOTS`), found on NAB's ``realTraffic`` files
(hourly sums of irregular readings: bursts between empty hours), where the trailing z-score
scored 30.0 and the detector 17.8.

**A quiet bucket is evidence that the level is as usual.** A seasonal predictor adapts its
anchor (the median of the same slot in earlier seasons) by the median ratio of the last
``adaptation`` values to their anchors. A bucket whose anchor is zero had no ratio, so after
empty night hours the factor was the median of the two or three busy hours before: on
``TravelTime_387`` (2015-08-17 11:00) of 0.0, 0.76, 5.5 and the first hour of the anomaly
itself (7.9), so the expectation rose with the anomaly (373 for 135) and the band, which grows
with the factor, 2.8 times: a burst 21 times the anchor (4,360) stayed inside it. Nothing
expected and nothing used is a ratio of 1 — the level as usual — so one burst among quiet
hours no longer moves the factor by itself (:func:`quiet_ratios`).

**A slot a gappy series never used expects nothing.** A gappy series (empty hours where usage
was expected are common) is judged a second time without its empty buckets. There a slot that
was empty in every earlier season (or a recent-level window of empty hours) had no prediction
at all: ``NaN``, so no score, no verdict, whatever came — the finding read "expected nan
(nan–nan)". It expects nothing instead (:func:`empty_expected`): an idle slot, where a use is
unusual only above :data:`~alertd.conditions.anomaly_model.MARGIN` times the customer's
:data:`~alertd.conditions.anomaly_model.BUSY` quantile of busy buckets, as in any idle slot.

Tried and left out: growing the band with the factor *relative to the pool's median factor*
(so a factor that is always high widens nothing): the same NAB figures to the digit — the
factor is near 1 in most pool buckets, so its median is 1 and nothing changes.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]


def quiet_ratios(ratios: Array, values: Array, centers: Array) -> Array:
    """The ratios of values to their seasonal centers (``NaN`` where the center is not
    positive), with 1 where both the value and its center are zero."""
    return np.where((centers == 0) & (values == 0), 1.0, ratios)


def empty_expected(expected: Array) -> Array:
    """A gappy series' expectations without its empty buckets: 0 where the predictor has none
    (its slot, or its recent window, held only empty buckets)."""
    return np.where(np.isnan(expected), 0.0, expected)

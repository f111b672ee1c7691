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

**QUIET_RATIO off, EMPTY_SLOTS on by default**: the first does not meet the rule for a default
(a gain on both halves of NAB, the simulator within its targets); the second moves no figure,
with the pool's episodes left out (:data:`~alertd.conditions.anomaly_model.POOL_OUT`, the
default) or not, and repairs the verdict and its explanation, so it is on. Measured with
``bench/detection.py`` (NAB overall (half A / half B), its ``realTraffic`` and
``realKnownCause`` categories; simulator 50 customers x 60 days, false alerts per
customer-month and spike recall; drop 0.90 and stop 1.00 in every row):

==========================  ================  =======  ==========  ======  =====
setting                     NAB (A / B)       Traffic  KnownCause  sim FA  spike
==========================  ================  =======  ==========  ======  =====
both off, POOL_OUT off      49.9 (42.2/58.5)  17.8     22.4        0.96    0.81
QUIET_RATIO                 51.2 (44.5/58.5)  25.1     22.4        1.06    0.81
EMPTY_SLOTS                 49.9 (42.2/58.5)  17.8     22.4        0.96    0.81
both off, POOL_OUT "both"   52.7 (45.5/60.7)  28.1     28.9        0.99    0.81
EMPTY_SLOTS, POOL_OUT both  52.7 (45.5/60.7)  28.1     28.9        0.99    0.81
==========================  ================  =======  ==========  ======  =====

``QUIET_RATIO`` hits ``TravelTime_387``'s second window (raw -0.90 -> 1.03) and takes one
false alert off ``TravelTime_451``, but half B does not move, ``art_daily_flatmiddle`` gets a
false alert at the edge of its narrow band (-0.9 on its category), ``realTraffic`` stays
below the z-score's 30.0, and the simulator goes over its false-alert target (1.06 against 1:
its token and API meters have quiet nights, so the morning's factor now starts from 1 and its
first busy hours are judged against a narrower band). ``EMPTY_SLOTS`` moves no figure (simulator
0.959 against 0.96): the buckets it lets be judged are never the ones that matter there; what
it repairs is a finding that read "expected nan (nan–nan)" (through the evaluator: "not judged:
baseline nan is not a finite number") and a burst no verdict could catch
(``tests/conditions/test_anomaly_empty_slots.py``). With ``POOL_OUT`` on every figure of
``bench/detection.py`` is the same again, to the digit (NAB per category, windows, false alerts;
simulator recall, delay and false alerts). Not free everywhere: on a scan of sparse customers
(48 series busy on one day in six or in three, two weeks judged hourly, no incidents) it adds
2 alert runs to 56 (58 to 60 with ``POOL_OUT``), each on a busy day after a week of nothing:
every slot was empty in its earlier seasons, so the idle rule judges the day against the busy
buckets the pool holds, and where those are the tail of one earlier day (13 buckets, 90 %
quantile 480 on a day peaking near 780) the peak is beyond 1.3 times it. That is the idle
rule's thin busy quantile, which these slots now meet; without ``EMPTY_SLOTS`` no burst there
could alert at all, however large.

**What is left of realTraffic** (``bench/detection.py --per-file``, hourly sums): the z-score
hits three windows the detector misses; with ``QUIET_RATIO`` one of them is hit, and the two
left stand out little or not at all from ordinary days. On
``TravelTime_451`` the window's peak (9,497 at 2015-08-11 22:00 UTC) is 1.23 times the week
before's largest unlabelled burst (7,699): the band is the tail of those bursts, and only a
narrower band (the MARGIN and TAIL rows of the model's table) would catch it, at more false
alerts than it gains. On ``occupancy_6005`` (16 days) the labelled peak (148, 2015-09-15 06:00
UTC) is a weekday's daily peak like the others (136-169 on the other weekdays): the z-score,
its band lowered by a weekend and an 83-hour hole of missing readings, fires at the peaks of
four weekdays in a row (Monday to Thursday), one of them inside the window; the weekly profile
that would tell weekdays from the weekend needs two weeks of history, and the window comes at
day 13. On ``speed_*`` (seven windows; hourly sums of readings) both miss everything.

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

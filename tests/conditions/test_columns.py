"""``BucketColumns``: a series' buckets as arrays, read as the same buckets a tuple holds."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from usage_series_builders import make_rule

from alertd.conditions.columns import BucketColumns, columns_of
from alertd.conditions.series import build_series, data_need
from alertd.model import Bucket, Series, SeriesKey, UsageRow

BUCKETS = (Bucket(0, 3600, 1.5, True), Bucket(3600, 7200, 0.0, True),
           Bucket(7200, 9000, 7.0, False))


def columns() -> BucketColumns:
    return BucketColumns(np.asarray([0, 3600, 7200]), np.asarray([3600, 7200, 9000]),
                         np.asarray([1.5, 0.0, 7.0]), np.asarray([True, True, False]))


def test_columns_read_as_the_buckets() -> None:
    found = columns()
    assert len(found) == 3
    assert tuple(found) == BUCKETS
    assert found == BUCKETS and found == columns()
    assert found[-1] == BUCKETS[-1] and found[1:] == BUCKETS[1:]
    assert hash(found) == hash(BUCKETS)
    assert found.complete_count() == 2


@pytest.mark.parametrize("read", [lambda c: c[0], lambda c: c[:1][0], lambda c: next(iter(c))])
def test_a_bucket_read_from_columns_holds_python_numbers(read: object) -> None:
    bucket = read(columns())  # type: ignore[operator]
    assert (type(bucket.starts_at), type(bucket.ends_at), type(bucket.value),
            type(bucket.complete)) == (int, int, float, bool)


def test_columns_of_a_tuple_and_of_columns() -> None:
    made = columns_of(BUCKETS)
    assert made == columns() and tuple(made) == BUCKETS
    same = columns()
    assert columns_of(same) is same


def test_columns_cannot_be_changed_or_mismatched() -> None:
    with pytest.raises(ValueError, match="read-only"):
        columns().values[0] = 9.0
    with pytest.raises(ValueError, match="different lengths"):
        BucketColumns(np.zeros(2, np.int64), np.zeros(2, np.int64), np.zeros(3), np.ones(2, bool))


def test_built_series_carry_columns_and_equal_a_series_of_buckets() -> None:
    """What ``build_series`` gives reads as before, and ``dataclasses.replace`` (as the engine
    keeps an active series' recent buckets) still works."""
    rule = make_rule({"type": "anomaly"}, window="hour")
    now = 40 * 86400 + 1800
    need = data_need(rule, "cus_a", now, now - 1800 - 3 * 86400, "hour")
    rows = [UsageRow(start, start + 3600, float(start % 7), rule.meter)
            for start in range(need.starts_at, need.ends_at, 3600)]
    (series,) = build_series(rule, need, rows, now, now=now, freshness_lag=0.0)
    assert isinstance(series.buckets, BucketColumns)
    plain = dataclasses.replace(series, buckets=tuple(series.buckets))
    assert series == plain
    values = {bucket.starts_at: bucket.value for bucket in series.buckets}
    assert {row.starts_at: values[row.starts_at] for row in rows} == {
        row.starts_at: row.value for row in rows}
    assert not series.buckets[-1].complete and series.buckets[-2].complete
    recent = dataclasses.replace(series, buckets=series.buckets[-3:])
    assert recent.buckets == tuple(series.buckets)[-3:]
    assert Series(SeriesKey("r", "c"), None, (), "hour", "UTC", columns(), None) == Series(
        SeriesKey("r", "c"), None, (), "hour", "UTC", BUCKETS, None)

"""``bench/detection.py --per-file``: a line per NAB file says which windows our firings hit
(hours from the window's start to the first firing inside it, over its width) and which were
missed, beside the scorer's counts for us and for the z-score."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bench.detection import HOUR, HourlySeries, instant, per_file

FIRST = int(datetime(2014, 4, 1, tzinfo=UTC).timestamp())


def scored(tp: int, fn: int, fp: int, raw: float, delay: float | None) -> dict[str, Any]:
    """The fields of one file's scorer result that the line reads."""
    return {"windows_scorable": tp + fn, "tp": tp, "fp_events": fp, "mean_delay_frac": delay,
            "nab_raw": {"standard": raw}}


def test_a_line_per_file_with_each_windows_first_firing() -> None:
    series = HourlySeries("realX/a.csv", FIRST, tuple([1.0] * 48))
    rows = [0] * 48
    rows[5] = 1  # a false alert before the first window
    rows[13] = rows[15] = 1  # the first window (hours 10-19): first firing 3 h in
    windows = {"realX/a.csv": [["2014-04-01 10:00:00", "2014-04-01 20:00:00"],
                               ["2014-04-02 00:00:00", "2014-04-02 06:00:00"]]}
    lines = per_file({"realX/a.csv": scored(1, 1, 1, -0.3, 0.3)},
                     {"realX/a.csv": scored(0, 2, 4, -2.4, None)}, {"realX/a.csv": rows},
                     [series], windows)
    line = lines[-1]
    assert line.split()[:7] == ["realX/a.csv", "2", "1", "1", "0.30", "-0.30", "|"]
    assert line.split()[7:10] == ["0", "4", "-2.40"]
    assert line.split()[-2:] == ["3/10", "-/6"]


def test_window_limits_are_utc() -> None:
    assert instant("2014-04-01 01:00:00.000000") == FIRST + HOUR

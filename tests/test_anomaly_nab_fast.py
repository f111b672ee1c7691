"""``bench/nab_fast.py``: the batched NAB replay fires as the one-by-one replay of
``bench/detection.py`` does, and ``--missed`` lists exactly the windows without a firing, with
the largest deviation inside over the band."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from bench.detection import HOUR, HourlySeries, anomaly_firings
from bench.nab_fast import missed_lines, replay

FIRST = int(datetime(2014, 4, 1, 7, tzinfo=UTC).timestamp())  # not at midnight, on purpose


def _series() -> list[HourlySeries]:
    rng = np.random.default_rng(5)
    plain = 100 + rng.normal(0, 3, 96)
    spiky = plain.copy()
    spiky[70] = 400.0  # inside the second file's window
    late = np.concatenate([np.zeros(30), plain[:66]])  # starts with empty hours
    late[80] = 500.0
    return [HourlySeries("realX/plain.csv", FIRST, tuple(plain.tolist())),
            HourlySeries("realX/spiky.csv", FIRST + 5 * HOUR, tuple(spiky.tolist())),
            HourlySeries("realX/late.csv", FIRST + 3 * HOUR, tuple(late.tolist()))]


def test_batched_replay_fires_as_the_one_by_one_replay() -> None:
    series = _series()
    fired, _ = replay(series)
    assert {s.name: fired[s.name] for s in series} == {s.name: anomaly_firings(s)
                                                       for s in series}
    assert sum(fired["realX/spiky.csv"]) >= 1 and sum(fired["realX/late.csv"]) >= 1


def test_missed_lists_the_windows_without_a_firing() -> None:
    series = _series()
    fired, found = replay(series)

    def at(item: HourlySeries, hour: int) -> str:
        return f"{datetime.fromtimestamp(item.first + hour * HOUR, UTC):%Y-%m-%d %H:%M:%S}"

    windows = {s.name: [[at(s, 66), at(s, 74)]] for s in series}
    lines = missed_lines(series, {}, fired, found, windows)
    listed = lines[2:]
    assert len(listed) == 2  # plain (nothing happens) and late (its burst is after the window)
    assert "realX/plain.csv" in listed[0] and "realX/late.csv" in listed[1]
    hist, width, ratio = listed[0].split()[5:8]
    assert (int(hist), int(width)) == (66, 8)
    assert 0 < float(ratio) < 1  # inside the band: why it was missed

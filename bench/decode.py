"""CPU per row of reading one realistic usage answer: the careful path against the quick one.

Usage::

    python bench/decode.py [--rows 1840] [--series 8] [--repeat 200] [--guide]

The answer is the simulator's own rendering (:func:`alertd.sim.responses.meter_usage`, the
current shape unless ``--guide``): ``--series`` series (meter and dimensions) of
``rows ÷ series`` hourly buckets each, shuffled as the simulator shuffles them — ~1,840 rows
is what the daemon's warm-up answers held on average (issue 13's profile). Each reader runs
``--repeat`` times on the same bytes (``_decode`` of :mod:`alertd.source.http`, as the client
calls it, in this process). The figure is the median CPU time per row (the best, beside it,
is one lucky run on a shared machine); orjson alone is shown for scale. The two readers'
answers are compared first (rows and tables must be equal).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import numpy as np
import orjson

from alertd.sim.generator import RowGroup
from alertd.sim.responses import meter_usage
from alertd.source.analytics import READ_ANSWER, read_answer
from alertd.source.answer_structs import read_columns
from alertd.source.http import Answer, _decode
from bench.common import figure, machine_note, print_table

JAN_1 = 1735689600
HOUR = 3600


def answer_bytes(rows: int, series: int, *, current_shape: bool = True) -> bytes:
    """A simulator answer of ``rows`` rows in ``series`` series (meters × one dimension)."""
    per = rows // series
    groups = []
    for index in range(series):
        starts = JAN_1 + HOUR * np.arange(per, dtype=np.int64)
        values = (1000 + 37 * np.arange(per, dtype=np.int64) * (index + 1)) % 100_000
        groups.append(RowGroup(f"mtr_{index % 3}", (("model", f"model-{index}"),), starts,
                               starts + HOUR, values))
    text = meter_usage(groups, current_shape=current_shape, refreshed_at=JAN_1 + 40 * 86400,
                       livemode=False, max_rows=10_000, order_key=7, customer="cus_bench")
    return text.encode()


def cpu_times(run: Callable[[], Any], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.process_time()
        run()
        times.append(time.process_time() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1840)
    parser.add_argument("--series", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--guide", action="store_true", help="the guide's response shape")
    args = parser.parse_args()
    content = answer_bytes(args.rows, args.series, current_shape=not args.guide)
    answer = Answer(200, httpx.Headers({"Request-Id": "req_bench"}), content)
    careful = _decode(answer, "meter_usage", read_answer)
    quick = _decode(answer, "meter_usage", READ_ANSWER)
    if read_columns(content) is None:
        raise SystemExit("the quick reader declined the bench's answer")
    same = careful == quick and careful.body.body.rows.dimensions == \
        quick.body.body.rows.dimensions and careful.body.body.rows.meters == \
        quick.body.body.rows.meters  # type: ignore[union-attr]
    rows = len(careful.body.body.rows)  # type: ignore[union-attr]
    runs = {
        "careful: orjson + read_answer": lambda: _decode(answer, "meter_usage", read_answer),
        "  of it orjson.loads alone": lambda: orjson.loads(content),
        "quick: msgspec to columns": lambda: _decode(answer, "meter_usage", READ_ANSWER),
    }
    figures = [figure("rows in the answer", rows, "{:.0f}"),
               figure("answer size, KB", len(content) / 1000, "{:.0f}"),
               figure("quick answer equals the careful one", float(same), "{:.0f}", "1",
                      lambda v: v == 1)]
    median: dict[str, float] = {}
    for name, run in runs.items():
        times = cpu_times(run, args.repeat)
        median[name] = statistics.median(times)
        figures.append(replace(figure(f"{name}: µs per row, median",
                                      1e6 * median[name] / rows, "{:.2f}"),
                               note=f"best {1e6 * min(times) / rows:.2f}"))
    speedup = median["careful: orjson + read_answer"] / median["quick: msgspec to columns"]
    figures.append(figure("careful ÷ quick (median)", speedup, "{:.1f}×"))
    print_table(f"decoding one usage answer ({machine_note()})", figures)


if __name__ == "__main__":
    main()

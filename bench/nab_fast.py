"""A fast replay of ``bench/detection.py``'s NAB part, and what happened in each missed window.

``bench/detection.py`` replays each NAB file hour by hour through the evaluator, one series at
a time (4-6 minutes on this machine). Here every file is moved to one common start (whole
weeks earlier or later, so its hours of the day and of the week are unchanged; the detector
reads positions, not dates) and the files' series of one hour are handed to
:meth:`AnomalyEvaluator.evaluate_many` together: one batch per hour, the same verdicts, the
same alert lifecycle, scored by the same shared scorer. It prints the same table (check it
against ``bench/detection.py``'s to the digit) and, with ``--missed``, a line per missed
window: the hours of history before it, and the largest ``|value - expected|`` inside it over
the distance to the band's edge on that side (``dev/band``: 1 would just have entered the
band's edge), with where and how that band stood.

    PYTHONPATH=$PWD python bench/nab_fast.py --shared /work/shared [--missed]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alertd.alerts import AlertState, apply
from alertd.conditions.anomaly import AnomalyEvaluator
from alertd.model import Bucket, Customer, Finding, Series, SeriesKey
from alertd.rules.schema import Rule
from bench.detection import (
    DAY,
    HOUR,
    JUDGE_AFTER,
    SHARED,
    HourlySeries,
    events,
    instant,
    model_settings,
    nab_groups,
    nab_scores,
    nab_series,
    normalised,
    zscore_alerts,
)

WEEK = 7 * DAY
#: The common start every file is moved to (a Monday 00:00 UTC, as the week's phase is kept).
BASE = 1736121600 - 1736121600 % WEEK


def replay(series: Sequence[HourlySeries]) -> tuple[dict[str, list[int]],
                                                     dict[str, list[Finding | None]]]:
    """Each file's firing starts (1 per hour) and each hour's finding, judged together."""
    rule = Rule.model_validate({"name": "nab", "window": "hour",
                                "condition": {"type": "anomaly", "direction": "both"}})
    evaluator, customer = AnomalyEvaluator(), Customer("nab")
    # Where a file starts with empty hours, the detector's history starts at the local day of
    # its first usage: that file keeps its hour of the day. The others all start at BASE.
    first = {s.name: BASE if s.values[0] else BASE + s.first % DAY for s in series}
    buckets = {s.name: [Bucket(first[s.name] + i * HOUR, first[s.name] + (i + 1) * HOUR, v, True)
                        for i, v in enumerate(s.values)] for s in series}
    states = {s.name: AlertState() for s in series}
    fired = {s.name: [0] * len(s.values) for s in series}
    found: dict[str, list[Finding | None]] = {s.name: [None] * len(s.values) for s in series}
    # Files that start at the same hour of the week are judged together, hour by hour.
    by_phase: dict[int, list[HourlySeries]] = {}
    for s in series:
        by_phase.setdefault(first[s.name], []).append(s)
    for start, members in by_phase.items():
        need = evaluator.needs(rule, "nab", start + HOUR + JUDGE_AFTER)[0]
        span = (need.ends_at - need.starts_at) // HOUR + 1
        for index in range(max(len(s.values) for s in members)):
            now = start + (index + 1) * HOUR + JUDGE_AFTER
            alive = [s for s in members if index < len(s.values)]
            items = [(Series(SeriesKey(rule.name, s.name), None, (), "hour", "UTC",
                             tuple(buckets[s.name][max(0, index + 1 - span):index + 1]), now),
                      customer) for s in alive]
            for s, finding in zip(alive, evaluator.evaluate_many(rule, items, now), strict=True):
                states[s.name], transitions = apply(states[s.name], finding, rule, now)
                fired[s.name][index] = int(any(t.kind == "fired" for t in transitions))
                found[s.name][index] = finding
    return fired, found


def missed_lines(series: Sequence[HourlySeries], ours: dict[str, Any],
                 fired: dict[str, list[int]], found: dict[str, list[Finding | None]],
                 windows: dict[str, list[list[str]]]) -> list[str]:
    lines = ["", f"  {'file':<44}{'window (UTC)':<24}{'hist':>5}{'w':>4}{'dev/band':>9}"
             f"{'at':>4}{'value':>11}{'expected':>11}{'band':>23}  firing near"]
    del ours
    for s in series:
        for start, end in windows[s.name]:
            lo = (instant(start) - s.first) // HOUR
            hi = (instant(end) - s.first) // HOUR
            inside = range(max(lo, 0), min(hi + 1, len(s.values)))
            if any(fired[s.name][i] for i in inside):
                continue
            best, at, shown = -math.inf, -1, ("", "", "")
            for i in inside:
                f = found[s.name][i]
                if f is None or f.details.get("band") is None or f.baseline is None:
                    continue
                lo_b, hi_b = f.details["band"]
                value, expected = s.values[i], f.baseline
                edge = hi_b - expected if value >= expected else expected - lo_b
                ratio = abs(value - expected) / edge if edge > 0 else math.inf
                if ratio > best:
                    best, at = ratio, i - lo
                    shown = (f"{value:.4g}", f"{expected:.4g}", f"{lo_b:.4g}-{hi_b:.4g}")
            near = [i - lo for i, x in enumerate(fired[s.name]) if x and lo - 48 <= i <= hi + 48]
            lines.append(
                f"  {s.name[-44:]:<44}{start[5:16]:<12}{end[5:16]:<12}{lo:>5}{hi - lo:>4}"
                f"{best:>9.2f}{at:>4}{shown[0]:>11}{shown[1]:>11}{shown[2]:>23}  "
                f"{' '.join(map(str, near)) or '-'}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=SHARED)
    parser.add_argument("--missed", action="store_true", help="a line per missed window")
    parser.add_argument("--only", default="", help="only the files whose name contains this")
    parser.add_argument("--model", action="append", default=[], metavar="NAME=VALUE",
                        help="set a constant of alertd.conditions.anomaly_model for this run "
                        "(a trial of an off setting, e.g. DROP_RATIO=1); repeatable")
    args = parser.parse_args(argv)
    model_settings(args.model)
    root, scorer = args.shared / "data" / "nab-tuning", args.shared / "tools" / "nab_score.py"
    started = time.perf_counter()
    series = [s for s in nab_series(root) if args.only in s.name]
    fired, found = replay(series)
    seconds = time.perf_counter() - started
    ours = nab_scores(root, scorer, fired, series)
    theirs = nab_scores(root, scorer, {s.name: zscore_alerts(s) for s in series}, series)
    groups = nab_groups([s.name for s in series])
    print(f"  ({seconds:.0f}s replay)")
    for group, members in groups.items():
        print(f"  {group:<30}{normalised(ours, members):>7.1f}{normalised(theirs, members):>8.1f}"
              f"   {events(ours, members)}")
    if args.missed:
        windows = json.loads((root / "labels" / "combined_windows.json").read_text())
        print("\n".join(missed_lines(series, ours, fired, found, windows)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

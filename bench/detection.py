"""Detection quality of anomaly (and absence) rules: on real labelled series (NAB), and on the
simulator's labelled incidents.

Usage::

    python bench/detection.py [--customers 200] [--days 90] [--seed 7] [--skip-sim] [--skip-nab]
        [--per-file] [--shared ../shared]

**Real data (NAB).** ``../shared/data/nab-tuning`` (47 series of the Numenta Anomaly Benchmark
with their label windows) beside the repository, scored by ``../shared/tools/nab_score.py``
(NAB's standard profile; 0 = never alerting, 100 = perfect). Each series is summed to clock
hours (hours without rows are zero, as Stripe reports no usage; a last hour the recording
stopped inside is dropped: it is still running) and replayed hour by hour
through the ``anomaly`` evaluator at default settings (``window: hour``, ``direction: both``)
and the alert lifecycle (:func:`alertd.alerts.apply`); a row is 1 where an alert *fires* (one
per episode: what a user receives). Beside it, the plain trailing z-score computed here (3
sigma over the previous 168 hours, every hour beyond it a row). Printed per NAB category,
overall, and for the files split in two halves (alternate files by name), so a figure that
holds on one half only shows; ``--per-file`` adds a line per file (windows hit and missed,
false alerts, delay, raw score beside the z-score's: where the points are lost). The script
says so and skips this part when the data or the scorer is absent.

Data: :class:`alertd.sim.generator.UsageGenerator` — every customer's usage of each of the
three simulated meters (tokens and API calls with a daily and weekly cycle, storage flat; all
with day, slot and cell noise and a trend), summed into UTC hours, with its labelled incidents
(``spike``, ``drop``, ``stop``; ``late`` and ``overuse`` are not anomalies to recall, but an
alert that touches one is not counted as false either). One alert series per customer and
meter, on the meter's total (no filters, no group-by), at default condition settings.

Each detector runs bucket by bucket, in process: at the instant each hour has just become
complete, the evaluator gets the :class:`~alertd.model.Series` its data need covers — the
history (final values), the judged hour as first published (a ``late`` incident's late part
still missing) and the running hour, which it must ignore.

Figures, beside their targets:

* **recall** — incidents with an alert of the right sign (up for a spike, down for a drop or a
  stop) on a bucket inside the incident (target >= 0.9);
* **delay** — median buckets from the incident's first bucket to that first alert (0 = the
  first incident bucket itself was flagged; target <= 2);
* **false/30d** — runs of consecutive alerting buckets that touch no labelled incident, per
  alert series (customer and meter) per 30 days judged (target <= 1).

Detectors: the ``anomaly`` evaluator on hourly and on daily rules; the ``absence`` evaluator
(``duration: 2h``, ``floor: 0``) and the same without ``duration`` (each customer's usual gaps
learned) for stops; and the baseline to beat, a plain trailing z-score:
the mean and standard deviation of the previous 168 hours, alert beyond 3 sigma. The first 7
days (``min_history``) are not judged; incidents starting in them are not counted. Half of the
simulator's spikes hit one model or endpoint only; on the meter's total they are x1.2 to x2,
so they get a row of their own (a ``group_by`` rule is the one that catches those).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import importlib.util
import io
import json
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alertd.alerts import AlertState, apply
from alertd.conditions import anomaly_model
from alertd.conditions.absence import AbsenceEvaluator
from alertd.conditions.anomaly import AnomalyEvaluator
from alertd.conditions.base import Evaluator
from alertd.model import Bucket, Customer, Finding, Series, SeriesKey
from alertd.rules.schema import Rule
from alertd.sim.generator import UsageGenerator
from alertd.sim.profiles import METERS, SLOT_SECONDS

HOUR = 3600
DAY = 86400
#: 2025-01-06 00:00 UTC, a Monday: where the simulated history starts.
START = 1736121600
#: The instant each bucket is judged: the default ``freshness_lag`` (300 s) after it ends,
#: plus a minute.
JUDGE_AFTER = 360
WARMUP_DAYS = 7
KINDS = ("spike", "drop", "stop")
#: The sign of an alert that catches each kind.
SIGN = {"spike": 1, "drop": -1, "stop": -1}
PARTIAL = "spike (one model/endpoint)"
#: The row of the probes: an hourly anomaly rule with ``group_by`` on the spiked dimension.
BY_DIMENSION = "anomaly (hourly, group_by)"
TARGET_RECALL = 0.9
TARGET_DELAY = 2.0
TARGET_FALSE = 1.0


@dataclass(frozen=True, slots=True)
class Incident:
    """A labelled incident over hourly bucket indices ``[start, end)``."""

    kind: str
    start: int
    end: int
    partial: bool = False  # a spike of one model or endpoint only


@dataclass(frozen=True, slots=True)
class Trace:
    """One customer's hourly usage of one meter from ``START``, and its incidents.

    ``published`` is each hour as first published (without the late part of a ``late``
    incident); ``values`` are final."""

    customer: str
    meter: str
    values: tuple[float, ...]
    published: tuple[float, ...]
    incidents: tuple[Incident, ...]
    #: A probe is the one model's (endpoint's) series of a spike that hit only it, judged
    #: during that spike only, as a ``group_by`` rule would see it.
    probe: bool = False


@dataclass(frozen=True, slots=True)
class Detector:
    """Runs over a trace and returns {judged bucket index: alert sign (+1 up, -1 down)} for
    buckets of ``hours_per_bucket`` hours from index ``first`` on."""

    name: str
    hours_per_bucket: int
    run: Callable[[Trace, int], dict[int, int]]


# --------------------------------------------------------------------------- data


def simulator_traces(customers: int, days: int, seed: int) -> Iterator[Trace]:
    """Every (customer, meter) of a simulated account, in hours, with its incidents."""
    end = START + days * DAY
    generator = UsageGenerator(customers=customers, seed=seed, days=days, start=START, now=end)
    first_slot, end_slot = START // SLOT_SECONDS, end // SLOT_SECONDS
    for profile in generator.profiles():
        incidents = generator.incidents(since=START, until=end, customers=[profile.id])
        for meter in METERS:
            block = generator.slots(profile, meter, first_slot, end_slot)
            mine = [i for i in incidents if i.meter == meter.id]
            yield trace_of(profile.id, meter.id, block.values, block.late, mine)
            for incident in (i for i in mine if i.dimensions):
                cells = block.cells.matching(tuple((k, (v,)) for k, v in incident.dimensions))
                label = ",".join(f"{k}={v}" for k, v in incident.dimensions)
                yield trace_of(profile.id, f"{meter.id}[{label}]", block.values[cells],
                               block.late[cells], [incident], probe=True)


def trace_of(customer: str, meter: str, values: Any, late: Any, incidents: Sequence[Any],
             probe: bool = False) -> Trace:
    """A trace from the generator's (cells x slots) values and late parts."""
    final = values.sum(axis=0)
    return Trace(
        customer, meter, hourly(final.tolist()), hourly((final - late.sum(axis=0)).tolist()),
        tuple(in_hours(i.kind, i.starts_at, i.ends_at, bool(i.dimensions)) for i in incidents),
        probe,
    )


def hourly(slots: Sequence[int]) -> tuple[float, ...]:
    per_hour = HOUR // SLOT_SECONDS
    return tuple(float(sum(slots[i:i + per_hour])) for i in range(0, len(slots), per_hour))


def in_hours(kind: str, starts_at: int, ends_at: int, partial: bool) -> Incident:
    """Every hour the incident touches."""
    return Incident(kind, (starts_at - START) // HOUR, -(-(ends_at - START) // HOUR), partial)


# --------------------------------------------------------------------------- detectors


def anomaly_rule(window: str) -> Rule:
    return Rule.model_validate(
        {"name": f"anomaly-{window}", "window": window, "condition": {"type": "anomaly"}}
    )


def anomaly_sign(finding: Finding) -> int:
    return 1 if finding.details["score"] > 0 else -1


def anomaly_hourly(trace: Trace, first: int) -> dict[int, int]:
    """The anomaly evaluator at default settings, judged one hour after another."""
    final = buckets_of(trace.values, HOUR)
    published = buckets_of(trace.published, HOUR)
    return judge_series(AnomalyEvaluator(), anomaly_rule("hour"), trace, final, published, first,
                        anomaly_sign)


def anomaly_daily(trace: Trace, first: int) -> dict[int, int]:
    final = buckets_of(daily(trace.values), DAY)
    published = buckets_of(daily(trace.published), DAY)
    return judge_series(AnomalyEvaluator(), anomaly_rule("day"), trace, final, published, first,
                        anomaly_sign)


def absence(duration: str | None) -> Callable[[Trace, int], dict[int, int]]:
    """The absence evaluator (``floor: 0``; ``None``: learned gaps), judged one hour after
    another; its alerts are "too low" by nature."""
    condition: dict[str, object] = {"type": "absence"}
    if duration is not None:
        condition["duration"] = duration
    rule = Rule.model_validate({
        "name": f"absence-{duration or 'learned'}", "window": "hour", "condition": condition,
    })

    def run(trace: Trace, first: int) -> dict[int, int]:
        final = buckets_of(trace.values, HOUR)
        published = buckets_of(trace.published, HOUR)
        return judge_series(AbsenceEvaluator(), rule, trace, final, published, first,
                            lambda finding: -1)

    return run


def daily(values: Sequence[float]) -> list[float]:
    return [sum(values[d:d + 24]) for d in range(0, len(values) - 23, 24)]


def buckets_of(values: Sequence[float], size: int) -> list[Bucket]:
    return [Bucket(START + i * size, START + (i + 1) * size, v, True) for i, v in enumerate(values)]


def judge_series(
    evaluator: Evaluator,
    rule: Rule,
    trace: Trace,
    final: Sequence[Bucket],
    published: Sequence[Bucket],
    first: int,
    sign: Callable[[Finding], int],
    last: int | None = None,
) -> dict[int, int]:
    """Evaluate at the instant each bucket from ``first`` (to ``last``, exclusive) has just
    become complete; an active finding is an alert of ``sign(finding)``.

    The data need is asked once: in UTC every need of an hourly or daily rule spans the same
    number of buckets, so the range then slides along (asking per bucket costs a zone lookup
    per evaluation and changes nothing)."""
    customer = Customer(trace.customer)
    key = SeriesKey(rule.name, trace.customer)
    size = final[0].ends_at - final[0].starts_at
    need = evaluator.needs(rule, trace.customer, final[first].ends_at + JUDGE_AFTER)[0]
    span = (need.ends_at - need.starts_at + size - 1) // size
    alerts: dict[int, int] = {}
    for index in range(first, min(len(final) - 1, last or len(final))):
        now = final[index].ends_at + JUDGE_AFTER
        running = final[index + 1]
        buckets = (
            *final[max(0, index + 2 - span):index],
            published[index],
            Bucket(running.starts_at, running.ends_at, published[index + 1].value / 10, False),
        )
        series = Series(key, trace.meter, (), need.granularity, rule.timezone, buckets, now)
        finding = evaluator.evaluate(rule, series, customer, now)
        if finding.active:
            alerts[index] = sign(finding)
    return alerts


def zscore_hourly(trace: Trace, first: int) -> dict[int, int]:
    """Plain trailing z-score: mean and standard deviation of the previous 168 hours, alert
    beyond 3 sigma (never when the deviation is 0, where a z-score is undefined)."""
    values, width = trace.values, 7 * 24
    alerts: dict[int, int] = {}
    for index in range(first, len(values)):
        window = values[max(0, index - width):index]
        mean = sum(window) / len(window)
        deviation = math.sqrt(max(sum(v * v for v in window) / len(window) - mean * mean, 0.0))
        value = trace.published[index]
        if deviation > 0 and abs(value - mean) > 3 * deviation:
            alerts[index] = 1 if value > mean else -1
    return alerts


# --------------------------------------------------------------------------- scoring


@dataclass(slots=True)
class Tally:
    """Figures of one detector over all traces."""

    incidents: dict[str, int] = field(default_factory=dict)
    delays: dict[str, list[int]] = field(default_factory=dict)
    false_alerts: int = 0
    judged_days: float = 0.0
    seconds: float = 0.0

    def count(self, kind: str, delay: int | None) -> None:
        self.incidents[kind] = self.incidents.get(kind, 0) + 1
        found = self.delays.setdefault(kind, [])
        if delay is not None:
            found.append(delay)

    def recall(self, kind: str) -> float:
        count = self.incidents.get(kind, 0)
        return len(self.delays.get(kind, [])) / count if count else math.nan

    def median_delay(self, kind: str) -> float:
        delays = self.delays.get(kind)
        return statistics.median(delays) if delays else math.nan

    def false_per_30_days(self) -> float:
        return self.false_alerts / (self.judged_days / 30) if self.judged_days else math.nan


def tally(detector: Detector, trace: Trace, into: Tally) -> None:
    hours = detector.hours_per_bucket
    first = WARMUP_DAYS * 24 // hours
    buckets = len(trace.values) // hours
    incidents = [
        Incident(i.kind, i.start // hours, -(-i.end // hours), i.partial) for i in trace.incidents
    ]
    started = time.perf_counter()
    alerts = detector.run(trace, first)
    into.seconds += time.perf_counter() - started
    into.judged_days += (buckets - 1 - first) * hours / 24
    for incident in incidents:
        if incident.kind not in KINDS or incident.start < first:
            continue
        hits = [b for b in range(incident.start, incident.end)
                if alerts.get(b) == SIGN[incident.kind]]
        delay = hits[0] - incident.start if hits else None
        into.count(incident.kind, delay)
        if incident.partial:
            into.count(PARTIAL, delay)
    into.false_alerts += sum(
        1 for run in runs(sorted(alerts))
        if not any(run[0] < i.end and i.start <= run[1] for i in incidents)
    )


def tally_probe(trace: Trace, into: Tally) -> None:
    """Recall and delay of an hourly ``group_by`` rule on the one spike of a probe."""
    (incident,) = trace.incidents
    if incident.start < WARMUP_DAYS * 24:
        return
    started = time.perf_counter()
    alerts = judge_series(
        AnomalyEvaluator(), anomaly_rule("hour"), trace, buckets_of(trace.values, HOUR),
        buckets_of(trace.published, HOUR), incident.start, anomaly_sign, last=incident.end,
    )
    into.seconds += time.perf_counter() - started
    hits = [b for b in range(incident.start, incident.end) if alerts.get(b) == 1]
    into.count(PARTIAL, hits[0] - incident.start if hits else None)


def runs(indices: Sequence[int]) -> Iterator[tuple[int, int]]:
    """Maximal runs of consecutive indices as ``(first, last)``."""
    start = previous = -2
    for index in indices:
        if index != previous + 1:
            if previous >= 0:
                yield start, previous
            start = index
        previous = index
    if previous >= 0:
        yield start, previous


# --------------------------------------------------------------------------- report


def report(tallies: dict[str, Tally], customers: int, days: int, series: int) -> str:
    lines = [
        f"detection quality: {customers} customers x {days} days of hourly simulator usage, "
        f"{series} alert series (customer x meter), default settings",
    ]
    header = (f"  {'condition':<26}{'incidents':>9}{'recall':>8}{'delay':>7}{'false/30d':>11}"
              f"{'seconds':>9}")
    for kind in [*KINDS, PARTIAL]:
        lines += ["", f"{kind} — targets: recall >= {TARGET_RECALL}, median delay <= "
                  f"{TARGET_DELAY:g} buckets, false alerts <= {TARGET_FALSE:g} per 30 days",
                  header]
        for name, t in tallies.items():
            if kind not in t.incidents or (name.startswith("absence") and kind != "stop"):
                continue
            recall, delay, false = t.recall(kind), t.median_delay(kind), t.false_per_30_days()
            falses = f"{false:>10.2f}{flag(false <= TARGET_FALSE)}" if t.judged_days else (
                f"{'n/a':>10} ")
            lines.append(
                f"  {name:<26}{t.incidents[kind]:>9}{recall:>7.3f}{flag(recall >= TARGET_RECALL)}"
                f"{delay:>6.1f}{flag(delay <= TARGET_DELAY)}{falses}{t.seconds:>8.0f}s"
            )
    per_customer = series / customers
    lines += [
        "",
        "* = target missed. delay: buckets of the condition's window from the incident's first",
        "bucket to the first alert of the right sign inside it (hours; days for daily rules).",
        "false/30d: runs of alerting buckets touching no labelled incident, per alert series",
        f"(one rule, one customer) per 30 days judged; a customer watched on all {len(METERS)} "
        f"meters gets {per_customer:g}x that.",
    ]
    return "\n".join(lines)


def flag(ok: bool) -> str:
    return " " if ok else "*"


def detectors() -> list[Detector]:
    return [
        Detector("anomaly (hourly)", 1, anomaly_hourly),
        Detector("anomaly (daily)", 24, anomaly_daily),
        Detector("z-score 3σ/168h (hourly)", 1, zscore_hourly),
        Detector("absence 2h (hourly)", 1, absence("2h")),
        Detector("absence learned (hourly)", 1, absence(None)),
    ]


# --------------------------------------------------------------------------- NAB

REPO = Path(__file__).resolve().parent.parent
#: ``../shared`` beside the repository: /work/main -> /work/shared. A git worktree elsewhere
#: (e.g. /work/wt/BRANCH) has its own parent, so from there pass ``--shared /work/shared``.
SHARED = REPO.parent / "shared"


@dataclass(frozen=True, slots=True)
class HourlySeries:
    """One NAB file summed to clock hours from ``first`` (unix seconds)."""

    name: str
    first: int
    values: tuple[float, ...]


def nab_series(root: Path) -> list[HourlySeries]:
    windows = json.loads((root / "labels" / "combined_windows.json").read_text())
    found = []
    for name in sorted(windows):
        path = root / "data" / name
        if not path.is_file():
            continue
        sums: dict[int, float] = {}
        rows: dict[int, int] = {}
        with path.open(newline="") as handle:
            reader = csv.reader(handle)
            next(reader)
            for row in reader:
                if row:
                    instant = datetime.fromisoformat(row[0].strip()).replace(tzinfo=UTC)
                    hour = int(instant.timestamp()) // HOUR * HOUR
                    sums[hour] = sums.get(hour, 0.0) + float(row[1])
                    rows[hour] = rows.get(hour, 0) + 1
        first, last = min(sums), max(sums)
        if rows[last] < statistics.median(rows.values()):
            # The recording stopped inside its last hour: that hour is still running (the
            # product never judges it), not a drop.
            del sums[last]
            last -= HOUR
        values = tuple(sums.get(h, 0.0) for h in range(first, last + HOUR, HOUR))
        found.append(HourlySeries(name, first, values))
    return found


def anomaly_firings(series: HourlySeries) -> list[int]:
    """The product at default settings: the evaluator hour by hour, then the alert lifecycle;
    1 where an alert fires."""
    rule = Rule.model_validate({"name": "nab", "window": "hour",
                                "condition": {"type": "anomaly", "direction": "both"}})
    buckets = [Bucket(series.first + i * HOUR, series.first + (i + 1) * HOUR, v, True)
               for i, v in enumerate(series.values)]
    evaluator, customer = AnomalyEvaluator(), Customer("nab")
    key = SeriesKey(rule.name, "nab")
    need = evaluator.needs(rule, "nab", buckets[0].ends_at + JUDGE_AFTER)[0]
    span = (need.ends_at - need.starts_at) // HOUR + 1
    state, fired = AlertState(), [0] * len(buckets)
    for index in range(len(buckets)):
        now = buckets[index].ends_at + JUDGE_AFTER
        window = tuple(buckets[max(0, index + 1 - span):index + 1])
        finding = evaluator.evaluate(
            rule, Series(key, None, (), "hour", "UTC", window, now), customer, now)
        state, transitions = apply(state, finding, rule, now)
        fired[index] = int(any(t.kind == "fired" for t in transitions))
    return fired


def zscore_alerts(series: HourlySeries) -> list[int]:
    trace = Trace("nab", "nab", series.values, series.values, ())
    alerts = zscore_hourly(trace, 1)
    # Scored on starts too, as the reference figure is: an alert per run of hours beyond 3σ.
    return [int(i in alerts and i - 1 not in alerts) for i in range(len(series.values))]


def nab_groups(names: Sequence[str]) -> dict[str, list[str]]:
    """The files of each category (the folder of a file's name), then all of them, then each
    half (every other file: a check against fitting), as the table shows them."""
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(name.split("/")[0], []).append(name)
    groups["overall"] = list(names)
    groups["half A (files 1, 3, 5, ...)"] = list(names[::2])
    groups["half B (files 2, 4, 6, ...)"] = list(names[1::2])
    return groups


def nab_scores(root: Path, scorer: Path, rows: dict[str, list[int]],
               series: Sequence[HourlySeries]) -> dict[str, Any]:
    """The shared scorer's per-file results for ``rows`` (file name -> alert per hour)."""
    spec = importlib.util.spec_from_file_location("nab_score", scorer)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with tempfile.TemporaryDirectory() as out:
        for item in series:
            path = Path(out) / item.name
            path.parent.mkdir(parents=True, exist_ok=True)
            lines = ["timestamp,alert"] + [
                f"{datetime.fromtimestamp(item.first + i * HOUR, UTC):%Y-%m-%d %H:%M:%S},{a}"
                for i, a in enumerate(rows[item.name])
            ]
            path.write_text("\n".join(lines) + "\n")
        result = Path(out) / "result.json"
        with contextlib.redirect_stdout(io.StringIO()):
            module.main(["--outputs", out, "--windows",
                         str(root / "labels" / "combined_windows.json"), "--json", str(result)])
        files: dict[str, Any] = json.loads(result.read_text())["files"]
        return files


def normalised(results: dict[str, Any], names: Sequence[str]) -> float:
    raw = sum(results[n]["nab_raw"]["standard"] for n in names)
    windows = sum(results[n]["windows_scorable"] for n in names)
    return 100 * (raw + windows) / (2 * windows) if windows else math.nan


def events(results: dict[str, Any], names: Sequence[str]) -> str:
    tp = sum(results[n]["tp"] for n in names)
    fn = sum(results[n]["fn"] for n in names)
    fp = sum(results[n]["fp_events"] for n in names)
    return f"{tp}/{tp + fn} windows, {fp} false"


def per_file(ours: dict[str, Any], theirs: dict[str, Any], rows: dict[str, list[int]],
             series: Sequence[HourlySeries], windows: dict[str, list[list[str]]]) -> list[str]:
    """One line per NAB file: its windows hit, false alerts, mean delay (fraction of the
    window) and raw standard score, ours beside the z-score's, and for each window the hours
    from its start to our first firing inside it (``-``: missed) over its width in hours."""
    lines = ["", f"  {'file':<48}{'W':>3}{'hit':>4}{'FP':>4}{'delay':>6}{'raw':>7}  |"
             f"{'hit':>4}{'FP':>4}{'raw':>7}   windows (ours: first firing h / width h)"]
    for item in series:
        mine, base = ours[item.name], theirs[item.name]
        found = []
        for start, end in windows[item.name]:
            first = instant(start)
            width = (instant(end) - first) // HOUR
            inside = [i for i, fired in enumerate(rows[item.name]) if fired
                      and item.first + (i + 1) * HOUR > first
                      and item.first + i * HOUR <= instant(end)]
            found.append(f"{(item.first + inside[0] * HOUR - first) // HOUR if inside else '-'}"
                         f"/{width}")
        delay = mine["mean_delay_frac"]
        lines.append(
            f"  {item.name[:48]:<48}{mine['windows_scorable']:>3}{mine['tp']:>4}"
            f"{mine['fp_events']:>4}{'-' if delay is None else f'{delay:.2f}':>6}"
            f"{mine['nab_raw']['standard']:>7.2f}  |{base['tp']:>4}{base['fp_events']:>4}"
            f"{base['nab_raw']['standard']:>7.2f}   {' '.join(found)}")
    return lines


def instant(text: str) -> int:
    """A label window's limit (UTC) in unix seconds."""
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


def nab_report(shared: Path = SHARED, files: bool = False) -> str:
    """The NAB table; ``files``: with a line per file (:func:`per_file`)."""
    root, scorer = shared / "data" / "nab-tuning", shared / "tools" / "nab_score.py"
    if not (root / "labels" / "combined_windows.json").is_file() or not scorer.is_file():
        return (f"NAB: skipped — the labelled data ({root}) or the scorer ({scorer}) is absent; "
                "put them beside the repository as ../shared/")
    started = time.perf_counter()
    series = nab_series(root)
    fired = {s.name: anomaly_firings(s) for s in series}
    ours = nab_scores(root, scorer, fired, series)
    seconds = time.perf_counter() - started
    theirs = nab_scores(root, scorer, {s.name: zscore_alerts(s) for s in series}, series)
    groups = nab_groups([s.name for s in series])
    lines = [
        f"NAB standard score, {len(series)} real series summed to clock hours, scored on "
        f"firing starts (target: >= 70 overall, no category below the z-score)",
        f"  {'category':<30}{'anomaly':>8}{'z-score':>9}  anomaly events / z-score events",
    ]
    for group, members in groups.items():
        mine, base = normalised(ours, members), normalised(theirs, members)
        ok = group.startswith("half") or math.isnan(base) or mine >= base
        if group == "overall":
            ok = mine >= 70
        lines.append(f"  {group:<30}{mine:>7.1f}{flag(ok)}{base:>8.1f}   "
                     f"{events(ours, members)} / {events(theirs, members)}")
    lines.append(f"  ({seconds:.0f}s for the anomaly replay; * = target missed; a category "
                 "without windows scores nan but its false alerts count overall)")
    if files:
        windows = json.loads((root / "labels" / "combined_windows.json").read_text())
        lines += per_file(ours, theirs, fired, series, windows)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--shared", type=Path, default=SHARED,
                        help="the shared folder with data/nab-tuning and tools/nab_score.py "
                        "(default: ../shared from the repository root; from a worktree elsewhere, "
                        "pass it)")
    parser.add_argument("--skip-sim", action="store_true", help="only the NAB part")
    parser.add_argument("--skip-nab", action="store_true", help="only the simulator part")
    parser.add_argument("--per-file", action="store_true",
                        help="NAB: a line per file (windows hit, false alerts, delay, score)")
    parser.add_argument("--model", action="append", default=[], metavar="NAME=VALUE",
                        help="set a constant of alertd.conditions.anomaly_model for this run "
                        "(a trial of an off setting, e.g. DROP_RATIO=1); repeatable")
    args = parser.parse_args(argv)
    model_settings(args.model)
    if not args.skip_nab:
        print(nab_report(args.shared, args.per_file), flush=True)
    if args.skip_sim:
        return 0
    found = detectors()
    tallies = {d.name: Tally() for d in found}
    tallies[BY_DIMENSION] = Tally()
    count = 0
    for trace in simulator_traces(args.customers, args.days, args.seed):
        if trace.probe:
            tally_probe(trace, tallies[BY_DIMENSION])
            continue
        count += 1
        for detector in found:
            tally(detector, trace, tallies[detector.name])
    print(report(tallies, args.customers, args.days, count))
    print(summary(tallies, count / args.customers))
    return 0


def model_settings(pairs: Sequence[str]) -> None:
    """``NAME=VALUE`` pairs set on :mod:`alertd.conditions.anomaly_model` (a trial: its
    constants are read at every judgement), each value parsed as the constant's type."""
    for pair in pairs:
        name, _, text = pair.partition("=")
        current = getattr(anomaly_model, name)
        value = (text not in ("0", "", "false", "False") if isinstance(current, bool)
                 else type(current)(text))
        setattr(anomaly_model, name, value)
        print(f"trial: anomaly_model.{name} = {value!r}", flush=True)


def summary(tallies: dict[str, Tally], meters_per_customer: float) -> str:
    """The simulator's headline figures beside the NAB table: hourly anomaly recall per kind
    and false alerts per customer-month of one rule (per alert series per 30 days, as the
    tables above), learned absence on stops."""
    hourly, learned = tallies["anomaly (hourly)"], tallies["absence learned (hourly)"]
    per_customer = hourly.false_per_30_days()
    recalls = ", ".join(f"{kind} {hourly.recall(kind):.2f}{flag(hourly.recall(kind) >= 0.9)}"
                        for kind in KINDS)
    return "\n".join([
        "",
        "summary (simulator, default settings; targets: recall >= 0.9 per kind, <= 1 false "
        "alert per customer-month)",
        f"  anomaly (hourly): recall {recalls}; false alerts per customer-month "
        f"{per_customer:.2f}{flag(per_customer <= TARGET_FALSE)} (one rule; "
        f"{per_customer * meters_per_customer:.2f} with a rule on each of the "
        f"{meters_per_customer:g} meters)",
        f"  absence (learned gaps): stop recall {learned.recall('stop'):.2f}, false alerts per "
        f"customer-month {learned.false_per_30_days():.2f}",
    ])


if __name__ == "__main__":
    raise SystemExit(main())

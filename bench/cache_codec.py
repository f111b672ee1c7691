"""The bucket cache's stored form: CPU to encode and decode an entry, former form, v2 and v3.

Usage::

    python bench/cache_codec.py [--days 60] [--groups 3] [--repeat 30]

Every steady poll decodes each key's whole cached history and encodes it back
(:mod:`alertd.bucket_payload`), so this is the CPU a steady poll spends per cached row. The
entries are realistic: an hourly key of ``--days`` days of hours in ``--groups`` dimension
groups (the mixed rule set's anomaly keys keep 35 days of hours, 840 per group), with whole
values (usage summed from whole-number events) and with fractional ones (17 digits each), a
daily key of the same span, and a day key keeping a day of settled hours; all read back as the
store reads them (columns). Printed for each, beside its rows: µs of CPU per entry and per row
to encode and to decode, the former form (stdlib ``json`` and a Python object per row, the code
as it was before version 2, reproduced below), version 2 (JSON lists of numbers: the module's
``_encode_v2`` and its reader) and version 3 (base64 raw columns, what the store writes now),
and payload bytes.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alertd.bucket_payload import _encode_v2, decode_entry, encode_entry, former_entry
from alertd.buckets import BucketEntry, cache_key, key_meter
from alertd.model import DataNeed, Dimensions, MeterSpec, UsageRow
from alertd.usage_columns import UsageColumns
from bench.common import Figure, machine_note, print_table

HOUR, DAY = 3600, 86_400
NOW = 1_741_608_000


# --------------------------------------------------------------------------- the former form
# alertd/buckets.py's stored form before version 2 (commit e3d8361), as the daemon ran it.


def former_encode(entry: BucketEntry) -> str:
    if entry.hours_to <= entry.covered_to:
        return json.dumps(_former_plain(entry.rows), separators=(",", ":"))
    return json.dumps({"rows": _former_plain(entry.rows), "hours": _former_plain(entry.hours),
                       "hours_to": entry.hours_to, "zone": entry.hours_zone},
                      separators=(",", ":"))


def former_decode(key: str, covered_from: int, covered_to: int, full_at: int, text: str
                  ) -> BucketEntry:
    # The former reader is still the module's, for entries stored before version 2; the
    # former daemon parsed with stdlib json.
    return former_entry(key, covered_from, covered_to, full_at, json.loads(text),
                        key_meter(key))


def _former_plain(rows: Iterable[UsageRow]) -> list[list[Any]]:
    if isinstance(rows, UsageColumns):
        dims = [[list(d) for d in dimensions] for dimensions in rows.dimensions]
        return [[s, e, v, dims[c]] for s, e, v, c in zip(
            rows.starts.tolist(), rows.ends.tolist(), rows.values.tolist(),
            rows.dimension_codes.tolist(), strict=True)]
    return [[r.starts_at, r.ends_at, r.value, [list(d) for d in r.dimensions]] for r in rows]


# --------------------------------------------------------------------------- the entries


def entries(days: int, groups: int) -> dict[str, BucketEntry]:
    """An hourly key, a daily key and a day key keeping a day of hours, as columns."""
    rng = random.Random(13)
    dims: list[Dimensions] = [(("model", f"model-{g}"), ("tier", "pro")) for g in range(groups)]
    start = NOW - days * DAY

    def rows(step: int, begin: int, end: int, whole: bool = True) -> tuple[UsageRow, ...]:
        # Usage summed from whole-number events (tokens, calls) is whole; a fractional value
        # is the longest to write and parse (17 digits).
        return tuple(UsageRow(t, t + step, value(whole), "mtr_a", d)
                     for t in range(begin, end, step) for d in dims)

    def value(whole: bool) -> float:
        drawn = rng.lognormvariate(8, 2)
        return float(round(drawn)) if whole else drawn

    def key(granularity: str) -> str:
        return cache_key(DataNeed("cus_1", MeterSpec("mtr_a", group_by=("model",)),
                                  granularity, "UTC", start, NOW))

    made = {
        f"hourly, {days} days": BucketEntry(key("hour"), start, NOW - DAY, NOW,
                                            rows(HOUR, start, NOW - DAY)),
        f"hourly, {days} days, fractional values": BucketEntry(
            key("hour"), start, NOW - DAY, NOW, rows(HOUR, start, NOW - DAY, whole=False)),
        f"daily, {days} days": BucketEntry(key("day"), start, NOW - DAY, NOW,
                                           rows(DAY, start, NOW - DAY)),
        f"daily, {days} days + 24 hours": BucketEntry(
            key("day"), start, NOW - DAY, NOW, rows(DAY, start, NOW - DAY),
            rows(HOUR, NOW - DAY, NOW), NOW, "UTC"),
    }
    # As a steady poll holds them: read back from the store, so columns.
    return {name: decode_entry(e.key, e.covered_from, e.covered_to, e.full_at, encode_entry(e))
            for name, e in made.items()}


def cpu_us(work: Callable[[], object], repeat: int) -> float:
    """The least CPU µs of one call over ``repeat`` rounds (the least is the steadiest on a
    shared machine)."""
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        work()
        best = min(best, time.process_time() - started)
    return best * 1e6


def measure(name: str, entry: BucketEntry, repeat: int) -> list[Figure]:
    rows = len(entry.rows) + len(entry.hours)
    args = (entry.key, entry.covered_from, entry.covered_to, entry.full_at)
    texts = {"former": former_encode(entry), "v2": _encode_v2(entry), "v3": encode_entry(entry)}
    assert former_decode(*args, texts["former"]) == entry
    for text in texts.values():  # every form still decodes
        assert decode_entry(*args, text) == entry
    encoders = {"former": former_encode, "v2": _encode_v2, "v3": encode_entry}
    decoders = {"former": lambda: former_decode(*args, texts["former"]),
                "v2": lambda: decode_entry(*args, texts["v2"]),
                "v3": lambda: decode_entry(*args, texts["v3"])}
    timed = {
        "encode": [cpu_us(lambda f=f: f(entry), repeat) for f in encoders.values()],
        "decode": [cpu_us(work, repeat) for work in decoders.values()],
    }
    figures = [Figure(f"{name}: rows", f"{rows:,}")]
    for what, (old, v2, v3) in timed.items():
        figures.append(Figure(f"  {what} µs/entry former → v2 → v3",
                              f"{old:,.0f} → {v2:,.0f} → {v3:,.0f}",
                              note=f"v3: × {v2 / v3:.1f} less CPU than v2"))
        figures.append(Figure(f"  {what} µs/row former → v2 → v3",
                              f"{old / rows:.2f} → {v2 / rows:.3f} → {v3 / rows:.3f}"))
    sizes = [len(t.encode()) for t in texts.values()]
    figures.append(Figure("  payload bytes former → v2 → v3",
                          " → ".join(f"{n:,}" for n in sizes),
                          note=f"v3: {sizes[2] / sizes[1]:.0%} of v2"))
    figures.append(Figure("  former payload decoded by the module µs/entry",
                          f"{cpu_us(lambda: decode_entry(*args, texts['former']), repeat):,.0f}"))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--groups", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    print(machine_note())
    figures: list[Figure] = []
    for name, entry in entries(args.days, args.groups).items():
        figures += measure(name, entry, args.repeat)
    print_table(f"bucket cache payload, {args.groups} dimension groups, least CPU of "
                f"{args.repeat} rounds", figures)
    print(machine_note())


if __name__ == "__main__":
    main()

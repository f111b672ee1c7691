"""Chart geometry (pure): an alert's recent buckets with its threshold or band, and the
guide's stacked daily usage by a dimension.

Where it sits: the status page's templates draw these shapes as inline SVG (escaped by
Jinja2); :mod:`alertd.charts.png` paints the same bar shapes into the PNG that alert emails
carry. Nothing here does I/O. :func:`stacked_rows` builds the rows the way the guide's back
end does: one row per date with a value per dimension value, plus ``{value}_start`` and
``{value}_end`` — the cumulative bounds a stacked-bar library draws from.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: Colours of the stacked series, in legend order (colour-blind-safe Okabe–Ito palette).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442",
           "#000000")
BAR_COLOUR = "#0072B2"
LINE_COLOUR = "#D55E00"
BAND_COLOUR = "#E69F00"


@dataclass(frozen=True, slots=True)
class Rect:
    x: float
    y: float
    width: float
    height: float
    colour: str
    label: str  # what the bar shows, for the tooltip and tests
    value: float


@dataclass(frozen=True, slots=True)
class Chart:
    """Everything a drawing needs: bars, horizontal guides (threshold, band) and a legend."""

    width: int
    height: int
    bars: tuple[Rect, ...]
    lines: tuple[tuple[float, str, str], ...]  # (y, colour, label)
    band: tuple[float, float] | None  # (y_top, y_bottom) in pixels
    legend: tuple[tuple[str, str], ...]  # (name, colour)
    top: float  # the value at the top edge
    x_labels: tuple[tuple[float, str], ...] = ()


def _scale(top: float, height: int, pad: int) -> float:
    return (height - 2 * pad) / top if top > 0 else 0.0


def bar_chart(
    values: Sequence[tuple[str, float]], *, threshold: float | None = None,
    band: tuple[float, float] | None = None, width: int = 600, height: int = 200,
    pad: int = 10,
) -> Chart:
    """One bar per ``(label, value)``, scaled so the bars, the threshold and the band fit."""
    guides = [v for v in (threshold, *(band or ())) if v is not None]
    top = max([0.0, *(v for _, v in values), *guides]) * 1.1 or 1.0
    scale = _scale(top, height, pad)
    slot = (width - 2 * pad) / max(len(values), 1)
    base = height - pad

    def y_of(value: float) -> float:
        return base - max(value, 0.0) * scale

    bars = tuple(
        Rect(pad + i * slot + slot * 0.1, y_of(v), slot * 0.8, base - y_of(v), BAR_COLOUR,
             label, v)
        for i, (label, v) in enumerate(values)
    )
    lines = () if threshold is None else ((y_of(threshold), LINE_COLOUR, "threshold"),)
    drawn_band = None if band is None else (y_of(max(band)), y_of(min(band)))
    legend = [("usage", BAR_COLOUR)]
    if threshold is not None:
        legend.append(("threshold", LINE_COLOUR))
    if band is not None:
        legend.append(("expected band", BAND_COLOUR))
    return Chart(width, height, bars, lines, drawn_band, tuple(legend), top,
                 _x_labels([label for label, _ in values], pad, slot))


def comparable_values(
    buckets: Sequence[tuple[int, float]], window_start: int, value: float | None
) -> tuple[list[float], bool]:
    """The bucket values to draw against a threshold: as they are, or — when the alert's
    ``value`` is the total of its window (a month-to-date threshold over daily buckets) —
    their running total within the window, so the threshold line means what it says.
    Returns the values and whether they are cumulative."""
    raw = [v for _, v in buckets]
    inside = [v for start, v in buckets if start >= window_start]
    total = sum(inside)
    if value is None or len(inside) < 2 or not math.isclose(total, value, rel_tol=1e-6,
                                                               abs_tol=1e-9):
        return raw, False
    running, drawn = 0.0, []
    for start, v in buckets:
        if start >= window_start:
            running += v
            drawn.append(running)
        else:
            drawn.append(v)
    return drawn, True


def _x_labels(labels: Sequence[str], pad: int, slot: float) -> tuple[tuple[float, str], ...]:
    step = max(1, -(-len(labels) // 6))  # at most six labels, so they never overlap
    return tuple((pad + i * slot + slot / 2, label) for i, label in enumerate(labels)
                 if i % step == 0)


def stacked_rows(
    sums: Mapping[str, Mapping[str, float]], dates: Iterable[str]
) -> list[dict[str, float | str]]:
    """The guide's chart data: for each date (in order) ``{"date": d, value: n,
    "value_start": a, "value_end": b, ...}`` over every dimension value seen, zero-filled,
    cumulative bounds in the order of the sorted dimension values."""
    keys = sorted({k for row in sums.values() for k in row})
    rows: list[dict[str, float | str]] = []
    for date in dates:
        row: dict[str, float | str] = {"date": date}
        cumulative = 0.0
        for key in keys:
            value = float(sums.get(date, {}).get(key, 0.0))
            row[f"{key}_start"] = cumulative
            cumulative += value
            row[f"{key}_end"] = cumulative
            row[key] = value
        rows.append(row)
    return rows


def series_keys(rows: Sequence[Mapping[str, float | str]]) -> list[str]:
    """The dimension values of :func:`stacked_rows` output, as the guide's front end finds
    them (every key but ``date`` and the ``_start``/``_end`` bounds)."""
    if not rows:
        return []
    return [k for k in rows[0] if k != "date" and not k.endswith(("_start", "_end"))]


def stacked_chart(
    rows: Sequence[Mapping[str, float | str]], *, width: int = 720, height: int = 260,
    pad: int = 10,
) -> Chart:
    """Stacked bars of :func:`stacked_rows` output, one colour per dimension value."""
    keys = series_keys(rows)
    colours = {k: PALETTE[i % len(PALETTE)] for i, k in enumerate(keys)}
    top = max([0.0, *(float(r[f"{k}_end"]) for r in rows for k in keys)]) * 1.1 or 1.0
    scale = _scale(top, height, pad)
    slot = (width - 2 * pad) / max(len(rows), 1)
    base = height - pad
    bars = []
    for i, row in enumerate(rows):
        for key in keys:
            value = float(row[key])
            if value <= 0:
                continue
            start, end = float(row[f"{key}_start"]), float(row[f"{key}_end"])
            bars.append(Rect(pad + i * slot + slot * 0.1, base - end * scale, slot * 0.8,
                             (end - start) * scale, colours[key], f"{row['date']} {key}", value))
    return Chart(width, height, tuple(bars), (), None, tuple(colours.items()), top,
                 _x_labels([str(r["date"]) for r in rows], pad, slot))


def band_of(details: Mapping[str, Any]) -> tuple[float, float] | None:
    """The ``(low, high)`` band an anomaly finding carries in its ``details``, if any."""
    raw = details.get("band")
    if isinstance(raw, list | tuple) and len(raw) == 2:
        try:
            return float(raw[0]), float(raw[1])
        except (TypeError, ValueError):
            return None
    return None

"""A small PNG painter for the chart in alert emails (mail clients do not render SVG).

Where it sits: :mod:`alertd.notify.email` attaches :func:`chart_png` of a firing alert's
recent buckets as an inline image (``Content-ID``) that the HTML part shows with
``cid:``. It paints the rectangles of :func:`alertd.charts.bar_chart` — bars, the
threshold line, the band — on white, and encodes them with :mod:`zlib` as an 8-bit RGB PNG
(signature, IHDR, one IDAT, IEND). No text: the email's table gives the numbers. A chart is
at most :data:`MAX_PIXELS` pixels, so an email's image stays a few kilobytes.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence

from alertd.charts import BAND_COLOUR, Chart, bar_chart

MAX_PIXELS = 1200 * 400
SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _rgb(colour: str) -> bytes:
    return bytes.fromhex(colour.lstrip("#"))


def _chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def encode(width: int, height: int, pixels: bytearray) -> bytes:
    """A PNG of ``pixels`` (``width * height`` RGB triples, rows top to bottom)."""
    if width <= 0 or height <= 0 or width * height > MAX_PIXELS:
        raise ValueError(f"a {width}x{height} image is outside 1..{MAX_PIXELS} pixels")
    stride = width * 3
    raw = b"".join(b"\x00" + bytes(pixels[y * stride:(y + 1) * stride]) for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, 9))
            + _chunk(b"IEND", b""))


def _fill(pixels: bytearray, width: int, height: int, box: tuple[float, float, float, float],
          colour: bytes) -> None:
    x0, y0, x1, y1 = (round(v) for v in box)
    x0, x1 = max(0, min(x0, x1)), min(width, max(x0, x1))
    y0, y1 = max(0, min(y0, y1)), min(height, max(y0, y1))
    row = colour * (x1 - x0)
    for y in range(y0, y1):
        start = (y * width + x0) * 3
        pixels[start:start + len(row)] = row


def paint(chart: Chart) -> bytes:
    """The PNG of ``chart``: band behind, bars, then guide lines two pixels thick."""
    width, height = chart.width, chart.height
    pixels = bytearray(b"\xff" * (width * height * 3))
    if chart.band is not None:
        _fill(pixels, width, height, (0, chart.band[0], width, chart.band[1] + 1),
              bytes(int(c * 0.35 + 255 * 0.65) for c in _rgb(BAND_COLOUR)))
    for bar in chart.bars:
        _fill(pixels, width, height, (bar.x, bar.y, bar.x + bar.width, bar.y + bar.height),
              _rgb(bar.colour))
    for y, colour, _ in chart.lines:
        _fill(pixels, width, height, (0, y - 1, width, y + 1), _rgb(colour))
    return encode(width, height, pixels)


def chart_png(
    values: Sequence[tuple[str, float]], *, threshold: float | None = None,
    band: tuple[float, float] | None = None, width: int = 480, height: int = 160,
) -> bytes:
    """The recent-usage chart of an alert as PNG bytes."""
    return paint(bar_chart(values, threshold=threshold, band=band, width=width, height=height))

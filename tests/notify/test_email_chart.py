"""The chart in alert emails: a real aiosmtpd server receives the message, which is parsed
again from its bytes with ``email.policy.strict``."""

from __future__ import annotations

import email
import email.policy
import re
import struct
import zlib
from email.message import EmailMessage
from typing import Any

from alertd.charts.png import SIGNATURE, chart_png, encode
from tests.notify.test_email import notifier


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == SIGNATURE
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    assert struct.unpack(">I", data[16 + length:20 + length])[0] == zlib.crc32(
        data[12:16 + length])
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _pixels(data: bytes) -> list[bytes]:
    """Rows of RGB pixels (filter byte 0 on every row, as :func:`encode` writes them)."""
    width, height = _png_size(data)
    at, idat = 8, b""
    while at < len(data):
        length, kind = struct.unpack(">I4s", data[at:at + 8])
        if kind == b"IDAT":
            idat += data[at + 8:at + 8 + length]
        at += 12 + length
    raw = zlib.decompress(idat)
    stride = width * 3 + 1
    assert len(raw) == stride * height
    rows = [raw[y * stride:(y + 1) * stride] for y in range(height)]
    assert all(row[0] == 0 for row in rows)
    return [row[1:] for row in rows]


def test_encode_round_trips_pixels() -> None:
    pixels = bytearray(b"\x10\x20\x30" * 6)
    pixels[3:6] = b"\xff\x00\x00"
    rows = _pixels(encode(3, 2, pixels))
    assert rows == [b"\x10\x20\x30\xff\x00\x00\x10\x20\x30", b"\x10\x20\x30" * 3]


def test_chart_paints_bars_to_scale_and_the_threshold_line() -> None:
    data = chart_png([("a", 10.0), ("b", 20.0)], threshold=15.0, width=100, height=50)
    assert _png_size(data) == (100, 50)
    rows = _pixels(data)
    blue, orange = bytes.fromhex("0072B2"), bytes.fromhex("D55E00")

    def bar_top(x: int) -> int:
        return next(y for y, row in enumerate(rows) if row[x * 3:x * 3 + 3] == blue)

    # The second bar is twice as tall as the first (both stand on the same base line).
    base = 40
    assert abs((base - bar_top(70)) - 2 * (base - bar_top(30))) <= 2
    assert any(row[:3] == orange for row in rows)  # the threshold crosses the whole width


async def test_a_firing_alert_email_carries_its_chart_by_cid(smtp_server, mail_sink,
                                                             build: Any) -> None:
    notification = build.notification()
    async with smtp_server(mail_sink) as port:
        await notifier(port).send(notification)
    [received] = mail_sink.messages
    message = email.message_from_bytes(received.raw, policy=email.policy.strict)
    assert isinstance(message, EmailMessage)
    assert message.get_content_type() == "multipart/alternative"
    plain, related = list(message.iter_parts())
    assert plain.get_content_type() == "text/plain"
    assert related.get_content_type() == "multipart/related"
    html_part, image = list(related.iter_parts())
    assert html_part.get_content_type() == "text/html"
    assert image.get_content_type() == "image/png"
    cid = image["Content-ID"].strip("<>")
    html = html_part.get_content()
    assert re.search(rf'<img src="cid:{re.escape(cid)}"', html)
    png = image.get_content()
    assert _png_size(png) == (480, 160)
    recent = notification.alerts[0].recent
    assert len(recent) > 1


async def test_a_resolved_email_has_no_chart(smtp_server, mail_sink, build: Any) -> None:
    notification = build.notification(build.resolved(build.alert()))
    async with smtp_server(mail_sink) as port:
        await notifier(port).send(notification)
    [received] = mail_sink.messages
    message = email.message_from_bytes(received.raw, policy=email.policy.strict)
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]

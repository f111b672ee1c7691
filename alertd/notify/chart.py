"""The recent-usage chart an alert email carries as an inline PNG (pure).

Where it sits: :class:`alertd.notify.email.EmailNotifier` asks :func:`email_chart` for the
chart of an envelope before rendering, passes its Content-ID to the HTML template as
``chart_cid`` (the default ``email.html`` shows it with ``<img src="cid:…">``), and
:func:`alertd.notify.email.build_message` attaches the PNG to the HTML part as
``multipart/related`` — only when the HTML refers to it, so a custom template without the
image sends no unused attachment. Mail clients no longer render inline SVG; PNG they all do.

The chart is the first firing alert's recent buckets with its threshold (or its anomaly
band) drawn in — as a running total within the window when the alert's value is the window's
total (:func:`alertd.charts.comparable_values`) — painted by :mod:`alertd.charts.png`. The
Content-ID is derived from the notification id and the alert fingerprint, so a retry sends
the same message.
"""

from __future__ import annotations

from dataclasses import dataclass

from alertd.charts import band_of, comparable_values
from alertd.charts.png import chart_png
from alertd.model import Notification


@dataclass(frozen=True, slots=True)
class EmailChart:
    cid: str  # without the angle brackets
    png: bytes


def email_chart(notification: Notification, domain: str) -> EmailChart | None:
    """The chart of the first firing alert with recent buckets, ``None`` without one."""
    alert = next((a for a in notification.alerts if a.status == "firing" and a.recent), None)
    if alert is None:
        return None
    drawn, _ = comparable_values([(b.starts_at, b.value) for b in alert.recent],
                                 alert.window.starts_at, alert.value)
    values = [(str(b.starts_at), v) for b, v in zip(alert.recent, drawn, strict=True)]
    png = chart_png(values, threshold=alert.threshold, band=band_of(alert.details))
    return EmailChart(f"chart.{notification.id[:16]}.{alert.fingerprint}@{domain}", png)

"""The deadline scheduler's metrics on the daemon's real ``/metrics``: customers booked, due,
the most overdue one's lag and the earliest deadline, per account and poll group."""

from __future__ import annotations

from pathlib import Path

from tests.service.test_daemon import get, metric_samples
from tests.service.test_schedule import quota_rule, twenty_customers

EVERY = 3600.0
LABELS = (("account", ""), ("every", "3600"))


async def scrape(url: str) -> dict[str, float]:
    _, samples = metric_samples((await get(f"{url}/metrics")).text)
    return {name: value for (name, labels), value in samples.items()
            if name.startswith("alertd_deadline_") and labels == LABELS}


async def test_deadline_metrics_follow_the_book(tmp_path: Path) -> None:
    # A budget of 5 requests a tick: the 20 never-read customers take four ticks.
    overrides = {"schedule": {"tick": "1s"}, "stripe": {"requests_per_second": 5}}
    async with twenty_customers(tmp_path, [quota_rule()], **overrides) as s:
        url = s.daemon.server_url
        assert url is not None
        await s.daemon.poll_due(("quota",))
        first = await scrape(url)
        now = s.clock.now()
        assert first["alertd_deadline_customers"] == 20
        assert first["alertd_deadline_due"] == 20  # all never read
        assert first["alertd_deadline_lag_seconds"] == 0  # never read: no deadline missed
        # 15 still never read: the earliest deadline is now.
        assert abs(first["alertd_deadline_next_timestamp_seconds"] - now) < 5
        for _ in range(3):
            s.advance(1)
            await s.daemon.poll_due(("quota",))
        read = await scrape(url)
        assert read["alertd_deadline_due"] == 5  # the last five never read, before this tick
        assert read["alertd_deadline_next_timestamp_seconds"] > s.clock.now()
        s.advance(EVERY + 600)  # every deadline missed by 10 minutes at least
        await s.daemon.poll_due(("quota",))
        late = await scrape(url)
        assert late["alertd_deadline_due"] == 20
        assert late["alertd_deadline_lag_seconds"] >= 600
        assert late["alertd_deadline_customers"] == 20

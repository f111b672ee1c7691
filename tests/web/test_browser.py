"""The status page in a real headless browser: Debian's chromium driven by Playwright.

The daemon runs in-process against the simulator (frozen at ``TEST_NOW``) and is polled by
hand; the browser clicks through the pages as a user does, without JavaScript of ours (the
pages have none). Where chromium or playwright is missing the tests skip with the reason,
except under ``.ci/run`` (``CI=true``), where that fails them.

With ``ALERTD_SCREENSHOT_DIR`` set, the overview, an alert page and a customer's chart are
saved there (``docs/screenshots/`` holds the README's, taken this way).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from alertd.silences import Silence, silenced_by
from alertd.sinks import serve_posts
from tests.service.test_daemon import CALLS, TOKENS, eventually, in_process, rule
from tests.web.helpers import daily_model_sums

# needs_program (tests/conftest.py): skipped where chromium is absent, an error under CI=true.
pytestmark = [pytest.mark.timeout(180), pytest.mark.needs_program("chromium")]


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    chromium = shutil.which("chromium")
    assert chromium is not None  # the needs_program marker saw to it
    try:
        from playwright.async_api import async_playwright
    except ImportError:  # the test extra installs it; CI must not skip for want of it
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("needs the Python package playwright (pip install -e '.[test]')")
        # Outside CI (installed without the test extra): skip, saying why.
        pytest.skip("needs the Python package playwright (pip install -e '.[test]')")

    async with async_playwright() as driver:
        # --no-sandbox: tests run as root in containers, where chromium's sandbox cannot start.
        launched = await driver.chromium.launch(executable_path=chromium,
                                                args=["--no-sandbox"])
        try:
            yield launched
        finally:
            await launched.close()


async def shot(page: Any, name: str) -> None:
    folder = os.environ.get("ALERTD_SCREENSHOT_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(Path(folder) / name), full_page=True)


SCENARIO = [rule("tokens", value=1_000_000),  # fires for some customers of the simulator
            {**rule("calls-slow", meter=CALLS), "for": "6h"},  # holds, but is only pending
            rule("never", op=">", value=1e15)]


async def test_overview_lists_exactly_the_firing_alerts(tmp_path: Path, browser: Any) -> None:
    async with in_process(tmp_path, SCENARIO) as s:
        outcome = await s.daemon.poll(("tokens", "calls-slow", "never"))
        firing = {(f.rule, f.key.customer) for f in outcome.findings if f.state == "firing"}
        pending = {(f.rule, f.key.customer) for f in outcome.findings if f.state == "pending"}
        assert firing and pending  # the scenario has both
        page = await browser.new_page()
        await page.goto(f"{s.daemon.server_url}/?state=firing")
        rows = await page.eval_on_selector_all(
            "#alerts tbody tr[data-state]",
            "rows => rows.map(r => [r.dataset.rule, r.dataset.customer])")
        assert {tuple(r) for r in rows} == firing and len(rows) == len(firing)
        await page.goto(s.daemon.server_url)
        states = await page.eval_on_selector_all(
            "#alerts tbody tr[data-state]", "rows => rows.map(r => r.dataset.state)")
        assert sorted(states) == sorted(["firing"] * len(firing) + ["pending"] * len(pending))
        await shot(page, "overview.png")


async def test_customer_chart_bars_and_legend_match_daily_sums(
    tmp_path: Path, browser: Any
) -> None:
    async with in_process(tmp_path, [rule("tokens")]) as s:
        await s.daemon.poll(("tokens",))
        customer = s.sim.generator.profiles()[0].customer().id
        page = await browser.new_page()
        await page.goto(f"{s.daemon.server_url}/customers/{customer}"
                        f"?meter={TOKENS}&group_by=model")
        bars = await page.eval_on_selector_all(
            "svg rect.bar", "bars => bars.map(b => [b.dataset.label, Number(b.dataset.value)])")
        legend = await page.eval_on_selector_all(
            ".legend span[data-series]", "items => items.map(i => i.dataset.series)")
        assert s.daemon.status is not None
        refreshed = s.daemon.status.usage._cache  # what the page read: its freshness
        as_of = next(iter(refreshed.values()))[1].refreshed_at
        assert as_of is not None
        expected = daily_model_sums(s.sim, customer, TOKENS, s.clock.now(), as_of)
        drawn: dict[str, dict[str, float]] = {}
        for label, value in bars:
            date, model = label.split(" ", 1)
            drawn.setdefault(date, {})[model] = value
        assert drawn == expected
        assert legend == sorted({m for day in expected.values() for m in day})
        await shot(page, "customer.png")


async def test_silence_created_from_an_alert_page(tmp_path: Path, browser: Any) -> None:
    async with in_process(tmp_path, [rule("tokens", value=500_000)]) as s:
        outcome = await s.daemon.poll(("tokens",))
        # The firing series closest to its threshold: its chart shows the line mid-way.
        finding = min((f for f in outcome.findings if f.state == "firing"),
                      key=lambda f: f.value or 0.0)
        page = await browser.new_page()
        await page.goto(f"{s.daemon.server_url}/alerts/{finding.key.fingerprint}")
        assert await page.inner_text("h1") == "firing tokens"
        await page.wait_for_selector("svg line.threshold", state="attached")
        await shot(page, "alert.png")
        await page.fill("#silence-form input[name=comment]", "talked to the customer")
        await page.click("#silence-form button[type=submit]")
        await page.wait_for_url("**/silences")
        assert finding.key.customer in await page.inner_text("#silences")
        # --all: the command runs on the real clock, the daemon at the simulator's TEST_NOW
        # (in the past), so by the command's clock this two-hour silence is over.
        listed = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "alertd", "silence", "list", "--all", "-c",
                             str(tmp_path / "alertd.yaml")],
            capture_output=True, text=True, timeout=60, check=False)
        assert listed.returncode == 0, listed.stderr
        assert f"customer={finding.key.customer}" in listed.stdout
        assert "talked to the customer" in listed.stdout
        silences = await s.daemon.status.store.silences(int(s.clock.now())) \
            if s.daemon.status else []
        labels = {"rule": "tokens", "alertname": "tokens", "customer": finding.key.customer}
        chosen: Silence | None = silenced_by(labels, silences, int(s.clock.now()))
        assert chosen is not None
        other = {**labels, "customer": "cus_someone_else"}
        assert silenced_by(other, silences, int(s.clock.now())) is None


async def test_resend_of_a_failed_notification_delivers_it_once(
    tmp_path: Path, browser: Any
) -> None:
    arrived: list[dict[str, Any]] = []

    async def receiver(request: web.Request) -> web.Response:
        arrived.append({"key": request.headers.get("Idempotency-Key"),
                        "body": json.loads(await request.read())})
        if len(arrived) == 1:  # the first delivery is refused for good
            return web.json_response({"error": "bad payload"}, status=400)
        return web.json_response({"ok": True})

    async with serve_posts(receiver) as hook_url:
        receivers = [{"name": "hooks", "webhook": {"url": f"{hook_url}/alertd"}}]
        async with in_process(tmp_path, [rule("tokens")], receivers=receivers) as s:
            await s.daemon.poll(("tokens",))
            store = s.daemon.status.store if s.daemon.status else None
            assert store is not None
            rows = await eventually(lambda: store.outbox("undeliverable"),
                                    what="an undeliverable row")
            row = rows[0]
            page = await browser.new_page()
            await page.goto(f"{s.daemon.server_url}/notifications?status=undeliverable")
            await page.click(f"#notifications tr[data-id='{row.id}'] a")
            await page.click("#resend-form button[type=submit]")
            await eventually(lambda: len(arrived) == 2, what="the resend")
            await page.wait_for_timeout(300)
            await page.reload()
            assert await page.inner_text("#status") == "delivered"
            outcomes = await page.eval_on_selector_all(
                "#attempts tbody tr[data-status]", "rows => rows.map(r => r.dataset.status)")
            assert outcomes == ["undeliverable", "delivered"]  # each attempt, with its error
            assert "answered 400" in await page.inner_text("table#attempts")
            await asyncio.sleep(1.0)  # nothing more arrives
            assert len(arrived) == 2 and arrived[0]["key"] == arrived[1]["key"] == row.id
            done = await store.outbox_row(row.id)
            assert done is not None and done.status == "delivered"


async def test_no_page_works_without_the_token(tmp_path: Path, browser: Any) -> None:
    secret = tmp_path / "token"
    secret.write_text("browser-token\n")
    async with in_process(tmp_path, [rule("tokens")],
                          server={"token_file": str(secret)}) as s:
        outcome = await s.daemon.poll(("tokens",))
        fingerprint = next(f for f in outcome.findings if f.state == "firing").key.fingerprint
        page = await browser.new_page()
        paths = ["/", f"/alerts/{fingerprint}", "/customers", f"/customers/x?meter={TOKENS}",
                 "/silences", "/notifications"]
        for path in paths:
            await page.goto(s.daemon.server_url + path)
            assert await page.inner_text("h1") == "Log in", path
            assert await page.query_selector("#alerts, #silences, #notifications") is None
        for path in ("/api/v1/alerts", "/api/v1/silences", "/api/v1/notifications"):
            answer = await page.goto(s.daemon.server_url + path)
            assert answer is not None and answer.status == 401, path
        posted = await page.request.post(s.daemon.server_url + "/silences",
                                         form={"matchers": "rule=tokens", "comment": "x"})
        assert posted.status == 401
        assert await s.daemon.status.store.silences(0) == [] if s.daemon.status else False
        await page.goto(s.daemon.server_url + "/")
        await page.fill("input[name=token]", "browser-token")
        await page.click("button[type=submit]")
        await page.wait_for_selector("#alerts")

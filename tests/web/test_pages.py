"""The status page over real HTTP: a daemon in-process against the simulator, polled by hand.

What is checked: the overview lists exactly the series the poll found firing; an alert's
page explains it and draws its buckets and threshold; the customer chart's data equals the
simulator's own daily sums by model; silences are created (CSRF-checked) and expired; the
notification history pages and resends; the JSON API answers the same; and access control
(token, basic, loopback) refuses what it must.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

import httpx
import pytest

from tests.service.test_daemon import TOKENS, eventually, in_process, rule
from tests.web.helpers import csrf_of, daily_model_sums

pytestmark = pytest.mark.timeout(120)


async def test_overview_lists_exactly_the_firing_series(tmp_path: Path) -> None:
    rules = [rule("tokens"), rule("never", op=">", value=1e15)]
    async with in_process(tmp_path, rules) as s:
        outcome = await s.daemon.poll(("tokens", "never"))
        firing = {(f.rule, f.key.customer) for f in outcome.findings if f.state == "firing"}
        assert firing and all(r == "tokens" for r, _ in firing)
        async with httpx.AsyncClient(base_url=s.daemon.server_url) as client:
            page = await client.get("/")
            assert page.status_code == 200
            shown = set(re.findall(r'data-state="firing" data-rule="([^"]+)" '
                                   r'data-customer="([^"]*)"', page.text))
            assert shown == firing
            api = (await client.get("/api/v1/alerts")).json()
            assert {(a["rule"], a["customer"]["id"]) for a in api["alerts"]
                    if a["state"] == "firing"} == firing


async def test_alert_page_chart_threshold_and_notifications(tmp_path: Path) -> None:
    async with in_process(tmp_path, [rule("tokens", value=10)]) as s:
        outcome = await s.daemon.poll(("tokens",))
        finding = next(f for f in outcome.findings if f.state == "firing")
        await eventually(lambda: s.hooks.at("/alertd"), what="the webhook")
        async with httpx.AsyncClient(base_url=s.daemon.server_url) as client:
            page = await client.get(f"/alerts/{finding.key.fingerprint}")
            assert page.status_code == 200
            assert 'class="threshold"' in page.text and 'class="bar"' in page.text
            await eventually(lambda: _delivered(client, finding.key.fingerprint),
                             what="a delivered row on the alert page")


async def _delivered(client: httpx.AsyncClient, fingerprint: str) -> bool:
    page = await client.get(f"/alerts/{fingerprint}")
    return 'data-status="delivered"' in page.text


async def test_customer_usage_matches_the_simulators_daily_sums(tmp_path: Path) -> None:
    async with in_process(tmp_path, [rule("tokens")]) as s:
        customer = s.sim.generator.profiles()[0].customer().id
        async with httpx.AsyncClient(base_url=s.daemon.server_url) as client:
            before = s.daemon.status.usage.requests if s.daemon.status else 0
            answer = await client.get(f"/api/v1/customers/{customer}/usage",
                                      params={"meter": TOKENS, "window": "day",
                                              "group_by": "model"})
            assert answer.status_code == 200, answer.text
            data = answer.json()["data"]
            # The simulator serves data as of its refresh time (it lags, as Stripe does).
            expected = daily_model_sums(s.sim, customer, TOKENS, s.clock.now(),
                                        answer.json()["refreshed_at"])
            got = {row["date"]: {k: row[k] for k in answer.json()["keys"] if row[k]}
                   for row in data}
            assert {d: v for d, v in got.items() if v} == expected
            page = await client.get(f"/customers/{customer}",
                                    params={"meter": TOKENS, "group_by": "model"})
            assert page.status_code == 200
            assert s.daemon.status is not None
            assert s.daemon.status.usage.requests - before == 1  # the page reused the answer


async def test_silence_from_form_needs_its_csrf_token(tmp_path: Path) -> None:
    async with in_process(tmp_path, [rule("tokens")]) as s:
        outcome = await s.daemon.poll(("tokens",))
        finding = next(f for f in outcome.findings if f.state == "firing")
        async with httpx.AsyncClient(base_url=s.daemon.server_url) as client:
            page = await client.get(f"/alerts/{finding.key.fingerprint}")
            form = {"matchers": f"rule=tokens\ncustomer={finding.key.customer}",
                    "hours": "1", "comment": "maintenance"}
            refused = await client.post("/silences", data=form)
            assert refused.status_code == 403
            elsewhere = await client.post("/silences", data={**form, "csrf": csrf_of(page.text)},
                                          headers={"Origin": "http://evil.example"})
            assert elsewhere.status_code == 403
            made = await client.post("/silences", data={**form, "csrf": csrf_of(page.text)})
            assert made.status_code == 303
            listed = (await client.get("/api/v1/silences")).json()["silences"]
            assert [s_["matchers"] for s_ in listed] == [
                ["rule=tokens", f"customer={finding.key.customer}"]]
            page = await client.get("/silences")
            expired = await client.post(f"/silences/{listed[0]['id']}/expire",
                                        data={"csrf": csrf_of(page.text)})
            assert expired.status_code == 303
            assert (await client.get("/api/v1/silences")).json()["silences"] == []


async def test_a_token_guards_every_page(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("s3cret-token\n")
    async with in_process(tmp_path, [rule("tokens")],
                          server={"token_file": str(secret)}) as s, \
            httpx.AsyncClient(base_url=s.daemon.server_url) as client:
            for path in ("/", "/silences", "/notifications", "/customers", "/api/v1/alerts",
                         "/api/v1/silences", "/api/v1/notifications"):
                answer = await client.get(path)
                assert answer.status_code in (401, 303), path
                assert "<table" not in answer.text
            assert (await client.get("/metrics")).status_code == 200
            good = {"Authorization": "Bearer s3cret-token"}
            assert (await client.get("/api/v1/alerts", headers=good)).status_code == 200
            wrong = {"Authorization": "Bearer s3cret-tokem"}
            assert (await client.get("/api/v1/alerts", headers=wrong)).status_code == 401
            login = await client.get("/login")
            bad = await client.post("/login", data={"token": "nope",
                                                     "csrf": csrf_of(login.text)})
            assert bad.status_code == 401
            ok = await client.post("/login", data={"token": "s3cret-token", "next": "/",
                                                    "csrf": csrf_of(login.text)})
            assert ok.status_code == 303
            assert (await client.get("/")).status_code == 200  # the session cookie


async def test_basic_auth_and_no_credentials_off_loopback(tmp_path: Path) -> None:
    creds = tmp_path / "basic"
    creds.write_text("ops:pa55word\n")
    async with in_process(tmp_path, [rule("tokens")],
                          server={"basic_auth_file": str(creds)}) as s, \
            httpx.AsyncClient(base_url=s.daemon.server_url) as client:
            assert (await client.get("/")).status_code == 401
            token = base64.b64encode(b"ops:pa55word").decode()
            answer = await client.get("/", headers={"Authorization": f"Basic {token}"})
            assert answer.status_code == 200


async def test_pages_are_off_without_credentials_off_loopback(tmp_path: Path) -> None:
    async with in_process(tmp_path, [rule("tokens")], server={"listen": "0.0.0.0:0"}) as s:
        url = s.daemon.server_url.replace("0.0.0.0", "127.0.0.1")
        async with httpx.AsyncClient(base_url=url) as client:
            page = await client.get("/")
            assert page.status_code == 403 and "server.token_file" in page.text
            assert (await client.get("/metrics")).status_code == 200


async def test_the_status_page_on_a_postgresql_store(tmp_path: Path, pg_url: str) -> None:
    """The same pages from a daemon whose state is in PostgreSQL: the alert's delivered row,
    the history (page and API), and the notification's page with its one attempt."""
    async with in_process(tmp_path, [rule("tokens", value=10)],
                          state={"url": pg_url, "replica": "a", "lease": "15s"}) as s:
        outcome = await s.daemon.poll(("tokens",))
        finding = next(f for f in outcome.findings if f.state == "firing")
        await eventually(lambda: s.hooks.at("/alertd"), what="the webhook")
        async with httpx.AsyncClient(base_url=s.daemon.server_url) as client:
            await eventually(lambda: _delivered(client, finding.key.fingerprint),
                             what="a delivered row on the alert page")
            api = (await client.get("/api/v1/notifications?status=delivered")).json()
            (row,) = api["notifications"]
            history = await client.get("/notifications")
            assert history.status_code == 200 and row["id"] in history.text
            page = await client.get(f"/notifications/{row['id']}")
            assert page.status_code == 200
            assert re.findall(r'<tr data-status="([a-z]+)">', page.text) == ["delivered"]

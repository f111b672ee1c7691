"""The status page and its JSON API refuse bad input plainly and lose nothing.

Over real HTTP against an in-process daemon and the simulator (as ``test_pages.py``): unknown
ids are 404s that say what to look at, a silence form with a bad duration or matcher is
re-shown with the error and adds nothing, the API's paging cursor walks every notification
once, a resend of a delivered notification is refused, and when Stripe or the state file
fails the page says so instead of failing. These were the branches of ``web/app.py`` and
``web/api.py`` no test reached (coverage, December 2026).
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from alertd.sim.faults import Fault
from tests.service.test_daemon import TOKENS, damage, eventually, in_process, rule
from tests.web.helpers import csrf_of

pytestmark = pytest.mark.timeout(120)


async def test_unknown_ids_are_404s_that_say_where_to_look(tmp_path: Path) -> None:
    async with in_process(tmp_path, [rule("tokens")]) as s, \
            httpx.AsyncClient(base_url=s.daemon.server_url) as client:
        page = await client.get("/alerts/deadbeef")
        assert page.status_code == 404 and "notification history" in page.text
        api = await client.get("/api/v1/alerts/deadbeef")
        assert api.status_code == 404 and "no pending or firing alert" in api.json()["error"]
        page = await client.get("/notifications/nope")
        assert page.status_code == 404 and "keep_delivered" in page.text
        csrf = csrf_of((await client.get("/silences")).text)
        resent = await client.post("/notifications/nope/resend", data={"csrf": csrf})
        assert resent.status_code == 404
        expired = await client.post("/silences/zz/expire", data={"csrf": csrf})
        assert expired.status_code == 404 and "no silence with id 'zz'" in expired.text
        found = await client.get("/customers", params={"id": " cus_x "})
        assert found.status_code == 303 and found.headers["location"] == "/customers/cus_x"


@pytest.mark.parametrize(("form", "words"), [
    ({"hours": "soon"}, "could not convert"),
    ({"hours": "0"}, "between a minute and a year"),
    ({"hours": "9000"}, "between a minute and a year"),
    ({"matchers": "rule~tokens"}, "not a matcher"),
    ({"matchers": "rule=~.*"}, "does not match an empty label"),
    ({"comment": ""}, "needs a comment"),
], ids=["word", "zero", "over a year", "bad matcher", "matches all", "no comment"])
async def test_a_bad_silence_form_is_shown_again_and_adds_nothing(
    tmp_path: Path, form: dict[str, str], words: str
) -> None:
    async with in_process(tmp_path, [rule("tokens")]) as s, \
            httpx.AsyncClient(base_url=s.daemon.server_url) as client:
        csrf = csrf_of((await client.get("/silences")).text)
        sent = {"matchers": "rule=tokens", "hours": "1", "comment": "x", "csrf": csrf, **form}
        answer = await client.post("/silences", data=sent)
        assert answer.status_code == 400
        assert words in answer.text.replace("&#39;", "'"), answer.text
        # What was typed is kept in the form, so the user can correct it.
        assert sent["matchers"].replace(">", "&gt;") in answer.text
        listed = await client.get("/api/v1/silences", params={"all": "1"})
        assert listed.json()["silences"] == []


async def test_usage_api_refuses_bad_queries_with_400(tmp_path: Path) -> None:
    async with in_process(tmp_path, [rule("tokens")]) as s, \
            httpx.AsyncClient(base_url=s.daemon.server_url) as client:
        customer = s.sim.generator.profiles()[0].customer().id
        base = f"/api/v1/customers/{customer}/usage"
        asked = s.daemon.status.usage.requests if s.daemon.status else 0
        for params, words in [
            ({"meter": TOKENS, "window": "week"}, "only day"),
            ({"meter": TOKENS, "group_by": "model;drop"}, "group_by is a dimension key"),
            ({"meter": TOKENS, "days": "0"}, "days must be between"),
            ({"meter": "mtr x"}, "Stripe ids"),
        ]:
            answer = await client.get(base, params=params)
            assert answer.status_code == 400 and words in answer.json()["error"], params
        assert s.daemon.status is not None
        assert s.daemon.status.usage.requests == asked  # none of them reached Stripe
        page = await client.get(f"/customers/{customer}", params={"group_by": "a b"})
        assert page.status_code == 200 and "group_by is a dimension key" in page.text


async def test_stripe_failing_is_a_502_and_a_sentence_on_the_page(tmp_path: Path) -> None:
    async with in_process(tmp_path, [rule("tokens")]) as s, \
            httpx.AsyncClient(base_url=s.daemon.server_url) as client:
        customer = s.sim.generator.profiles()[0].customer().id
        s.sim.add_fault(Fault("status", status=400, path="/v1/billing/analytics"))
        answer = await client.get(f"/api/v1/customers/{customer}/usage",
                                  params={"meter": TOKENS, "group_by": "model"})
        assert answer.status_code == 502
        assert answer.json()["error"].startswith("Stripe did not answer: ")
        page = await client.get(f"/customers/{customer}",
                                params={"meter": TOKENS, "group_by": "model"})
        assert page.status_code == 200 and "Stripe did not answer: " in page.text


async def test_notification_pages_walk_every_row_once_and_resend_only_failures(
    tmp_path: Path
) -> None:
    rules = [rule("tokens"), rule("more", value=1), rule("most", value=2)]
    async with in_process(tmp_path, rules) as s, \
            httpx.AsyncClient(base_url=s.daemon.server_url) as client:
        await s.daemon.poll(("tokens", "more", "most"))
        await eventually(lambda: len(s.hooks.at("/alertd")) == 3, what="three webhooks")
        everything = (await client.get("/api/v1/notifications")).json()
        assert everything["next"] is None and len(everything["notifications"]) == 3
        walked, after = [], ""
        while True:
            page = (await client.get("/api/v1/notifications",
                                     params={"limit": "1", "before": after})).json()
            walked += [n["id"] for n in page["notifications"]]
            if page["next"] is None:
                break
            after = page["next"]
        assert walked == [n["id"] for n in everything["notifications"]]
        garbage = (await client.get("/api/v1/notifications",
                                    params={"before": "yesterday:x"})).json()
        assert garbage == everything  # a cursor it cannot read is the first page

        delivered = await eventually_delivered(client)
        csrf = csrf_of((await client.get("/silences")).text)
        refused = await client.post(f"/notifications/{delivered}/resend", data={"csrf": csrf})
        assert refused.status_code == 409 and "this one is delivered" in refused.text
        row = next(n for n in (await client.get("/api/v1/notifications")).json()["notifications"]
                   if n["id"] == delivered)
        assert row["status"] == "delivered" and row["attempts"] == 1  # not sent again


async def eventually_delivered(client: httpx.AsyncClient) -> str:
    found: list[str] = []

    async def check() -> bool:
        rows = (await client.get("/api/v1/notifications",
                                 params={"status": "delivered"})).json()["notifications"]
        found[:] = [r["id"] for r in rows]
        return bool(found)

    await eventually(check, what="a delivered notification")
    return found[0]


async def test_a_damaged_state_file_is_a_503_that_names_the_store(tmp_path: Path) -> None:
    async with in_process(tmp_path, [rule("tokens")]) as s, \
            httpx.AsyncClient(base_url=s.daemon.server_url) as client:
        await s.daemon.poll(("tokens",))
        assert (await client.get("/notifications")).status_code == 200
        damage(tmp_path / "alertd.db")
        for path in ("/notifications", "/api/v1/notifications"):
            answer = await client.get(path)
            assert answer.status_code == 503, path
            assert answer.text.startswith("the state store failed: "), answer.text

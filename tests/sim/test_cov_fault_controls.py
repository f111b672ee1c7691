"""The simulator's ``/__faults`` control refuses a bad fault with a 400 that says what is
wrong, and adds none of a list when one of it is bad (coverage, December 2026: these
refusals of ``sim/faults.py`` were unreached). Over real HTTP to a running simulator."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from alertd.sim.testing import running_simulator


@pytest.mark.parametrize(("body", "words"), [
    ({"kind": "explode"}, "fault kind must be one of"),
    ({"kind": "malformed", "body": "xml"}, "malformed body must be one of"),
    ({"kind": "status", "count": 0}, "count must be at least 1"),
    ({"kind": "slow", "probability": 1.5}, "probability must be within [0, 1]"),
    ({"kind": "slow", "delay": -1}, "delay not negative"),
    ({"status": 500}, "at least a 'kind'"),
    (["status"], "at least a 'kind'"),
    ({"kind": "status", "colour": "red"}, "unknown fault fields: ['colour']"),
    ({"faults": [{"kind": "status", "count": 1}, {"kind": "nope"}]}, "fault kind"),
], ids=["kind", "body", "count", "probability", "delay", "no kind", "not an object",
        "unknown field", "one bad of a list"])
async def test_a_bad_fault_is_a_400_and_adds_nothing(body: Any, words: str) -> None:
    async with running_simulator(customers=1, days=2) as sim, \
            httpx.AsyncClient(base_url=sim.url) as client:
        answer = await client.post("/__faults", json=body)
        assert answer.status_code == 400
        assert words in answer.json()["error"]["message"]
        assert (await client.get("/__faults")).json() == {"faults": []}


async def test_a_good_fault_list_is_added_and_cleared() -> None:
    async with running_simulator(customers=1, days=2) as sim, \
            httpx.AsyncClient(base_url=sim.url) as client:
        added = await client.post("/__faults", json={"faults": [
            {"kind": "status", "status": 503, "count": 2}, {"kind": "slow", "delay": 0.01}]})
        assert added.status_code == 200
        assert [f["kind"] for f in added.json()["faults"]] == ["status", "slow"]
        assert (await client.delete("/__faults")).json() == {"faults": []}
        assert (await client.get("/__faults")).json() == {"faults": []}

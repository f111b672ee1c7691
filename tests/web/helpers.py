"""Helpers of the status page tests: the form token of a page, the simulator's daily sums."""

from __future__ import annotations

import re

from alertd.sim.server import Simulator
from alertd.web.usage import daily_sums, usage_query


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found, "the page has no form token"
    return found.group(1)


def daily_model_sums(sim: Simulator, customer: str, meter: str, now: float, as_of: int
                     ) -> dict[str, dict[str, float]]:
    """What the simulator's generator itself says a customer used per day per model, over
    the range the status page asks (straight from the generator, not over HTTP)."""
    query = usage_query(customer, meter, "model", int(now), 30)
    rows = sim.generator.usage_rows(query, as_of)
    return {d: {k: v for k, v in day.items() if v} for d, day in daily_sums(rows, "model").items()
            if any(day.values())}

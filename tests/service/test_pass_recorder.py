"""A pass recorded batch by batch (:class:`alertd.service.recording.PassRecorder`, what the
daemon does) records exactly what one :meth:`Pipeline.apply` of all its findings records:
the same alert states, the same outbox rows. Real parts: the simulator, SQLite files."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from alertd.clock import SystemClock
from alertd.config.settings import RootRoute, Settings
from alertd.notify.pipeline import Pipeline
from alertd.notify.routing import RouteTree
from alertd.rules.loader import RuleSet
from alertd.rules.schema import Rule
from alertd.service.engine import Engine
from alertd.service.recording import PassRecorder, record_pass
from alertd.service.world import stripe_stack
from alertd.sim.generator import UsageGenerator
from alertd.sim.server import Simulator
from alertd.sim.testing import API_KEY, TEST_NOW
from alertd.store.sqlite import SqliteStore

TOKENS = "mtr_sim_tokens"
ROUTE = RootRoute.model_validate({"receiver": "ops", "group_by": ["rule"], "group_wait": "0s",
                                  "group_interval": "5m", "repeat_interval": "1h"})


def rule(name: str, value: float, **fields: Any) -> Rule:
    return Rule.model_validate({
        "name": name, "meter": TOKENS, "window": "day",
        "condition": {"type": "threshold", "op": ">=", "value": value}, **fields})


RULES = RuleSet((
    rule("day", 150_000),
    rule("per-model", 60_000, group_by=["model"]),
    rule("held", 100_000, **{"for": "2h"}),
    rule("hour", 2_000, window="hour"),
))
#: The same rules after a reload that narrows ``per-model`` to one model: the series of the
#: other models vanish from the pass (and resolve through :func:`vanished_series`).
NARROWED = RuleSet(tuple(
    rule("per-model", 60_000, group_by=["model"], filters={"model": "gpt-4"})
    if r.name == "per-model" else r for r in RULES.rules))


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    generator = UsageGenerator(customers=14, seed=3, days=10, now=TEST_NOW)
    async with Simulator(generator, port=0, now=TEST_NOW) as running:
        yield running


def settings_for(sim: Simulator) -> Settings:
    return Settings.model_validate({
        "stripe": {"api_base": sim.url, "api_key": API_KEY, "max_retries": 0,
                   "freshness_lag": 0},
        "customers": {"all": True},
        "receivers": [{"name": "ops", "webhook": {"url": "http://127.0.0.1:9/hook"}}],
        "route": {"receiver": "ops"},
    })


async def record(sim: Simulator, store: SqliteStore, rules: RuleSet, *, batched: bool
                 ) -> int:
    """One pass at the simulator's now into ``store``: batch by batch (one customer a batch)
    or all at once; returns how many batches recorded something."""
    settings = settings_for(sim)
    pipeline = Pipeline(store, RouteTree(ROUTE), settings.receivers)
    now = int(sim.now())
    async with stripe_stack(settings, clock=SystemClock()) as stack:
        engine = Engine(settings, rules, stack.source, stack.directory,
                        batch_customers=1 if batched else 1000)
        if not batched:
            result = await engine.run_pass(now)
            await record_pass(pipeline, rules, result, await engine.meters())
            return 1
        recorder = await PassRecorder.start(pipeline, rules, [r.name for r in rules.rules],
                                            now, engine.meters)
        batches = 0

        async def on_batch(found: Any) -> None:
            nonlocal batches
            batches += 1
            await recorder.batch(found)

        await engine.run_pass(now, on_batch=on_batch)
        await recorder.finish(())
        return batches


async def recorded(store: SqliteStore) -> tuple[Any, ...]:
    rows = sorted(await store.outbox(), key=lambda r: r.id)
    return (await store.load_states(),
            [(r.id, r.receiver, r.group_key, r.notification) for r in rows])


async def test_many_batches_record_what_one_records(sim: Simulator, tmp_path: Path) -> None:
    async with SqliteStore(tmp_path / "batched.db") as batched, \
            SqliteStore(tmp_path / "whole.db") as whole:
        seen = []
        # 12:00 and 18:30: firing, pending then firing; 18:40, narrowed: vanished series;
        # 00:40, in a new day: resolving.
        for advance, rules in ((6 * 3600 + 1800, RULES), (600, RULES), (6 * 3600, NARROWED),
                               (0, NARROWED)):
            assert await record(sim, batched, rules, batched=True) >= 14
            await record(sim, whole, rules, batched=False)
            states, outbox = await recorded(batched)
            assert (states, outbox) == await recorded(whole)
            seen.append((states, outbox))
            sim.advance(advance)
    # What the passes recorded is not trivial (preconditions, not results): states of
    # several kinds, notifications, and a change between passes.
    statuses = {s.status for states, _ in seen for s in states.values()}
    assert {"firing", "pending"} <= statuses
    assert seen[-1][1] and seen[0] != seen[-1]

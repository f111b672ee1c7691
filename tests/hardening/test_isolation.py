"""Each failure stays inside its (rule, customer): the engine against the simulator with rules
that slipped past validation, customers Stripe does not have or cannot serve, and the daemon's
readiness when whole polls keep evaluating nothing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from alertd.alerts import SOURCE_FAILURE
from alertd.clock import SystemClock
from alertd.conditions.threshold import ThresholdCondition
from alertd.config.settings import Settings
from alertd.errors import StoreError
from alertd.rules.loader import RuleSet
from alertd.rules.schema import Rule
from alertd.service.engine import Engine, PassResult
from alertd.service.recording import poll_failed
from alertd.service.world import stripe_stack
from alertd.sim.faults import Fault
from alertd.sim.server import Simulator
from alertd.sim.testing import API_KEY, TEST_NOW, running_simulator
from tests.service.test_daemon import get, in_process, metric_samples

TOKENS = "mtr_sim_tokens"


def month_rule(name: str, **fields: Any) -> Rule:
    return Rule.model_validate({
        "name": name, "meter": TOKENS, "window": "month",
        "condition": {"type": "threshold", "op": ">=", "value": 0}, **fields})


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with running_simulator(customers=3, days=40, now=TEST_NOW) as running:
        yield running


async def run_pass(sim: Simulator, rules: list[Rule], **stripe: Any) -> PassResult:
    settings = Settings.model_validate({
        "stripe": {"api_base": sim.url, "api_key": API_KEY, "max_retries": 0, **stripe},
        "customers": {"all": True},
    })
    async with stripe_stack(settings, clock=SystemClock()) as stack:
        engine = Engine(settings, RuleSet(tuple(rules)), stack.source, stack.directory)
        return await engine.run_pass(TEST_NOW - 600)


def states(result: PassResult, rule: str) -> dict[str, str]:
    return {f.customer: f.state for f in result.findings if f.rule == rule}


async def test_a_rule_stripe_would_refuse_is_an_error_not_a_source_failure(
    sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    # `when: "model=gpt-4 daily usage > 5"` without a meter: filters need one.
    no_meter = Rule.model_validate({"name": "no-meter", "filters": {"model": "gpt-4"},
                                    "condition": {"type": "threshold", "value": 5}})
    result = await run_pass(sim, [no_meter, month_rule("healthy")])
    customers = {p.id for p in sim.generator.profiles()}
    assert states(result, "no-meter") == dict.fromkeys(customers, "error")
    assert states(result, "healthy") == dict.fromkeys(customers, "inactive")
    assert all(f.active for f in result.findings if f.rule == "healthy")
    assert result.failures == () and not poll_failed(result)
    message = next(f.message for f in result.findings if f.rule == "no-meter")
    assert "Stripe would refuse" in message and "need a 'meter'" in message
    assert "rule cannot be served rule=no-meter customer=" in caplog.text


async def test_a_rule_that_raises_while_evaluating_fails_only_itself(
    sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    # An operator validation refuses, in a rule built around it.
    good = month_rule("broken")
    condition = ThresholdCondition.model_construct(type="threshold", op="!=", value=5.0,
                                                   value_from=None, levels=None)
    broken = good.model_copy(update={"condition": condition})
    result = await run_pass(sim, [broken, month_rule("healthy")])
    assert set(states(result, "broken").values()) == {"error"}
    assert set(states(result, "healthy").values()) == {"inactive"}  # active: fires
    message = next(f.message for f in result.findings if f.rule == "broken")
    assert message.startswith("internal error while evaluating")
    assert result.failures == ()
    assert "rule=broken customer=" in caplog.text


async def test_a_deleted_or_unknown_customer_is_named_and_others_are_judged(
    sim: Simulator,
) -> None:
    known = sim.generator.profiles()[0].id
    result = await run_pass(sim, [month_rule("mixed", customers=[known, "cus_nope"])])
    assert states(result, "mixed") == {known: "inactive", "cus_nope": "error"}
    assert result.failures == () and result.queries == 1


async def test_a_customer_lookup_that_fails_is_a_source_failure_for_it_alone(
    sim: Simulator,
) -> None:
    known, flaky = (p.id for p in sim.generator.profiles()[:2])
    sim.add_fault(Fault("status", status=500, path=f"/v1/customers/{flaky}"))
    result = await run_pass(sim, [month_rule("mixed", customers=[known, flaky])])
    assert states(result, "mixed") == {known: "inactive", flaky: "error"}
    assert len(result.failures) == 1 and result.failures[0].status == 500
    assert result.queries == 2  # the failed lookup stands for the query it would have had


async def test_a_customer_list_that_fails_fails_only_the_rules_it_serves(
    sim: Simulator,
) -> None:
    known = sim.generator.profiles()[0].id
    sim.add_fault(Fault("status", status=500, path="/v1/customers/search"))
    searching = month_rule("searching", customers={"search": "metadata['plan']:'pro'"})
    result = await run_pass(sim, [searching, month_rule("listed", customers=[known])])
    assert states(result, "searching") == {"": "error"}
    assert states(result, "listed") == {known: "inactive"}
    assert len(result.failures) == 1


async def test_an_unexpected_error_reading_one_answer_fails_only_its_customer(
    sim: Simulator,
) -> None:
    # JSON nested deeper than the decoder recurses: whatever it raises, only one answer.
    bad = sim.generator.profiles()[2].id
    sim.add_fault(Fault("malformed", body="deep", path="/v1/billing/analytics", customer=bad))
    result = await run_pass(sim, [month_rule("healthy")])
    assert states(result, "healthy")[bad] == "error"
    assert sorted(states(result, "healthy").values()) == ["error", "inactive", "inactive"]
    assert next(f.message for f in result.findings
                if f.state == "error").startswith("could not read usage")


# --------------------------------------------------------------------------- readiness


def daemon_rule(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "meter": TOKENS, "window": "month", "every": "2s",
            "condition": {"type": "threshold", "op": ">=", "value": 0}, **fields}


async def test_readiness_turns_when_no_poll_evaluates_anything(tmp_path: Path) -> None:
    rules = [daemon_rule("ghost", customers=["cus_ghost"]),
             daemon_rule("ghost-too", every="1m", customers=["cus_gone"])]
    async with in_process(tmp_path, rules) as s:
        url = s.daemon.server_url
        for group in [("ghost",), ("ghost-too",), ("ghost",)]:
            outcome = await s.daemon.poll(group)
            assert not outcome.failed  # a missing customer is no source failure
            assert [f.active for f in outcome.findings if f.rule == SOURCE_FAILURE] == [False]
        assert (await get(f"{url}/readyz")).status_code == 200  # ghost-too: once only
        await s.daemon.poll(("ghost-too",))
        ready = await get(f"{url}/readyz")
        assert ready.status_code == 503
        assert "no poll has evaluated anything for 2 polls in a row" in ready.text
        assert "cus_g" in ready.text
        _, samples = metric_samples((await get(f"{url}/metrics")).text)
        assert samples[("alertd_rule_evaluations_total",
                        (("outcome", "error"), ("rule", "ghost")))] == 2


async def test_one_broken_rule_does_not_take_the_daemon_out_of_service(
    tmp_path: Path,
) -> None:
    rules = [daemon_rule("healthy"), daemon_rule("ghost", every="1m", customers=["cus_ghost"])]
    async with in_process(tmp_path, rules) as s:
        url = s.daemon.server_url
        for _ in range(3):
            await s.daemon.poll(("ghost",))
            await s.daemon.poll(("healthy",))
            s.advance(60)
        assert (await get(f"{url}/readyz")).status_code == 200
        assert not s.daemon.poller.failures


async def test_polls_that_crash_turn_readiness_and_count_as_errors(tmp_path: Path) -> None:
    async with in_process(tmp_path, [daemon_rule("healthy")]) as s:
        url = s.daemon.server_url
        await s.daemon.poll(("healthy",))
        assert (await get(f"{url}/readyz")).status_code == 200
        # Another process breaks the state file under the daemon: every poll now crashes.
        with sqlite3.connect(tmp_path / "alertd.db") as broken:
            broken.execute("DROP TABLE alert_state")
        for _ in range(2):
            s.advance(60)
            with pytest.raises(StoreError, match="no such table"):
                await s.daemon.poll(("healthy",))
        assert (await get(f"{url}/readyz")).status_code == 503
        # /readyz may name the store first; the poller names the crash whatever its cause.
        reason = s.daemon.poller.not_ready_reason(s.daemon.world.settings)
        assert reason is not None and "the poll crashed: StoreError" in reason
        _, samples = metric_samples((await get(f"{url}/metrics")).text)
        assert samples[("alertd_rule_evaluations_total",
                        (("outcome", "error"), ("rule", "healthy")))] == 2

"""A meter id the Stripe account does not have: what alertd says, and that what it points at
exists (the simulator as a real loopback Stripe).

Stripe's 404 for a meter's event summaries tells the user to look at ``alertd check``; this
checks that ``alertd check`` does name the account's meters for such a rule.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from alertd.clock import FakeClock
from alertd.commands.check import run_check
from alertd.errors import ConfigError, NotFoundError
from alertd.model import MeterSpec, UsageQuery
from alertd.service.world import load_world, stripe_stack
from alertd.sim.server import Simulator
from alertd.sim.testing import API_KEY, TEST_NOW, running_simulator

DAY = 86400


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with running_simulator(customers=2, days=3, now=TEST_NOW) as running:
        yield running


def config(tmp_path: Path, sim: Simulator, source: str = "meter_usage") -> Path:
    (tmp_path / "rules.yaml").write_text(
        "rules:\n"
        "  - name: typo-meter\n"
        "    meter: mtr_sim_tokenz\n"
        "    when: 'daily usage > 100'\n"
    )
    path = tmp_path / "alertd.yaml"
    path.write_text(
        f"stripe: {{api_base: '{sim.url}', api_key: {API_KEY}, source: {source}}}\n"
        f"state: {{path: '{tmp_path / 'alertd.db'}'}}\n"
        f"rule_files: ['{tmp_path / 'rules.yaml'}']\n"
        "customers: {all: true}\n"
        "receivers: [{name: ops, webhook: {url: 'http://127.0.0.1:9/hook'}}]\n"
        "route: {receiver: ops}\n"
    )
    return path


async def test_check_names_the_accounts_meters_for_a_rule_on_a_missing_one(
    sim: Simulator, tmp_path: Path
) -> None:
    namespace = argparse.Namespace(at=None, rule=None, customer=None, format="json",
                                   dry_run=True)
    with pytest.raises(ConfigError) as caught:
        await run_check(load_world(config(tmp_path, sim)), namespace)
    message = str(caught.value)
    assert "rule typo-meter: meter mtr_sim_tokenz does not exist" in message
    assert "its meters: mtr_sim_api_calls" in message and "mtr_sim_tokens" in message
    assert f"{tmp_path / 'rules.yaml'}:2:" in message  # at the rule


async def test_the_summaries_404_points_at_a_command_that_exists(
    sim: Simulator, tmp_path: Path
) -> None:
    world = load_world(config(tmp_path, sim, source="event_summaries"))
    async with stripe_stack(world.settings, clock=FakeClock(start=TEST_NOW)) as stack:
        [customer, *_] = await stack.directory.customers(world.settings.customers)
        query = UsageQuery(customer.id, TEST_NOW - DAY, TEST_NOW, "hour", "UTC",
                           (MeterSpec("mtr_sim_tokenz"),))
        with pytest.raises(NotFoundError) as caught:
            await stack.source.fetch(query)
    assert "no such Stripe meter" in str(caught.value)
    assert "`alertd check` names the account's meters" in str(caught.value)

"""``open_services``: what each command opens, against the simulator as a real loopback Stripe.

``backtest`` opens no store, ``check --dry-run`` no delivery, ``check`` the store behind its
lock; a rule on a meter the account lacks is refused before anything is written to disk.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from alertd.clock import FakeClock
from alertd.errors import ConfigError, StoreError
from alertd.service.open import Collaborators, open_services
from alertd.service.world import World, load_world
from alertd.sim.server import Simulator
from alertd.sim.testing import API_KEY, TEST_NOW, running_simulator
from alertd.store.lock import exclusive, lock_path


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with running_simulator(customers=2, days=3, now=TEST_NOW) as running:
        yield running


def world(tmp_path: Path, sim: Simulator, meter: str = "mtr_sim_tokens") -> World:
    (tmp_path / "rules.yaml").write_text(
        f"rules:\n  - name: daily\n    meter: {meter}\n    when: 'daily usage > 100'\n"
    )
    path = tmp_path / "alertd.yaml"
    path.write_text(
        f"stripe: {{api_base: '{sim.url}', api_key: {API_KEY}}}\n"
        f"state: {{path: '{tmp_path / 'alertd.db'}'}}\n"
        f"rule_files: ['{tmp_path / 'rules.yaml'}']\n"
        "customers: {all: true}\n"
        "receivers: [{name: ops, webhook: {url: 'http://127.0.0.1:9/hook'}}]\n"
        "route: {receiver: ops}\n"
    )
    return load_world(path)


def parts() -> Collaborators:
    return Collaborators(FakeClock(start=TEST_NOW))


async def test_without_state_there_is_an_engine_and_nothing_else(
    sim: Simulator, tmp_path: Path
) -> None:
    the_world = world(tmp_path, sim)
    async with open_services(the_world, parts()) as services:
        result = await services.engine.run_pass(TEST_NOW)
        assert result.series and services.stripe.http.requests > 0
        assert services.pipeline is None and services.outbox is None
    assert not the_world.settings.state_path().exists()


async def test_a_dry_run_has_a_pipeline_and_no_outbox(sim: Simulator, tmp_path: Path) -> None:
    async with open_services(world(tmp_path, sim), parts(), state=":memory:",
                             deliver=False) as services:
        assert services.pipeline is not None and services.outbox is None
    assert not (tmp_path / "alertd.db").exists()


async def test_recording_holds_the_state_lock_while_open(sim: Simulator, tmp_path: Path) -> None:
    the_world = world(tmp_path, sim)
    state = the_world.settings.state_path()
    async with open_services(the_world, parts(), state=state, lock_holder="this test") as services:
        assert services.pipeline is not None and services.outbox is not None
        with pytest.raises(StoreError), exclusive(state, "another writer"):
            pass
    with exclusive(state, "after close"):  # released on exit
        assert lock_path(state).exists()


async def test_a_missing_meter_is_refused_before_the_store_is_created(
    sim: Simulator, tmp_path: Path
) -> None:
    the_world = world(tmp_path, sim, meter="mtr_sim_tokenz")
    state = the_world.settings.state_path()
    with pytest.raises(ConfigError, match="meter mtr_sim_tokenz does not exist"):
        async with open_services(the_world, parts(), state=state, lock_holder="this test"):
            pass
    assert not state.exists() and not lock_path(state).exists()

"""``alertd check`` end to end against the simulator: real HTTP, real pipeline, real SQLite.

The simulator injects labelled incidents; its ``overuse`` incidents are the only thing that
ever takes a customer's day above ``daily_token_quota`` (see ``alertd/sim/incidents.py``).
So the example quota rule must fire for exactly those customer-days, and nothing else. The
fixed-number shorthand rule is checked against the usage computed from the simulator's raw
events instead (a fixed number cannot follow a per-customer quota).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from alertd.calendar import floor, next_start
from alertd.clock import SystemClock, iso
from alertd.commands.check import run_check
from alertd.errors import ConfigError
from alertd.service.world import World, load_world
from alertd.sim.faults import Fault
from alertd.sim.server import Simulator
from alertd.sim.testing import TEST_NOW, running_simulator

ROOT = Path(__file__).resolve().parent.parent
DAY = 86400
CUSTOMERS = 12


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with running_simulator(customers=CUSTOMERS, seed=3, days=45, now=TEST_NOW,
                                 incident_rate=4.0) as running:
        yield running


def write_config(tmp_path: Path, sim: Simulator, stripe_extra: str = "") -> Path:
    lines = [
        f"stripe: {{api_base: '{sim.url}', api_key: sk_test_e2e, freshness_lag: 5m"
        f"{stripe_extra}}}",
        f"state: {{path: '{tmp_path / 'alertd.db'}'}}",
        f"rule_files: ['{ROOT / 'rules' / '*.yaml'}']",
        "customers: {all: true}",
        "receivers: [{name: ops, webhook: {url: 'http://127.0.0.1:9/hook'}}]",
        "route: {receiver: ops, group_by: [rule]}",
    ]
    path = tmp_path / "alertd.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def args(at: int | None, rules: list[str] | None = None, dry_run: bool = True,
         customers: list[str] | None = None) -> argparse.Namespace:
    return argparse.Namespace(at=iso(at) if at else None, rule=rules, customer=customers,
                              format="json", dry_run=dry_run)


async def check_json(config: Path, capsys: pytest.CaptureFixture[str], namespace: argparse.Namespace
                     ) -> tuple[int, dict]:  # type: ignore[type-arg]
    code = await run_check(load_world(config), namespace)
    return code, json.loads(capsys.readouterr().out)


async def test_quota_rule_fires_for_exactly_the_injected_overuse_days(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, sim)
    overuse = [i for i in sim.generator.incidents() if i.kind == "overuse"]
    assert overuse, "the seed should inject overuse incidents"
    days = sorted({floor(i.starts_at, "day", "UTC") for i in overuse})[-4:]
    quiet = next(d for d in range(days[-1] - DAY, days[0], -DAY) if d not in days)
    for day in [*days, quiet]:
        at = day + 23 * 3600  # after the 08:00–18:00 UTC overuse window
        code, document = await check_json(config, capsys, args(at, ["daily-token-quota"]))
        assert code == 0
        firing = {f["customer"] for f in document["findings"] if f["state"] == "firing"}
        expected = {i.customer for i in overuse if floor(i.starts_at, "day", "UTC") == day}
        assert firing == expected, iso(day)
        for finding in document["findings"]:
            assert finding["window"]["starts_at"] == iso(day)
            assert finding["complete"] is False  # the running day: upper thresholds judge it


async def test_shorthand_rule_matches_usage_computed_from_raw_events(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, sim)
    tz = "America/New_York"
    at = TEST_NOW - 3 * 3600
    code, document = await check_json(config, capsys, args(at, ["gpt4-daily-usage"]))
    assert code == 0
    day_start = floor(at, "day", tz)
    visible_until = min(at, next_start(at, "day", tz))
    by_customer = {f["customer"]: f for f in document["findings"]}
    free = {p.id for p in sim.generator.profiles() if p.metadata["plan"] == "free"}
    assert set(by_customer) == free  # the rule's customer search selects the free plan
    server_refreshed = TEST_NOW - 60  # the simulator's refreshed_at (its clock minus lag)
    for customer, finding in by_customer.items():
        events = sim.generator.events(customer, "mtr_sim_tokens", day_start, visible_until)
        # Counted: gpt-4 events whose 15-minute slot starts before --at (the request's end),
        # and that the analytics store had made visible.
        total = sum(e.value for e in events
                    if dict(e.dimensions).get("model") == "gpt-4"
                    and e.timestamp // 900 * 900 < at and e.visible_at <= server_refreshed)
        assert finding["value"] == pytest.approx(total)
        assert (finding["state"] == "firing") == (total > 50_000)


async def test_dry_run_sends_and_records_nothing(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, sim)
    overuse = next(i for i in reversed(sim.generator.incidents()) if i.kind == "overuse")
    sim.reset_stats()
    code, document = await check_json(
        config, capsys, args(overuse.ends_at + 3600, ["daily-token-quota"]))
    assert code == 0
    # Every HTTP request the simulator saw: customers, meters and usage.
    assert document["requests"] == sim.stats()["requests"] > CUSTOMERS
    assert document["notifications"], "a firing quota alert would be sent"
    assert all(n["suppressed_by"] is None for n in document["notifications"])
    assert not (tmp_path / "alertd.db").exists()


async def test_json_shape_is_the_contract(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, sim)
    code, document = await check_json(config, capsys, args(TEST_NOW - 600))
    assert code == 0
    assert set(document) == {"evaluated_at", "refreshed_at", "requests", "findings",
                             "notifications"}
    assert document["evaluated_at"] == iso(TEST_NOW - 600)
    assert document["refreshed_at"] <= document["evaluated_at"]
    finding = document["findings"][0]
    assert {"rule", "customer", "meter", "dimensions", "window", "complete", "value", "level",
            "state", "message"} <= set(finding)
    assert set(finding["window"]) == {"starts_at", "ends_at", "timezone"}
    states = {f["state"] for f in document["findings"]}
    assert states <= {"inactive", "pending", "firing", "resolved", "nodata", "error"}
    rules = {f["rule"] for f in document["findings"]}
    assert len(rules) == 11  # every example rule was evaluated


async def test_requests_count_retries(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, sim, stripe_extra=", max_retries: 2")
    sim.add_fault(Fault(kind="status", status=503, path="/v1/billing/analytics", count=4))
    sim.reset_stats()
    code, document = await check_json(config, capsys, args(TEST_NOW - 600, ["daily-token-quota"]))
    assert code == 0  # four 503s, each retried to success
    assert document["requests"] == sim.stats()["requests"]
    assert sim.stats()["errors"] >= 4


async def test_at_needs_dry_run(sim: Simulator, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--dry-run"):
        await run_check(load_world(write_config(tmp_path, sim)),
                        args(TEST_NOW - 600, dry_run=False))


async def test_source_failure_exits_3_and_never_fabricates_usage(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, sim, stripe_extra=", max_retries: 0")

    sim.faults.add(Fault(kind="status", status=500, path="/v1/billing/analytics"))
    code, document = await check_json(config, capsys, args(TEST_NOW - 600, ["daily-token-quota"]))
    assert code == 3
    assert document["findings"]
    assert {f["state"] for f in document["findings"]} == {"error"}
    assert all(f["value"] is None for f in document["findings"])


async def test_unknown_meter_is_refused_with_the_rule_location(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "typo.yaml"
    rules.write_text("rules:\n  - name: typo\n    meter: mtr_sim_tokenz\n"
                     "    when: 'daily usage > 5'\n")
    config = write_config(tmp_path, sim)
    config.write_text(config.read_text().replace(str(ROOT / "rules" / "*.yaml"), str(rules)))
    with pytest.raises(ConfigError) as caught:
        await run_check(load_world(config), args(TEST_NOW - 600))
    message = str(caught.value)
    assert message.startswith(f"{rules}:2:1: rule typo: meter mtr_sim_tokenz does not exist")
    assert "mtr_sim_tokens" in message


async def test_batches_of_customers_change_nothing_but_memory(sim: Simulator) -> None:
    from alertd.service.engine import Engine
    from alertd.service.world import stripe_stack

    config = sim_config_world(sim)
    results = []
    for batch in (1, 5, 100):
        async with stripe_stack(config.settings, clock=SystemClock()) as stack:
            engine = Engine(config.settings, config.rules, stack.source, stack.directory,
                            batch_customers=batch)
            results.append(await engine.run_pass(TEST_NOW - 600))
    first = results[0]
    for other in results[1:]:
        assert other.queries == first.queries  # needs of two customers never share a request
        assert sorted(other.findings, key=repr) == sorted(first.findings, key=repr)
    assert set(first.series) == {f.key for f in first.findings if f.active}
    assert all(len(s.buckets) <= 24 for s in first.series.values())


def sim_config_world(sim: Simulator) -> World:
    import tempfile

    folder = Path(tempfile.mkdtemp())
    return load_world(write_config(folder, sim))

"""``alertd demo``: the first command a new user runs prints deliveries within seconds."""

from __future__ import annotations

from alertd.commands.demo import interesting_moment, run_demo
from alertd.sim.incidents import Incident


async def test_demo_delivers_and_prints_within_seconds() -> None:
    lines: list[str] = []
    code = await run_demo(15.0, lines.append)
    assert code == 0
    delivered = [line for line in lines if line.startswith("delivered")]
    assert delivered, lines
    channels = {line.split()[2] for line in delivered}
    assert channels == {"email", "webhook"}
    # Alerts in money: a spend and a credit alert (rules/spend.yaml, rules/credit.yaml).
    assert any("token-spend" in line for line in delivered), delivered
    assert any("token-credit" in line for line in delivered), delivered
    # Each delivery line is followed by an indented summary of its alerts.
    first = lines.index(delivered[0])
    assert lines[first + 1].startswith("    ")
    summary = lines[-1]
    assert summary.startswith("\ndemo finished:") and "valid signature" in summary


def incident(kind: str, customer: str, starts_at: int, ends_at: int) -> Incident:
    return Incident(kind, customer, "mtr_sim_tokens", starts_at, ends_at, 2.0)  # type: ignore[arg-type]


def test_interesting_moment_prefers_overlapping_incidents() -> None:
    hour = 3600
    incidents = [
        incident("overuse", "a", 10 * hour, 14 * hour),
        incident("overuse", "b", 100 * hour, 104 * hour),
        incident("spike", "c", 103 * hour, 104 * hour),
        incident("stop", "d", 96 * hour, 110 * hour),
    ]
    assert interesting_moment(incidents, earliest=0) == 105 * hour
    assert interesting_moment(incidents, earliest=50 * hour) == 105 * hour

"""The alert lifecycle as decision tables: each row is a story of findings and what it causes."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from alertd.alerts import (
    META_POLICIES,
    SOURCE_FAILURE,
    STALE_DATA,
    AlertState,
    Policy,
    apply,
    build_alert,
    describe,
    instance_key,
    meta_finding,
)
from alertd.conditions.base import Bound
from alertd.model import Customer, Finding, FindingState, Period, SeriesKey
from alertd.rules.schema import Rule

KEY = SeriesKey("gpt4-daily", "cus_1", (("model", "gpt-4"),))
T0 = 1_735_689_600
P1, P2 = "2025-01-01", "2025-01-02"

PLAIN = Policy()
FOR_10M = Policy(for_=600)
KEEP_10M = Policy(keep_firing_for=600)
LEVELS = Policy(levels=("warning", "critical"))
PERIOD = Policy(levels=("warning", "critical"), per_period=True)
PERIOD_FOR = Policy(for_=600, per_period=True)


@dataclass(frozen=True)
class Step:
    """One evaluation: seconds after T0, the level crossed (None: not active), the period,
    and the evaluator's state (``nodata``/``error`` for data problems)."""

    at: int
    level: str | None
    period: str = P1
    state: FindingState = "inactive"


def finding(step: Step, key: SeriesKey = KEY) -> Finding:
    return Finding(
        key=key, meter="mtr_1", dimensions=key.group, window=Period(T0, T0 + 86400),
        complete=False, value=120.0 if step.level else 80.0, active=step.level is not None,
        level=step.level, state=step.state, message="", figures=Bound(100.0),
        period_key=step.period,
    )


def stored(state: AlertState) -> AlertState:
    """What the store gives back: the state through JSON."""
    return AlertState.from_dict(json.loads(json.dumps(state.to_dict())))


# (reason, policy, steps, transition kinds per step, final status)
LIFECYCLE = [
    ("no 'for': fires at the first active finding", PLAIN,
     [Step(0, "warning")], [["fired"]], "firing"),
    ("'for': pending first, fires once it has held for 'for'", FOR_10M,
     [Step(0, "warning"), Step(300, "warning"), Step(600, "warning")],
     [["pending"], [], ["fired"]], "firing"),
    ("'for': stopping before 'for' cancels; nothing is sent", FOR_10M,
     [Step(0, "warning"), Step(300, None)], [["pending"], ["cancelled"]], "inactive"),
    ("'for': a new start restarts the timer", FOR_10M,
     [Step(0, "warning"), Step(300, None), Step(400, "warning"), Step(900, "warning"),
      Step(1000, "warning")],
     [["pending"], ["cancelled"], ["pending"], [], ["fired"]], "firing"),
    ("resolves as soon as the condition stops (no keep_firing_for)", PLAIN,
     [Step(0, "warning"), Step(60, None)], [["fired"], ["resolved"]], "inactive"),
    ("still active: no transition, no re-send from the lifecycle", PLAIN,
     [Step(0, "warning"), Step(60, "warning"), Step(120, "warning")],
     [["fired"], [], []], "firing"),
    ("keep_firing_for holds a flapping alert in one episode", KEEP_10M,
     [Step(0, "warning"), Step(60, None), Step(120, "warning"), Step(300, None),
      Step(700, None), Step(720, None)],
     [["fired"], [], [], [], [], ["resolved"]], "inactive"),
    ("warning → critical escalates (notifies)", LEVELS,
     [Step(0, "warning"), Step(60, "critical")], [["fired"], ["escalated"]], "firing"),
    ("critical → warning de-escalates (does not notify)", LEVELS,
     [Step(0, "critical"), Step(60, "warning")], [["fired"], ["deescalated"]], "firing"),
    ("back to an already announced level: nothing new", LEVELS,
     [Step(0, "critical"), Step(60, "warning"), Step(120, "critical")],
     [["fired"], ["deescalated"], []], "firing"),
    ("a new episode after a resolve announces again (non-period rule)", LEVELS,
     [Step(0, "warning"), Step(60, None), Step(120, "warning")],
     [["fired"], ["resolved"], ["fired"]], "firing"),
    ("period rule: the period's end resolves the alert, the next starts clean", PERIOD,
     [Step(0, "warning", P1), Step(100, None, P2)], [["fired"], ["resolved"]], "inactive"),
    ("period rule: the next period crossing again resolves the old and fires the new", PERIOD,
     [Step(0, "warning", P1), Step(100, "warning", P2)],
     [["fired"], ["resolved", "fired"]], "firing"),
    ("period rule: once per period per level, a re-crossing in the period is quiet", PERIOD,
     [Step(0, "warning", P1), Step(60, None, P1), Step(120, "warning", P1)],
     [["fired"], ["resolved"], []], "firing"),
    ("period rule: a quiet episode crossing a higher level fires", PERIOD,
     [Step(0, "warning", P1), Step(60, None, P1), Step(120, "warning", P1),
      Step(180, "critical", P1)],
     [["fired"], ["resolved"], [], ["fired"]], "firing"),
    ("period rule: a pending alert is dropped when the period ends", PERIOD_FOR,
     [Step(0, "warning", P1), Step(300, "warning", P2)],
     [["pending"], ["cancelled", "pending"]], "pending"),
    ("nodata never fires, even when marked active", PLAIN,
     [Step(0, "warning", state="nodata")], [[]], "inactive"),
    ("nodata and error never resolve a firing alert", PLAIN,
     [Step(0, "warning"), Step(60, None, state="nodata"), Step(120, None, state="error")],
     [["fired"], [], []], "firing"),
    ("nodata does not end a period either", PERIOD,
     [Step(0, "warning", P1), Step(100, None, P2, state="nodata")], [["fired"], []], "firing"),
    ("nodata keeps a pending timer as it was", FOR_10M,
     [Step(0, "warning"), Step(300, None, state="error"), Step(600, "warning")],
     [["pending"], [], ["fired"]], "firing"),
]


@pytest.mark.parametrize(
    ("reason", "policy", "steps", "kinds", "final"), LIFECYCLE, ids=[r[0] for r in LIFECYCLE]
)
def test_lifecycle(
    reason: str, policy: Policy, steps: list[Step], kinds: list[list[str]], final: str
) -> None:
    state: AlertState | None = None
    seen: list[list[str]] = []
    for step in steps:
        state, transitions = apply(state, finding(step), policy, T0 + step.at)
        assert all(t.reason for t in transitions)
        seen.append([t.kind for t in transitions])
        state = stored(state)
    assert seen == kinds, reason
    assert state is not None and state.status == final, reason


def test_transitions_name_their_episode_and_levels() -> None:
    state, fired = apply(None, finding(Step(0, "warning")), LEVELS, T0)
    _, escalated = apply(state, finding(Step(60, "critical")), LEVELS, T0 + 60)
    assert fired[0].instance == escalated[0].instance == instance_key(KEY, T0)
    assert (escalated[0].previous_level, escalated[0].level) == ("warning", "critical")
    assert escalated[0].notifies and not apply(None, finding(Step(0, "warning")), FOR_10M,
                                               T0)[1][0].notifies


def test_resolve_after_period_end_names_the_old_period() -> None:
    state, _ = apply(None, finding(Step(0, "warning", P1)), PERIOD, T0)
    _, steps = apply(state, finding(Step(86400, None, P2)), PERIOD, T0 + 86400)
    assert steps[0].kind == "resolved" and steps[0].period_key == P1
    assert "period 2025-01-01 ended" in steps[0].reason


def test_quiet_episode_is_not_announced() -> None:
    state: AlertState | None = None
    for step in (Step(0, "warning"), Step(60, None), Step(120, "warning")):
        state, _ = apply(state, finding(step), PERIOD, T0 + step.at)
    assert state is not None and state.status == "firing" and not state.announced


@pytest.mark.parametrize(
    ("reason", "history", "now_step", "expected"),
    [
        ("never seen, active, no 'for'", [], Step(0, "warning"), "firing"),
        ("never seen, inactive", [], Step(0, None), "inactive"),
        ("firing, condition stopped", [Step(0, "warning")], Step(60, None), "resolved"),
        ("firing, period ended", [Step(0, "warning", P1)], Step(60, None, P2), "resolved"),
        ("data problems pass through", [Step(0, "warning")], Step(60, None, state="nodata"),
         "nodata"),
    ],
)
def test_finding_state_for_dry_run(
    reason: str, history: list[Step], now_step: Step, expected: str
) -> None:
    state: AlertState | None = None
    for step in history:
        state, _ = apply(state, finding(step), PERIOD, T0 + step.at)
    current = finding(now_step)
    after, transitions = apply(state, current, PERIOD, T0 + now_step.at)
    assert describe(state, after, transitions, current) == expected, reason


def rule(**overrides: object) -> Rule:
    raw: dict[str, object] = {
        "name": "gpt4-daily", "meter": "mtr_1",
        "condition": {"type": "threshold", "levels": {"critical": 200, "warning": 100}},
        "for": "5m", "keep_firing_for": "1h", "labels": {"team": "ml"},
    }
    raw.update(overrides)
    return Rule.model_validate(raw)


def test_policy_from_rule() -> None:
    policy = Policy.of(rule())
    assert policy == Policy(300.0, 3600.0, ("warning", "critical"), per_period=True)
    below = Policy.of(rule(condition={"type": "threshold", "op": "<",
                                      "levels": {"critical": 10, "warning": 50}}))
    assert below.levels == ("warning", "critical")
    anomaly = Policy.of(rule(condition={"type": "anomaly"}, severity="critical"))
    assert anomaly.levels == ("critical",) and not anomaly.per_period


def test_alert_labels_and_fields() -> None:
    state, _ = apply(None, finding(Step(0, "critical")), Policy.of(rule(**{"for": 0})), T0)
    alert = build_alert(finding(Step(0, "critical")), state, rule(),
                        Customer("cus_1", "Acme", "ops@acme.example"))
    assert alert.labels == {"team": "ml", "model": "gpt-4", "alertname": "gpt4-daily",
                            "rule": "gpt4-daily", "customer": "cus_1", "severity": "critical",
                            "meter": "mtr_1"}
    assert (alert.fingerprint, alert.starts_at, alert.severity) == (KEY.fingerprint, T0,
                                                                    "critical")
    assert alert.customer.name == "Acme" and alert.status == "firing"


@pytest.mark.parametrize("kind", [STALE_DATA, SOURCE_FAILURE])
def test_meta_alerts_fire_and_resolve_at_once(kind: str) -> None:
    policy = META_POLICIES[kind]
    on = meta_finding(kind, active=True, now=T0, message="data is 3h old")
    state, fired = apply(None, on, policy, T0)
    off = meta_finding(kind, active=False, now=T0 + 60, message="fresh again")
    _, resolved = apply(state, off, policy, T0 + 60)
    assert [t.kind for t in fired + resolved] == ["fired", "resolved"]
    alert = build_alert(on, state, None)
    assert alert.labels["alertname"] == kind and "customer" not in alert.labels
    assert alert.severity == policy.levels[0]

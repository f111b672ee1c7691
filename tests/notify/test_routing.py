"""The route tree: matching, continue, inheritance, rule receivers, group keys."""

from __future__ import annotations

from typing import Any

import pytest

from alertd.config.settings import RootRoute, Settings
from alertd.errors import ConfigError
from alertd.notify.routing import RouteTree, Timing

TREE: dict[str, Any] = {
    "receiver": "ops",
    "group_by": ["rule", "customer"],
    "group_wait": "30s",
    "group_interval": "5m",
    "repeat_interval": "4h",
    "routes": [
        {"match": {"severity": "critical"}, "receiver": "pager", "continue": True,
         "group_wait": "0s"},
        {"match": {"team": "ml"}, "receiver": "ml-team", "group_by": ["rule"],
         "routes": [{"match_re": {"customer": "cus_(big|huge)"}, "repeat_interval": "1h"}]},
        {"match_re": {"rule": "spend-.*"}, "receiver": "finance"},
    ],
}


def tree(**overrides: Any) -> RouteTree:
    return RouteTree(RootRoute.model_validate({**TREE, **overrides}))


def labels(**values: str) -> dict[str, str]:
    return {"alertname": "quota", "rule": "quota", "customer": "cus_1",
            "severity": "warning", **values}


@pytest.mark.parametrize(
    ("reason", "alert_labels", "expected"),
    [
        ("nothing matches: the root's receiver", labels(), [("ops", "root")]),
        ("critical matches and continues to the next match", labels(severity="critical",
                                                                    team="ml"),
         [("pager", "root.0"), ("ml-team", "root.1")]),
        ("critical alone continues, then falls back to nothing else: only pager",
         labels(severity="critical"), [("pager", "root.0")]),
        ("first match without continue stops: finance never sees an ml alert",
         labels(team="ml", rule="spend-x"), [("ml-team", "root.1")]),
        ("nested route inherits the receiver", labels(team="ml", customer="cus_big"),
         [("ml-team", "root.1.0")]),
        ("match_re is anchored", labels(team="ml", customer="cus_bigger"),
         [("ml-team", "root.1")]),
        ("match_re on the rule", labels(rule="spend-monthly"), [("finance", "root.2")]),
        ("a missing label reads as empty and does not match", {"rule": "x"}, [("ops", "root")]),
    ],
)
def test_destinations(reason: str, alert_labels: dict[str, str],
                      expected: list[tuple[str, str]]) -> None:
    found = tree().destinations(alert_labels)
    assert [(d.receiver, d.route_id) for d in found] == expected, reason


def test_timing_is_inherited_and_overridden() -> None:
    found = tree().destinations(labels(team="ml", customer="cus_huge", severity="critical"))
    pager, nested = found
    assert pager.timing == Timing(("rule", "customer"), 0.0, 300.0, 14400.0)
    assert nested.timing == Timing(("rule",), 30.0, 300.0, 3600.0)


def test_rule_receivers_bypass_routes_and_keep_root_timing() -> None:
    found = tree().destinations(labels(severity="critical"), receivers=["finance", "ops"])
    assert [(d.receiver, d.route_id) for d in found] == [("finance", "rule"), ("ops", "rule")]
    assert all(d.timing == Timing(("rule", "customer"), 30.0, 300.0, 14400.0) for d in found)


def test_group_key_and_labels() -> None:
    (dest,) = tree().destinations(labels(customer='cus "q"'))
    assert dest.group_labels(labels(customer='cus "q"')) == {"customer": 'cus "q"',
                                                             "rule": "quota"}
    # Alertmanager's group key: the route's key, then the group labels as Go writes them.
    assert dest.group_key(labels(customer='cus "q"')) == '{}:{customer="cus \\"q\\"", rule="quota"}'
    everything = tree(group_by=["..."]).destinations(labels())[0]
    assert everything.group_labels(labels()) == dict(sorted(labels().items()))


def test_no_default_receiver_routes_nowhere() -> None:
    empty = RouteTree(RootRoute())
    assert empty.destinations(labels()) == ()


def test_bad_regex_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"route root.0: match_re.customer: invalid regular"):
        RouteTree(RootRoute.model_validate(
            {"receiver": "ops", "routes": [{"match_re": {"customer": "cus_("}}]}
        ))


def test_from_settings() -> None:
    settings = Settings.model_validate({
        "receivers": [{"name": "ops", "email": {"to": ["ops@example.com"]}}],
        "route": {"receiver": "ops"},
    })
    (dest,) = RouteTree.from_settings(settings).destinations(labels())
    assert dest.receiver == "ops" and dest.timing.group_by == ("rule", "customer")

"""Alertmanager's label-set algorithms, on vectors computed elsewhere.

The fingerprint vectors are those of Prometheus' own ``model/signature_test.go`` (the same
FNV-1a algorithm); ``tests/receivers`` checks the fingerprint against a running Alertmanager.
"""

from __future__ import annotations

import pytest

from alertd.notify import labelset


@pytest.mark.parametrize(("labels", "expected"), [
    ({}, 14695981039346656037),
    ({"name": "garland, briggs", "fear": "love is not enough"}, 5799056148416392346),
])
def test_fingerprint_vectors(labels: dict[str, str], expected: int) -> None:
    assert labelset.fingerprint(labels) == f"{expected:016x}"


def test_fingerprint_does_not_depend_on_order_and_separates_name_from_value() -> None:
    assert labelset.fingerprint({"a": "1", "b": "2"}) == labelset.fingerprint({"b": "2", "a": "1"})
    assert labelset.fingerprint({"ab": "c"}) != labelset.fingerprint({"a": "bc"})


@pytest.mark.parametrize(("text", "quoted"), [
    ("plain", '"plain"'),
    ('say "hi"', '"say \\"hi\\""'),
    ("back\\slash", '"back\\\\slash"'),
    ("line\nbreak\ttab", '"line\\nbreak\\ttab"'),
    ("\x00\x7f", '"\\x00\\x7f"'),
    ("Zürich 東京 ☕", '"Zürich 東京 ☕"'),
    ("\u200b", '"\\u200b"'),
])
def test_go_quote(text: str, quoted: str) -> None:
    assert labelset.go_quote(text) == quoted


def test_group_key_format() -> None:
    route = labelset.child_key(labelset.ROOT_KEY, [("severity", "critical")], [("team", "ml|ops")])
    assert route == '{}/{severity="critical",team=~"^(?:ml|ops)$"}'
    assert labelset.group_key(route, {"rule": "q", "customer": "cus_1"}) == (
        '{}/{severity="critical",team=~"^(?:ml|ops)$"}:{customer="cus_1", rule="q"}')
    assert labelset.group_key(labelset.ROOT_KEY, {}) == "{}:{}"

"""Stripe's per-request limits: one table, one wording, used by loader, planner and encoder."""

from __future__ import annotations

from alertd.stripe_limits import LimitBreach, spec_breaches


def test_counts_at_the_limits_break_nothing() -> None:
    assert spec_breaches(group_by=2, dimension_filters=10, tenant_filters=3) == []


def test_each_count_past_its_limit_is_one_breach_in_a_stable_order() -> None:
    breaches = spec_breaches(group_by=3, dimension_filters=11, tenant_filters=4)
    assert [(b.param, b.count, b.limit) for b in breaches] == [
        ("dimension_group_by_keys", 3, 2), ("dimension_filters", 11, 10), ("tenant_filters", 4, 3)]


def test_a_breach_names_the_rule_field_and_stripes_parameter() -> None:
    breach = LimitBreach("group_by", "dimension_group_by_keys", "keys", 3, 2)
    assert breach.message() == ("group_by: at most 2 keys, got 3 (Stripe's limit of "
                                "dimension_group_by_keys in one request)")

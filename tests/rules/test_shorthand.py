"""The ``when:`` shorthand grammar: what parses to what, and where each error points."""

from __future__ import annotations

import pytest

from alertd.rules.shorthand import ShorthandError, When, parse_when

GOOD = [
    ("daily usage > 50000", {}, "day", ">", 50000.0),
    ("hourly usage >= 10", {}, "hour", ">=", 10.0),
    ("weekly usage < 0.5", {}, "week", "<", 0.5),
    ("monthly usage <= 1_000_000", {}, "month", "<=", 1_000_000.0),
    ("model=gpt-4 daily usage > 50000", {"model": "gpt-4"}, "day", ">", 50000.0),
    (
        "model=gpt-4,tier=pro daily usage > 5_000.25",
        {"model": "gpt-4", "tier": "pro"},
        "day", ">", 5000.25,
    ),
    ("  model = gpt-4 ,  tier=pro   daily  usage>1  ", {"model": "gpt-4", "tier": "pro"},
     "day", ">", 1.0),
    ("region=us-east-1 hourly usage<=3", {"region": "us-east-1"}, "hour", "<=", 3.0),
    ("path=/v1/chat:post,user=a@b.c daily usage > 1",
     {"path": "/v1/chat:post", "user": "a@b.c"}, "day", ">", 1.0),
    ('model="gpt 4 (preview)" daily usage > 1', {"model": "gpt 4 (preview)"}, "day", ">", 1.0),
    (r'name="say \"hi\" \\ bye" daily usage > 1', {"name": 'say "hi" \\ bye'},
     "day", ">", 1.0),
    ('model="" daily usage > 1', {"model": ""}, "day", ">", 1.0),
    ("daily=weekly daily usage > 1", {"daily": "weekly"}, "day", ">", 1.0),
    ("daily usage > 007", {}, "day", ">", 7.0),
    ("daily usage > 1_0.2_5", {}, "day", ">", 10.25),
]


@pytest.mark.parametrize(("text", "filters", "window", "op", "value"), GOOD)
def test_parses(text: str, filters: dict[str, str], window: str, op: str, value: float) -> None:
    assert parse_when(text) == When(filters, window, op, value)  # type: ignore[arg-type]


BAD = [
    ("", "expected one of hourly, daily, weekly, monthly at end of text", 0),
    ("dayly usage > 1",
     "expected one of hourly, daily, weekly, monthly at 'dayly' (did you mean 'daily'?)", 0),
    ("usage > 1", "expected one of hourly, daily, weekly, monthly at 'usage'", 0),
    ("model=gpt 4 daily usage > 1",
     "expected one of hourly, daily, weekly, monthly at '4' "
     '(quote a filter value that contains spaces or other characters: key="a b")', 10),
    ("model=a+b daily usage > 1",
     "expected one of hourly, daily, weekly, monthly at '+' "
     '(quote a filter value that contains spaces or other characters: key="a b")', 7),
    ("model=a tier=b daily usage > 1",
     "expected one of hourly, daily, weekly, monthly at 'tier' (separate filters with ',')", 8),
    ("model= daily usage > 1",
     "expected one of hourly, daily, weekly, monthly at 'usage' "
     '(quote a filter value that contains spaces or other characters: key="a b")', 13),
    ("model=, daily usage > 1", "expected a value after 'model=' at ','", 6),
    ("model=a, daily usage > 1", "expected KEY=VALUE after ',' at 'daily'", 9),
    ("model=a,model=b daily usage > 1",
     "filter 'model' is given twice (to accept several values, write "
     "filters: {model: [a, b]} instead)", 8),
    ('model="gpt-4 daily usage > 1', 'unterminated quoted value: a closing " is missing', 6),
    (r'model="a\nb" daily usage > 1',
     "unknown escape '\\n' in a quoted value (only \\\" and \\\\)", 8),
    ('"model"=a daily usage > 1',
     "expected one of hourly, daily, weekly, monthly at '\"model\"' "
     "(only filter values may be quoted, not keys)", 0),
    ("daily use > 1", "expected 'usage' at 'use'", 6),
    ("daily usage", "expected one of >, >=, <, <= at end of text", 11),
    ("daily usage = 1", "expected one of >, >=, <, <= at '='", 12),
    ("daily usage => 1", "expected one of >, >=, <, <= at '='", 12),
    ("daily usage ! 1", "expected one of >, >=, <, <= at '!'", 12),
    ("daily usage >", "expected a number (like 50000, 50_000 or 0.5) at end of text", 13),
    ("daily usage > -5", "expected a number (like 50000, 50_000 or 0.5) at '-5'", 14),
    ("daily usage > 1e6", "expected a number (like 50000, 50_000 or 0.5) at '1e6'", 14),
    ("daily usage > 1__000", "expected a number (like 50000, 50_000 or 0.5) at '1__000'", 14),
    ("daily usage > _1", "expected a number (like 50000, 50_000 or 0.5) at '_1'", 14),
    ("daily usage > 1_", "expected a number (like 50000, 50_000 or 0.5) at '1_'", 14),
    ("daily usage > .5", "expected a number (like 50000, 50_000 or 0.5) at '.5'", 14),
    ("daily usage > 5.", "expected a number (like 50000, 50_000 or 0.5) at '5.'", 14),
    ("daily usage > 5 tokens", "unexpected 'tokens' after the number", 16),
    ("daily usage > 5 > 6", "unexpected '>' after the number", 16),
]


@pytest.mark.parametrize(("text", "reason", "column"), BAD)
def test_rejects_with_reason_and_column(text: str, reason: str, column: int) -> None:
    with pytest.raises(ShorthandError) as caught:
        parse_when(text)
    assert (caught.value.reason, caught.value.column) == (reason, column)
    assert str(caught.value) == f"{reason} (column {column + 1})"


def test_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="expected 'usage'"):
        parse_when("daily > 1")

"""The command line's instants (``--at``, ``--since``, ``--until``, ``--start``): one pure
parser in :mod:`alertd.clock`, accepting exactly the forms the help names."""

from __future__ import annotations

import pytest

from alertd.clock import parse_instant
from alertd.errors import ConfigError, UsageError

NOW = 1_735_689_600  # 2025-01-01T00:00:00Z
DAY = 86400


@pytest.mark.parametrize(("text", "expected"), [
    ("2025-01-03T04:30:00Z", 1_735_878_600),
    ("2025-01-03T04:30:00+01:00", 1_735_878_600 - 3600),
    ("2025-01-03T04:30:00", 1_735_878_600),  # no zone: UTC
    ("2025-01-03", 1_735_862_400),
    ("30d", NOW - 30 * DAY),
    ("4d ago", NOW - 4 * DAY),
    ("  4d   ago ", NOW - 4 * DAY),
    ("90m ago", NOW - 90 * 60),
    ("2w", NOW - 14 * DAY),
    ("1735689600", 1_735_689_600),
    ("946684800", 946_684_800),  # 2000-01-01, the first unix time accepted
    ("1970-01-01T00:00:00Z", 0),  # the ends of the range every form must fall in
    ("9998-12-31T23:00:00", 253_370_761_200),
])
def test_accepted_forms(text: str, expected: int) -> None:
    assert parse_instant(text, NOW) == expected


@pytest.mark.parametrize(("text", "says"), [
    ("garbage", "not a time"),
    ("4d from now", "not a time"),
    ("ago", "not a time"),
    ("", "not a time"),
    ("1735689600000", "milliseconds"),
    ("12", "between 2000 and 2100"),
    ("4102444800", "between 2000 and 2100"),
    ("-5d", "not a time"),
    # outside 1970..9998 however written: no OverflowError, no year-0 datetime downstream
    ("99999999999999999999d", "between 1970 and 9998"),
    ("9" * 400 + "d ago", "between 1970 and 9998"),  # a float so large it is infinite
    ("9999-12-31T23:00:00", "between 1970 and 9998"),
    ("9998-12-31T23:00:00-05:00", "between 1970 and 9998"),
    ("0001-01-01", "between 1970 and 9998"),
    ("1969-12-31T23:59:59Z", "between 1970 and 9998"),
    ("3000w", "between 1970 and 9998"),  # 3000 weeks before 2025: 1967
])
def test_refused_forms_name_the_option_and_the_accepted_forms(text: str, says: str) -> None:
    with pytest.raises(UsageError) as raised:
        parse_instant(text, NOW, option="--at")
    message = str(raised.value)
    assert message.startswith("alertd: --at: ") and says in message and "\n" not in message
    assert "ISO 8601" in message and "30d ago" in message and "unix seconds" in message
    assert isinstance(raised.value, ConfigError) and isinstance(raised.value, ValueError)

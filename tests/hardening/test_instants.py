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
])
def test_refused_forms_name_the_option_and_the_accepted_forms(text: str, says: str) -> None:
    with pytest.raises(UsageError) as raised:
        parse_instant(text, NOW, option="--at")
    message = str(raised.value)
    assert message.startswith("alertd: --at: ") and says in message and "\n" not in message
    assert "ISO 8601" in message and "30d ago" in message and "unix seconds" in message
    assert isinstance(raised.value, ConfigError) and isinstance(raised.value, ValueError)

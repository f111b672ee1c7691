"""Log lines: text and JSON formats, secrets redacted wherever they appear."""

from __future__ import annotations

import json
import logging

import pytest

from alertd.logs import JsonFormatter, RedactingFilter, TextFormatter, redact


@pytest.mark.parametrize(
    ("text", "leaked"),
    [
        ("key sk_live_51HxYzABCDEFGHIJ failed", "51HxYzABCDEFGHIJ"),
        ("Authorization: Bearer sk_test_abcdefghijkl", "abcdefghijkl"),
        ("restricted rk_test_zzzzzzzzzz", "zzzzzzzzzz"),
        ("secret whsec_test_abcdefgh1234", "abcdefgh1234"),
    ],
)
def test_redact_masks_keys(text: str, leaked: str) -> None:
    assert leaked not in redact(text)
    assert "[redacted]" in redact(text)


def test_plain_text_untouched() -> None:
    assert redact("customer=cus_123 rule=gpt4-daily") == "customer=cus_123 rule=gpt4-daily"


def record(message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("alertd.test", logging.WARNING, __file__, 1, message, args, None)


def test_filter_redacts_formatted_arguments() -> None:
    rec = record("retry endpoint=%s key=%s", "meter_usage", "sk_live_abcdefghijk")
    RedactingFilter().filter(rec)
    assert "abcdefghijk" not in rec.getMessage()
    assert "endpoint=meter_usage" in rec.getMessage()


def test_text_format_is_one_line_with_level_and_logger() -> None:
    line = TextFormatter().format(record("delivered receiver=%s", "ops"))
    assert "\n" not in line
    assert "level=warning logger=alertd.test delivered receiver=ops" in line


def test_json_format_lifts_key_value_pairs() -> None:
    line = JsonFormatter().format(record("delivered receiver=%s id=%s", "ops", "n1"))
    document = json.loads(line)
    assert document["level"] == "warning"
    assert document["receiver"] == "ops" and document["id"] == "n1"
    assert document["message"] == "delivered receiver=ops id=n1"

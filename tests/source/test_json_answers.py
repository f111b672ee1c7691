"""How an answer's body is decoded (orjson): what is read, and the error each bad body gets."""

from __future__ import annotations

import math

import httpx
import pytest

from alertd.errors import MalformedResponseError
from alertd.source.http import Answer, parse_json_object


def answer(content: bytes, content_type: str = "application/json") -> Answer:
    return Answer(200, httpx.Headers({"Content-Type": content_type, "Request-Id": "req_1"}),
                  content)


def test_a_usage_body_decodes_to_the_same_values_json_would() -> None:
    body = parse_json_object(answer(
        b'{"object": "list", "data": [{"value": 1.5, "n": 3, "d": {"model": "gpt-4"}}],'
        b' "has_more": false, "name": "caf\\u00e9"}'), "meter_usage")
    assert body == {"object": "list", "data": [{"value": 1.5, "n": 3, "d": {"model": "gpt-4"}}],
                    "has_more": False, "name": "café"}
    assert isinstance(body["data"][0]["n"], int)


@pytest.mark.parametrize(("content", "content_type", "says"), [
    (b"<html><body>502 Bad Gateway</body></html>", "text/html", "was an HTML page"),
    (b'{"object": "list", "data": [', "application/json", "invalid or truncated JSON"),
    (b"\xff\xfe{}", "application/json", "invalid or truncated JSON"),
    (b"[" * 5000 + b"]" * 5000, "application/json", "nested too deeply to read"),
    (b'[{"object": "list"}]', "application/json", "JSON of type list, not an object"),
], ids=["html", "truncated", "not utf-8", "too deep", "not an object"])
def test_a_bad_body_is_refused_with_what_it_was_and_its_request_id(
    content: bytes, content_type: str, says: str,
) -> None:
    with pytest.raises(MalformedResponseError) as refused:
        parse_json_object(answer(content, content_type), "meter_usage")
    assert says in str(refused.value) and refused.value.request_id == "req_1"


def test_what_orjson_refuses_but_json_reads_is_read_as_json_reads_it() -> None:
    # NaN is no JSON, yet json reads it: the source's checks then name the NaN value.
    body = parse_json_object(answer(b'{"data": [{"value": NaN}], "big": 123456789012345678901}'),
                             "meter_usage")
    assert body["big"] == 123456789012345678901 and math.isnan(body["data"][0]["value"])

""":func:`request_url` builds the URL httpx would build from a path and params, parsed once."""

from __future__ import annotations

import functools

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alertd.model import MeterSpec, UsageQuery
from alertd.source.analytics import PATH, encode_usage_query
from alertd.source.http import request_url

BASES = ["https://api.stripe.com", "https://api.stripe.com/", "http://127.0.0.1:8123",
         "http://127.0.0.1:8123/stripe", "http://localhost/stripe/"]
# Printable text (httpx refuses control characters either way), "%41" and non-ASCII included.
TEXT = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=12) | \
    st.sampled_from(["%41", "a b", "~/[]", "é", "+&="])


@functools.cache
def client_of(base: str) -> httpx.AsyncClient:
    """One client per base (making one builds an SSL context: ~50 ms an example)."""
    return httpx.AsyncClient(base_url=base)


def httpx_url(base: str, path: str, params: list[tuple[str, str]]) -> httpx.URL:
    return client_of(base).build_request("GET", path, params=params).url


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(BASES), st.sampled_from([PATH, "/v1/customers/cus_1", "v1/meters"]),
       st.lists(st.tuples(TEXT, TEXT), max_size=5))
def test_the_url_is_the_one_httpx_builds(base: str, path: str,
                                         params: list[tuple[str, str]]) -> None:
    want = httpx_url(base, path, params)
    got = request_url(client_of(base).base_url, path, params)
    assert got == want and str(got) == str(want) and got.raw_path == want.raw_path


@pytest.mark.parametrize("base", BASES)
def test_a_usage_query_url_is_the_one_httpx_builds(base: str) -> None:
    query = UsageQuery("cus_1", 1735689600, 1738713600, "hour", "America/New_York",
                       (MeterSpec("mtr_tokens", group_by=("model",),
                                  dimension_filters=(("tier", ("premium", "a b")),)),
                        MeterSpec("mtr_calls")))
    params = encode_usage_query(query, array_filters=True)
    assert request_url(client_of(base).base_url, PATH, params) == httpx_url(base, PATH, params)

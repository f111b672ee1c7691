"""StripeHTTP: headers, retries and backoff on a fake clock, error mapping, secrecy."""

from __future__ import annotations

import asyncio
import logging
import random

import httpx
import pytest

from alertd.clock import FakeClock, backoff
from alertd.errors import (
    AuthenticationError,
    ConflictError,
    InvalidRequestError,
    MalformedResponseError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    SourceError,
    StripeAPIError,
    StripeConnectionError,
    StripeServerError,
    StripeTimeoutError,
)
from alertd.source.http import BACKOFF_BASE, BACKOFF_CAP, as_is

from .fakes import (
    API_KEY,
    HighJitter,
    LowJitter,
    Observed,
    Recorder,
    make_http,
    reply,
    stripe_error,
)

PATH = "/v1/billing/analytics/meter_usage"


def sequence(*responses: httpx.Response) -> Recorder:
    """An app answering with ``responses`` in turn (the last one repeats)."""
    answers = list(responses)

    def app(request: httpx.Request) -> httpx.Response:
        return answers.pop(0) if len(answers) > 1 else answers[0]

    return Recorder(app)


async def test_sends_version_auth_user_agent_and_params_in_order() -> None:
    app = sequence(reply({"ok": True}, request_id="req_abc"))
    clock = FakeClock()
    params = [("customer", "cus_1"), ("meters[0][meter]", "mtr_1"), ("a", "b")]
    async with make_http(app, clock, api_version="2025-09-30.preview") as http:
        body, request_id = await http.get(PATH, params, budget="analytics", endpoint="meter_usage")
    assert (body, request_id) == ({"ok": True}, "req_abc")
    request = app.requests[0]
    assert request.url.path == PATH
    assert request.url.params.multi_items() == params
    assert request.headers["Stripe-Version"] == "2025-09-30.preview"
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert request.headers["User-Agent"].startswith("alertd/")
    assert http.requests == 1
    assert http.budgets.analytics.stats().acquired == 1
    assert http.budgets.general.stats().acquired == 0


async def test_retries_5xx_with_capped_exponential_backoff() -> None:
    app = sequence(stripe_error(503, type_="api_error"))
    clock = FakeClock()
    async with make_http(app, clock, rng=HighJitter(), max_retries=6,
                         retry_max_elapsed=1000) as http:
        with pytest.raises(StripeServerError) as caught:
            await http.get(PATH, [], budget="analytics", endpoint="meter_usage")
    assert len(app.requests) == 7
    assert http.requests == 7
    assert clock.sleeps == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert caught.value.status == 503
    assert caught.value.request_id == "req_err"


async def test_jitter_stays_between_half_and_full_delay() -> None:
    clock = FakeClock()
    async with make_http(sequence(stripe_error(500)), clock, rng=LowJitter(),
                         max_retries=3) as http:
        with pytest.raises(StripeServerError):
            await http.get(PATH, [], budget="analytics", endpoint="meter_usage")
    assert clock.sleeps == [0.25, 0.5, 1.0]
    rng = random.Random(1)
    for retry in range(8):
        full = min(0.5 * 2**retry, 8.0)
        for _ in range(50):
            assert full / 2 <= backoff(retry, base=BACKOFF_BASE, cap=BACKOFF_CAP, rng=rng) <= full


async def test_recovers_after_transient_failures() -> None:
    app = sequence(stripe_error(500), stripe_error(409, code="lock_timeout"),
                   reply({"ok": 1}, request_id="req_ok"))
    clock = FakeClock()
    async with make_http(app, clock) as http:
        response = await http.request(PATH, [], budget="analytics", endpoint="meter_usage",
                                      parse=as_is)
    assert (response.body, response.request_id, response.attempts) == ({"ok": 1}, "req_ok", 3)
    assert http.requests == 3
    assert len(clock.sleeps) == 2


async def test_stripe_should_retry_false_stops_at_once() -> None:
    app = sequence(stripe_error(500, headers={"Stripe-Should-Retry": "false"}))
    clock = FakeClock()
    async with make_http(app, clock) as http:
        with pytest.raises(StripeServerError) as caught:
            await http.get(PATH, [], budget="analytics", endpoint="meter_usage")
    assert len(app.requests) == 1
    assert clock.sleeps == []
    assert caught.value.retryable is False


async def test_stripe_should_retry_true_retries_even_a_400() -> None:
    app = sequence(stripe_error(400, param="x", headers={"Stripe-Should-Retry": "true"}),
                   reply({"ok": 1}))
    async with make_http(app, FakeClock()) as http:
        body, _ = await http.get(PATH, [], budget="analytics", endpoint="meter_usage")
    assert body == {"ok": 1}
    assert len(app.requests) == 2


async def test_retry_max_elapsed_bounds_the_total_wait() -> None:
    app = sequence(stripe_error(502))
    clock = FakeClock()
    async with make_http(app, clock, rng=HighJitter(), max_retries=10,
                         retry_max_elapsed=3.0) as http:
        with pytest.raises(StripeServerError):
            await http.get(PATH, [], budget="analytics", endpoint="meter_usage")
    # 0.5 + 1.0 = 1.5 s waited; the next 2.0 s would end at 3.5 s > 3 s.
    assert clock.sleeps == [0.5, 1.0]
    assert len(app.requests) == 3


async def test_max_retries_zero_means_one_attempt() -> None:
    app = sequence(stripe_error(500))
    async with make_http(app, FakeClock(), max_retries=0) as http:
        with pytest.raises(StripeServerError):
            await http.get(PATH, [], budget="analytics", endpoint="meter_usage")
    assert len(app.requests) == 1


async def test_429_penalizes_its_budget_and_is_retried() -> None:
    app = sequence(
        stripe_error(429, code="rate_limit", headers={"Stripe-Rate-Limited-Reason": "global-rate"}),
        reply({"ok": 1}),
    )
    observed = Observed()
    clock = FakeClock()
    async with make_http(app, clock, observer=observed) as http:
        await http.get(PATH, [], budget="analytics", endpoint="meter_usage")
        assert http.budgets.analytics.stats().penalties == 1
        assert http.budgets.analytics.effective_rate() < 100
        assert http.budgets.general.stats().penalties == 0
    assert observed.rate_limited == ["analytics"]
    assert observed.responses == [("meter_usage", "429"), ("meter_usage", "200")]


async def test_429_after_all_retries_names_the_budget_setting() -> None:
    app = sequence(stripe_error(429, code="rate_limit",
                                headers={"Stripe-Rate-Limited-Reason": "endpoint-rate"}))
    async with make_http(app, FakeClock(), max_retries=2) as http:
        with pytest.raises(RateLimitError) as caught:
            await http.get("/v1/customers", [], budget="general", endpoint="customers")
    assert len(app.requests) == 3
    message = str(caught.value)
    assert "endpoint-rate" in message
    assert "general_requests_per_second" in message
    assert caught.value.code == "rate_limit"


async def test_connection_errors_are_retried_then_raised_as_connection_error() -> None:
    attempts = 0

    def app(request: httpx.Request) -> httpx.Response:
        nonlocal attempts
        attempts += 1
        raise httpx.ConnectError("connection refused", request=request)

    observed = Observed()
    async with make_http(app, FakeClock(), max_retries=2, observer=observed) as http:
        with pytest.raises(StripeConnectionError) as caught:
            await http.get(PATH, [], budget="analytics", endpoint="meter_usage")
    assert attempts == 3
    assert isinstance(caught.value, ConnectionError)
    assert "stripe.api_base" in str(caught.value)
    assert observed.responses == [("meter_usage", "connection_error")] * 3


async def test_timeouts_are_retried_then_raised_as_timeout_error() -> None:
    answers: list[httpx.Response | Exception] = [httpx.ReadTimeout("slow"), reply({"ok": 1})]

    def app(request: httpx.Request) -> httpx.Response:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async with make_http(app, FakeClock()) as http:
        body, _ = await http.get(PATH, [], budget="analytics", endpoint="meter_usage")
    assert body == {"ok": 1}

    def always_slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectTimeout("slow")

    async with make_http(always_slow, FakeClock(), max_retries=1, timeout=7) as http:
        with pytest.raises(StripeTimeoutError) as caught:
            await http.get(PATH, [], budget="analytics", endpoint="meter_usage")
    assert isinstance(caught.value, TimeoutError)
    assert "7s" in str(caught.value)


@pytest.mark.parametrize(
    ("response", "endpoint", "kind", "hints"),
    [
        (stripe_error(400, "Invalid value", code="parameter_invalid_string",
                      param="meters[0][dimension_filters][tier]"),
         "meter_usage", InvalidRequestError,
         ["meters[0][dimension_filters][tier]", "Invalid value"]),
        (stripe_error(401, "Invalid API Key provided", type_="invalid_request_error"),
         "meter_usage", AuthenticationError, ["STRIPE_API_KEY", "api_key_file"]),
        (stripe_error(403, "The provided key does not have the required permissions"),
         "customers", PermissionDeniedError, ["restricted", "read access to Customers"]),
        (stripe_error(403, "no permission"),
         "meter_usage", PermissionDeniedError, ["read access to Billing meters"]),
        (stripe_error(404, "Unrecognized request URL"),
         "meter_usage", NotFoundError, ["preview", "stripe.source: event_summaries"]),
        (stripe_error(404, "No such meter"),
         "event_summaries", NotFoundError, ["meter ids"]),
        (stripe_error(402, "Payment required"),
         "meters", StripeAPIError, ["HTTP 402"]),
    ],
)
async def test_error_classes_and_messages(
    response: httpx.Response, endpoint: str, kind: type[StripeAPIError], hints: list[str]
) -> None:
    app = sequence(response)
    async with make_http(app, FakeClock()) as http:
        with pytest.raises(kind) as caught:
            await http.get("/v1/anything", [], budget="general", endpoint=endpoint)
    error = caught.value
    assert type(error) is kind
    assert len(app.requests) == 1  # 4xx are not retried
    assert error.status == response.status_code
    assert error.request_id == "req_err"
    assert error.retryable is False
    for hint in hints:
        assert hint in str(error)


async def test_error_carries_code_and_param() -> None:
    app = sequence(stripe_error(400, "bad", code="invalid_time_range", param="starts_at"))
    async with make_http(app, FakeClock()) as http:
        with pytest.raises(InvalidRequestError) as caught:
            await http.get(PATH, [], budget="analytics", endpoint="meter_usage")
    assert (caught.value.code, caught.value.param) == ("invalid_time_range", "starts_at")
    assert str(caught.value).endswith(
        "(status=400, code=invalid_time_range, param=starts_at, request_id=req_err)"
    )


async def test_error_without_a_stripe_body_still_maps() -> None:
    app = sequence(reply(text="<html>Bad gateway</html>", status=502,
                         headers={"Content-Type": "text/html"}))
    async with make_http(app, FakeClock(), max_retries=0) as http:
        with pytest.raises(StripeServerError) as caught:
            await http.get(PATH, [], budget="analytics", endpoint="meter_usage")
    assert caught.value.code is None


async def test_conflict_is_retryable() -> None:
    app = sequence(stripe_error(409, code="lock_timeout"))
    async with make_http(app, FakeClock(), max_retries=1) as http:
        with pytest.raises(ConflictError):
            await http.get(PATH, [], budget="analytics", endpoint="meter_usage")
    assert len(app.requests) == 2


@pytest.mark.parametrize(
    ("text", "content_type", "hint"),
    [
        ("<html><body>502 Bad Gateway</body></html>", "text/html", "HTML page"),
        ('{"rows": {"data": [', "application/json", "truncated JSON"),
        ("[1, 2, 3]", "application/json", "type list"),
        ("", "application/json", "truncated JSON"),
        ("\xff\xfe", "application/json", "truncated JSON"),
    ],
)
async def test_malformed_2xx_bodies_are_retried_then_raised(
    text: str, content_type: str, hint: str
) -> None:
    app = sequence(reply(text=text, request_id="req_bad", headers={"Content-Type": content_type}))
    observed = Observed()
    async with make_http(app, FakeClock(), max_retries=2, observer=observed) as http:
        with pytest.raises(MalformedResponseError) as caught:
            await http.get(PATH, [], budget="analytics", endpoint="meter_usage")
    assert len(app.requests) == 3
    assert caught.value.request_id == "req_bad"
    assert hint in str(caught.value)
    assert observed.responses == [("meter_usage", "malformed")] * 3


async def test_a_malformed_body_then_a_good_one_succeeds() -> None:
    app = sequence(reply(text="<html>", headers={"Content-Type": "text/html"}), reply({"a": 1}))
    async with make_http(app, FakeClock()) as http:
        body, _ = await http.get(PATH, [], budget="analytics", endpoint="meter_usage")
    assert body == {"a": 1}


async def test_no_api_key_fails_before_sending() -> None:
    app = sequence(reply({}))
    async with make_http(app, FakeClock(), api_key=None) as http:
        with pytest.raises(AuthenticationError) as caught:
            await http.get(PATH, [], budget="analytics", endpoint="meter_usage")
    assert app.requests == []
    assert "STRIPE_API_KEY" in str(caught.value)


async def test_the_api_key_never_leaks(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    app = sequence(stripe_error(500), stripe_error(401, "Invalid API Key provided: sk_test_***"))
    errors: list[SourceError] = []
    async with make_http(app, FakeClock()) as http:
        try:
            await http.get(PATH, [("customer", "cus_1")], budget="analytics",
                           endpoint="meter_usage")
        except SourceError as exc:
            errors.append(exc)
        text = " ".join([repr(http), str(vars(http)), caplog.text,
                         *(f"{e!s} {e!r} {vars(e)}" for e in errors)])
    assert errors and isinstance(errors[0], AuthenticationError)
    assert API_KEY not in text
    assert API_KEY[8:] not in text


async def test_retries_are_logged_with_context(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="alertd.source")
    app = sequence(stripe_error(503, request_id="req_503"), reply({}))
    async with make_http(app, FakeClock()) as http:
        await http.get(PATH, [], budget="analytics", endpoint="meter_usage")
    [record] = [r for r in caplog.records if r.name == "alertd.source"]
    line = record.getMessage()
    for part in ("endpoint=meter_usage", "status=503", "request_id=req_503", "attempt=1"):
        assert part in line


async def test_max_in_flight_caps_concurrent_requests() -> None:
    in_flight = 0
    peak = 0

    async def app(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.005)
        in_flight -= 1
        return reply({})

    async with make_http(app, FakeClock(), max_in_flight=2) as http:
        await asyncio.gather(*(
            http.get(PATH, [], budget="analytics", endpoint="meter_usage") for _ in range(8)
        ))
    assert peak == 2
    assert http.requests == 8


async def test_used_outside_its_context_manager_is_a_programming_error() -> None:
    http = make_http(sequence(reply({})), FakeClock())
    with pytest.raises(RuntimeError):
        await http.get(PATH, [], budget="analytics", endpoint="meter_usage")


async def test_stripe_timeout_bounds_the_whole_request() -> None:
    async def app(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return reply({})

    async with make_http(app, FakeClock(), timeout=0.02, max_retries=1) as http:
        with pytest.raises(StripeTimeoutError):
            await http.get(PATH, [], budget="analytics", endpoint="meter_usage")
    assert http.requests == 2

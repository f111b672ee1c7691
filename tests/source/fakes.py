"""A scripted Stripe for ``httpx.MockTransport``: tests hand it a tiny ``app(request)``."""

from __future__ import annotations

import json
import random
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from pydantic import SecretStr

from alertd.clock import FakeClock
from alertd.config.settings import StripeSettings
from alertd.source.http import StripeHTTP

API_KEY = "sk_test_51SecretKeyThatMustNeverLeak0123456789"

Handler = Callable[[httpx.Request], httpx.Response | Awaitable[httpx.Response]]


def reply(
    body: Any = None,
    status: int = 200,
    *,
    request_id: str | None = "req_1",
    headers: dict[str, str] | None = None,
    text: str | None = None,
) -> httpx.Response:
    """A Stripe-like answer: JSON ``body`` (or raw ``text``) with a ``Request-Id``."""
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    if request_id is not None:
        all_headers["Request-Id"] = request_id
    content = text if text is not None else json.dumps(body if body is not None else {})
    return httpx.Response(status, headers=all_headers, content=content.encode())


def stripe_error(
    status: int, message: str = "boom", *, code: str | None = None, param: str | None = None,
    type_: str = "invalid_request_error", request_id: str = "req_err",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    error = {"type": type_, "message": message, "code": code, "param": param}
    return reply({"error": error}, status, request_id=request_id, headers=headers)


class Recorder:
    """Wraps an app and keeps every request it saw."""

    def __init__(self, app: Handler) -> None:
        self.app = app
        self.requests: list[httpx.Request] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        result = self.app(request)
        if isinstance(result, httpx.Response):
            return result
        return await result

    def params(self, index: int = -1) -> list[tuple[str, str]]:
        return self.requests[index].url.params.multi_items()


def make_http(
    app: Handler | Recorder,
    clock: FakeClock,
    *,
    rng: random.Random | None = None,
    observer: Any = None,
    api_key: str | None = API_KEY,
    decode_in_process: bool | None = True,
    **stripe: Any,
) -> StripeHTTP:
    settings = StripeSettings(**stripe)
    recorder = app if isinstance(app, Recorder) else Recorder(app)
    return StripeHTTP(
        settings,
        SecretStr(api_key) if api_key is not None else None,
        transport=httpx.MockTransport(recorder),
        clock=clock,
        rng=rng if rng is not None else random.Random(7),
        observer=observer,
        decode_in_process=decode_in_process,
    )


class HighJitter(random.Random):
    """Jitter always at its upper bound, so a backoff schedule is exact."""

    def uniform(self, a: float, b: float) -> float:
        return b


class LowJitter(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return a


class Observed:
    """A RequestObserver that remembers what it was told."""

    def __init__(self) -> None:
        self.responses: list[tuple[str, str]] = []
        self.rate_limited: list[str] = []

    def on_response(self, endpoint: str, code: str, seconds: float) -> None:
        self.responses.append((endpoint, code))

    def on_rate_limited(self, budget: str) -> None:
        self.rate_limited.append(budget)

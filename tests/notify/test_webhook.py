"""Webhook delivery against a real loopback HTTP receiver (aiohttp), checked from its side."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest

from alertd.clock import FakeClock
from alertd.config.settings import Receiver
from alertd.errors import PermanentDeliveryError, TransientDeliveryError
from alertd.model import Notification
from alertd.notify import labelset
from alertd.notify.signature import verify
from alertd.notify.templates import Templates
from alertd.notify.webhook import USER_AGENT, WebhookNotifier, webhook_session

TEMPLATES = Templates(external_url="https://alertd.example")


def receiver(url: str, **webhook: Any) -> Receiver:
    return Receiver.model_validate({"name": "hooks", "webhook": {"url": url, **webhook}})


async def deliver(url: str, notification: Notification, *, clock: FakeClock | None = None,
                  **webhook: Any) -> None:
    async with WebhookNotifier(receiver(url, **webhook), TEMPLATES,
                               clock=clock or FakeClock()) as notifier:
        await notifier.send(notification)


# --------------------------------------------------------------------------- bodies


async def test_default_body_is_alertmanager_webhook_v4(hook, build) -> None:
    sink, base = hook
    notification = build.notification(build.alert(), build.alert(customer=build.globex))
    await deliver(f"{base}/alertd", notification)

    [request] = sink.requests
    body = json.loads(request.body)
    assert request.path == "/alertd"
    assert body["version"] == "4"
    assert body["groupKey"] == notification.group_key
    assert body["truncatedAlerts"] == 0
    assert (body["status"], body["receiver"]) == ("firing", "ops")
    assert body["groupLabels"] == {"rule": "gpt4-daily-usage"}
    assert body["commonLabels"] == {"alertname": "gpt4-daily-usage", "rule": "gpt4-daily-usage",
                                    "severity": "critical", "model": "gpt-4", "team": "ml"}
    assert body["externalURL"] == "https://alertd.example"
    first = body["alerts"][0]
    assert set(first) == {"status", "labels", "annotations", "startsAt", "endsAt",
                          "generatorURL", "fingerprint"}
    assert first["startsAt"] == "2025-01-03T15:40:00Z"
    assert first["endsAt"] == "0001-01-01T00:00:00Z"
    # Alertmanager's fingerprint of the labels sent (tests/receivers checks it against a real
    # Alertmanager); alertd's own series fingerprint rides along under "alertd".
    assert first["fingerprint"] == labelset.fingerprint(first["labels"])
    assert first["fingerprint"] != body["alerts"][1]["fingerprint"]
    assert body["alertd"]["alerts"][0]["fingerprint"] == "fp-cus_acme"
    assert body["alertd"]["alerts"][1]["customer"]["id"] == "cus_globex"


@pytest.mark.parametrize("preset", ["alertmanager_webhook", "generic", "slack"])
async def test_annotation_templates_arrive_rendered(hook, build, preset) -> None:
    sink, base = hook
    alert = build.alert(annotations={"summary": "{{ customer.name }} at {{ value | number }}"})
    await deliver(base, build.notification(alert), preset=preset)
    body = sink.requests[0].body.decode()
    assert "Acme Analytics Inc. at 5,900,000" in body and "{{" not in body


async def test_headers_idempotency_key_user_agent_and_user_headers(hook, build) -> None:
    sink, base = hook
    await deliver(base, build.notification(id="n-42"), headers={"X-Team": "billing"})
    headers = sink.requests[0].headers
    assert headers["Idempotency-Key"] == "n-42"
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"] == USER_AGENT
    assert headers["X-Team"] == "billing"
    assert "Alertd-Signature" not in headers  # no secret, no signature


async def test_signature_verifies_on_the_receiving_side(hook, build) -> None:
    sink, base = hook
    clock = FakeClock(start=1_735_920_000)
    await deliver(base, build.notification(), clock=clock, secret="whsec-for-tests")

    request = sink.requests[0]
    header = request.headers["Alertd-Signature"]
    assert header.startswith("t=1735920000,v1=")
    assert verify("whsec-for-tests", request.body, header, now=clock.now() + 30)
    assert not verify("another-secret", request.body, header, now=clock.now())
    assert not verify("whsec-for-tests", request.body + b" ", header, now=clock.now())
    assert not verify("whsec-for-tests", request.body, header, now=clock.now() + 301)


async def test_secret_from_a_file(hook, build, tmp_path) -> None:
    sink, base = hook
    secret = tmp_path / "webhook_secret"
    secret.write_text("from-a-file\n")
    clock = FakeClock()
    await deliver(base, build.notification(), clock=clock, secret_file=str(secret))
    request = sink.requests[0]
    assert verify("from-a-file", request.body, request.headers["Alertd-Signature"],
                  now=clock.now())


async def test_custom_body_template(hook, build) -> None:
    sink, base = hook
    body = ('{"text": {{ (alerts[0].customer.name ~ " is over") | tojson }}, '
            '"count": {{ alerts | length }}, "since": {{ alerts[0].starts_at | tojson }}}')
    await deliver(base, build.notification(), body=body)
    assert json.loads(sink.requests[0].body) == {
        "text": "Acme Analytics Inc. is over", "count": 1, "since": "2025-01-03T15:40:00Z"}


async def test_custom_body_that_is_not_json_is_permanent_and_not_sent(hook, build) -> None:
    sink, base = hook
    with pytest.raises(PermanentDeliveryError, match="did not render JSON"):
        await deliver(base, build.notification(), body='{"text": {{ alerts[0].rule }}}')
    assert sink.requests == []


async def test_pagerduty_sends_one_event_per_alert(hook, build) -> None:
    sink, base = hook
    notification = build.notification(build.alert(),
                                       build.resolved(build.alert(customer=build.globex)))
    await deliver(f"{base}/v2/enqueue", notification, preset="pagerduty", routing_key="R0UT1NG")
    trigger, resolve = (json.loads(r.body) for r in sink.requests)
    assert trigger["event_action"] == "trigger" and resolve["event_action"] == "resolve"
    assert trigger["routing_key"] == resolve["routing_key"] == "R0UT1NG"
    assert (trigger["dedup_key"], resolve["dedup_key"]) == ("fp-cus_acme", "fp-cus_globex")
    assert trigger["payload"]["severity"] == "critical"
    assert "Idempotency-Key" not in sink.requests[0].headers  # dedup_key does that job


async def test_pagerduty_without_routing_key_is_permanent(hook, build) -> None:
    sink, base = hook
    with pytest.raises(PermanentDeliveryError, match="routing_key"):
        await deliver(base, build.notification(), preset="pagerduty")
    assert sink.requests == []


@pytest.mark.parametrize("preset, key", [
    ("slack", "attachments"), ("teams", "attachments"), ("discord", "embeds"),
    ("generic", "alerts"),
])
async def test_chat_and_generic_presets_post_their_shape(hook, build, preset, key) -> None:
    sink, base = hook
    await deliver(base, build.notification(), preset=preset)
    assert key in json.loads(sink.requests[0].body)


async def test_alertmanager_api_v2_posts_an_array(hook, build) -> None:
    sink, base = hook
    await deliver(f"{base}/api/v2/alerts", build.notification(), preset="alertmanager")
    [posted] = json.loads(sink.requests[0].body)
    assert sink.requests[0].path == "/api/v2/alerts"
    assert posted["labels"]["alertname"] == "gpt4-daily-usage"


# --------------------------------------------------------------------------- status codes


async def test_503_is_transient_then_the_retry_repeats_key_and_body(hook, build) -> None:
    sink, base = hook
    sink.script.append((503, "upstream unavailable", 0.0))
    clock = FakeClock()
    notification = build.notification()
    with pytest.raises(TransientDeliveryError, match="503") as caught:
        await deliver(base, notification, clock=clock, secret="s3cret")
    assert caught.value.retryable and caught.value.receiver == "hooks"
    clock.advance(60)
    await deliver(base, notification, clock=clock, secret="s3cret")

    first, second = sink.requests
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"]
    assert first.body == second.body
    assert first.headers["Alertd-Signature"] != second.headers["Alertd-Signature"]  # fresh t
    assert verify("s3cret", second.body, second.headers["Alertd-Signature"], now=clock.now())


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 504])
async def test_retryable_statuses_are_transient(hook, build, status) -> None:
    sink, base = hook
    sink.script.append((status, "later", 0.0))
    with pytest.raises(TransientDeliveryError, match=str(status)):
        await deliver(base, build.notification())


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 422])
async def test_other_4xx_are_permanent_with_the_response(hook, build, status) -> None:
    sink, base = hook
    sink.script.append((status, '{"error": "invalid_payload"}', 0.0))
    with pytest.raises(PermanentDeliveryError, match="invalid_payload") as caught:
        await deliver(base, build.notification())
    assert not caught.value.retryable


async def test_a_redirect_is_permanent_and_names_the_target(hook, build) -> None:
    sink, base = hook
    sink.script.append((302, "", 0.0))
    sink.extra_headers["Location"] = "https://elsewhere.example/hook"
    with pytest.raises(PermanentDeliveryError, match=r"https://elsewhere\.example"):
        await deliver(base, build.notification())


async def test_a_slow_receiver_times_out_as_transient(hook, build) -> None:
    sink, base = hook
    sink.script.append((200, "too late", 2.0))
    with pytest.raises(TransientDeliveryError, match="did not answer in time"):
        await deliver(base, build.notification(), timeout=0.2)


async def test_refused_connection_is_transient(build) -> None:
    with socket.socket() as sock:  # a port that was just free: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(TransientDeliveryError, match="cannot reach"):
        await deliver(f"http://127.0.0.1:{port}/hook", build.notification())


async def test_errors_never_show_the_secret_url_path(hook, build) -> None:
    sink, base = hook
    sink.script.append((404, "no such hook", 0.0))
    with pytest.raises(PermanentDeliveryError) as caught:
        await deliver(f"{base}/services/T000/B000/SECRETTOKEN", build.notification(),
                      preset="slack")
    assert "SECRETTOKEN" not in str(caught.value)
    assert base in str(caught.value)


async def test_a_session_passed_in_is_used_and_left_open(hook, build) -> None:
    sink, base = hook
    session = webhook_session(2)
    async with WebhookNotifier(receiver(base), TEMPLATES, session=session) as notifier:
        await notifier.send(build.notification())
        await notifier.send(build.notification(id="n-0002"))
    assert [r.headers["Idempotency-Key"] for r in sink.requests] == ["n-0001", "n-0002"]
    assert not session.closed
    await session.close()


async def test_requests_reuse_one_kept_alive_connection(hook, build) -> None:
    sink, base = hook
    session = webhook_session(2)
    async with WebhookNotifier(receiver(base), TEMPLATES, session=session) as notifier:
        for number in range(3):
            await notifier.send(build.notification(id=f"n-{number}"))
    assert [r.headers["Idempotency-Key"] for r in sink.requests] == ["n-0", "n-1", "n-2"]
    assert session.pool.opened == 1
    await session.close()


async def test_a_proxied_receiver_is_sent_through_its_proxy(hook, build, monkeypatch) -> None:
    # The environment names the loopback receiver as the proxy for an unreachable host: the
    # request can only arrive there through the proxy (aiohttp's absolute-form request).
    sink, base = hook
    monkeypatch.setenv("HTTP_PROXY", base)
    monkeypatch.setenv("http_proxy", base)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    session = webhook_session(2)
    async with WebhookNotifier(receiver("http://hooks.invalid/alertd"), TEMPLATES,
                               session=session) as notifier:
        await notifier.send(build.notification())
    [request] = sink.requests
    assert request.path == "/alertd" and request.headers["Idempotency-Key"] == "n-0001"
    assert session.pool.opened == 0
    await session.close()


async def test_a_header_with_a_line_break_is_permanent_and_not_sent(hook, build) -> None:
    sink, base = hook
    with pytest.raises(PermanentDeliveryError, match="line break"):
        await deliver(base, build.notification(), headers={"X-Team": "ml\r\nX-Evil: 1"})
    assert sink.requests == []

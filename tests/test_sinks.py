"""The demo's delivery sinks are real servers: real SMTP and real HTTP reach them."""

from __future__ import annotations

import json
import time
from email.message import EmailMessage

import aiosmtplib
import httpx

from alertd.notify.signature import sign
from alertd.sinks import Delivery, mail_sink, summarise, webhook_sink


async def test_mail_sink_receives_over_smtp() -> None:
    seen: list[Delivery] = []
    async with mail_sink(seen.append) as sink:
        message = EmailMessage()
        message["From"] = "alertd@example.com"
        message["To"] = "ops@example.com"
        message["Subject"] = "[FIRING] gpt4-daily-usage"
        message.set_content("Acme used 60,000 tokens")
        await aiosmtplib.send(message, hostname="127.0.0.1", port=sink.port)
    assert [d.subject for d in seen] == ["[FIRING] gpt4-daily-usage"]
    assert seen[0].target == "ops@example.com"
    assert "60,000" in seen[0].body
    assert sink.received == seen


async def test_webhook_sink_checks_the_signature() -> None:
    async with webhook_sink(secret="s3cret") as sink:
        body = json.dumps({"status": "firing", "alerts": [{"labels": {"alertname": "x"}}]})
        raw = body.encode()
        good = sign("s3cret", raw, int(time.time()))
        async with httpx.AsyncClient() as client:
            await client.post(f"{sink.url}/hook", content=raw,
                              headers={"Alertd-Signature": good})
            await client.post(f"{sink.url}/hook", content=raw,
                              headers={"Alertd-Signature": sign("wrong", raw, int(time.time()))})
    assert [d.signature_ok for d in sink.received] == [True, False]
    assert sink.received[0].subject == "firing: 1 alert(s) x"


def test_summarise_other_bodies() -> None:
    assert summarise({"text": "hi"}) == '{"text": "hi"}'

"""Webhook signatures against known vectors, not against alertd itself.

A sign→verify round trip passes even when both sides share a mistake (a wrong separator, the
body hashed before the timestamp, the key and message swapped). Here every expected ``v1`` is a
literal computed once, outside alertd and Python, with the OpenSSL CLI from the documented
formula ``hex HMAC-SHA256(secret, "<t>." + body)`` — the command is beside each constant — and
alertd's signer must produce it, its webhook must send it, and its verifier must accept it and
reject every near miss. The documented shell recipe is also run as written.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from alertd.clock import FakeClock
from alertd.config.settings import Receiver
from alertd.notify import signature
from alertd.notify.signature import HEADER, sign, verify
from alertd.notify.templates import Templates
from alertd.notify.webhook import WebhookNotifier


@dataclass(frozen=True)
class Vector:
    secret: str | bytes
    timestamp: int
    body: bytes
    v1: str


# printf '%s' '1735689600.{"status":"firing"}' | openssl dgst -sha256 -hmac 's3cret'
DOCUMENTED = Vector("s3cret", 1_735_689_600, b'{"status":"firing"}',
                    "8f659bfad224698ada55e40d1c40c1ee512a9f886480893e564d02d7574758d9")

VECTORS = {
    "documented": DOCUMENTED,
    # printf '%s' '1735920000.' | openssl dgst -sha256 -hmac 'whsec-for-tests'
    "empty body": Vector("whsec-for-tests", 1_735_920_000, b"",
                         "e0ef44e347980d5bff41cc5ce1f8de799820256abfc05d87a026964f9210f76a"),
    # printf '1700000000.{"text":"caf\xc3\xa9 \xe2\x82\xac"}\n' \
    #   | openssl dgst -sha256 -mac HMAC -macopt hexkey:00ff6b6579
    "bytes key, UTF-8 body, trailing newline": Vector(
        b"\x00\xffkey", 1_700_000_000, '{"text":"café €"}\n'.encode(),
        "331a2e2d9874c402f3475c3e940983870e40cfa9dedeeb0eb88d587cc7647a7e"),
    # printf '%s' '1735689600.{"status":"firing"}' | openssl dgst -sha256 -hmac 'clé'
    # (the shell passes the secret's UTF-8 bytes 63 6c c3 a9)
    "text secret is UTF-8": Vector("clé", 1_735_689_600, b'{"status":"firing"}',
                                   "f2e4df484d6f789a9f0aeef43e5fc3cc0446034aeeeee739f5287c0f1b00e12f"),
}
CASES = pytest.mark.parametrize("vector", VECTORS.values(), ids=VECTORS.keys())


def header_of(vector: Vector) -> str:
    return f"t={vector.timestamp},v1={vector.v1}"


@CASES
def test_sign_produces_the_known_header(vector: Vector) -> None:
    assert sign(vector.secret, vector.body, vector.timestamp) == header_of(vector)


@CASES
def test_verify_accepts_the_known_header_within_tolerance(vector: Vector) -> None:
    header, t = header_of(vector), vector.timestamp
    for now in (t, t + 0.5, t - 300, t + 300):
        assert verify(vector.secret, vector.body, header, now=now), now


@CASES
def test_verify_rejects_every_near_miss(vector: Vector) -> None:
    header, t = header_of(vector), vector.timestamp
    changed_last = vector.body[:-1] + bytes([vector.body[-1] ^ 1]) if vector.body else b" "
    assert not verify(vector.secret, changed_last, header, now=t)            # one byte changed
    assert not verify(vector.secret, vector.body + b" ", header, now=t)      # one byte added
    wrong_secret = vector.secret + (b"x" if isinstance(vector.secret, bytes) else "x")
    assert not verify(wrong_secret, vector.body, header, now=t)               # wrong secret
    assert not verify(vector.secret, vector.body, header, now=t + 301)        # too old
    assert not verify(vector.secret, vector.body, header, now=t - 301)        # from the future
    flipped = vector.v1[:-1] + ("0" if vector.v1[-1] != "0" else "1")
    assert not verify(vector.secret, vector.body, f"t={t},v1={flipped}", now=t)
    # The signature binds the timestamp: the same v1 under another t is not valid.
    assert not verify(vector.secret, vector.body, f"t={t + 1},v1={vector.v1}", now=t)


def test_header_parsing_follows_the_documented_rules() -> None:
    v = DOCUMENTED
    t, good = v.timestamp, v.v1
    # Any matching v1 among several is enough; fields may come in any order, with spaces.
    assert verify(v.secret, v.body, f"t={t},v1={'0' * 64},v1={good}", now=t)
    assert verify(v.secret, v.body, f"v1={good}, t={t}", now=t)
    # Not one integer t, or no v1 at all, is simply not valid.
    assert not verify(v.secret, v.body, f"v1={good}", now=t)
    assert not verify(v.secret, v.body, f"t={t},t={t},v1={good}", now=t)
    assert not verify(v.secret, v.body, f"t=-{t},v1={good}", now=t)
    assert not verify(v.secret, v.body, f"t={t},v0={good}", now=t)
    assert not verify(v.secret, v.body, f"t={t},v1={good.upper()}", now=t)  # lower-case hex


def test_the_module_documents_the_same_vector() -> None:
    doc = signature.__doc__ or ""
    assert f"at ``t={DOCUMENTED.timestamp}`` with the secret ``{DOCUMENTED.secret}``" in doc
    assert DOCUMENTED.v1 in doc and DOCUMENTED.body.decode() in doc


def test_the_documented_shell_recipe_gives_alertds_v1(tmp_path: Path) -> None:
    assert shutil.which("openssl"), "this test needs the openssl command"
    doc = signature.__doc__ or ""
    [recipe] = [line.strip() for line in doc.splitlines() if "openssl dgst" in line]
    vector = VECTORS["text secret is UTF-8"]
    body = tmp_path / "body.json"
    body.write_bytes(b'{"text":"line one\\nline two"}\n')  # the recipe must keep every byte
    out = subprocess.run(["sh", "-c", recipe], cwd=tmp_path, capture_output=True, check=True,
                         env={**os.environ, "T": str(vector.timestamp),
                              "SECRET": str(vector.secret)}).stdout.decode()
    # OpenSSL prints "SHA2-256(stdin)= <hex>" (3.x) or "(stdin)= <hex>" (1.x).
    assert out.split()[-1] == sign(vector.secret, body.read_bytes(), vector.timestamp)[-64:]


async def test_the_webhook_sends_the_known_header_and_exact_body(hook, build) -> None:
    sink, base = hook
    receiver = Receiver.model_validate({"name": "hooks", "webhook": {
        "url": base, "secret": DOCUMENTED.secret, "body": DOCUMENTED.body.decode()}})
    async with WebhookNotifier(receiver, Templates(external_url="https://alertd.example"),
                               clock=FakeClock(start=DOCUMENTED.timestamp)) as notifier:
        await notifier.send(build.notification())
    [request] = sink.requests
    assert request.body == DOCUMENTED.body
    assert request.headers[HEADER] == header_of(DOCUMENTED)

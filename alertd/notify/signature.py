"""Webhook signatures: how alertd signs a body and how a receiver checks it.

With a ``secret`` (or ``secret_file``) on a webhook receiver, every request carries::

    Alertd-Signature: t=<unix seconds>,v1=<64 lower-case hex digits>

``t`` is the time of the attempt (a retry is signed anew) and ``v1`` the hex HMAC-SHA256,
keyed with the secret, of the bytes ``"<t>." + <raw request body>``. For example the body
``{"status":"firing"}`` sent at ``t=1735689600`` with the secret ``s3cret`` has ``v1`` =::

    8f659bfad224698ada55e40d1c40c1ee512a9f886480893e564d02d7574758d9

Verifying on the receiving side:

1. Read the raw request body as bytes, *before* any JSON parsing: re-serialising changes bytes.
2. Split the header on ``,``; take ``t`` and every ``v1`` value (more than one ``v1`` may
   appear in future versions; accept if any matches).
3. Compute ``HMAC-SHA256(secret, t + "." + body)`` in hex and compare it with each ``v1`` in
   constant time (``hmac.compare_digest`` in Python, ``crypto.timingSafeEqual`` in Node,
   ``hmac.Equal`` in Go, ``Rack::Utils.secure_compare`` in Ruby).
4. Reject when ``t`` is more than 5 minutes away from your clock, so a captured request
   cannot be replayed later.
5. Drop repeats by the ``Idempotency-Key`` header: alertd delivers at least once, and a retry
   carries the same key (and the same body) with a fresh signature.

In Python, with alertd installed::

    from alertd.notify.signature import verify
    ok = verify(secret, raw_body, request.headers["Alertd-Signature"], now=time.time())

Without alertd::

    import hashlib, hmac, time

    def verify(secret: bytes, body: bytes, header: str, tolerance: int = 300) -> bool:
        fields = [part.split("=", 1) for part in header.split(",") if "=" in part]
        stamps = [v for k, v in fields if k.strip() == "t"]
        if len(stamps) != 1 or not stamps[0].isdigit():
            return False
        if abs(time.time() - int(stamps[0])) > tolerance:
            return False
        expected = hmac.new(secret, stamps[0].encode() + b"." + body, hashlib.sha256).hexdigest()
        return any(hmac.compare_digest(expected, v.strip()) for k, v in fields if k.strip() == "v1")

From a shell, to check one captured request (``body.json`` holding the exact bytes; the
output must equal ``v1``)::

    printf '%s.' "$T" | cat - body.json | openssl dgst -sha256 -hmac "$SECRET"
"""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "Alertd-Signature"
SCHEME = "v1"
DEFAULT_TOLERANCE = 300.0


def _key(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def _digest(secret: str | bytes, body: bytes, timestamp: int) -> str:
    signed = str(timestamp).encode() + b"." + body
    return hmac.new(_key(secret), signed, hashlib.sha256).hexdigest()


def sign(secret: str | bytes, body: bytes, timestamp: int) -> str:
    """The ``Alertd-Signature`` header value for ``body`` sent at ``timestamp`` (unix s)."""
    return f"t={int(timestamp)},{SCHEME}={_digest(secret, body, int(timestamp))}"


def parse(header: str) -> tuple[int | None, list[str]]:
    """``(t, [v1 signatures])`` of a header; ``t`` is None when absent or not one integer."""
    stamps: list[str] = []
    signatures: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t":
            stamps.append(value.strip())
        elif name == SCHEME:
            signatures.append(value.strip())
    if len(stamps) != 1 or not stamps[0].isdigit():
        return None, signatures
    return int(stamps[0]), signatures


def verify(secret: str | bytes, body: bytes, header: str, *, now: float | None = None,
           tolerance: float = DEFAULT_TOLERANCE) -> bool:
    """Whether ``header`` signs ``body`` with ``secret`` at a time within ``tolerance`` of
    ``now`` (default: this machine's clock, as the README's snippet uses). Comparison is
    constant-time; a malformed header is simply not valid."""
    if now is None:
        now = time.time()
    timestamp, signatures = parse(header)
    if timestamp is None or not signatures or abs(now - timestamp) > tolerance:
        return False
    expected = _digest(secret, body, timestamp)
    # Compare against every candidate, not just until the first match, to keep timing flat.
    matches = [hmac.compare_digest(expected, candidate) for candidate in signatures]
    return any(matches)

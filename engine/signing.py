"""Signed outbound requests, in the style of Stripe's and GitHub's webhook signatures.

A request is signed with HMAC-SHA256 over ``<timestamp>.<body>`` (the Unix time in seconds, a dot, the
exact bytes sent), and carries the result in one header::

    Stepwise-Signature: t=1764770000,v1=5257a869e7…,v1=9f86d081884c…

One ``v1`` per secret in use: while a secret is being rotated both the new and the old one sign, so a
receiver that still knows only the old secret keeps verifying until it is updated. A receiver
recomputes the HMAC with its secret over the timestamp and the raw body, compares it in constant time
with each ``v1``, and refuses a timestamp too far from its own clock (a replayed request).

Webhooks sign their deliveries with this; anything else the engine sends that a receiver must be able
to trust (agent callbacks) signs the same way.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets as random
from collections.abc import Iterable

SIGNATURE_HEADER = "Stepwise-Signature"
SIGNATURE_SCHEME = "v1"
DEFAULT_TOLERANCE_SECONDS = 300
SECRET_PREFIX = "whsec_"


def new_signing_secret() -> str:
    """A fresh secret: 256 random bits, prefixed so a leaked one is recognisable in logs and scanners."""
    return SECRET_PREFIX + random.token_urlsafe(32)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``<timestamp>.<body>`` under ``secret``."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(secrets: Iterable[str], timestamp: int, body: bytes) -> str:
    """The header value: ``t=<timestamp>`` and one ``v1=`` per secret, in the order given (newest first)."""
    signatures = [f"{SIGNATURE_SCHEME}={sign(secret, timestamp, body)}" for secret in secrets]
    if not signatures:
        raise ValueError("at least one secret signs")
    return ",".join([f"t={timestamp}", *signatures])


def verify_signature(
    header: str, body: bytes, secret: str, *, now: int, tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS
) -> bool:
    """Whether ``header`` holds a ``v1`` signature of ``body`` under ``secret`` with a timestamp within
    ``tolerance_seconds`` of ``now`` (what a receiver runs; the tests are one)."""
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == SIGNATURE_SCHEME:
            signatures.append(value)
    if timestamp is None or abs(now - timestamp) > tolerance_seconds:
        return False
    expected = sign(secret, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in signatures)

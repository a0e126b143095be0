"""How a delivery is signed and what it is sent with (docs/webhooks.md, "Verifying").

The signature is HMAC-SHA256 of the raw body keyed by the subscription's secret, sent as
`X-Envnet-Signature: sha256=<hex>`; a receiver recomputes it over the bytes it got.
"""

from __future__ import annotations

import hashlib
import hmac

from envnet import __version__

SIGNATURE_HEADER = "X-Envnet-Signature"
EVENT_HEADER = "X-Envnet-Event"
DELIVERY_HEADER = "X-Envnet-Delivery"
ATTEMPT_HEADER = "X-Envnet-Attempt"
USER_AGENT = f"envnet-webhooks/{__version__}"
CONTENT_TYPE = "application/json; charset=utf-8"


def sign(secret: str, body: bytes) -> str:
    """The `X-Envnet-Signature` value: HMAC-SHA256 of the raw body, keyed by the secret."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str | None) -> bool:
    """What a receiver does (docs/webhooks.md): recompute over the raw body, compare in
    constant time."""
    if not header:
        return False
    return hmac.compare_digest(sign(secret, body).encode(), header.strip().encode())


def delivery_headers(
    secret: str, body: bytes, event_type: str, delivery_id: str, attempt: int
) -> dict[str, str]:
    """The headers of one attempt (attempt: 1-based, over the delivery's whole life)."""
    return {
        "Content-Type": CONTENT_TYPE,
        SIGNATURE_HEADER: sign(secret, body),
        EVENT_HEADER: event_type,
        DELIVERY_HEADER: delivery_id,
        ATTEMPT_HEADER: str(attempt),
    }

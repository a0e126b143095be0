"""Webhooks without I/O: the event catalogue, events and what alert changes become, the body
a subscriber receives, signing, and the retry policy. The persisted outbox is
envnet/store/webhooks/; the server's delivery worker (HTTP) is server/delivery.py."""

from envnet.domain.webhooks.body import build_body, iso, matches
from envnet.domain.webhooks.catalogue import CATALOGUE, EVENT_LABELS, EVENT_TYPES, PING, EventKind
from envnet.domain.webhooks.events import NETWORK, Event, events_for
from envnet.domain.webhooks.policy import (
    OUTCOMES,
    STATUSES,
    Outcome,
    RetryPolicy,
    Status,
    backoff_s,
    classify,
    next_step,
    retry_after_s,
)
from envnet.domain.webhooks.signing import (
    ATTEMPT_HEADER,
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    USER_AGENT,
    delivery_headers,
    sign,
    verify,
)

__all__ = [
    "ATTEMPT_HEADER",
    "CATALOGUE",
    "DELIVERY_HEADER",
    "EVENT_HEADER",
    "EVENT_LABELS",
    "EVENT_TYPES",
    "NETWORK",
    "OUTCOMES",
    "PING",
    "SIGNATURE_HEADER",
    "STATUSES",
    "USER_AGENT",
    "Event",
    "EventKind",
    "Outcome",
    "RetryPolicy",
    "Status",
    "backoff_s",
    "build_body",
    "classify",
    "events_for",
    "delivery_headers",
    "iso",
    "matches",
    "next_step",
    "retry_after_s",
    "sign",
    "verify",
]

"""The persisted webhook outbox in the state store's SQLite file: `emit` puts events in
(emit.py), `Outbox` keeps subscriptions, deliveries and attempts and hands deliveries to the
server's worker under a lease (outbox.py). Pure parts (catalogue, body, signing, retry policy)
are envnet/domain/webhooks/."""

from envnet.store.webhooks.emit import emit, outbox_for, prepare, public_base_url
from envnet.store.webhooks.outbox import Claim, Conflict, Outbox, notify, unwatch, watch

__all__ = [
    "Claim",
    "Conflict",
    "Outbox",
    "emit",
    "notify",
    "outbox_for",
    "prepare",
    "public_base_url",
    "unwatch",
    "watch",
]

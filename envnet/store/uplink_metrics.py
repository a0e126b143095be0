"""The HJ 212 uplink's counters as the state store carries them to the server.

`envnet uplink` publishes a snapshot of its Prometheus samples (gateway/uplink_metrics.py) into
the store's kv table under `uplink:<uplink.client_id>:metrics` every few seconds; the server's
/metrics (server/metrics.py) re-exports them with an `uplink` label, as it does the gateways'
(envnet/store/gateway_metrics.py, whose `MetricFamily` this module shares). FAMILIES below is
the one definition of names, types, help texts and labels: the uplink builds its collectors
from it, the server types and documents the samples it re-exports.

Counters count since the uplink process started (Prometheus counter semantics: a restart is a
reset); the gauges are read from the uplink's outbox file at each snapshot, so they survive it.
"""

from __future__ import annotations

from envnet.store.gateway_metrics import MetricFamily

KEY_PREFIX = "uplink:"
KEY_SUFFIX = ":metrics"


def key(client_id: str) -> str:
    """The kv key one uplink publishes under (its MQTT client id names it)."""
    return f"{KEY_PREFIX}{client_id}{KEY_SUFFIX}"


FAMILIES: tuple[MetricFamily, ...] = (
    MetricFamily(
        "envnet_uplink_messages_received", "counter", "MQTT reading messages the uplink received"
    ),
    MetricFamily(
        "envnet_uplink_messages_ignored",
        "counter",
        "Messages the contract refused (acknowledged and dropped, logged)",
    ),
    MetricFamily(
        "envnet_uplink_readings_stored",
        "counter",
        "New readings stored as samples for a platform (replays not counted)",
    ),
    MetricFamily(
        "envnet_uplink_packets_sent",
        "counter",
        "HJ 212 data packets written to a platform's connection, resends included, by CN",
        ("platform", "cn"),
    ),
    MetricFamily(
        "envnet_uplink_packets_acked",
        "counter",
        "Packets the platform acknowledged (9014), or sent to a platform with ack = false",
        ("platform",),
    ),
    MetricFamily(
        "envnet_uplink_retries",
        "counter",
        "Packets sent again (same QN): no 9014 within ack_timeout_s or the connection dropped",
        ("platform",),
    ),
    MetricFamily(
        "envnet_uplink_connection_failures",
        "counter",
        "Platform connections that failed to open or were lost",
        ("platform",),
    ),
    MetricFamily(
        "envnet_uplink_queue_depth",
        "gauge",
        "Packets in the uplink's outbox not yet acknowledged by the platform",
        ("platform",),
    ),
    MetricFamily(
        "envnet_uplink_oldest_pending_seconds",
        "gauge",
        "Age of the oldest packet not yet acknowledged by the platform (0 when none)",
        ("platform",),
    ),
    MetricFamily(
        "envnet_uplink_platform_connected",
        "gauge",
        "1 while the uplink holds a connection to the platform, else 0",
        ("platform",),
    ),
    MetricFamily(
        "envnet_uplink_corrections_queued",
        "counter",
        "Review corrections (invalidations, restores) whose 2061/2031 re-sends were queued",
    ),
    MetricFamily(
        "envnet_uplink_correction_packets_queued",
        "counter",
        "2061/2031 correction packets queued, all platforms together",
    ),
    MetricFamily(
        "envnet_uplink_correction_failures",
        "counter",
        "Correction passes that failed (InfluxDB or the state store not answering), retried",
    ),
)

BY_NAME: dict[str, MetricFamily] = {f.name: f for f in FAMILIES}

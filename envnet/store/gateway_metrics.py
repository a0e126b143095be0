"""The gateway's counters as the state store carries them to the server.

Each gateway publishes a snapshot of its Prometheus samples (gateway/metrics.py `snapshot`)
into the store's kv table under `gateway:<client_id>:metrics`; the server's /metrics
(server/metrics.py) re-exports them with a `gateway` label. Both read the families from
FAMILIES below, the one definition: the gateway builds its collectors from it, the server
types the samples it re-exports and gives them their help texts (the two processes never
import each other). The HJ 212 uplink publishes its own the same way with the same
`MetricFamily` (envnet/store/uplink_metrics.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class MetricFamily:
    name: str  # without the _total / _bucket / ... sample suffixes
    type: Literal["counter", "gauge", "histogram"]
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()  # histograms only


FAMILIES: tuple[MetricFamily, ...] = (
    MetricFamily(
        "envnet_messages_received", "counter", "MQTT messages received, by subtopic", ("sub",)
    ),
    MetricFamily(
        "envnet_messages_rejected",
        "counter",
        "Messages rejected (dead-lettered), by reason",
        ("reason",),
    ),
    MetricFamily("envnet_readings_stored", "counter", "Readings committed to the durable buffer"),
    MetricFamily(
        "envnet_readings_duplicate",
        "counter",
        "Readings already in the buffer (replays, QoS 1 duplicates)",
    ),
    MetricFamily(
        "envnet_readings_unregistered",
        "counter",
        "Readings stored from stations not in the registry",
    ),
    MetricFamily(
        "envnet_values_out_of_range",
        "counter",
        "Values outside the contract's plausible range, flagged 'range'",
    ),
    MetricFamily(
        "envnet_buffer_errors",
        "counter",
        "Failed commits to the durable buffer (disk full, read-only)",
    ),
    MetricFamily("envnet_influx_points_written", "counter", "Points written to InfluxDB"),
    MetricFamily(
        "envnet_influx_write_errors", "counter", "Failed InfluxDB writes, by kind", ("kind",)
    ),
    MetricFamily(
        "envnet_influx_points_quarantined",
        "counter",
        "Points InfluxDB refused for good (dead-lettered)",
    ),
    MetricFamily(
        "envnet_influx_write_seconds",
        "histogram",
        "InfluxDB write latency per batch",
        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    ),
    MetricFamily(
        "envnet_buffer_pending", "gauge", "Points in the buffer not yet written to InfluxDB"
    ),
)

BY_NAME: dict[str, MetricFamily] = {f.name: f for f in FAMILIES}

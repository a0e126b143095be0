"""The gateway's counters (Prometheus). Every message received ends in exactly one outcome."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry()

messages_received = Counter(
    "envnet_messages_received", "MQTT messages received, by subtopic", ["sub"], registry=REGISTRY
)
messages_rejected = Counter(
    "envnet_messages_rejected",
    "Messages rejected (dead-lettered), by reason",
    ["reason"],
    registry=REGISTRY,
)
readings_stored = Counter(
    "envnet_readings_stored", "Readings committed to the durable buffer", registry=REGISTRY
)
readings_duplicate = Counter(
    "envnet_readings_duplicate",
    "Readings already in the buffer (replays, QoS 1 duplicates)",
    registry=REGISTRY,
)
readings_unregistered = Counter(
    "envnet_readings_unregistered",
    "Readings stored from stations not in the registry",
    registry=REGISTRY,
)
values_out_of_range = Counter(
    "envnet_values_out_of_range",
    "Values outside the contract's plausible range, flagged 'range'",
    registry=REGISTRY,
)
buffer_errors = Counter(
    "envnet_buffer_errors",
    "Failed commits to the durable buffer (disk full, read-only)",
    registry=REGISTRY,
)
influx_points_written = Counter(
    "envnet_influx_points_written", "Points written to InfluxDB", registry=REGISTRY
)
influx_write_errors = Counter(
    "envnet_influx_write_errors", "Failed InfluxDB writes, by kind", ["kind"], registry=REGISTRY
)
influx_points_quarantined = Counter(
    "envnet_influx_points_quarantined",
    "Points InfluxDB refused for good (dead-lettered)",
    registry=REGISTRY,
)
influx_write_seconds = Histogram(
    "envnet_influx_write_seconds",
    "InfluxDB write latency per batch",
    registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
buffer_pending = Gauge(
    "envnet_buffer_pending", "Points in the buffer not yet written to InfluxDB", registry=REGISTRY
)


def snapshot() -> dict[str, float]:
    """Flat name{labels} -> value, for the state store (the server's /metrics reads it)."""
    out: dict[str, float] = {}
    for metric in REGISTRY.collect():
        for s in metric.samples:
            if s.name.endswith("_created"):
                continue
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out

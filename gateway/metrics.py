"""The gateway's counters (Prometheus). Every message received ends in exactly one outcome.

Names, types, help texts, labels and buckets are data in envnet/store/gateway_metrics.py,
which the server reads too when it re-exports the snapshot this gateway publishes."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from envnet.store.gateway_metrics import BY_NAME

REGISTRY = CollectorRegistry()


def _counter(name: str) -> Counter:
    f = BY_NAME[name]
    assert f.type == "counter", name
    return Counter(f.name, f.help, f.labels, registry=REGISTRY)


messages_received = _counter("envnet_messages_received")
messages_rejected = _counter("envnet_messages_rejected")
readings_stored = _counter("envnet_readings_stored")
readings_duplicate = _counter("envnet_readings_duplicate")
readings_unregistered = _counter("envnet_readings_unregistered")
values_out_of_range = _counter("envnet_values_out_of_range")
buffer_errors = _counter("envnet_buffer_errors")
influx_points_written = _counter("envnet_influx_points_written")
influx_write_errors = _counter("envnet_influx_write_errors")
influx_points_quarantined = _counter("envnet_influx_points_quarantined")

_write = BY_NAME["envnet_influx_write_seconds"]
influx_write_seconds = Histogram(
    _write.name, _write.help, _write.labels, registry=REGISTRY, buckets=_write.buckets
)
_pending = BY_NAME["envnet_buffer_pending"]
buffer_pending = Gauge(_pending.name, _pending.help, _pending.labels, registry=REGISTRY)


def _escape(value: str) -> str:
    """A label value as the text format writes it (a platform name may hold a quote)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def snapshot(registry: CollectorRegistry = REGISTRY) -> dict[str, float]:
    """Flat name{labels} -> value, for the state store (the server's /metrics reads it):
    this gateway's counters, or the uplink's (gateway/uplink_metrics.py)."""
    out: dict[str, float] = {}
    for metric in registry.collect():
        for s in metric.samples:
            if s.name.endswith("_created"):
                continue
            labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out

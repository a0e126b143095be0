"""The HJ 212 uplink's counters (Prometheus), published into the state store.

The uplink serves no HTTP: like the gateway it leaves a snapshot of its samples in the state
store's kv table (`uplink:<client_id>:metrics`, envnet/store/uplink_metrics.py, which holds the
names, types, help texts and labels) and the server's /metrics re-exports it with an `uplink`
label. One registry per `Uplink` (not per process) so that two uplinks in one test process do
not add into each other's counters.

Counted where they happen (sender and ingest threads); read at snapshot time: the outbox's
queue depth and oldest packet per platform, the platforms' connection state and the
corrections' counts (gateway/uplink_corrections.py keeps those itself).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from envnet.config import UplinkPlatform
from envnet.store.database import Database
from envnet.store.uplink_metrics import BY_NAME
from gateway import metrics


def _counter(registry: CollectorRegistry, name: str) -> Counter:
    f = BY_NAME[name]
    assert f.type == "counter", name
    return Counter(f.name, f.help, f.labels, registry=registry)


class _Live(Collector):
    """What is read rather than counted: the outbox, connections, corrections."""

    def __init__(
        self,
        outbox: Database,
        platforms: Sequence[str],
        connected: Mapping[str, bool],
        corrections: Callable[[], Mapping[str, int]],
    ) -> None:
        self.outbox = outbox
        self.platforms = platforms
        self.connected = connected
        self.corrections = corrections

    def _gauge(self, name: str) -> GaugeMetricFamily:
        f = BY_NAME[name]
        return GaugeMetricFamily(f.name, f.help, labels=list(f.labels))

    def collect(self) -> Iterator[Metric]:
        pending = {p: (0, None) for p in self.platforms}
        for platform, n, oldest in self.outbox.query(
            "SELECT platform, count(*), min(created) FROM outbox WHERE acked IS NULL "
            "GROUP BY platform"
        ):
            pending[platform] = (int(n), oldest)
        depth = self._gauge("envnet_uplink_queue_depth")
        age = self._gauge("envnet_uplink_oldest_pending_seconds")
        up = self._gauge("envnet_uplink_platform_connected")
        now = time.time()
        for platform, (n, oldest) in sorted(pending.items()):
            depth.add_metric([platform], n)
            age.add_metric([platform], max(0.0, now - oldest) if oldest is not None else 0.0)
        for platform in self.platforms:
            up.add_metric([platform], 1.0 if self.connected.get(platform) else 0.0)
        yield from (depth, age, up)
        counts = self.corrections()
        for name, key in (
            ("envnet_uplink_corrections_queued", "corrections"),
            ("envnet_uplink_correction_packets_queued", "packets"),
            ("envnet_uplink_correction_failures", "failures"),
        ):
            yield CounterMetricFamily(name, BY_NAME[name].help, value=counts.get(key, 0))


class UplinkMetrics:
    def __init__(
        self,
        platforms: Sequence[UplinkPlatform],
        outbox: Database,
        connected: Mapping[str, bool],
        corrections: Callable[[], Mapping[str, int]],
    ) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.messages_received = _counter(r, "envnet_uplink_messages_received")
        self.messages_ignored = _counter(r, "envnet_uplink_messages_ignored")
        self.readings_stored = _counter(r, "envnet_uplink_readings_stored")
        self.packets_sent = _counter(r, "envnet_uplink_packets_sent")
        self.packets_acked = _counter(r, "envnet_uplink_packets_acked")
        self.retries = _counter(r, "envnet_uplink_retries")
        self.connection_failures = _counter(r, "envnet_uplink_connection_failures")
        # Zeros from the start: a platform that never got a packet still shows up.
        for p in platforms:
            for cn in p.send:
                self.packets_sent.labels(platform=p.name, cn=cn)
            for c in (self.packets_acked, self.retries, self.connection_failures):
                c.labels(platform=p.name)
        r.register(_Live(outbox, [p.name for p in platforms], connected, corrections))

    def snapshot(self) -> dict[str, float]:
        """Flat name{labels} -> value (the gateway's format, gateway/metrics.py)."""
        return metrics.snapshot(self.registry)

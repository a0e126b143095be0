"""`GET /metrics` in the Prometheus text format.

- the server's own webhook counters (attempts by outcome, attempt duration) and review
  worker counters (passes, failed passes, calibrations fitted and withdrawn, neighbour alerts
  opened) from this process;
- from the state store, read at each scrape so that every server process reports the same:
  deliveries by status, the age of the oldest pending delivery, alerts by state (when the
  alert engine's `alerts` table is there);
- the gateway counters that each gateway publishes into the store's kv table
  (`gateway:<client_id>:metrics`), re-exported with a `gateway="<client_id>"` label and the
  types and help texts of envnet/store/gateway_metrics.py: messages received, rejected by
  reason, readings stored, InfluxDB write latency (histogram), buffer backlog, ... plus
  `envnet_gateway_metrics_age_seconds` telling how old each gateway's snapshot is;
- the same for each HJ 212 uplink (`uplink:<client_id>:metrics`, envnet/store/uplink_metrics.py):
  packets sent, acknowledged and retried per platform, queue depth, corrections queued, ...
  with an `uplink="<client_id>"` label, and `envnet_uplink_metrics_age_seconds`.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from envnet.domain.webhooks.policy import OUTCOMES
from envnet.store import uplink_metrics
from envnet.store.database import open_database
from envnet.store.gateway_metrics import FAMILIES as GATEWAY_FAMILIES
from envnet.store.gateway_metrics import MetricFamily
from envnet.store.influx.delete import refused as influx_delete_refused
from envnet.store.webhooks import Outbox

log = logging.getLogger("envnet.server")

# Process-wide; every app's registry registers them (a collector may sit in several registries).
webhook_attempts = Counter(
    "envnet_webhook_delivery_attempts",
    "Webhook delivery attempts made by this server process, by outcome "
    "(delivered, retry, failed, dead)",
    ["outcome"],
    registry=None,
)
webhook_attempt_seconds = Histogram(
    "envnet_webhook_attempt_seconds",
    "Duration of webhook delivery attempts",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=None,
)
for _outcome in OUTCOMES:
    webhook_attempts.labels(outcome=_outcome)
# The review worker of this server process (server/review/worker.py, docs/review.md).
review_passes = Counter(
    "envnet_review_passes",
    "Review worker passes (calibration and neighbour checks) completed by this server process",
    registry=None,
)
review_pass_failures = Counter(
    "envnet_review_pass_failures",
    "Review worker passes that failed (InfluxDB down, ...) and were retried at the next tick",
    registry=None,
)
review_calibrations_fitted = Counter(
    "envnet_review_calibrations_fitted",
    "Calibrations stored applied: by the review worker and by reviewers' refits",
    registry=None,
)
review_calibrations_withdrawn = Counter(
    "envnet_review_calibrations_withdrawn",
    "Calibrations withdrawn by the review worker (degraded: R², bias, slope or too few pairs)",
    registry=None,
)
review_neighbour_alerts = Counter(
    "envnet_review_neighbour_alerts",
    "Neighbour-disagreement alerts opened by the review worker",
    registry=None,
)
REVIEW_COUNTERS = (
    review_passes,
    review_pass_failures,
    review_calibrations_fitted,
    review_calibrations_withdrawn,
    review_neighbour_alerts,
)

_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})?$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
_SUFFIXES = ("_total", "_bucket", "_sum", "_count", "_created", "_info")


@dataclass(frozen=True)
class Publisher:
    """A kind of process that publishes its samples into kv under `<prefix><id>:metrics`."""

    prefix: str  # "gateway:"
    label: str  # the label naming the publisher on every re-exported sample
    families: dict[str, tuple[str, str]]  # name -> (type, help)
    age: str  # the age gauge's name
    age_help: str


def _families(families: Iterable[MetricFamily]) -> dict[str, tuple[str, str]]:
    return {f.name: (f.type, f.help) for f in families}


GATEWAYS = Publisher(
    "gateway:",
    "gateway",
    _families(GATEWAY_FAMILIES),
    "envnet_gateway_metrics_age_seconds",
    "Seconds since each gateway last published its counters to the state store",
)
UPLINKS = Publisher(
    uplink_metrics.KEY_PREFIX,
    "uplink",
    _families(uplink_metrics.FAMILIES),
    "envnet_uplink_metrics_age_seconds",
    "Seconds since each HJ 212 uplink last published its counters to the state store",
)
_METRICS_SUFFIX = ":metrics"


def parse_sample(key: str) -> tuple[str, dict[str, str]] | None:
    """'envnet_messages_rejected_total{reason="bad_json"}' -> (name, {"reason": "bad_json"})."""
    m = _SAMPLE.match(key)
    if not m:
        return None
    labels = {
        k: v.replace('\\"', '"').replace("\\\\", "\\") for k, v in _LABEL.findall(m["labels"] or "")
    }
    return m["name"], labels


class StoreCollector(Collector):
    """Reads the state store at each scrape."""

    def __init__(self, store_location: str, outbox: Outbox | None) -> None:
        self.store_location = store_location  # settings.store.location: a file or a URL
        self.outbox = outbox
        self._database: Any = None  # Database or PgDatabase, opened at the first scrape
        self._lock = threading.Lock()  # scrapes may overlap; one connection, one at a time

    def _db(self) -> Any:
        # Read-only use: its own connection (no schema of its own to ensure).
        if self._database is None:
            self._database = open_database(self.store_location)
        return self._database

    def describe(self) -> list[Metric]:
        return []  # names vary with what the store holds; nothing to check up front

    def collect(self) -> Iterator[Metric]:
        out: list[Metric] = []
        with self._lock:
            for part in (self._webhooks, self._alerts, self._gateways, self._uplinks):
                try:
                    out.extend(part())
                except Exception as e:  # a scrape never fails because one part could not be read
                    log.warning("/metrics: %s skipped: %s", part.__name__, e)
        yield from out

    def _webhooks(self) -> Iterable[Metric]:
        if self.outbox is None:
            return
        g = GaugeMetricFamily(
            "envnet_webhook_deliveries",
            "Webhook deliveries in the outbox, by status (pending, delivered, failed, dead)",
            labels=["status"],
        )
        for status, n in self.outbox.counts().items():
            g.add_metric([status], n)
        yield g
        oldest = self.outbox.oldest_pending_at()
        yield GaugeMetricFamily(
            "envnet_webhook_oldest_pending_seconds",
            "Age of the oldest webhook delivery not yet delivered (0 when none)",
            value=max(0.0, time.time() - oldest) if oldest else 0.0,
        )

    def _alerts(self) -> Iterable[Metric]:
        db = self._db()
        if not db.has_table("alerts"):
            return  # the alert engine has not created its table (yet)
        counts = dict.fromkeys(("open", "acknowledged"), 0)
        for r in db.query("SELECT state, COUNT(*) AS n FROM alerts GROUP BY state"):
            counts[str(r["state"])] = r["n"]
        g = GaugeMetricFamily(
            "envnet_alerts", "Alerts in the state store, by state", labels=["state"]
        )
        for state, n in sorted(counts.items()):
            g.add_metric([state], n)
        yield g
        yield GaugeMetricFamily(
            "envnet_alerts_open",
            "Alerts not yet resolved (open or acknowledged)",
            value=sum(n for s, n in counts.items() if s != "resolved"),
        )

    def _gateways(self) -> Iterable[Metric]:
        return self._published(GATEWAYS)

    def _uplinks(self) -> Iterable[Metric]:
        return self._published(UPLINKS)

    def _published(self, pub: Publisher) -> list[Metric]:
        """Every snapshot under `<prefix><id>:metrics`, labelled with its publisher's id."""
        rows = self._db().query(
            "SELECT key, value FROM kv WHERE key LIKE ?", (f"{pub.prefix}%{_METRICS_SUFFIX}",)
        )
        if not rows:
            return []
        families: dict[str, Metric] = {}
        age = GaugeMetricFamily(pub.age, pub.age_help, labels=[pub.label])
        now = time.time()
        for r in rows:
            publisher_id = r["key"][len(pub.prefix) : -len(_METRICS_SUFFIX)]
            try:
                snap = json.loads(r["value"])
                samples = snap.get("metrics") or {}
                at = float(snap.get("at") or 0)
            except (ValueError, AttributeError, TypeError):
                continue
            age.add_metric([publisher_id], max(0.0, now - at))
            for key, value in samples.items():
                parsed = parse_sample(key)
                if parsed is None or not isinstance(value, int | float):
                    continue
                name, labels = parsed
                family = _family_of(name, pub.families)
                metric = families.get(family)
                if metric is None:
                    mtype, doc = pub.families.get(
                        family, ("untyped", f"{pub.label} metric {family}")
                    )
                    metric = families[family] = Metric(family, doc, mtype)
                metric.add_sample(name, {pub.label: publisher_id, **labels}, float(value))
        return [age, *families.values()]


def _family_of(sample_name: str, families: dict[str, tuple[str, str]]) -> str:
    if sample_name in families:
        return sample_name
    for suffix in _SUFFIXES:
        base = sample_name.removesuffix(suffix)
        if base != sample_name and base in families:
            return base
    return sample_name


class InfluxDeleteCollector(Collector):
    """Deletes refused because the InfluxDB cannot delete points (3.x): a reviewer's
    rewrite or a calibration withdrawal that left stored figures as they were."""

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "envnet_influx_delete_refused",
            "InfluxDB deletes refused by this process (InfluxDB 3.x cannot delete points:"
            " stored figures were not rewritten)",
            value=influx_delete_refused(),
        )


def build_registry(store_location: str, outbox: Outbox | None) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(webhook_attempts)
    registry.register(webhook_attempt_seconds)
    registry.register(InfluxDeleteCollector())
    for counter in REVIEW_COUNTERS:
        registry.register(counter)
    registry.register(StoreCollector(store_location, outbox))
    return registry


def install(app: FastAPI, store_location: str, outbox: Outbox | None) -> None:
    registry = build_registry(store_location, outbox)
    app.state.metrics_registry = registry

    @app.get(
        "/metrics",
        tags=["meta"],
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {}}}},
    )
    def prometheus_metrics() -> Response:
        """Prometheus text format: webhook deliveries, alerts, the review worker, and the
        gateways' and HJ 212 uplinks' counters."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

"""The gateway process: MQTT subscriber -> validate -> durable buffer -> ack; writer -> InfluxDB.

Threads: paho's network loop queues messages; the ingest loop validates a batch, commits it to
the buffer in one transaction (points for InfluxDB, the raw messages, the evaluation queue)
and only then acknowledges each message to the broker (QoS 1, manual ack); the writer drains
the buffer to InfluxDB; the alert evaluator (a child process by default, see evaluation.py)
drains the evaluation queue. Kill it at any point: what was not acknowledged is redelivered
by the broker, what was acknowledged is on disk and will be written and evaluated.
"""

from __future__ import annotations

import json
import logging
import queue
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import urlparse

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from envnet.config import Settings
from envnet.core import contract
from envnet.store.state import SqliteStateStore
from gateway import metrics
from gateway.buffer import Buffer, BufferFullError, DeadLetter, EvalItem, RawMessage
from gateway.evaluation import make_evaluator
from gateway.ingest import Ingested, ReceiveStamps, ingest
from gateway.writer import InfluxWriter

log = logging.getLogger("envnet.gateway")

SUBSCRIPTION = f"{contract.TOPIC_ROOT}+/#"
BATCH_MAX = 5000
BATCH_WAIT_S = 0.01


@dataclass(slots=True)
class Inbound:
    topic: str
    payload: bytes
    mid: int
    qos: int
    received_at: float


class Accepted(NamedTuple):
    """A validated message, durable in the buffer, on its way to state and evaluation."""

    station: str
    sub: str
    meta: dict | None
    body: Any
    result: Ingested
    received_at: float
    evaluated: Any  # what the alert evaluator takes: reading rows, or the body as a dict


EVALUATED = ("reading", "status", "health")


def _evaluated(msg: contract.Message, result: Ingested) -> Any:
    if msg.sub == "reading":
        return result.readings
    return msg.body.model_dump()


class Gateway:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.buffer = Buffer(settings.gateway.buffer_path)
        self.store = SqliteStateStore(settings.store.path)
        self.writer = InfluxWriter(
            self.buffer,
            settings.influx,
            settings.gateway.keep_written_hours * 3600,
            settings.gateway.raw_retention_days * 86400,
        )
        self.inbox: queue.Queue[Inbound] = queue.Queue()
        self.stop_event = threading.Event()
        self.connected = threading.Event()
        self.evaluation = make_evaluator(settings)
        self._meta_cache: dict[str, tuple[float, dict | None]] = {}
        self._stamps = ReceiveStamps()
        self.client = self._make_client()

    # -- MQTT ----------------------------------------------------------------------------
    def _make_client(self) -> mqtt.Client:
        m = self.settings.mqtt
        shared = bool(m.shared_group)
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=m.client_id,
            # A persistent session: the broker queues QoS 1 messages while we are away.
            clean_session=None if shared else False,
            protocol=mqtt.MQTTv5 if shared else mqtt.MQTTv311,
            manual_ack=True,
        )
        if m.username:
            client.username_pw_set(m.username, m.password)
        url = urlparse(m.url)
        if url.scheme == "mqtts":
            # Verifies the broker's certificate chain and host name (paho's defaults).
            client.tls_set(
                ca_certs=m.ca_file or None,
                certfile=m.cert_file or None,
                keyfile=m.key_file or None,
            )
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.max_inflight_messages_set(1000)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        client.on_message = self._on_message
        return client

    def _subscription(self) -> str:
        g = self.settings.mqtt.shared_group
        return f"$share/{g}/{SUBSCRIPTION}" if g else SUBSCRIPTION

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("MQTT connect refused: %s", reason_code)
            return
        client.subscribe(self._subscription(), qos=1)
        self.connected.set()
        log.info("connected to %s, subscribed to %s", self.settings.mqtt.url, self._subscription())

    def _on_connect_fail(self, client, userdata) -> None:
        # paho calls this inside its `except OSError` around the (re)connect, so the active
        # exception says why: broker down, or TLS (unknown CA, host name not in the cert).
        log.error("cannot connect to %s: %s; retrying", self.settings.mqtt.url, sys.exc_info()[1])

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        if not self.stop_event.is_set():
            log.warning("MQTT disconnected (%s); reconnecting", reason_code)

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        self.inbox.put(Inbound(msg.topic, msg.payload, msg.mid, msg.qos, time.time()))

    # -- ingest --------------------------------------------------------------------------
    def _meta(self, station: str) -> dict | None:
        """Registry lookups, cached briefly: provisioning a station shows up within seconds."""
        now = time.monotonic()
        hit = self._meta_cache.get(station)
        if hit and hit[0] > now:
            return hit[1]
        meta = self.store.get_station_meta(station)
        self._meta_cache[station] = (now + 5.0, meta)
        return meta

    def _take_batch(self) -> list[Inbound]:
        try:
            first = self.inbox.get(timeout=0.2)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + BATCH_WAIT_S
        while len(batch) < BATCH_MAX:
            try:
                batch.append(self.inbox.get_nowait())
            except queue.Empty:
                if time.monotonic() >= deadline:
                    break
                time.sleep(0.001)
        return batch

    def process(self, batch: list[Inbound]) -> tuple[list[Accepted], int]:
        """Validate and commit a batch. Returns the accepted messages, for state and
        evaluation, and the id of the batch's last item in the durable evaluation queue."""
        points, dead, accepted = [], [], []
        evals: list[EvalItem] = []
        raw: list[RawMessage] = []
        keep_raw = self.settings.gateway.raw_retention_days > 0
        received: Counter[str] = Counter()
        rejected: Counter[str] = Counter()
        out_of_range = 0
        for m in batch:
            try:
                msg = self._decode(m)
            except contract.Rejected as e:
                dead.append(DeadLetter(m.topic, m.payload, e.reason, e.detail))
                rejected[e.reason] += 1
                log.warning("rejected %s: %s", m.topic, e)
                continue
            except Exception as e:  # a validator bug: dead-letter the message, keep going
                log.exception("internal error decoding %s; dead-lettered", m.topic)
                dead.append(DeadLetter(m.topic, m.payload, "internal", repr(e)[:500]))
                rejected["internal"] += 1
                continue
            try:
                meta = self._meta(msg.station)
                result = ingest(msg, meta, m.received_at, self._stamps)
            except Exception as e:  # a bug must dead-letter one message, not stop ingestion
                log.exception("internal error on %s; dead-lettered", m.topic)
                dead.append(DeadLetter(m.topic, m.payload, "internal", repr(e)[:500]))
                rejected["internal"] += 1
                continue
            received[msg.sub] += 1
            if keep_raw:
                raw.append(RawMessage(m.received_at, msg.station, m.topic, m.payload))
            points.extend(result.points)
            out_of_range += result.out_of_range
            a = Accepted(
                msg.station, msg.sub, meta, msg.body, result, m.received_at, _evaluated(msg, result)
            )
            accepted.append(a)
            if a.sub in EVALUATED:
                body = json.dumps(a.evaluated, separators=(",", ":"))
                evals.append(EvalItem(a.sub, a.station, body, a.received_at))
        new, dup, last_eval = self.buffer.store(points, dead, time.time(), raw, evals)
        # Counted once per batch, after the commit: the counters never run ahead of the disk.
        for sub, n in received.items():
            metrics.messages_received.labels(sub=sub).inc(n)
        for reason, n in rejected.items():
            metrics.messages_rejected.labels(reason=reason).inc(n)
        metrics.values_out_of_range.inc(out_of_range)
        n_readings = sum(len(a.result.readings) for a in accepted)
        metrics.readings_duplicate.inc(dup)
        metrics.readings_stored.inc(max(n_readings - dup, 0))
        return accepted, last_eval

    def _decode(self, m: Inbound) -> contract.Message:
        g = self.settings.gateway
        if len(m.payload) > g.max_payload_bytes:
            raise contract.Rejected("too_large", f"{len(m.payload)} bytes > {g.max_payload_bytes}")
        msg = contract.decode(m.topic, m.payload)
        if msg.sub == "reading":
            contract.check_times(msg.body, m.received_at, g.max_future_s, g.max_age_days * 86400)
        return msg

    def _update_state(self, accepted: list[Accepted]) -> None:
        # One state-store transaction per batch, not one per station (nested tx() calls join).
        with self.store.tx():
            self._update_state_tx(accepted)

    def _update_state_tx(self, accepted: list[Accepted]) -> None:
        by_station: dict[str, tuple[dict | None, list[dict]]] = {}
        for a in accepted:
            if a.sub == "reading":
                by_station.setdefault(a.station, (a.meta, []))[1].extend(a.result.readings)
                if a.meta is None:
                    metrics.readings_unregistered.inc(len(a.result.readings))
                continue
            body = a.evaluated
            if a.sub == "status":
                self.store.record_status(a.station, a.body.state, body, a.received_at)
            elif a.sub == "health":
                self.store.record_health(a.station, body, a.received_at)
            elif a.sub in ("ota", "cmd/ack"):  # for the server's OTA rollout worker
                self.store.record_ota_event(a.station, a.sub, body, a.received_at)
        self.store.record_readings_many(
            [(station, rows[0]["kind"], rows) for station, (_, rows) in by_station.items()]
        )

    def _ingest_loop(self) -> None:
        pending: list[Inbound] = []
        while not self.stop_event.is_set() or not self.inbox.empty():
            batch = pending or self._take_batch()
            if not batch:
                continue
            try:
                accepted, last_eval = self.process(batch)
            except BufferFullError as e:
                # Not acknowledged: the broker keeps the messages. Retry until the disk recovers.
                metrics.buffer_errors.inc()
                log.error(
                    "cannot store to the buffer, not acknowledging %d messages: %s", len(batch), e
                )
                pending = batch
                self.stop_event.wait(1.0)
                continue
            pending = []
            for m in batch:
                if m.qos > 0:
                    self.client.ack(m.mid, m.qos)
            try:
                self._update_state(accepted)
            except Exception:
                log.exception("state store update failed; readings are safe in the buffer")
            if last_eval:
                self.evaluation.notify()

    def _publish_counters(self) -> None:
        key = f"gateway:{self.settings.mqtt.client_id}:metrics"
        while not self.stop_event.wait(5.0):
            try:
                self.store.put_kv(key, {"at": time.time(), "metrics": metrics.snapshot()})
            except Exception as e:
                log.warning("could not publish gateway counters: %s", e)

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        url = urlparse(self.settings.mqtt.url)
        port = url.port or (8883 if url.scheme == "mqtts" else 1883)
        self.writer.start()
        self.evaluation.start()
        self._threads = [
            threading.Thread(target=self._ingest_loop, name="ingest", daemon=True),
            threading.Thread(target=self._publish_counters, name="counters", daemon=True),
        ]
        for t in self._threads:
            t.start()
        self.client.connect_async(url.hostname or "127.0.0.1", port, self.settings.mqtt.keepalive)
        self.client.loop_start()

    def stop(self) -> None:
        self.stop_event.set()
        self.client.disconnect()
        self.client.loop_stop()
        for t in self._threads:
            t.join(5)
        self.evaluation.stop()
        self.writer.stop()
        self.writer.join(10)

    def run_forever(self) -> None:
        self.start()
        try:
            while not self.stop_event.wait(1.0):
                pass
        finally:
            self.stop()

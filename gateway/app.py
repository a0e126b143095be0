"""The gateway process: it holds the MQTT session and only makes the bytes durable.

paho's network thread hands each message (topic, payload, mid) to the receive loop, which every
few milliseconds appends the batch to the message log (gateway/log.py: one executemany, one
commit, SQLite WAL) and only then acknowledges each message to the broker (QoS 1, manual ack).
Nothing is decoded here, so paho has this process's GIL almost to itself.

Everything else reads the log in its own process: the log processor (gateway/processor.py:
validation, dead letters, dedupe, station state, the evaluation queue, the buffer's points),
the InfluxDB writer (gateway/writer.py) and the alert evaluator (gateway/evaluation.py).
Kill any of them at any point: what was not acknowledged is redelivered by the broker, what
was acknowledged is in the log and is processed from the committed cursors.
"""

from __future__ import annotations

import collections
import logging
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Callable
from urllib.parse import urlparse

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from envnet.config import Settings
from envnet.core import contract
from gateway import metrics
from gateway.evaluation import make_evaluator
from gateway.log import LogFullError, MessageLog, Received, log_path_for, station_of
from gateway.processor import process_main
from gateway.writer import writer_main

log = logging.getLogger("envnet.gateway")

SUBSCRIPTION = f"{contract.TOPIC_ROOT}+/#"
BATCH_MAX = 5000
BATCH_WAIT_S = 0.005  # how long the receive loop gathers messages into one commit
PROCESSOR_START_WAIT_S = 10.0


class ChildProcess:
    """A child process of the gateway (spawned: the gateway runs threads): the log processor
    (`ready` set once its stores are open) or the InfluxDB writer."""

    def __init__(self, settings: Settings, target: Callable[..., None], name: str) -> None:
        ctx = multiprocessing.get_context("spawn")
        level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
        self.ready = ctx.Event()
        args: tuple = (settings, os.getpid(), level)
        if target is process_main:
            args += (self.ready,)
        self._proc = ctx.Process(target=target, args=args, name=name)

    @property
    def pid(self) -> int | None:
        return self._proc.pid

    def start(self) -> None:
        self._proc.start()

    def wait_ready(self, timeout: float) -> bool:
        """Until the processor has imported and opened its stores (about 0.5 s of CPU on a
        small machine) or has died; False on timeout (the receiver starts anyway)."""
        deadline = time.monotonic() + timeout
        while not self.ready.wait(0.05):
            if not self._proc.is_alive() or time.monotonic() > deadline:
                return False
        return True

    def stop(self, timeout: float = 15.0) -> None:
        if self._proc.is_alive():
            self._proc.terminate()  # SIGTERM: it finishes its batch and exits
            self._proc.join(timeout)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(5)


class Gateway:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        g = settings.gateway
        self.log = MessageLog(log_path_for(g.buffer_path, g.log_path))
        # (topic, payload, mid, qos, received_at); a deque: paho's thread appends, we pop.
        self.inbox: collections.deque[tuple[str, bytes, int, int, float]] = collections.deque()
        self.stop_event = threading.Event()
        self.connected = threading.Event()
        self.processor = ChildProcess(settings, process_main, "envnet-processor")
        self.writer = ChildProcess(settings, writer_main, "envnet-writer")
        self.evaluation = make_evaluator(settings) if g.evaluator == "process" else None
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
        self.inbox.append((msg.topic, bytes(msg.payload), msg.mid, msg.qos, time.time()))

    # -- receive -------------------------------------------------------------------------
    def _take_batch(self) -> list[tuple[str, bytes, int, int, float]]:
        inbox = self.inbox
        if not inbox:
            self.stop_event.wait(BATCH_WAIT_S)
            if not inbox:
                return []
        else:
            time.sleep(BATCH_WAIT_S)  # let a burst gather: one commit for many messages
        batch: list[tuple[str, bytes, int, int, float]] = []
        while inbox and len(batch) < BATCH_MAX:
            batch.append(inbox.popleft())
        return batch

    def receive(self, batch: list[tuple[str, bytes, int, int, float]]) -> int:
        """Append a batch to the log (one commit); returns the last log id."""
        root = contract.TOPIC_ROOT
        return self.log.append(
            [
                Received(at, station_of(topic, root), topic, payload)
                for topic, payload, _, _, at in batch
            ]
        )

    def _receive_loop(self) -> None:
        pending: list[tuple[str, bytes, int, int, float]] = []
        while not self.stop_event.is_set() or self.inbox:
            batch = pending or self._take_batch()
            if not batch:
                continue
            try:
                self.receive(batch)
            except LogFullError as e:
                # Not acknowledged: the broker keeps the messages. Retry until the disk recovers.
                metrics.buffer_errors.inc()
                log.error(
                    "cannot append to the message log, not acknowledging %d messages: %s",
                    len(batch),
                    e,
                )
                pending = batch
                time.sleep(1.0)
                continue
            pending = []
            self._ack(batch)

    def _ack(self, batch: list[tuple[str, bytes, int, int, float]]) -> None:
        """Acknowledge a committed batch. paho wakes its network thread (one byte on a
        socket pair, a syscall) for every packet it queues; for a batch of acknowledgements
        one wake-up at the end is enough (it had cost ~7 % of this process's CPU)."""
        client = self.client
        ack = client.ack
        wake = getattr(client, "_sockpairW", None)
        if wake is None:  # another paho: acknowledge the plain way
            for _, _, mid, qos, _ in batch:
                if qos > 0:
                    ack(mid, qos)
            return
        client._sockpairW = None
        try:
            for _, _, mid, qos, _ in batch:
                if qos > 0:
                    ack(mid, qos)
        finally:
            # paho replaces the pair only when it (re)connects; never put back a stale one.
            if client._sockpairW is None:
                client._sockpairW = wake
            try:
                client._sockpairW.send(b"0")
            except (BlockingIOError, OSError):  # full: the network thread is already awake
                pass

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        url = urlparse(self.settings.mqtt.url)
        port = url.port or (8883 if url.scheme == "mqtts" else 1883)
        self.processor.start()
        self.writer.start()
        if self.evaluation is not None:
            self.evaluation.start()
        self._threads = [threading.Thread(target=self._receive_loop, name="receive", daemon=True)]
        for t in self._threads:
            t.start()
        # Take messages once the processor is up: its start-up would otherwise compete for
        # the CPU with the receiver's first (often largest: a queued backlog) batches. The log
        # is durable either way, so a processor that is slow to start only delays this.
        if not self.processor.wait_ready(PROCESSOR_START_WAIT_S):
            log.warning("the log processor is not ready yet; receiving anyway")
        self.client.connect_async(url.hostname or "127.0.0.1", port, self.settings.mqtt.keepalive)
        self.client.loop_start()

    def stop(self) -> None:
        self.stop_event.set()
        self.client.disconnect()
        self.client.loop_stop()
        for t in self._threads:
            t.join(5)
        if self.evaluation is not None:
            self.evaluation.stop()
        self.processor.stop()
        self.writer.stop()

    def run_forever(self) -> None:
        self.start()
        try:
            while not self.stop_event.wait(1.0):
                pass
        finally:
            self.stop()

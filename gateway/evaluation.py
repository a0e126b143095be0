"""Alert evaluation in the stream, beside ingestion.

The ingest loop commits every accepted message to the buffer's evaluation queue in the same
transaction as its points, before the broker acknowledgement; this worker reads that queue in
order. So a slow evaluation never slows ingestion, alerts keep flowing while InfluxDB is down,
and a gateway killed at any moment leaves nothing unevaluated: the worker's saved state
records how far into the queue it reaches (the cursor), and the next run goes on from there.

Each run of messages is one state-store transaction together with the webhook events it
causes: an alert and its event commit together or not at all. The computed indices (AQI,
water class) go through the durable buffer to InfluxDB like readings.

It runs as a thread of the gateway (`gateway.evaluator = "thread"`) or as its own process
(`"process"`, the default: a second core for evaluation while the first receives). Either way
an exclusive lock on the buffer keeps one evaluator per queue, also while a killed gateway's
orphaned evaluator process is still winding down.
"""

from __future__ import annotations

import fcntl
import json
import logging
import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from envnet.config import Settings
from envnet.domain.alerts import Evaluator
from envnet.domain.alerts.engine import AlertEvent, IndexRecord
from envnet.domain.webhooks import events_for
from envnet.store import webhooks
from envnet.store.alerts import SqliteAlertStore
from envnet.store.influx.line_protocol import line
from envnet.store.state import SqliteStateStore
from gateway.buffer import Buffer, Point

log = logging.getLogger("envnet.gateway.alerts")

TICK_S = 2.0
RUN_MAX = 500  # queued messages evaluated in one state-store transaction
IDLE_POLL_S = 0.02  # how often an idle evaluator process looks at the queue
META_TTL_S = 5.0  # registry changes reach the evaluator within this

Item = tuple[str, str, dict | None, Any, float]  # sub, station, meta, body, received_at


def index_point(rec: IndexRecord) -> Point:
    tags = {"station": rec.station, **rec.tags}
    return Point(
        rec.station,
        rec.measurement,
        None,
        rec.ts,
        line(rec.measurement, tags, rec.fields, round(rec.ts * 1000)),
    )


def _lock_path(settings: Settings) -> Path:
    return Path(f"{settings.gateway.buffer_path}.evaluator.lock")


class EvaluationWorker:
    """Reads the evaluation queue in order and evaluates it; see the module docstring."""

    def __init__(self, settings: Settings, buffer: Buffer | None = None) -> None:
        self.settings = settings
        # Its own connections: reading the queue never waits for the ingest thread's lock.
        self.buffer = buffer or Buffer(settings.gateway.buffer_path)
        self.state = SqliteStateStore(settings.store.path)
        self.alerts = SqliteAlertStore(self.state)
        self.evaluator = Evaluator(settings, self.alerts)
        self.stop_event = threading.Event()
        self.wakeup = threading.Event()
        self.events_emitted = 0
        self._metas: dict[str, tuple[float, dict | None]] = {}
        webhooks.prepare(settings)  # the outbox tables, before emitting inside our transactions
        now = time.time()
        for st in self.state.list_stations():
            if st["registered"]:
                self.evaluator.add_station({"id": st["id"], "kind": st["kind"], **st["meta"]}, now)
        # Every evaluation-queue item up to this id is in the saved evaluator state.
        self.cursor_key = f"gateway:{settings.mqtt.client_id}:eval_cursor"
        self.cursor = int(self.state.get_kv(self.cursor_key) or 0)
        self._applied = self.cursor

    def _meta(self, station: str) -> dict | None:
        now = time.monotonic()
        hit = self._metas.get(station)
        if hit and hit[0] > now:
            return hit[1]
        meta = self.state.get_station_meta(station)
        self._metas[station] = (now + META_TTL_S, meta)
        return meta

    def _evaluate(
        self, sub: str, station: str, meta: dict | None, body: Any, at: float
    ) -> list[AlertEvent]:
        ev = self.evaluator
        if sub == "reading":
            out: list[AlertEvent] = []
            for row in body:
                out += ev.on_reading(meta, row, at, station=station)
            return out
        if sub == "health":
            return ev.on_health(meta, body, at, station=station)
        if sub == "status":
            return ev.on_status(meta, body, at, station=station)
        return []

    def _emit(self, conn, events: list[AlertEvent]) -> None:
        for e in events:
            # the alert's webhook event, and station.offline/online for an offline alert
            for event in events_for(e):
                webhooks.emit(self.settings, event, conn=conn)
            self.events_emitted += 1
            a = e.alert
            if a is not None:
                log.info(
                    "%s %s %s/%s severity=%s value=%s limit=%s",
                    e.type,
                    a.station,
                    a.rule,
                    a.parameter,
                    a.severity,
                    a.last_value,
                    a.limit,
                )
            else:
                log.info("%s %s", e.type, e.episode)

    def _run_one(self, fn, *args) -> None:
        try:
            with self.state.tx() as conn:
                self._emit(conn, fn(*args) or [])
        except Exception:
            log.exception("alert evaluation failed for %s", args[:2])

    def _store_indices(self) -> None:
        records = self.evaluator.drain_results()
        if records:
            self.buffer.store([index_point(r) for r in records], [], time.time())

    def _run_many(self, items: list[Item]) -> None:
        # One commit for the run; each item is a savepoint inside it, so a failing evaluation
        # undoes only its own writes. Events are in the outbox when the commit returns.
        try:
            with self.state.tx():
                for item in items:
                    self._run_one(self._evaluate, *item)
        except Exception:
            log.exception("committing %d alert evaluations failed", len(items))
        self._store_indices()

    def step(self) -> int:
        """Evaluate the next run of queued messages; returns how many there were."""
        rows = self.buffer.eval_backlog(self._applied, 2**62, RUN_MAX)
        if not rows:
            return 0
        items = [
            (e.sub, e.station, self._meta(e.station), json.loads(e.body), e.received_at)
            for _, e in rows
        ]
        self._run_many(items)
        self._applied = rows[-1][0]
        return len(rows)

    def _save(self, fn, *args) -> None:
        """Run fn (tick or flush, which save the evaluator's state) and record, in the same
        transaction, how far into the evaluation queue that state goes; then drop those items.

        After a crash the evaluator's windows come back from this save and the queue holds
        every message after it, so each reading is counted once. An alert opened from one of
        them before the crash is found open, not opened again."""
        try:
            with self.state.tx() as conn:
                self._emit(conn, fn(*args) or [])
                self.state.put_kv(self.cursor_key, self._applied)
            self.cursor = self._applied
            self.buffer.purge_evaluated(self.cursor)
        except Exception:
            log.exception("saving the evaluator's state failed; it is retried at the next tick")
        self._store_indices()

    def run(self) -> None:
        """Hold the queue's lock, then evaluate until stopped."""
        lock_path = _lock_path(self.settings)
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_path, "w") as lock:
            while not self.stop_event.is_set():
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:  # a killed gateway's evaluator is finishing its run
                    self.stop_event.wait(0.1)
            else:
                return
            if self._applied < self.buffer.last_eval_id():
                log.info("evaluating from queue item %d on", self._applied + 1)
            self._loop()

    def _loop(self) -> None:
        next_tick = time.monotonic() + TICK_S
        while not self.stop_event.is_set():
            if not self.step():
                self.wakeup.wait(min(IDLE_POLL_S, max(next_tick - time.monotonic(), 0)))
                self.wakeup.clear()
            if time.monotonic() >= next_tick:
                self._save(self.evaluator.tick, time.time())
                next_tick = time.monotonic() + TICK_S
        self._save(self.evaluator.flush)

    def notify(self) -> None:
        """New items are in the queue (in-process mode: no need to wait for the poll)."""
        self.wakeup.set()

    def stop(self) -> None:
        self.stop_event.set()
        self.wakeup.set()


class EvaluatorThread:
    """The worker as a thread of the gateway process."""

    def __init__(self, settings: Settings) -> None:
        self.worker = EvaluationWorker(settings)
        self._thread = threading.Thread(target=self.worker.run, name="alerts", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def notify(self) -> None:
        self.worker.notify()

    def stop(self, timeout: float = 10.0) -> None:
        self.worker.stop()
        self._thread.join(timeout)


def _child_main(settings: Settings, parent: int, log_level: str) -> None:
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    worker = EvaluationWorker(settings)
    signal.signal(signal.SIGTERM, lambda *_: worker.stop())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the gateway decides when we stop

    def orphan_watch() -> None:  # a SIGKILLed gateway cannot tell us: notice it ourselves
        while not worker.stop_event.wait(0.2):
            if os.getppid() != parent:
                log.warning("the gateway process is gone; the evaluator stops")
                worker.stop()

    threading.Thread(target=orphan_watch, daemon=True).start()
    worker.run()


class EvaluatorProcess:
    """The worker as a child process: evaluation gets a core of its own."""

    def __init__(self, settings: Settings) -> None:
        ctx = multiprocessing.get_context("spawn")  # no fork: the gateway runs threads
        level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
        self._proc = ctx.Process(
            target=_child_main, args=(settings, os.getpid(), level), name="envnet-evaluator"
        )

    def start(self) -> None:
        self._proc.start()

    def notify(self) -> None:
        pass  # the child polls every IDLE_POLL_S

    def stop(self, timeout: float = 10.0) -> None:
        if self._proc.is_alive():
            self._proc.terminate()  # SIGTERM: it saves its state and exits
            self._proc.join(timeout)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(5)


def make_evaluator(settings: Settings) -> EvaluatorThread | EvaluatorProcess:
    if settings.gateway.evaluator == "process":
        return EvaluatorProcess(settings)
    return EvaluatorThread(settings)

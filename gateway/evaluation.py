"""Alert evaluation in the stream, beside ingestion.

Accepted messages are queued here after they are durable and acknowledged, so a slow
evaluation never slows ingestion, and alerts keep flowing while InfluxDB is down. Each
evaluation runs in one state-store transaction together with the webhook events it causes:
an alert and its event commit together or not at all. The computed indices (AQI, water
class) go through the durable buffer to InfluxDB like readings.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

from envnet.alerts import Evaluator
from envnet.alerts.engine import AlertEvent, IndexRecord
from envnet.alertstore import SqliteAlertStore
from envnet.config import Settings
from envnet.statestore import SqliteStateStore
from server import events as outbox_events

from .buffer import Buffer, Point
from .line_protocol import line

log = logging.getLogger("envnet.gateway.alerts")

TICK_S = 2.0


def index_point(rec: IndexRecord) -> Point:
    tags = {"station": rec.station, **rec.tags}
    return Point(
        rec.station,
        rec.measurement,
        None,
        rec.ts,
        line(rec.measurement, tags, rec.fields, round(rec.ts * 1000)),
    )


class EvaluationWorker(threading.Thread):
    def __init__(self, settings: Settings, buffer: Buffer) -> None:
        super().__init__(name="alerts", daemon=True)
        self.settings = settings
        self.buffer = buffer
        self.state = SqliteStateStore(settings.store.path)
        self.alerts = SqliteAlertStore(self.state)
        self.evaluator = Evaluator(settings, self.alerts)
        # Bounded: if evaluation falls behind, ingestion waits (acks slow down) instead of memory
        # growing without limit.
        self.inbox: queue.Queue[tuple[str, str, dict | None, Any, float]] = queue.Queue(100_000)
        self.stop_event = threading.Event()
        self.events_emitted = 0
        outbox_events.prepare(settings)
        now = time.time()
        for st in self.state.list_stations():
            if st["registered"]:
                self.evaluator.add_station({"id": st["id"], "kind": st["kind"], **st["meta"]}, now)

    def submit(
        self, sub: str, station: str, meta: dict | None, body: Any, received_at: float
    ) -> None:
        self.inbox.put((sub, station, meta, body, received_at))

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
            outbox_events.emit_alert_event(self.settings, e, conn=conn)
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
                if a.rule == "offline" and e.type in ("alert.opened", "alert.resolved"):
                    kind = "station.offline" if e.type == "alert.opened" else "station.online"
                    outbox_events.emit_in_transaction(
                        conn,
                        self.settings,
                        kind,
                        {"station": a.station, "at": e.at, "alert_id": a.id},
                        station=a.station,
                        event_id=f"{a.id}:{kind}",
                        created_at=e.at,
                    )
            else:
                log.info("%s %s", e.type, e.episode)

    def _run_one(self, fn, *args) -> None:
        try:
            with self.state.tx() as conn:
                self._emit(conn, fn(*args))
        except Exception:
            log.exception("alert evaluation failed for %s", args[:2])
        records = self.evaluator.drain_results()
        if records:
            self.buffer.store([index_point(r) for r in records], [], time.time())

    def run(self) -> None:
        next_tick = time.monotonic() + TICK_S
        while not self.stop_event.is_set():
            timeout = max(next_tick - time.monotonic(), 0)
            try:
                item = self.inbox.get(timeout=timeout)
                self._run_one(self._evaluate, *item)
            except queue.Empty:
                pass
            if time.monotonic() >= next_tick:
                self._run_one(self.evaluator.tick, time.time())
                next_tick = time.monotonic() + TICK_S
        self.evaluator.flush()

    def stop(self) -> None:
        self.stop_event.set()

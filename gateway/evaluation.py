"""Alert evaluation in the stream, beside ingestion, partitioned by station.

The log processor (gateway/processor.py) commits every accepted reading, status and health
message to the state store's evaluation queue (gateway/evalqueue.py) in the same transaction as
the station state and its log cursor; this worker reads one partition of that queue in order.
So a slow evaluation never slows ingestion, alerts keep flowing while InfluxDB is down, and a
gateway killed at any moment leaves nothing unevaluated: the worker's saved state records how
far into its partition it reaches (the cursor), and the next run goes on from there.

Partitions (`gateway.eval_partitions`, default 1): every station belongs to one, and a
partition is evaluated by one worker at a time, which holds an exclusive lock on
`<store>.eval-<n>.lock`. Each evaluator process claims one free partition when it starts and
takes over any partition left without a worker for PARTITION_TAKEOVER_S (its gateway died), so
N gateways on one shared subscription and one state store evaluate every station in one place.
The city-wide episode (which reads every station's daily AQI) is assessed by partition 0 only,
at the data time every partition has reached.

Each run of messages is one state-store transaction together with the webhook events it
causes: an alert and its event commit together or not at all. The computed indices (AQI,
water class) go through the durable buffer to InfluxDB like readings.

It runs as a thread of the log processor (`gateway.evaluator = "thread"`) or as its own
process (`"process"`, the default).
"""

from __future__ import annotations

import fcntl
import logging
import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import msgspec

from envnet.config import Settings
from envnet.domain.alerts import Evaluator
from envnet.domain.alerts.engine import AlertEvent, IndexRecord
from envnet.domain.webhooks import events_for
from envnet.store import webhooks
from envnet.store.alerts import SqliteAlertStore
from envnet.store.influx.line_protocol import line
from envnet.store.state import SqliteStateStore
from gateway.buffer import Buffer, Point
from gateway.calibrations import CalibrationCache
from gateway.children import die_with_parent
from gateway.evalqueue import EvaluationQueue, partition_of
from gateway.gctune import tune_gc

log = logging.getLogger("envnet.gateway.alerts")

TICK_S = 2.0
RUN_MAX = 500  # queued messages evaluated in one state-store transaction
IDLE_POLL_S = 0.02  # how often an idle evaluator process looks at the queue
META_TTL_S = 5.0  # registry changes reach the evaluator within this
EVALUATOR_NICE = 10
PARTITION_TAKEOVER_S = 10.0  # a partition free this long is taken over by a running evaluator

Item = tuple[str, str, dict | None, Any, float]  # sub, station, meta, body, received_at


_loads = msgspec.json.Decoder().decode  # the queue's JSON bodies (json.loads, faster)


def index_point(rec: IndexRecord) -> Point:
    tags = {"station": rec.station, **rec.tags}
    return Point(
        rec.station,
        rec.measurement,
        None,
        rec.ts,
        line(rec.measurement, tags, rec.fields, round(rec.ts * 1000)),
    )


def _lock_path(settings: Settings, partition: int) -> Path:
    return Path(f"{settings.store.path}.eval-{partition}.lock")


def _data_now_key(partition: int) -> str:
    return f"eval:p{partition}:data_now"


class EvaluationWorker:
    """Reads one partition of the evaluation queue in order and evaluates it; see the module
    docstring."""

    def __init__(
        self, settings: Settings, buffer: Buffer | None = None, partition: int = 0
    ) -> None:
        self.settings = settings
        self.partitions = settings.gateway.eval_partitions
        if not 0 <= partition < self.partitions:
            raise ValueError(f"partition {partition} not in 0..{self.partitions - 1}")
        self.partition = partition
        # Its own connections: reading the queue never waits for the processor's lock.
        self.buffer = buffer or Buffer(settings.gateway.buffer_path)
        self.state = SqliteStateStore(settings.store.location)
        self.queue = EvaluationQueue(self.state, self.partitions)
        self.alerts = SqliteAlertStore(self.state)
        # review.use_corrected: PM corrected by the station's applied calibration before the
        # rules, the alerts saying which values they used (envnet/domain/alerts/corrected.py)
        r = settings.review
        self.calibrations = (
            CalibrationCache(self.state, r.calibration_parameters, r.calibration_refresh_s)
            if r.use_corrected
            else None
        )
        self.evaluator = Evaluator(settings, self.alerts, self.calibrations)
        self.stop_event = threading.Event()
        self.wakeup = threading.Event()
        self.events_emitted = 0
        self._metas: dict[str, tuple[float, dict | None]] = {}
        webhooks.prepare(settings)  # the outbox tables, before emitting inside our transactions
        self._add_stations()
        # Every queue item of this partition up to this id is in the saved evaluator state.
        self.cursor_key = f"eval:p{partition}:cursor"
        self.cursor = int(self.state.get_kv(self.cursor_key) or 0)
        self._applied = self.cursor

    def _add_stations(self) -> None:
        """The registered stations of this partition, so that tick() reports silent ones."""
        now = time.time()
        for st in self.state.list_stations():
            if st["registered"] and partition_of(st["id"], self.partitions) == self.partition:
                self.evaluator.add_station({"id": st["id"], "kind": st["kind"], **st["meta"]}, now)

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
            for row in body:  # one message's rows, or a run of a station's (processor.py)
                out += ev.on_reading(meta, row, row.get("received_at", at), station=station)
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
        """Evaluate the next run of queued items; returns how many readings and other
        messages they held (a reading item holds a run of a station's readings)."""
        rows = self.queue.read(self.partition, self._applied, RUN_MAX)
        if not rows:
            return 0
        items = [
            (e.sub, e.station, self._meta(e.station), _loads(e.body), e.received_at) for e in rows
        ]
        self._run_many(items)
        self._applied = rows[-1].id
        return sum(len(body) if sub == "reading" else 1 for sub, _, _, body, _ in items)

    def _tick(self, now: float) -> list[AlertEvent]:
        """The engine's tick; with several partitions the episode, which reads every
        station's daily AQI, is assessed by partition 0 alone and only as far as every
        partition's data has got (each publishes its data time when it saves)."""
        ev = self.evaluator
        if self.partitions == 1:
            return ev.tick(now)
        own = ev.data_now
        if self.partition != 0:
            ev.data_now = None  # no episode here
        else:
            seen = [self.state.get_kv(_data_now_key(p)) for p in range(self.partitions)]
            if own is not None:
                seen[0] = own
            known = [float(x) for x in seen if x is not None]
            ev.data_now = min(known) if known else None
        try:
            return ev.tick(now)
        finally:
            ev.data_now = own

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
                if self.partitions > 1 and self.evaluator.data_now is not None:
                    self.state.put_kv(_data_now_key(self.partition), self.evaluator.data_now)
            self.cursor = self._applied
            self.queue.purge(self.partition, self.cursor)
        except Exception:
            log.exception("saving the evaluator's state failed; it is retried at the next tick")
        self._store_indices()

    def run(self) -> None:
        """Evaluate until stopped. The caller holds the partition's lock (PartitionWorkers)."""
        # The lock is ours: what another worker saved before it let go is the truth.
        self.cursor = self._applied = int(self.state.get_kv(self.cursor_key) or 0)
        self.evaluator = Evaluator(self.settings, self.alerts, self.calibrations)  # as saved
        self._add_stations()
        if self._applied < self.queue.last_id(self.partition):
            log.info(
                "partition %d: evaluating from queue item %d on", self.partition, self._applied + 1
            )
        self._loop()

    def _loop(self) -> None:
        next_tick = time.monotonic() + TICK_S
        while not self.stop_event.is_set():
            try:
                evaluated = self.step()
            except Exception as e:  # the store unreachable (a database restart): the cursor
                # did not move, so the same items are read again once it answers
                log.warning(
                    "partition %d: reading the queue failed (%s); retrying", self.partition, e
                )
                self.stop_event.wait(1.0)
                continue
            if not evaluated:
                self.wakeup.wait(min(IDLE_POLL_S, max(next_tick - time.monotonic(), 0)))
                self.wakeup.clear()
            if time.monotonic() >= next_tick:
                self._save(self._tick, time.time())
                next_tick = time.monotonic() + TICK_S
        self._save(self.evaluator.flush)

    def notify(self) -> None:
        """New items are in the queue (in-process mode: no need to wait for the poll)."""
        self.wakeup.set()

    def stop(self) -> None:
        self.stop_event.set()
        self.wakeup.set()


def _try_lock(path: Path):
    """An open file holding an exclusive lock on `path`, or None when another holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    f = open(path, "w")  # noqa: SIM115 (held for as long as the partition is ours)
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        return None
    return f


def _try_partition(settings: Settings, partition: int):
    """The partition's lock, or None when another evaluator holds it: a file lock beside the
    SQLite store; with the store on PostgreSQL (several machines) a session advisory lock on
    a connection of its own, which PostgreSQL drops when the process dies."""
    if settings.store.url:
        from envnet.store.postgres import try_session_lock

        return try_session_lock(settings.store.url, "eval-partition", partition)
    return _try_lock(_lock_path(settings, partition))


class PartitionWorkers:
    """The partitions this process evaluates: one claimed at start, more taken over when
    they stay without a worker (their gateway is gone); one worker thread each."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.partitions = settings.gateway.eval_partitions
        self.workers: dict[int, EvaluationWorker] = {}
        self.locks: dict[int, Any] = {}
        self.stop_event = threading.Event()
        self._free_since: dict[int, float] = {}
        self._threads: list[threading.Thread] = []
        self._running: dict[int, threading.Thread] = {}  # partition -> its worker's thread

    def _claim(self, partition: int, lock) -> None:
        worker = EvaluationWorker(self.settings, partition=partition)
        self.workers[partition] = worker
        self.locks[partition] = lock

        def run() -> None:
            with lock:  # held by this process until the worker stops
                worker.run()

        t = threading.Thread(target=run, name=f"alerts-p{partition}", daemon=True)
        self._threads.append(t)
        self._running[partition] = t
        t.start()
        log.info("evaluating partition %d of %d", partition, self.partitions)

    def _claim_first_free(self) -> bool:
        for p in range(self.partitions):
            lock = _try_partition(self.settings, p)
            if lock is not None:
                self._claim(p, lock)
                return True
        return False

    def _look_for_orphans(self) -> None:
        now = time.monotonic()
        for p in range(self.partitions):
            if p in self.workers:
                continue
            lock = _try_partition(self.settings, p)
            if lock is None:
                self._free_since.pop(p, None)
                continue
            since = self._free_since.setdefault(p, now)
            if now - since >= PARTITION_TAKEOVER_S:
                log.warning(
                    "partition %d has had no evaluator for %.0f s: taking it", p, now - since
                )
                self._claim(p, lock)
            else:
                lock.close()

    def run(self) -> None:
        while not self.stop_event.is_set() and not self._claim_first_free():
            self.stop_event.wait(0.5)  # all taken: a hot standby, checking for orphans
            self._look_for_orphans()
            if self.workers:
                break
        while not self.stop_event.wait(1.0):
            try:
                self._drop_lost()
                self._look_for_orphans()
            except Exception as e:  # the database unreachable (restarting): look again later
                log.warning("looking for free partitions failed: %s", e)

    def _drop_lost(self) -> None:
        """Stop the workers whose partition lock is gone (PostgreSQL restarted: its sessions
        and their advisory locks ended); the partitions are then claimed again like any free
        one, by this process or another, so that a partition never has two evaluators."""
        for p, lock in list(self.locks.items()):
            if not self._running[p].is_alive():  # died of an error it did not expect: its
                # `with lock` let the partition go; claimed again like any free one
                log.error("partition %d: its evaluator stopped unexpectedly; freeing it", p)
                del self.locks[p]
                self.workers.pop(p)
                continue
            if getattr(lock, "held", None) is None or lock.held():
                continue  # a file lock (SQLite) is held for as long as the file is open
            log.warning("partition %d: its lock was lost (database restart?); stopping", p)
            del self.locks[p]
            self.workers.pop(p).stop()

    def notify(self) -> None:
        for w in self.workers.values():
            w.notify()

    def stop(self, timeout: float = 10.0) -> None:
        self.stop_event.set()
        for w in list(self.workers.values()):
            w.stop()
        for t in self._threads:
            t.join(timeout)


class EvaluatorThread:
    """The workers as threads of the log processor's process."""

    def __init__(self, settings: Settings) -> None:
        self.workers = PartitionWorkers(settings)
        self._thread = threading.Thread(target=self.workers.run, name="alerts", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def notify(self) -> None:
        self.workers.notify()

    def stop(self, timeout: float = 10.0) -> None:
        self.workers.stop(timeout)
        self._thread.join(timeout)


def _child_main(settings: Settings, parent: int, log_level: str) -> None:
    die_with_parent(parent)
    # Below the receiver and the processor: alerts may lag a burst by seconds, the path to
    # durability and to InfluxDB should not wait for them.
    os.nice(EVALUATOR_NICE)
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    workers = PartitionWorkers(settings)
    signal.signal(signal.SIGTERM, lambda *_: workers.stop_event.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the gateway decides when we stop

    def orphan_watch() -> None:  # a SIGKILLed gateway cannot tell us: notice it ourselves
        while not workers.stop_event.wait(0.2):
            if os.getppid() != parent:
                log.warning("the gateway process is gone; the evaluator stops")
                workers.stop_event.set()

    threading.Thread(target=orphan_watch, daemon=True).start()
    tune_gc()
    workers.run()
    workers.stop()  # each worker saves its state (flush) and lets its partition go


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

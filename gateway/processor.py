"""The log processor: everything the gateway does with a message after it is durable.

It reads the message log (gateway/log.py) in id order and, per batch:

1. decodes and validates each message (`contract.decode_fast`: msgspec for the common
   single reading, pydantic's exact path for everything else, so a dead letter keeps its
   reason and detail), checks sizes and timestamps, builds InfluxDB points;
2. commits to the buffer, in one transaction, the points (deduplicated by identity: the
   unique index on station, measurement, seq, ts), the dead letters and its buffer cursor;
   the InfluxDB writer (its own process, gateway/writer.py) drains the points;
3. commits to the state store, in one transaction, the station state, the partitioned
   evaluation queue (gateway/evalqueue.py) and its state cursor.

Each side has its own cursor, committed with its own output, so a processor killed between
the two commits redoes only the side that did not commit: every message is counted, stored
and queued for evaluation exactly once. Behind both cursors (and the retention) the log is
trimmed. It runs as a child process of `envnet gateway` (process_main), so decoding never
competes with the MQTT session for the receiver's GIL.
"""

from __future__ import annotations

import fcntl
import logging
import queue
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from envnet.config import Settings
from envnet.core import contract
from envnet.store.state import SqliteStateStore
from gateway import metrics
from gateway.buffer import Buffer, BufferFullError, DeadLetter, Point
from gateway.children import die_with_parent, watch_parent
from gateway.evalqueue import EvaluationQueue
from gateway.gctune import tune_gc
from gateway.ingest import Ingested, ReceiveStamps, ingest
from gateway.log import Entry, MessageLog, log_path_for
from gateway.writer import counters_key

log = logging.getLogger("envnet.gateway.processor")

BATCH_MAX = 5000
IDLE_POLL_S = 0.005
HOUSEKEEPING_S = 1.0
EVALUATED = ("reading", "status", "health")
CONSUMER = "processor"
META_TTL_S = 5.0  # how long a registry lookup is trusted (a new station shows up within it)
# The evaluation queue's bodies: compact JSON, as json.dumps(separators=(",", ":")) writes it
# (NaN cannot occur: the contract refuses it), several times faster.
_dumps = msgspec.json.Encoder().encode


@dataclass(slots=True)
class Decoded:
    """One log entry after decoding: accepted (msg, result) or dead (dead)."""

    entry: Entry
    msg: contract.Message | None = None
    meta: dict | None = None
    result: Ingested | None = None
    dead: DeadLetter | None = None
    evaluated: Any = None  # what the alert evaluator takes: reading rows, or the body as a dict


class LogProcessor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        g = settings.gateway
        self.log = MessageLog(log_path_for(g.buffer_path, g.log_path))
        self.log.register_consumer(CONSUMER)
        self.uid = self.log.uid
        self.buffer = Buffer(g.buffer_path)
        self.store = SqliteStateStore(settings.store.location)
        # Registry lookups on a connection of their own: the state side's transaction (which
        # may wait for the evaluator's) never holds up decoding.
        self.registry = SqliteStateStore(settings.store.location)
        self.queue = EvaluationQueue(self.store, g.eval_partitions)
        self.state_key = f"gateway:log:{self.uid}:cursor"
        self.cur_buffer = self.buffer.log_position(self.uid)
        self.cur_state = int(self.store.get_kv(self.state_key) or 0)
        self._meta_cache: dict[str, tuple[float, dict | None]] = {}
        self._stamps = ReceiveStamps()
        self.stop_event = threading.Event()
        self._next_housekeeping = 0.0
        self._move_legacy_evals()

    # -- decoding --------------------------------------------------------------------------
    def _meta(self, station: str) -> dict | None:
        """Registry lookups, cached briefly: provisioning a station shows up within seconds."""
        now = time.monotonic()
        hit = self._meta_cache.get(station)
        if hit and hit[0] > now:
            return hit[1]
        meta = self.registry.get_station_meta(station)
        self._meta_cache[station] = (now + META_TTL_S, meta)
        return meta

    def _prefetch_meta(self, entries: list[Entry]) -> None:
        """One registry query for every station of a batch whose cached entry has expired
        (one query per station cost ~8 µs a reading with 2,000 stations)."""
        now = time.monotonic()
        cache = self._meta_cache
        stale = {e.station for e in entries if (h := cache.get(e.station)) is None or h[0] <= now}
        if not stale:
            return
        found = self.registry.get_station_metas(sorted(stale))
        until = now + META_TTL_S
        for station in stale:
            cache[station] = (until, found.get(station))

    def decode_batch(self, entries: list[Entry]) -> list[Decoded]:
        self._prefetch_meta(entries)
        return [self.decode(e) for e in entries]

    def _validate(self, e: Entry) -> contract.Message:
        g = self.settings.gateway
        if len(e.payload) > g.max_payload_bytes:
            raise contract.Rejected("too_large", f"{len(e.payload)} bytes > {g.max_payload_bytes}")
        msg = contract.decode_fast(e.topic, e.payload)
        if msg.sub == "reading":
            contract.check_times(msg.body, e.received_at, g.max_future_s, g.max_age_days * 86400)
        return msg

    def decode(self, e: Entry) -> Decoded:
        try:
            msg = self._validate(e)
        except contract.Rejected as r:
            log.warning("rejected %s: %s", e.topic, r)
            return Decoded(e, dead=DeadLetter(e.topic, e.payload, r.reason, r.detail))
        except Exception as x:  # a validator bug: dead-letter the message, keep going
            log.exception("internal error decoding %s; dead-lettered", e.topic)
            return Decoded(e, dead=DeadLetter(e.topic, e.payload, "internal", repr(x)[:500]))
        try:
            meta = self._meta(msg.station)
            result = ingest(msg, meta, e.received_at, self._stamps)
            evaluated = result.readings if msg.sub == "reading" else msg.body.model_dump()
        except Exception as x:  # a bug must dead-letter one message, not stop ingestion
            log.exception("internal error on %s; dead-lettered", e.topic)
            return Decoded(e, dead=DeadLetter(e.topic, e.payload, "internal", repr(x)[:500]))
        return Decoded(e, msg, meta, result, evaluated=evaluated)

    # -- the two outputs -------------------------------------------------------------------
    def _commit_buffer(self, batch: list[Decoded]) -> None:
        points: list[Point] = []
        dead: list[DeadLetter] = []
        received: Counter[str] = Counter()
        rejected: Counter[str] = Counter()
        out_of_range = n_readings = 0
        for d in batch:
            if d.dead is not None:
                dead.append(d.dead)
                rejected[d.dead.reason] += 1
                continue
            assert d.msg is not None and d.result is not None
            received[d.msg.sub] += 1
            points.extend(d.result.points)
            out_of_range += d.result.out_of_range
            n_readings += len(d.result.readings)
        last = batch[-1].entry.id
        _, dup, _ = self.buffer.store(points, dead, time.time(), log_cursor=(self.uid, last))
        self.cur_buffer = last
        # Counted once per batch, after the commit: the counters never run ahead of the disk.
        for sub, n in received.items():
            metrics.messages_received.labels(sub=sub).inc(n)
        for reason, n in rejected.items():
            metrics.messages_rejected.labels(reason=reason).inc(n)
        metrics.values_out_of_range.inc(out_of_range)
        metrics.readings_duplicate.inc(dup)
        metrics.readings_stored.inc(max(n_readings - dup, 0))

    def _commit_state(self, batch: list[Decoded]) -> None:
        by_station: dict[str, tuple[str, list[dict]]] = {}
        # One evaluation item per station and run of readings (not per message): the rows of
        # a station's consecutive reading messages go into one body, in log order. A status
        # or health message of that station ends its run, so the evaluator still sees each
        # station's messages in the order they were logged (each row keeps its received_at).
        evals: list[tuple[str, str, Any, float]] = []
        runs: dict[str, list[dict]] = {}
        unregistered = 0
        with self.store.tx():
            for d in batch:
                if d.msg is None or d.result is None:
                    continue
                station, sub, at = d.msg.station, d.msg.sub, d.entry.received_at
                if sub == "reading":
                    rows = d.result.readings
                    run = runs.get(station)
                    if run is None:
                        run = runs[station] = []
                        evals.append((sub, station, run, at))
                    run.extend(rows)
                    by_station.setdefault(station, (rows[0]["kind"], []))[1].extend(rows)
                    if d.meta is None:
                        unregistered += len(rows)
                    continue
                if sub in EVALUATED:
                    runs.pop(station, None)
                    evals.append((sub, station, d.evaluated, at))
                if sub == "status":
                    self.store.record_status(station, d.msg.body.state, d.evaluated, at)
                elif sub == "health":
                    self.store.record_health(station, d.evaluated, at)
                elif sub in ("ota", "cmd/ack"):  # for the server's OTA rollout worker
                    self.store.record_ota_event(station, sub, d.evaluated, at)
            self.store.record_readings_many([(s, k, rows) for s, (k, rows) in by_station.items()])
            self.queue.add((sub, st, _dumps(body).decode(), at) for sub, st, body, at in evals)
            self.store.put_kv(self.state_key, batch[-1].entry.id)
        self.cur_state = batch[-1].entry.id
        metrics.readings_unregistered.inc(unregistered)

    def step(self) -> int:
        """Process the next batch of the log; returns how many entries it had."""
        start = min(self.cur_buffer, self.cur_state)
        entries = self.log.read(start, BATCH_MAX)
        if not entries:
            return 0
        decoded = self.decode_batch(entries)
        # InfluxDB first: it is what a dashboard waits for. Each side skips what it has.
        fresh = [d for d in decoded if d.entry.id > self.cur_buffer]
        if fresh:
            self._commit_buffer(fresh)
        fresh = [d for d in decoded if d.entry.id > self.cur_state]
        if fresh:
            self._commit_state(fresh)
        return len(entries)

    # -- upkeep ----------------------------------------------------------------------------
    def _move_legacy_evals(self) -> None:
        """Evaluation items an older release left in the buffer (its own queue) go to the
        front of the state store's queue once, marked moved in the same transaction."""
        key = f"gateway:{self.settings.mqtt.client_id}:eval_cursor"
        moved_key = f"{key}:moved"
        after = max(int(self.store.get_kv(key) or 0), int(self.store.get_kv(moved_key) or 0))
        rows = self.buffer.legacy_evals(after)
        if not rows:
            return
        with self.store.tx():
            self.queue.add((e.sub, e.station, e.body, e.received_at) for _, e in rows)
            self.store.put_kv(moved_key, rows[-1][0])
        self.buffer.purge_evaluated(rows[-1][0])
        log.info("moved %d evaluation items of an older release to the shared queue", len(rows))

    def housekeeping(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now < self._next_housekeeping:
            return
        self._next_housekeeping = now + HOUSEKEEPING_S
        try:
            self.log.set_cursor(CONSUMER, min(self.cur_buffer, self.cur_state))
            self.log.trim(self.settings.gateway.raw_retention_days * 86400)
        except Exception as e:  # the log's disk full: trimming is what frees it, retry
            log.warning("could not trim the message log: %s", e)

    def run(self) -> None:
        """Hold the log's processor lock (a killed gateway's processor may still be finishing
        a batch), read the committed cursors, then process until stopped."""
        lock_path = Path(f"{self.log.path}.processor.lock")
        with open(lock_path, "w") as lock:
            while not self.stop_event.is_set():
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    self.stop_event.wait(0.05)
            else:
                return
            self.cur_buffer = self.buffer.log_position(self.uid)
            self.cur_state = int(self.store.get_kv(self.state_key) or 0)
            self._loop()

    def _catch_up(self) -> None:
        """Until both sides are at the same place in the log (after a crash between the two
        commits), one step at a time."""
        while self.cur_state != self.cur_buffer and not self.stop_event.is_set():
            try:
                self.step()
            except Exception:
                log.exception("processing the message log failed; retrying")
                self.stop_event.wait(1.0)

    def _state_side(self, batches: queue.Queue) -> None:
        """The state side, a batch behind the buffer side: a state store busy with the
        evaluator's transaction delays station state, never InfluxDB."""
        done = False
        while not done:
            batch = batches.get()
            if batch is None:
                return
            # Everything that queued up while the last commit waited: one transaction.
            while len(batch) < 4 * BATCH_MAX:
                try:
                    more = batches.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    done = True
                    break
                batch = batch + more
            while True:
                try:
                    self._commit_state(batch)
                    break
                except Exception:
                    log.exception("state store update failed; retrying")
                    time.sleep(1.0)

    def _loop(self) -> None:
        self._catch_up()
        # Bounded in batches (each up to BATCH_MAX): if the state store stays locked, decoding
        # waits rather than holding the log in memory.
        batches: queue.Queue = queue.Queue(maxsize=200)
        state_thread = threading.Thread(target=self._state_side, args=(batches,), name="state")
        state_thread.start()
        try:
            self._buffer_loop(batches)
        finally:
            batches.put(None)
            state_thread.join()

    def _buffer_loop(self, batches: queue.Queue) -> None:
        while not self.stop_event.is_set():
            try:
                entries = self.log.read(self.cur_buffer, BATCH_MAX)
                if entries:
                    decoded = self.decode_batch(entries)
                    self._commit_buffer(decoded)
                    batches.put(decoded)
                n = len(entries)
            except BufferFullError as e:
                metrics.buffer_errors.inc()
                log.error("cannot store to the buffer, retrying: %s", e)
                self.stop_event.wait(1.0)
                continue
            except Exception:  # state store busy or a bug: the cursors did not move; retry
                log.exception("processing the message log failed; retrying")
                self.stop_event.wait(1.0)
                continue
            self.housekeeping()
            if n < BATCH_MAX:
                self.stop_event.wait(IDLE_POLL_S)
        self.housekeeping(force=True)

    def publish_counters(self) -> None:
        """This process's counters plus the writer process's (gateway/writer.py), under the
        key the server's /metrics reads. Each metric is counted in one process only (zero in
        the other), so the sum is the gateway's figure."""
        client_id = self.settings.mqtt.client_id
        key = f"gateway:{client_id}:metrics"
        while not self.stop_event.wait(5.0):
            try:
                snap = metrics.snapshot()
                for name, value in (self.store.get_kv(counters_key(client_id)) or {}).items():
                    snap[name] = snap.get(name, 0.0) + value
                self.store.put_kv(key, {"at": time.time(), "metrics": snap})
            except Exception as e:
                log.warning("could not publish gateway counters: %s", e)


def process_main(settings: Settings, parent: int, log_level: str, ready: Any = None) -> None:
    """The processor child process: the loop and, with `gateway.evaluator = "thread"`, the
    alert evaluator (the InfluxDB writer is a process of its own, gateway/writer.py). `ready`
    (a multiprocessing Event) is set once the stores are open."""
    die_with_parent(parent)
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from gateway.evaluation import EvaluatorThread

    proc = LogProcessor(settings)
    evaluator = EvaluatorThread(settings) if settings.gateway.evaluator == "thread" else None
    signal.signal(signal.SIGTERM, lambda *_: proc.stop_event.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the gateway decides when we stop
    watch_parent(parent, proc.stop_event.set)
    if ready is not None:  # the receiver subscribes now (gateway/app.py)
        ready.set()
    if evaluator:
        evaluator.start()
    threading.Thread(target=proc.publish_counters, name="counters", daemon=True).start()
    tune_gc()
    try:
        proc.run()
    finally:
        if evaluator:
            evaluator.stop()

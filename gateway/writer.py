"""Moves buffered points to InfluxDB in batches, in order, until each one is written or refused.

InfluxDB down: retry with exponential backoff, the buffer grows, nothing is dropped. InfluxDB
refusing a batch (HTTP 400, e.g. a field type conflict): bisect to find the offending points,
dead-letter just those, and keep the rest flowing.
"""

from __future__ import annotations

import logging
import signal
import threading
import time

from envnet.config import InfluxSettings, Settings
from envnet.store.influx.sink import InfluxWriteError, V1Sink, V2Sink, make_sink
from envnet.store.state import SqliteStateStore
from gateway import metrics
from gateway.buffer import Buffer
from gateway.children import die_with_parent, watch_parent
from gateway.gctune import tune_gc

log = logging.getLogger("envnet.gateway.writer")

MAX_BACKOFF_S = 30.0
COUNTERS_S = 5.0


def counters_key(client_id: str) -> str:
    """Where the writer process leaves its counters for the processor, which publishes them
    with its own under `gateway:<client_id>:metrics` (the key the server reads)."""
    return f"gateway:{client_id}:writer-counters"


class InfluxWriter(threading.Thread):
    def __init__(
        self,
        buffer: Buffer,
        settings: InfluxSettings,
        keep_written_s: float,
        keep_raw_s: float = 0.0,
    ) -> None:
        super().__init__(name="influx-writer", daemon=True)
        self.buffer = buffer
        self.settings = settings
        self.keep_written_s = keep_written_s
        self.keep_raw_s = keep_raw_s
        self._next_gauge = 0.0
        self.stop_event = threading.Event()
        self.sink: V1Sink | V2Sink | None = None
        self.healthy = True
        self._next_purge = 0.0

    def _ensure_sink(self) -> None:
        if self.sink is None:
            self.sink = sink = make_sink(self.settings)
            try:
                sink.ensure_database()
            except Exception as e:  # reported; the writes themselves will say more
                log.warning("could not ensure database %s: %s", self.settings.database, e)

    def _write(self, batch: list[tuple[int, str]]) -> None:
        """Write one batch; on a non-retryable refusal, bisect down to the bad points."""
        t0 = time.perf_counter()
        assert self.sink is not None  # _ensure_sink() ran first
        try:
            self.sink.write([text for _, text in batch])
        except InfluxWriteError as e:
            if e.retryable:
                raise
            if len(batch) == 1:
                metrics.influx_points_quarantined.inc()
                log.error("InfluxDB refused point %d for good (%s); dead-lettered", batch[0][0], e)
                self.buffer.quarantine(batch[0][0], "influx_rejected", str(e))
                return
            mid = len(batch) // 2
            self._write(batch[:mid])
            self._write(batch[mid:])
            return
        metrics.influx_write_seconds.observe(time.perf_counter() - t0)
        metrics.influx_points_written.inc(len(batch))
        self.buffer.mark_written([i for i, _ in batch])

    def step(self) -> int:
        """Write at most one batch; returns how many points were taken from the buffer."""
        self._ensure_sink()
        batch = self.buffer.pending(self.settings.batch_size)
        if batch:
            self._write(batch)
        return len(batch)

    def run(self) -> None:
        backoff = 0.5
        while not self.stop_event.is_set():
            try:
                n = self.step()
                if not self.healthy:
                    log.info("InfluxDB writes succeed again")
                self.healthy, backoff = True, 0.5
            except (InfluxWriteError, OSError) as e:
                metrics.influx_write_errors.labels(kind="retryable").inc()
                if self.healthy:
                    log.error("InfluxDB write failed, buffering and retrying: %s", e)
                self.healthy = False
                self.stop_event.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                continue
            except Exception:  # a bug must not stop the writer; it is logged and retried
                log.exception("unexpected error in the InfluxDB writer")
                self.stop_event.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                continue
            self._housekeeping()
            if n < self.settings.batch_size:
                self.stop_event.wait(self.settings.flush_interval_s)

    def _housekeeping(self) -> None:
        now = time.monotonic()
        if now >= self._next_purge:
            self._next_purge = now + 60
            self.buffer.purge_written(self.keep_written_s)
            self.buffer.purge_raw(self.keep_raw_s)
        # count(*) walks the pending index: once a second, not after every batch.
        if now >= self._next_gauge:
            self._next_gauge = now + 1.0
            metrics.buffer_pending.set(self.buffer.pending_count())

    def stop(self) -> None:
        self.stop_event.set()


def writer_main(settings: Settings, parent: int, log_level: str) -> None:
    """The writer as a child process of `envnet gateway`: InfluxDB's HTTP round trips and the
    buffer's pending/written bookkeeping get a GIL (and a core) of their own, beside the log
    processor's decoding. It only reads and marks the buffer's points: killed anywhere, the
    next one writes again what was not marked written (InfluxDB writes are idempotent)."""
    die_with_parent(parent)
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    g = settings.gateway
    # raw_retention_days still purges the pre-log raw_messages table of an upgraded buffer.
    writer = InfluxWriter(
        Buffer(g.buffer_path),
        settings.influx,
        g.keep_written_hours * 3600,
        g.raw_retention_days * 86400,
    )
    signal.signal(signal.SIGTERM, lambda *_: writer.stop())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the gateway decides when we stop
    watch_parent(parent, writer.stop)
    store = SqliteStateStore(settings.store.location)
    key = counters_key(settings.mqtt.client_id)

    def publish_counters() -> None:
        while not writer.stop_event.wait(COUNTERS_S):
            try:
                store.put_kv(key, metrics.snapshot())
            except Exception as e:
                log.warning("could not publish the writer's counters: %s", e)

    threading.Thread(target=publish_counters, name="counters", daemon=True).start()
    tune_gc()
    writer.run()  # in this thread, until stopped

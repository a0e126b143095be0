"""HJ 212 corrections: hour (2061) and day (2031) data re-sent after a review change.

A reviewer's invalidation or restore (server) leaves a row in the state store's
`hj212_corrections` (envnet/store/hj212_corrections.py), written in the change's own
transaction. The uplink's ingest thread calls `Corrections.run()` between messages; for each
pending row it

1. reads the station's readings of each touched CST day from InfluxDB (the uplink's own
   samples are kept two days only) and the station's active invalidations from the state store,
2. flags the invalidated values with the reason's HJ 212 flag (envnet/domain/hj212/review.py)
   and aggregates them exactly as the uplink does when a window closes, so a restore re-sends
   the packet first sent, value for value,
3. queues a 2061 for each touched hour and a 2031 for each touched day *that the uplink has
   already closed* (its `marks`; later windows close with the invalidations applied already),
   for every platform that lists the station and sends that CN: the same CN and DataTime
   with the reviewed values, the platform's usual way of taking a correction,
4. in the same outbox transaction, records the correction id in `corrections_queued`; then
   marks the state row done.

Exactly once across a kill: the packets and the `corrections_queued` row commit together, so
after a crash between (4)'s two commits the row is still pending in the state store, is found
in `corrections_queued` and is only marked done: nothing is queued twice. Delivery is then the
outbox's (ack, retry, resend from the first unacknowledged packet).

Run in the ingest thread on purpose: window closing and corrections never interleave, so an
hour closed by ingest before an invalidation committed is always seen closed by the
correction that follows it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from envnet.config import Settings, UplinkPlatform
from envnet.core.calendar import CST, DAY, HOUR, day_start_at
from envnet.core.contract import KINDS
from envnet.domain.hj212.codec import data_time
from envnet.domain.hj212.review import Sample, Span, reviewed
from envnet.store import hj212_corrections, review
from envnet.store.database import Database
from envnet.store.hj212_corrections import Correction
from envnet.store.influx.readings import station_readings
from envnet.store.influx.reports import InfluxQL, ReportQueryError
from envnet.store.state import SqliteStateStore

log = logging.getLogger("envnet.uplink")

CHECK_EVERY_S = 2.0  # how often the ingest thread looks for pending corrections
RETRY_MAX_S = 60.0  # backoff when InfluxDB or the state store does not answer
CORRECTED_CNS = ("2061", "2031")

# The uplink file's table of queued corrections (registered by gateway/uplink.py, whose
# registry the file's owners share; the table is this module's).
SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS corrections_queued (
  correction_id INTEGER PRIMARY KEY, station TEXT NOT NULL, queued_at REAL NOT NULL,
  packets INTEGER NOT NULL);
"""

Aggregate = Callable[..., dict[str, str]]  # gateway.uplink.aggregate(rows, kind, span_s, day)
Queue = Callable[[list[UplinkPlatform], str, str, str, dict[str, str]], int]


class Corrections:
    def __init__(
        self,
        settings: Settings,
        outbox: Database,
        platforms_for: Callable[[str], list[UplinkPlatform]],
        queue: Queue,
        aggregate: Aggregate,
    ) -> None:
        self.settings = settings
        self.outbox = outbox
        self.platforms_for = platforms_for
        self.queue = queue
        self.aggregate = aggregate
        self.client_id = settings.uplink.client_id
        self._state: SqliteStateStore | None = None
        self._state_lock = threading.Lock()  # the ingest and counter threads both open it
        self._influx: InfluxQL | None = None
        self.next_run = 0.0
        self.delay = CHECK_EVERY_S
        # Counted since start: corrections done, packets queued for them, failed passes (the
        # uplink's counters, gateway/uplink_metrics.py); the durable totals are in
        # corrections_queued (`totals()`).
        self.counts: Counter[str] = Counter()

    # -- the stores -------------------------------------------------------------------------
    def state(self) -> SqliteStateStore | None:
        """The state store, once the server has made it (an uplink without a server has no
        reviews to apply: it does not create the file)."""
        store = self.settings.store
        with self._state_lock:
            if self._state is None and (store.url or Path(store.path).exists()):
                self._state = SqliteStateStore(store.location)  # a file, or PostgreSQL's URL
            return self._state

    def influx(self) -> InfluxQL:
        if self._influx is None:
            self._influx = InfluxQL(self.settings.influx)
        return self._influx

    def close(self) -> None:
        if self._influx is not None:
            self._influx.close()
        if self._state is not None:
            self._state.close()

    def spans(self, station: str, start: float, end: float) -> list[Span]:
        """The station's active invalidations overlapping [start, end)."""
        state = self.state()
        if state is None:
            return []
        rows = review.search(
            state, station=station, active=True, since=start, until=end, limit=1_000_000
        )
        return [Span(i.hour_start, i.hour_end, i.parameters, i.reason) for i in rows]

    def totals(self) -> tuple[int, int]:
        """(corrections queued, packets they queued) over the outbox file's life."""
        n, p = self.outbox.query(
            "SELECT count(*), coalesce(sum(packets), 0) FROM corrections_queued"
        )[0]
        return int(n), int(p)

    # -- the pass ---------------------------------------------------------------------------
    def run(self, now: float | None = None) -> int:
        """Queue the pending corrections when due; returns how many were handled. Failures
        (InfluxDB down) are logged and retried with backoff; nothing is marked done then."""
        now = time.monotonic() if now is None else now
        if now < self.next_run:
            return 0
        try:
            n = self.run_once()
            self.delay = CHECK_EVERY_S
        except (ReportQueryError, OSError) as e:
            self.delay = min(max(self.delay * 2, CHECK_EVERY_S), RETRY_MAX_S)
            self.counts["failures"] += 1
            log.warning("HJ 212 corrections not queued yet (retry in %.0f s): %s", self.delay, e)
            n = 0
        self.next_run = now + self.delay
        return n

    def run_once(self) -> int:
        state = self.state()
        if state is None:
            return 0
        done = 0
        for c in hj212_corrections.pending(state):
            packets = self.queued(c.id)
            if packets is None:
                packets = self.queue_correction(c)
                self.counts["corrections"] += 1
                self.counts["packets"] += packets
                log.info(
                    "HJ 212 correction %d (%s of invalidation %d, %s, %s..%s): %d packets queued",
                    c.id,
                    c.action,
                    c.invalidation_id,
                    c.station,
                    _label(c.hour_start),
                    _label(c.hour_end),
                    packets,
                )
            else:  # queued before a crash, not yet marked: only the mark is missing
                log.info("HJ 212 correction %d was queued before a restart; marking it done", c.id)
            hj212_corrections.mark_done(state, c.id, self.client_id, packets)
            done += 1
        return done

    def queued(self, correction_id: int) -> int | None:
        """Packets queued for the correction, or None if it was never queued here."""
        rows = self.outbox.query(
            "SELECT packets FROM corrections_queued WHERE correction_id=?", (correction_id,)
        )
        return int(rows[0][0]) if rows else None

    def queue_correction(self, c: Correction) -> int:
        """Build the correction's packets and queue them with its id, in one transaction."""
        platforms = [
            p for p in self.platforms_for(c.station) if any(cn in p.send for cn in CORRECTED_CNS)
        ]
        built: list[tuple[str, str, dict[str, str]]] = []  # (kind, cn, cp)
        if platforms:
            built = self._build(c)
        with self.outbox.transaction() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO corrections_queued VALUES (?,?,?,0)",
                (c.id, c.station, time.time()),
            )
            if cur.rowcount == 0:  # another pass got there first
                return self.queued(c.id) or 0
            n = sum(self.queue(platforms, c.station, kind, cn, cp) for kind, cn, cp in built)
            db.execute("UPDATE corrections_queued SET packets=? WHERE correction_id=?", (n, c.id))
        return n

    def _closed_before(self, station: str) -> dict[str, int]:
        rows = self.outbox.query(
            "SELECT period, closed_before FROM marks WHERE station=?", (station,)
        )
        return {r[0]: int(r[1]) for r in rows}

    def _kind(self, station: str) -> str | None:
        state = self.state()
        meta = state.get_station(station) if state is not None else None
        if meta and meta.get("kind") in KINDS:
            return str(meta["kind"])
        rows = self.outbox.query("SELECT kind FROM samples WHERE station=? LIMIT 1", (station,))
        return str(rows[0][0]) if rows else None

    def _build(self, c: Correction) -> list[tuple[str, str, dict[str, str]]]:
        """(kind, CN, CP) of every hour and day of the correction the uplink had closed."""
        closed = self._closed_before(c.station)
        hours_closed, days_closed = closed.get("h", 0), closed.get("d", 0)
        kind = self._kind(c.station)
        if kind is None or (hours_closed <= c.hour_start and days_closed <= c.hour_start):
            return []  # nothing of these hours was sent
        params: Sequence[str] = list(KINDS[kind]["params"])
        first_day = day_start_at(c.hour_start)
        last_day_end = day_start_at(c.hour_end - 1) + DAY
        spans = self.spans(c.station, first_day, last_day_end)
        out: list[tuple[str, str, dict[str, str]]] = []
        for day in range(first_day, last_day_end, DAY):
            hours = [
                h
                for h in range(max(c.hour_start, day), min(c.hour_end, day + DAY), HOUR)
                if h + HOUR <= hours_closed
            ]
            send_day = day + DAY <= days_closed
            if not hours and not send_day:
                continue
            samples = reviewed(
                station_readings(self.influx(), kind, c.station, params, day, day + DAY), spans
            )
            for h in hours:
                rows = [s for s in samples if h <= s[0] < h + HOUR]
                out.append((kind, "2061", self._cp(h, rows, kind, HOUR)))
            if send_day:
                out.append((kind, "2031", self._cp(day, samples, kind, DAY, day=True)))
        return out

    def _cp(
        self, start: int, rows: list[Sample], kind: str, span_s: int, day: bool = False
    ) -> dict[str, str]:
        cp = {"DataTime": data_time(datetime.fromtimestamp(start, CST))}
        cp.update(self.aggregate(rows, kind, span_s, day=day))
        return cp


def _label(ts: float) -> str:
    return datetime.fromtimestamp(ts, CST).strftime("%Y-%m-%d %H:%M")

"""`envnet uplink`: stations' readings from MQTT -> HJ 212-2017 platforms over TCP.

Flow: a persistent MQTT session (manual ack) -> one SQLite transaction that stores the
readings as samples, closes the minute/hour/day windows they complete and queues the packets
(2011 real-time, 2051 minute, 2061 hour, 2031 day) in a per-platform outbox -> only then the
MQTT ack. One sender thread per platform sends the outbox in order, waits for the 9014 data ack
when Flag asks for it, reconnects with exponential backoff and resends whatever was not
acknowledged. Nothing is lost while a platform is down or the uplink restarts.

Windows are station (data) time: a window closes when a reading at least close_grace_s after
its end arrives, so replays of past data aggregate exactly like live data. Hours are clock
hours, days CST (UTC+8) days (envnet/core/calendar.py); DataTime and QN are Beijing time. See
docs/hj212.md.

Reviewers' invalidations apply: a window closing after one flags the invalidated values, and
hour and day data sent before one (or before a restore) are re-sent as corrections by
gateway/uplink_corrections.py, run in the ingest thread.

Counters (packets sent, acknowledged, retried, queue depth, corrections, ...;
gateway/uplink_metrics.py) are published into the state store every PUBLISH_S seconds, for the
server's /metrics to re-export with an `uplink` label.
"""

from __future__ import annotations

import json
import logging
import queue
import select
import socket
import threading
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

from envnet.config import Settings, UplinkPlatform
from envnet.core.calendar import CST, DAY, HOUR, day_start_at
from envnet.core.contract import KINDS, Rejected, decode
from envnet.domain.hj212 import codes
from envnet.domain.hj212.codec import (
    FLAG_ACK,
    FLAG_V2017,
    DecodeError,
    FrameReader,
    Packet,
    data_time,
)
from envnet.domain.hj212.review import reviewed
from envnet.store.database import Database
from envnet.store.schema import Registry
from envnet.store.uplink_metrics import key as metrics_key
from gateway import uplink_corrections
from gateway.uplink_corrections import Corrections
from gateway.uplink_metrics import UplinkMetrics

log = logging.getLogger("envnet.uplink")

SUBSCRIPTION = "envnet/v1/+/reading"
HOUR_MIN_COVERAGE = 0.75  # GB 3095-2012: 45 of 60 minutes for an hourly value
DAY_MIN_HOURS = 20  # GB 3095-2012: 20 valid hours for a daily value
KEEP_SAMPLES_S = 2 * DAY
KEEP_ACKED_S = 7 * DAY  # acknowledged packets stay inspectable this long
NOT_EVALUATED = ("maint", "cal")
PUBLISH_S = 5.0  # counters into the state store (the gateway's period too)

# The outbox file (uplink.outbox_path) has its own schema registry, with one owner: this module.
UPLINK_DB = Registry("uplink", "uplink.outbox_path")
# Version 1: the schema as it was before versioning (never edit; append ALTERs as version 2...).
SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS samples (
  station TEXT NOT NULL, ts REAL NOT NULL, kind TEXT NOT NULL, vals TEXT NOT NULL,
  flags TEXT NOT NULL, PRIMARY KEY (station, ts));
CREATE TABLE IF NOT EXISTS marks (
  station TEXT NOT NULL, period TEXT NOT NULL, closed_before INTEGER NOT NULL,
  PRIMARY KEY (station, period));
CREATE TABLE IF NOT EXISTS outbox (
  id INTEGER PRIMARY KEY AUTOINCREMENT, platform TEXT NOT NULL, cn TEXT NOT NULL,
  qn TEXT NOT NULL, packet BLOB NOT NULL, created REAL NOT NULL, acked REAL);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (platform, acked, id);
"""
UPLINK = UPLINK_DB.register(
    "uplink", module=__name__, tables=("samples", "marks", "outbox"), migrations=(SCHEMA_V1,)
)
# The corrections re-sent after a review (docs/hj212.md "Corrections"): that module's table.
UPLINK_CORRECTIONS = UPLINK_DB.register(
    "uplink_corrections",
    module=uplink_corrections.__name__,
    tables=("corrections_queued",),
    migrations=(uplink_corrections.SCHEMA_V1,),
)


def _num(v: float) -> str:
    s = f"{v:.3f}".rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


class QnClock:
    """QN from the local (CST) clock, strictly increasing so it identifies one packet."""

    def __init__(self) -> None:
        self.last = 0
        self.lock = threading.Lock()

    def next(self) -> str:
        with self.lock:
            ms = max(int(time.time() * 1000), self.last + 1)
            self.last = ms
        t = datetime.fromtimestamp(ms / 1000, CST)
        return t.strftime("%Y%m%d%H%M%S") + f"{ms % 1000:03d}"


def _param_flag(name: str, flags: dict[str, str]) -> str | None:
    whole = flags.get("*")
    return whole if whole in NOT_EVALUATED else flags.get(name)


def aggregate(
    rows: list[tuple[float, dict, dict]], kind: str, span_s: int, day: bool = False
) -> dict[str, str]:
    """CP fields (code-Avg/-Min/-Max/-Flag) for one window of samples (ts, values, flags).

    A parameter with enough normal data gets Avg/Min/Max of its normal samples and flag N.
    With too little normal data it gets the values of all its samples and the most common
    flag of its flagged samples (D, C, M, T); with too little data and none flagged it is
    left out (no partial means). Enough: 75 % coverage for minute and hour windows, 20 valid
    hours for a day.
    """
    interval = float(codes_interval(kind))
    per: dict[str, list[tuple[float, float, str | None]]] = {}
    for ts, values, flags in rows:
        for name, v in values.items():
            if codes.code_for(kind, name):
                per.setdefault(name, []).append((ts, float(v), _param_flag(name, flags)))
    cp: dict[str, str] = {}
    for name in sorted(per, key=lambda n: codes.code_for(kind, n) or ""):
        samples = per[name]
        normal = [(ts, v) for ts, v, f in samples if f is None]
        if day:
            hours = Counter(int(ts // HOUR) for ts, _ in normal)
            need = HOUR_MIN_COVERAGE * HOUR / interval
            enough = sum(1 for n in hours.values() if n >= need - 1e-9) >= DAY_MIN_HOURS
        else:
            enough = len(normal) * interval >= HOUR_MIN_COVERAGE * span_s - 1e-9
        if enough:
            vals, flag = [v for _, v in normal], codes.NORMAL
        else:
            bad = Counter(codes.hj_flag(f) for _, _, f in samples if f is not None)
            if not bad:
                continue
            vals, flag = [v for _, v, _ in samples], bad.most_common(1)[0][0]
        code = codes.code_for(kind, name)
        cp[f"{code}-Avg"] = _num(sum(vals) / len(vals))
        cp[f"{code}-Min"] = _num(min(vals))
        cp[f"{code}-Max"] = _num(max(vals))
        cp[f"{code}-Flag"] = flag
    return cp


def codes_interval(kind: str) -> float:
    return float(KINDS[kind]["interval_s"])


def realtime_cp(kind: str, values: dict, flags: dict) -> dict[str, str]:
    cp: dict[str, str] = {}
    for name in sorted(values, key=lambda n: codes.code_for(kind, n) or ""):
        code = codes.code_for(kind, name)
        if code:
            cp[f"{code}-Rtd"] = _num(float(values[name]))
            cp[f"{code}-Flag"] = codes.hj_flag(_param_flag(name, flags))
    return cp


class Pending(NamedTuple):
    id: int
    cn: str
    qn: str
    packet: bytes


class Outbox:
    """The durable state: samples, closed-window marks and the per-platform packet queue."""

    def __init__(self, path: str | Path) -> None:
        # synchronous=FULL: a packet acknowledged to MQTT must survive a power cut too.
        self.db = Database(path, synchronous="FULL")
        self.db.ensure(UPLINK)

    def next_packet(self, platform: str) -> Pending | None:
        """The platform's first packet not yet acknowledged (the sender's next)."""
        rows = self.db.query(
            "SELECT id, cn, qn, packet FROM outbox WHERE platform=? AND acked IS NULL "
            "ORDER BY id LIMIT 1",
            (platform,),
        )
        return Pending(*rows[0]) if rows else None

    def next_pending(self, platform: str) -> tuple[int, str, bytes] | None:
        p = self.next_packet(platform)
        return (p.id, p.qn, p.packet) if p else None

    def mark_acked(self, row_id: int) -> None:
        self.db.execute("UPDATE outbox SET acked=? WHERE id=?", (time.time(), row_id))

    def pending_count(self, platform: str | None = None) -> int:
        q = "SELECT count(*) FROM outbox WHERE acked IS NULL"
        args: tuple = ()
        if platform:
            q, args = q + " AND platform=?", (platform,)
        return self.db.query(q, args)[0][0]


class Uplink:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.cfg = settings.uplink
        self.outbox = Outbox(self.cfg.outbox_path)
        self.qn = QnClock()
        self.stop_event = threading.Event()
        self.wake = {p.name: threading.Event() for p in self.cfg.platforms}
        self.inbox: queue.Queue = queue.Queue()
        self.threads: list[threading.Thread] = []
        self.client: Any = None  # paho's Client once started (paho ships no type information)
        self.connected = {p.name: False for p in self.cfg.platforms}
        self.outbox.db.ensure(UPLINK_CORRECTIONS)
        self.corrections = Corrections(
            settings, self.outbox.db, self._platforms_for, self._queue, aggregate
        )
        self.metrics = UplinkMetrics(
            self.cfg.platforms, self.outbox.db, self.connected, lambda: self.corrections.counts
        )
        # per platform: the packet sent and not yet acknowledged (sent again: a retry)
        self.unacked_sent: dict[str, int | None] = {p.name: None for p in self.cfg.platforms}

    # -- MQTT -----------------------------------------------------------------------------
    def _make_client(self):
        from urllib.parse import urlparse

        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        m = self.settings.mqtt
        c = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.cfg.client_id,
            clean_session=False,
            manual_ack=True,
        )
        if m.username:
            c.username_pw_set(m.username, m.password)
        url = urlparse(m.url)
        if url.scheme == "mqtts":
            c.tls_set(ca_certs=m.ca_file or None)
        c.reconnect_delay_set(1, 30)
        c.max_inflight_messages_set(1000)

        def on_connect(client, userdata, flags, rc, props):
            if rc.is_failure:
                log.error("MQTT connect refused: %s", rc)
                return
            client.subscribe(SUBSCRIPTION, qos=1)
            log.info("connected to %s, subscribed to %s", m.url, SUBSCRIPTION)

        c.on_connect = on_connect
        c.on_message = lambda client, u, msg: self.inbox.put(msg)
        return c, url

    def start(self) -> None:
        self.client, url = self._make_client()
        for p in self.cfg.platforms:
            t = threading.Thread(target=self._sender, args=(p,), name=f"uplink-{p.name}")
            t.daemon = True
            t.start()
            self.threads.append(t)
        t = threading.Thread(target=self._ingest_loop, name="uplink-ingest", daemon=True)
        t.start()
        self.threads.append(t)
        t = threading.Thread(target=self._publish_loop, name="uplink-metrics", daemon=True)
        t.start()
        self.threads.append(t)
        self.client.connect_async(url.hostname, url.port or 1883, self.settings.mqtt.keepalive)
        self.client.loop_start()

    def stop(self) -> None:
        self.stop_event.set()
        for e in self.wake.values():
            e.set()
        if self.client:
            self.client.disconnect()
            self.client.loop_stop()
        for t in self.threads:
            t.join(5)
        self.publish_metrics()  # the last counts, for a scrape after the stop
        self.corrections.close()

    # -- counters into the state store ----------------------------------------------------
    def publish_metrics(self) -> bool:
        """This uplink's snapshot under `uplink:<client_id>:metrics`, where the server's
        /metrics reads it; False when there is no state store (store.path not made yet; with
        store.url always there)."""
        try:
            state = self.corrections.state()
            if state is None:
                return False
            snap = {"at": time.time(), "metrics": self.metrics.snapshot()}
            state.put_kv(metrics_key(self.cfg.client_id), snap)
            return True
        except Exception as e:  # a busy or broken store never stops the uplink
            log.warning("could not publish the uplink's counters: %s", e)
            return False

    def _publish_loop(self) -> None:
        while not self.stop_event.wait(PUBLISH_S):
            self.publish_metrics()

    # -- ingest ---------------------------------------------------------------------------
    def _ingest_loop(self) -> None:
        while not self.stop_event.is_set():
            # Corrections run here, between messages: never interleaved with window closing.
            if self.corrections.run():
                for e in self.wake.values():
                    e.set()
            try:
                msg = self.inbox.get(timeout=0.2)
            except queue.Empty:
                continue
            self.metrics.messages_received.inc()
            try:
                m = decode(msg.topic, msg.payload)
                self.ingest(m.station, m.body, time.time())
            except Rejected as e:
                self.metrics.messages_ignored.inc()
                log.warning("ignored message on %s: %s", msg.topic, e)
            except Exception:
                # Not acknowledged: the broker redelivers on the next session.
                log.exception("could not queue readings from %s; not acknowledging", msg.topic)
                continue
            if msg.qos > 0:
                self.client.ack(msg.mid, msg.qos)

    def _platforms_for(self, station: str) -> list[UplinkPlatform]:
        return [p for p in self.cfg.platforms if station in p.stations]

    def ingest(self, station: str, readings: list, received_at: float) -> int:
        """Store readings and queue the packets they cause, in one transaction."""
        platforms = self._platforms_for(station)
        if not platforms:
            return 0
        queued = stored = 0
        with self.outbox.db.transaction() as db:
            for r in sorted(readings, key=lambda r: r.ts):
                cur = db.execute(
                    "INSERT OR IGNORE INTO samples VALUES (?,?,?,?,?)",
                    (station, float(r.ts), r.kind, json.dumps(r.values), json.dumps(r.flags)),
                )
                if cur.rowcount == 0:
                    continue  # a replay already stored
                stored += 1
                cp = {"DataTime": data_time(datetime.fromtimestamp(r.ts, CST))}
                cp.update(realtime_cp(r.kind, r.values, r.flags))
                queued += self._queue(platforms, station, r.kind, "2011", cp)
            queued += self._close_windows(station, platforms)
        self.metrics.readings_stored.inc(stored)  # committed
        if queued:
            for p in platforms:
                self.wake[p.name].set()
        return queued

    def _queue(self, platforms, station: str, kind: str, cn: str, cp: dict[str, str]) -> int:
        n = 0
        for p in platforms:
            if cn not in p.send or len(cp) <= 1:
                continue
            qn = self.qn.next()
            pkt = Packet(
                cn=cn,
                st=codes.SYSTEM_TYPES[kind],
                pw=p.password,
                mn=p.stations[station],
                flag=FLAG_V2017 | (FLAG_ACK if p.ack else 0),
                qn=qn,
                cp=cp,
            )
            self.outbox.db.execute(
                "INSERT INTO outbox (platform, cn, qn, packet, created) VALUES (?,?,?,?,?)",
                (p.name, cn, qn, pkt.encode(), time.time()),
            )
            n += 1
        return n

    def _close_windows(self, station: str, platforms) -> int:
        db = self.outbox.db
        latest = db.execute("SELECT max(ts) FROM samples WHERE station=?", (station,)).fetchone()[0]
        limit_ts = latest - self.cfg.close_grace_s
        n = 0
        for period, cn in (("m", "2051"), ("h", "2061"), ("d", "2031")):
            row = db.execute(
                "SELECT closed_before FROM marks WHERE station=? AND period=?", (station, period)
            ).fetchone()
            first = db.execute(
                "SELECT min(ts) FROM samples WHERE station=? AND ts>=?",
                (station, row[0] if row else 0),
            ).fetchone()[0]
            if first is None:
                continue
            start = self._window_start(period, first)
            closed_before = row[0] if row else None
            while self._window_end(period, start) <= limit_ts:
                end = self._window_end(period, start)
                rows = db.execute(
                    "SELECT ts, kind, vals, flags FROM samples WHERE station=? AND ts>=? AND ts<? "
                    "ORDER BY ts",
                    (station, start, end),
                ).fetchall()
                if rows:
                    kind = rows[0][1]
                    data = [(ts, json.loads(v), json.loads(f)) for ts, _, v, f in rows]
                    # reviewers' invalidations already made apply to windows closing now
                    data = reviewed(data, self.corrections.spans(station, start, end))
                    cp = {"DataTime": data_time(datetime.fromtimestamp(start, CST))}
                    cp.update(aggregate(data, kind, end - start, day=period == "d"))
                    n += self._queue(platforms, station, kind, cn, cp)
                closed_before = end
                nxt = db.execute(
                    "SELECT min(ts) FROM samples WHERE station=? AND ts>=?", (station, end)
                ).fetchone()[0]
                if nxt is None:
                    break
                start = self._window_start(period, nxt)
            if closed_before is not None and (row is None or closed_before != row[0]):
                db.execute(
                    "INSERT OR REPLACE INTO marks VALUES (?,?,?)", (station, period, closed_before)
                )
        db.execute(
            "DELETE FROM samples WHERE station=? AND ts<?", (station, latest - KEEP_SAMPLES_S)
        )
        db.execute("DELETE FROM outbox WHERE acked < ?", (time.time() - KEEP_ACKED_S,))
        return n

    def _window_start(self, period: str, ts: float) -> int:
        if period == "m":
            return int(ts // self.cfg.minute_s) * self.cfg.minute_s
        if period == "h":
            return int(ts // HOUR) * HOUR
        return day_start_at(ts)

    def _window_end(self, period: str, start: int) -> int:
        return start + {"m": self.cfg.minute_s, "h": HOUR, "d": DAY}[period]

    # -- TCP ------------------------------------------------------------------------------
    def _sender(self, p: UplinkPlatform) -> None:
        delay = 1.0
        while not self.stop_event.is_set():
            try:
                sock = socket.create_connection((p.host, p.port), timeout=5)
            except OSError as e:
                self.metrics.connection_failures.labels(platform=p.name).inc()
                log.warning("platform %s (%s:%d) unreachable: %s", p.name, p.host, p.port, e)
                self.stop_event.wait(delay)
                delay = min(delay * 2, self.cfg.backoff_max_s)
                continue
            log.info("connected to platform %s at %s:%d", p.name, p.host, p.port)
            self.connected[p.name] = True
            try:
                self._session(p, sock)
                delay = 1.0
            except (OSError, TimeoutError) as e:
                self.metrics.connection_failures.labels(platform=p.name).inc()
                log.warning("platform %s connection lost: %s; reconnecting", p.name, e)
                self.stop_event.wait(delay)
                delay = min(delay * 2, self.cfg.backoff_max_s)
            finally:
                self.connected[p.name] = False
                sock.close()

    def _session(self, p: UplinkPlatform, sock: socket.socket) -> None:
        reader = FrameReader()
        sock.settimeout(self.cfg.ack_timeout_s)  # a platform that stops reading is a fault
        while not self.stop_event.is_set():
            item = self.outbox.next_packet(p.name)
            if item is None:
                self.wake[p.name].clear()
                self._read(p, sock, reader, 0.5)
                continue
            row_id, cn, qn, packet = item
            if self.unacked_sent[p.name] == row_id:
                self.metrics.retries.labels(platform=p.name).inc()
            self.unacked_sent[p.name] = row_id
            sock.sendall(packet)
            self.metrics.packets_sent.labels(platform=p.name, cn=cn).inc()
            if not p.ack:
                self._acked(p, row_id)
                continue
            deadline = time.monotonic() + self.cfg.ack_timeout_s
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no 9014 for QN={qn} within {self.cfg.ack_timeout_s} s")
                if qn in self._read(p, sock, reader, min(left, 0.5)):
                    self._acked(p, row_id)
                    break
                if self.stop_event.is_set():
                    return

    def _acked(self, p: UplinkPlatform, row_id: int) -> None:
        self.outbox.mark_acked(row_id)
        self.unacked_sent[p.name] = None
        self.metrics.packets_acked.labels(platform=p.name).inc()

    def _read(self, p: UplinkPlatform, sock, reader: FrameReader, wait_s: float) -> set[str]:
        """Read what the platform sent within wait_s; answer its requests; return acked QNs."""
        acked: set[str] = set()
        ready, _, _ = select.select([sock], [], [], wait_s)
        if not ready:
            return acked
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("platform closed the connection")
        for pkt in reader.feed(data):
            if isinstance(pkt, DecodeError):
                log.warning("bad packet from platform %s: %s", p.name, pkt)
            elif pkt.cn == "9014":
                acked.add(pkt.qn)
            else:
                self._answer(p, sock, pkt)
        return acked

    def _answer(self, p: UplinkPlatform, sock, req: Packet) -> None:
        """9011 request response; 1011 (read the field clock) is answered, others refused."""

        def reply(cn: str, cp: dict[str, str]) -> bytes:
            return Packet(cn=cn, st="91", pw=p.password, mn=req.mn, qn=req.qn, cp=cp).encode()

        ok = req.cn == "1011"
        sock.sendall(reply("9011", {"QnRtn": "1" if ok else "2"}))
        if ok:
            now = data_time(datetime.now(CST))
            sock.sendall(
                Packet(
                    cn="1011",
                    st=req.st,
                    pw=p.password,
                    mn=req.mn,
                    qn=req.qn,
                    cp={"SystemTime": now},
                ).encode()
            )
            sock.sendall(reply("9012", {"ExeRtn": "1"}))
        log.info("platform %s request CN=%s QN=%s answered (ok=%s)", p.name, req.cn, req.qn, ok)

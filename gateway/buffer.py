"""The gateway's durable receive buffer (SQLite, WAL).

A message is acknowledged to the broker only after its transaction here has committed, so a
killed gateway loses nothing: the broker redelivers whatever was not acknowledged. Readings are
keyed by (station, seq, ts): a replay or a QoS 1 duplicate is recognised and ignored, while a
station whose seq counter restarted (a wiped flash) still gets its new readings stored.
Rejected messages are kept verbatim in a dead-letter table for inspection, accepted ones in
`raw_messages` for `gateway.raw_retention_days`, so a stored value traces back to its bytes.

Its own file, so its own schema registry (`BUFFER_DB`, envnet/store/schema.py) with one owner.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from envnet.store.database import Database
from envnet.store.schema import Registry

BUFFER_DB = Registry("buffer", "gateway.buffer_path (buffer.db)")

# Version 1: the schema as it was before versioning (never edit; append ALTERs as version 2...).
SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS points (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    station TEXT NOT NULL,
    measurement TEXT NOT NULL,
    seq INTEGER,
    ts REAL NOT NULL,
    line TEXT NOT NULL,
    received_at REAL NOT NULL,
    written_at REAL
);
CREATE UNIQUE INDEX IF NOT EXISTS points_identity ON points(station, measurement, seq, ts)
    WHERE seq IS NOT NULL;
CREATE INDEX IF NOT EXISTS points_pending ON points(id) WHERE written_at IS NULL;
CREATE INDEX IF NOT EXISTS points_written ON points(written_at) WHERE written_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS raw_messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at REAL NOT NULL,
    station TEXT NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS raw_by_station ON raw_messages(station, received_at);
CREATE INDEX IF NOT EXISTS raw_by_time ON raw_messages(received_at);
CREATE TABLE IF NOT EXISTS eval_queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sub TEXT NOT NULL,
    station TEXT NOT NULL,
    body TEXT NOT NULL,
    received_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at REAL NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL
);
"""
# Version 2 (log-first ingest): how far into the message log (gateway/log.py) the points and
# dead letters here go, committed with them. raw_messages and eval_queue are no longer
# written (the log and the state store's evaluation queue replace them); what an older
# release left in them is still read (`envnet raw`) or moved (gateway/processor.py).
SCHEMA_V2 = """
CREATE TABLE IF NOT EXISTS log_cursor (
    log_uid TEXT PRIMARY KEY,
    position INTEGER NOT NULL
);
"""
BUFFER = BUFFER_DB.register(
    "buffer",
    module=__name__,
    tables=("points", "raw_messages", "eval_queue", "dead_letters", "log_cursor"),
    migrations=(SCHEMA_V1, SCHEMA_V2),
)


@dataclass(slots=True)
class Point:
    station: str
    measurement: str
    seq: int | None
    ts: float
    line: str


@dataclass(slots=True)
class DeadLetter:
    topic: str
    payload: bytes
    reason: str
    detail: str


class RawMessage(NamedTuple):
    received_at: float
    station: str
    topic: str
    payload: bytes


class EvalItem(NamedTuple):
    sub: str
    station: str
    body: str  # JSON: the gateway's reading rows, or the status / health body
    received_at: float


class BufferFullError(OSError):
    """The buffer's disk refused a write (full or read-only): stop acknowledging, retry later."""


class Buffer:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.db = Database(self.path)
        self.db.ensure(BUFFER)

    def close(self) -> None:
        self.db.close()

    def store(
        self,
        points: Iterable[Point],
        dead: Iterable[DeadLetter],
        received_at: float,
        raw: Iterable[RawMessage] = (),
        evals: Iterable[EvalItem] = (),
        log_cursor: tuple[str, int] | None = None,
    ) -> tuple[int, int, int]:
        """Commit a batch durably: its points, its dead letters and, with `log_cursor`
        (log uid, last log id), how far into the message log they go. `raw` and `evals` are
        the pre-log tables (kept for tests of upgrades). Returns (new points, duplicates
        ignored, id of the last evaluation item)."""
        pts = [(p.station, p.measurement, p.seq, p.ts, p.line, received_at) for p in points]
        dls = [(received_at, d.topic, d.payload, d.reason, d.detail) for d in dead]
        raws = list(raw)
        ev = list(evals)
        last_eval = 0
        try:
            with self.db.transaction() as c:
                before = c.total_changes
                c.executemany(
                    "INSERT OR IGNORE INTO points(station, measurement, seq, ts, line, received_at)"
                    " VALUES (?,?,?,?,?,?)",
                    pts,
                )
                new = c.total_changes - before
                if ev:
                    c.executemany(
                        "INSERT INTO eval_queue(sub, station, body, received_at) VALUES (?,?,?,?)",
                        ev,
                    )
                    # One writer (BEGIN IMMEDIATE): the batch's ids are contiguous up to this.
                    last_eval = c.execute("SELECT last_insert_rowid()").fetchone()[0]
                if raws:
                    c.executemany(
                        "INSERT INTO raw_messages(received_at, station, topic, payload)"
                        " VALUES (?,?,?,?)",
                        raws,
                    )
                if dls:
                    c.executemany(
                        "INSERT INTO dead_letters(received_at, topic, payload, reason, detail)"
                        " VALUES (?,?,?,?,?)",
                        dls,
                    )
                if log_cursor is not None:
                    c.execute(
                        "INSERT INTO log_cursor(log_uid, position) VALUES (?,?) ON CONFLICT"
                        "(log_uid) DO UPDATE SET position=excluded.position",
                        log_cursor,
                    )
        except sqlite3.OperationalError as e:  # rolled back by transaction()
            raise BufferFullError(f"buffer {self.path}: {e}") from e
        return new, len(pts) - new, last_eval

    def log_position(self, log_uid: str) -> int:
        """How far into the message log `log_uid` the points here go (0: nowhere yet)."""
        rows = self.db.query("SELECT position FROM log_cursor WHERE log_uid=?", (log_uid,))
        return int(rows[0][0]) if rows else 0

    def legacy_evals(self, after_id: int) -> list[tuple[int, EvalItem]]:
        """What an older release queued for evaluation here and did not evaluate."""
        return self.eval_backlog(after_id, 2**62, 1_000_000)

    def pending(self, limit: int) -> list[tuple[int, str]]:
        rows = self.db.query(
            "SELECT id, line FROM points WHERE written_at IS NULL ORDER BY id LIMIT ?", (limit,)
        )
        return [(r[0], r[1]) for r in rows]

    def pending_count(self) -> int:
        return self.db.query("SELECT count(*) FROM points WHERE written_at IS NULL")[0][0]

    def mark_written(self, ids: list[int]) -> None:
        """`ids` are the oldest pending points in id order (see pending()), so every pending
        point between the first and the last of them is one of them: one range update."""
        now = time.time()
        with self.db.transaction() as c:
            c.execute(
                "UPDATE points SET written_at=? WHERE id BETWEEN ? AND ? AND written_at IS NULL",
                (now, min(ids), max(ids)),
            )

    def quarantine(self, point_id: int, reason: str, detail: str) -> None:
        """A point InfluxDB refuses for good: keep it as a dead letter, stop retrying it."""
        with self.db.transaction() as c:
            row = c.execute("SELECT station, line FROM points WHERE id=?", (point_id,)).fetchone()
            if row:
                c.execute(
                    "INSERT INTO dead_letters(received_at, topic, payload, reason, detail)"
                    " VALUES (?,?,?,?,?)",
                    (time.time(), f"influx:{row[0]}", row[1].encode(), reason, detail),
                )
                c.execute("UPDATE points SET written_at=? WHERE id=?", (time.time(), point_id))

    def purge_written(self, older_than_s: float) -> int:
        cutoff = time.time() - older_than_s
        return self.db.execute(
            "DELETE FROM points WHERE written_at IS NOT NULL AND written_at < ?", (cutoff,)
        ).rowcount

    def last_eval_id(self) -> int:
        return self.db.query("SELECT coalesce(max(id), 0) FROM eval_queue")[0][0]

    def eval_backlog(self, after_id: int, until_id: int, limit: int) -> list[tuple[int, EvalItem]]:
        """Evaluation items after `after_id`, in order: what a killed gateway had not yet
        evaluated (and saved) when it died."""
        rows = self.db.query(
            "SELECT id, sub, station, body, received_at FROM eval_queue"
            " WHERE id > ? AND id <= ? ORDER BY id LIMIT ?",
            (after_id, until_id, limit),
        )
        return [(r[0], EvalItem(r[1], r[2], r[3], r[4])) for r in rows]

    def purge_evaluated(self, up_to_id: int) -> int:
        return self.db.execute("DELETE FROM eval_queue WHERE id <= ?", (up_to_id,)).rowcount

    def purge_raw(self, older_than_s: float) -> int:
        cutoff = time.time() - older_than_s
        return self.db.execute("DELETE FROM raw_messages WHERE received_at < ?", (cutoff,)).rowcount

    def raw_messages(
        self, station: str, since: float = 0.0, until: float = float("inf"), limit: int = 1000
    ) -> list[dict]:
        """What a station sent, as received, oldest first."""
        rows = self.db.query(
            "SELECT id, received_at, station, topic, payload FROM raw_messages"
            " WHERE station=? AND received_at BETWEEN ? AND ? ORDER BY id LIMIT ?",
            (station, since, min(until, 1e18), limit),
        )
        return [dict(r) for r in rows]

    def dead_letters(self, limit: int = 100) -> list[dict]:
        rows = self.db.query(
            "SELECT id, received_at, topic, payload, reason, detail FROM dead_letters"
            " ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return [dict(r) for r in rows]

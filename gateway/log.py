"""The gateway's durable message log: every MQTT message as received, in arrival order.

The receiving process (gateway/app.py) appends (receive time, station from the topic, topic,
payload bytes) in batches, one `executemany` and one commit each, and acknowledges the batch to
the broker only after the commit: what is acknowledged is on disk, what is not is redelivered.
Nothing is decoded there. Every other job reads the log in id order from a cursor it commits
together with its own output (gateway/processor.py); the log is also what `envnet raw` shows.

Trimming: a consumer records how far it has safely got (`set_cursor`, a lower bound of its
own committed cursor); rows are deleted only behind every consumer's recorded cursor *and*
older than the retention (`gateway.raw_retention_days`). A consumer that never recorded a
cursor holds everything back (its row is created at 0 when it first opens the log).

Its own file (`gateway.log_path`, by default beside the buffer: `<buffer>-log.db`), so that
the receiver's short commits never wait behind the processor's larger ones in the buffer.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from envnet.store.database import Database
from envnet.store.schema import Registry

LOG_DB = Registry("log", "gateway.log_path (<buffer>-log.db)")

SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS message_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at REAL NOT NULL,
    station TEXT NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS message_log_by_station ON message_log(station, received_at);
CREATE TABLE IF NOT EXISTS log_cursors (
    consumer TEXT PRIMARY KEY,
    position INTEGER NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS log_identity (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    uid TEXT NOT NULL
);
INSERT OR IGNORE INTO log_identity(one, uid) VALUES (1, lower(hex(randomblob(8))));
"""
LOG = LOG_DB.register(
    "message_log",
    module=__name__,
    tables=("message_log", "log_cursors", "log_identity"),
    migrations=(SCHEMA_V1,),
)


class Received(NamedTuple):
    received_at: float
    station: str  # from the topic, unvalidated: envnet/v1/<station>/...
    topic: str
    payload: bytes


class Entry(NamedTuple):
    id: int
    received_at: float
    station: str
    topic: str
    payload: bytes


class LogFullError(OSError):
    """The log's disk refused a write (full, read-only): do not acknowledge; retry later."""


def station_of(topic: str, root: str) -> str:
    """The station part of a topic, without validating it (the processor does that)."""
    if topic.startswith(root):
        return topic[len(root) :].partition("/")[0]
    return ""


def log_path_for(buffer_path: str | Path, log_path: str = "") -> Path:
    """`gateway.log_path`, else beside the buffer: gateway-buffer.db -> gateway-buffer-log.db."""
    if log_path:
        return Path(log_path)
    b = Path(buffer_path)
    return b.with_name(f"{b.stem}-log{b.suffix or '.db'}")


class MessageLog:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.db = Database(self.path)
        self.db.ensure(LOG)

    def close(self) -> None:
        self.db.close()

    @property
    def uid(self) -> str:
        """This log file's identity: consumers key their cursors by it, so a log file that is
        deleted and made anew (ids from 1 again) is never read from an old, higher cursor."""
        return self.db.query("SELECT uid FROM log_identity")[0][0]

    # -- the receiver ----------------------------------------------------------------------
    def append(self, batch: Sequence[Received]) -> int:
        """Commit a batch durably; returns the id of its last row."""
        try:
            with self.db.transaction() as c:
                c.executemany(
                    "INSERT INTO message_log(received_at, station, topic, payload)"
                    " VALUES (?,?,?,?)",
                    batch,
                )
                return c.execute("SELECT last_insert_rowid()").fetchone()[0]
        except sqlite3.OperationalError as e:  # rolled back by transaction()
            raise LogFullError(f"log {self.path}: {e}") from e

    # -- consumers -------------------------------------------------------------------------
    def read(self, after_id: int, limit: int) -> list[Entry]:
        rows = self.db.query(
            "SELECT id, received_at, station, topic, payload FROM message_log"
            " WHERE id > ? ORDER BY id LIMIT ?",
            (after_id, limit),
        )
        return [Entry(r[0], r[1], r[2], r[3], bytes(r[4])) for r in rows]

    def last_id(self) -> int:
        return self.db.query("SELECT coalesce(max(id), 0) FROM message_log")[0][0]

    def register_consumer(self, consumer: str) -> None:
        """Hold the log back for a consumer from now on (before it has read anything)."""
        self.db.execute(
            "INSERT OR IGNORE INTO log_cursors(consumer, position, updated_at) VALUES (?,?,?)",
            (consumer, 0, time.time()),
        )

    def set_cursor(self, consumer: str, position: int) -> None:
        """How far `consumer` has committed its own output: the log may be trimmed to here."""
        self.db.execute(
            "INSERT INTO log_cursors(consumer, position, updated_at) VALUES (?,?,?)"
            " ON CONFLICT(consumer) DO UPDATE SET position=max(position, excluded.position),"
            " updated_at=excluded.updated_at",
            (consumer, position, time.time()),
        )

    def cursors(self) -> dict[str, int]:
        return {r[0]: r[1] for r in self.db.query("SELECT consumer, position FROM log_cursors")}

    def trim(self, retention_s: float) -> int:
        """Delete rows every consumer is past and that are older than the retention."""
        cutoff = time.time() - retention_s
        return self.db.execute(
            "DELETE FROM message_log WHERE id <= (SELECT coalesce(min(position), 0)"
            " FROM log_cursors) AND received_at < ?",
            (cutoff,),
        ).rowcount

    # -- envnet raw ------------------------------------------------------------------------
    def raw_messages(
        self, station: str, since: float = 0.0, until: float = float("inf"), limit: int = 1000
    ) -> list[dict]:
        """What a station sent, as received, oldest first (rejected messages too: their
        reasons are in the buffer's dead letters)."""
        rows = self.db.query(
            "SELECT id, received_at, station, topic, payload FROM message_log"
            " WHERE station=? AND received_at BETWEEN ? AND ? ORDER BY id LIMIT ?",
            (station, since, min(until, 1e18), limit),
        )
        return [dict(r) for r in rows]

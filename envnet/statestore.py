"""The state store: station registry and live station state, shared by gateway and server.

SQLite (WAL) here. Everything goes through the `StateStore` interface so that moving to
PostgreSQL beyond one gateway (DESIGN.md, "At scale") is a new class, not a rewrite. The
gateway writes station state; the server reads it and writes the registry and alert changes.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

SCHEMA = """
CREATE TABLE IF NOT EXISTS stations (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    meta TEXT NOT NULL DEFAULT '{}',
    registered_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS station_state (
    id TEXT PRIMARY KEY,
    kind TEXT,
    last_seen REAL,
    last_reading_ts REAL,
    last_seq INTEGER,
    last_values TEXT,
    last_flags TEXT,
    readings_total INTEGER NOT NULL DEFAULT 0,
    status TEXT,
    status_body TEXT,
    status_at REAL,
    health TEXT,
    health_at REAL
);
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at REAL NOT NULL
);
"""


class StateStore(Protocol):
    """What the gateway and server need from the state store, and nothing more."""

    def register_station(self, station_id: str, kind: str, meta: dict[str, Any]) -> bool: ...
    def get_station_meta(self, station_id: str) -> dict[str, Any] | None: ...
    def record_readings(self, station_id: str, kind: str, rows: list[dict[str, Any]]) -> None: ...
    def record_status(self, station_id: str, state: str, body: dict, at: float) -> None: ...
    def record_health(self, station_id: str, body: dict, at: float) -> None: ...
    def list_stations(self) -> list[dict[str, Any]]: ...
    def get_station(self, station_id: str) -> dict[str, Any] | None: ...
    def put_kv(self, key: str, value: Any) -> None: ...
    def get_kv(self, key: str) -> Any: ...


def connect_sqlite(path: str | Path) -> sqlite3.Connection:
    """A connection tuned for one writer process and many readers across processes."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=30, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.row_factory = sqlite3.Row
    return conn


def _loads(s: str | None) -> Any:
    return json.loads(s) if s else None


class SqliteStateStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._conn = connect_sqlite(self.path)
        self._lock = threading.RLock()
        self._depth = 0
        with self._lock:
            self._conn.executescript(SCHEMA)

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; BEGIN IMMEDIATE so two processes never deadlock upgrading.

        Nested calls join the outer transaction, so an alert change, its history and its
        webhook event (server.events.emit_in_transaction) commit together or not at all."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self._conn
                finally:
                    self._depth -= 1
                return
            self._conn.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            finally:
                self._depth = 0
            self._conn.execute("COMMIT")

    def query(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        """A read; inside an open tx() it sees that transaction's own changes."""
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    # -- registry --------------------------------------------------------------------------
    def register_station(self, station_id: str, kind: str, meta: dict[str, Any]) -> bool:
        """Add a station; False when the id is already registered (never overwritten)."""
        with self.tx() as c:
            cur = c.execute(
                "INSERT OR IGNORE INTO stations(id, kind, meta, registered_at) VALUES (?,?,?,?)",
                (station_id, kind, json.dumps(meta, ensure_ascii=False), time.time()),
            )
            return cur.rowcount == 1

    def update_station_meta(self, station_id: str, meta: dict[str, Any]) -> bool:
        with self.tx() as c:
            cur = c.execute(
                "UPDATE stations SET meta=? WHERE id=?",
                (json.dumps(meta, ensure_ascii=False), station_id),
            )
            return cur.rowcount == 1

    def delete_station(self, station_id: str) -> bool:
        with self.tx() as c:
            c.execute("DELETE FROM station_state WHERE id=?", (station_id,))
            return c.execute("DELETE FROM stations WHERE id=?", (station_id,)).rowcount == 1

    def get_station_meta(self, station_id: str) -> dict[str, Any] | None:
        rows = self.query("SELECT kind, meta FROM stations WHERE id=?", (station_id,))
        if not rows:
            return None
        return {"kind": rows[0]["kind"], **json.loads(rows[0]["meta"])}

    # -- live state (written by the gateway) -----------------------------------------------
    def record_readings(self, station_id: str, kind: str, rows: list[dict[str, Any]]) -> None:
        """Remember the newest of a batch of accepted readings for one station."""
        if not rows:
            return
        newest = max(rows, key=lambda r: (r["ts"], r["seq"]))
        with self.tx() as c:
            cur = c.execute("SELECT last_reading_ts FROM station_state WHERE id=?", (station_id,))
            row = cur.fetchone()
            c.execute(
                "INSERT INTO station_state(id, kind, last_seen, readings_total) VALUES (?,?,?,?)"
                " ON CONFLICT(id) DO UPDATE SET kind=excluded.kind,"
                " last_seen=max(coalesce(last_seen, 0), excluded.last_seen),"
                " readings_total=readings_total + excluded.readings_total",
                (station_id, kind, max(r["received_at"] for r in rows), len(rows)),
            )
            # A replayed backlog may arrive after newer readings: keep the newest as "last".
            if row is None or row[0] is None or newest["ts"] >= row[0]:
                c.execute(
                    "UPDATE station_state SET last_reading_ts=?, last_seq=?, last_values=?,"
                    " last_flags=? WHERE id=?",
                    (
                        newest["ts"],
                        newest["seq"],
                        json.dumps(newest["values"]),
                        json.dumps(newest["flags"]),
                        station_id,
                    ),
                )

    def record_status(self, station_id: str, state: str, body: dict, at: float) -> None:
        with self.tx() as c:
            c.execute(
                """INSERT INTO station_state(id, kind, last_seen, status, status_body, status_at)
                   VALUES (?,?,?,?,?,?)
                   ON CONFLICT(id) DO UPDATE SET status=excluded.status,
                       kind=coalesce(excluded.kind, kind),
                       status_body=excluded.status_body, status_at=excluded.status_at,
                       last_seen=CASE WHEN excluded.status='online'
                           THEN max(coalesce(last_seen, 0), excluded.last_seen)
                           ELSE last_seen END""",
                (station_id, body.get("kind"), at, state, json.dumps(body), at),
            )

    def record_health(self, station_id: str, body: dict, at: float) -> None:
        with self.tx() as c:
            c.execute(
                """INSERT INTO station_state(id, last_seen, health, health_at) VALUES (?,?,?,?)
                   ON CONFLICT(id) DO UPDATE SET health=excluded.health,
                       health_at=excluded.health_at,
                       last_seen=max(coalesce(last_seen, 0), excluded.last_seen)""",
                (station_id, at, json.dumps(body), at),
            )

    # -- views (read by the server) --------------------------------------------------------
    _COLS = (
        "st.last_seen, st.last_reading_ts, st.last_seq, st.last_values, st.last_flags, "
        "st.readings_total, st.status, st.status_body, st.status_at, st.health, st.health_at"
    )
    _VIEW = (
        f"SELECT s.id AS id, s.kind AS kind, s.meta AS meta, s.registered_at AS registered_at, "
        f"{_COLS} FROM stations s LEFT JOIN station_state st ON st.id = s.id"
    )
    # Stations heard from but never provisioned: shown too, marked registered=false.
    _VIEW_UNREG = (
        f"SELECT st.id AS id, st.kind AS kind, NULL AS meta, NULL AS registered_at, {_COLS} "
        f"FROM station_state st WHERE st.id NOT IN (SELECT id FROM stations)"
    )

    @staticmethod
    def _row(r: sqlite3.Row) -> dict[str, Any]:
        return {
            "id": r["id"],
            "kind": r["kind"],
            "registered": r["registered_at"] is not None,
            "meta": _loads(r["meta"]) or {},
            "last_seen": r["last_seen"],
            "last_reading_ts": r["last_reading_ts"],
            "last_seq": r["last_seq"],
            "last_values": _loads(r["last_values"]) or {},
            "last_flags": _loads(r["last_flags"]) or {},
            "readings_total": r["readings_total"] or 0,
            "status": r["status"],
            "status_body": _loads(r["status_body"]),
            "status_at": r["status_at"],
            "health": _loads(r["health"]),
            "health_at": r["health_at"],
        }

    def list_stations(self) -> list[dict[str, Any]]:
        rows = self.query(f"{self._VIEW} UNION ALL {self._VIEW_UNREG} ORDER BY 1")
        return [self._row(r) for r in rows]

    def get_station(self, station_id: str) -> dict[str, Any] | None:
        rows = self.query(
            f"SELECT * FROM ({self._VIEW} UNION ALL {self._VIEW_UNREG}) WHERE id=?", (station_id,)
        )
        return self._row(rows[0]) if rows else None

    # -- small shared values (gateway counters, episode level, ...) -------------------------
    def put_kv(self, key: str, value: Any) -> None:
        with self.tx() as c:
            c.execute(
                "INSERT INTO kv(key, value, updated_at) VALUES (?,?,?) ON CONFLICT(key) DO UPDATE "
                "SET value=excluded.value, updated_at=excluded.updated_at",
                (key, json.dumps(value), time.time()),
            )

    def get_kv(self, key: str) -> Any:
        rows = self.query("SELECT value FROM kv WHERE key=?", (key,))
        return json.loads(rows[0]["value"]) if rows else None

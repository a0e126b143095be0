"""The state store: station registry and live station state, shared by gateway and server.

SQLite (WAL) here, through envnet.store.database.Database; the tables below are the "state"
owner's in the state file's schema registry (envnet/store/schema.py). Everything goes through
the `StateStore` interface so that moving to PostgreSQL beyond one gateway (docs/design.md, "At
scale") is a new class, not a rewrite. The gateway writes station state; the server reads it
and writes the registry and alert changes.
"""

from __future__ import annotations

import heapq
import json
import sqlite3
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

from envnet.domain.alerts import summary_key
from envnet.store.database import is_url, open_database
from envnet.store.dialect import POSTGRESQL
from envnet.store.schema import STATE_DB

# Version 1: the schema as it was before versioning (never edit; append ALTERs as version 2...).
SCHEMA_V1 = """
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
-- OTA reports and command acks as the gateway received them (docs/ota.md); the server's
-- rollout worker folds them into its own tables (envnet/store/ota.py) and prunes them.
CREATE TABLE IF NOT EXISTS ota_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    station TEXT NOT NULL,
    sub TEXT NOT NULL,
    body TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at REAL NOT NULL
);
"""
STATE = STATE_DB.register(
    "state",
    module=__name__,
    tables=("stations", "station_state", "ota_events", "kv"),
    migrations=(SCHEMA_V1,),
)


class StateStore(Protocol):
    """What the gateway and server need from the state store, and nothing more."""

    def register_station(self, station_id: str, kind: str, meta: dict[str, Any]) -> bool: ...
    def get_station_meta(self, station_id: str) -> dict[str, Any] | None: ...
    def get_station_metas(self, station_ids: list[str]) -> dict[str, dict[str, Any]]: ...
    def record_readings(self, station_id: str, kind: str, rows: list[dict[str, Any]]) -> None: ...
    def record_readings_many(
        self, batches: list[tuple[str, str, list[dict[str, Any]]]]
    ) -> None: ...
    def record_status(self, station_id: str, state: str, body: dict, at: float) -> None: ...
    def record_health(self, station_id: str, body: dict, at: float) -> None: ...
    def list_stations(self) -> list[dict[str, Any]]: ...
    def station_views_json(
        self,
        now: float,
        stale_after_intervals: float,
        kind_interval_s: dict[str, float],
        default_kind: str = "air",
        kind: str | None = None,
        state: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> tuple[int, list[tuple[str, str, bool]]]: ...
    def get_station(self, station_id: str) -> dict[str, Any] | None: ...
    def put_kv(self, key: str, value: Any) -> None: ...
    def get_kv(self, key: str) -> Any: ...


def _sql_str(s: str) -> str:
    """A SQL string literal (for the few constants built into a statement)."""
    return "'" + s.replace("'", "''") + "'"


def _id(row: sqlite3.Row) -> str:
    return row[0]


def _loads(s: str | None) -> Any:
    return json.loads(s) if s else None


class SqliteStateStore:
    """The state file's station tables; `db` is the file's one connection in this process,
    shared by the alert, OTA and audit stores opened on this store."""

    def __init__(self, path: str | Path) -> None:
        """`path`: the SQLite file, or a `postgresql://` URL (settings.store.location)."""
        self.path: str | Path = path if is_url(path) else Path(path)
        self.db = open_database(self.path)
        self.db.ensure(STATE)
        self._with_indices: tuple[str, str] | None = None

    def close(self) -> None:
        self.db.close()

    def tx(self) -> AbstractContextManager[sqlite3.Connection]:
        """One write transaction (Database.transaction: BEGIN IMMEDIATE, nested calls are
        savepoints). An alert change, its history and its webhook event
        (envnet.store.webhooks.emit with conn=) commit together or not at all this way."""
        return self.db.transaction()

    def query(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        """A read; inside an open tx() it sees that transaction's own changes."""
        return self.db.query(sql, args)

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

    def get_station_metas(self, station_ids: list[str]) -> dict[str, dict[str, Any]]:
        """get_station_meta for many stations in one query (the gateway looks up a whole
        batch's stations at once); unregistered ids are absent from the answer."""
        rows = self.query(
            "SELECT id, kind, meta FROM stations WHERE id IN (SELECT value FROM json_each(?))",
            (json.dumps(station_ids),),
        )
        return {r[0]: {"kind": r[1], **json.loads(r[2])} for r in rows}

    # -- live state (written by the gateway) -----------------------------------------------
    def record_readings(self, station_id: str, kind: str, rows: list[dict[str, Any]]) -> None:
        """Remember the newest of a batch of accepted readings for one station."""
        self.record_readings_many([(station_id, kind, rows)])

    def record_readings_many(self, batches: list[tuple[str, str, list[dict[str, Any]]]]) -> None:
        """record_readings for many stations in one statement: the gateway's hot path."""
        params = []
        for station_id, kind, rows in batches:
            if not rows:
                continue
            newest = max(rows, key=lambda r: (r["ts"], r["seq"]))
            params.append(
                (
                    station_id,
                    kind,
                    max(r["received_at"] for r in rows),
                    len(rows),
                    newest["ts"],
                    newest["seq"],
                    json.dumps(newest["values"]),
                    json.dumps(newest["flags"]),
                )
            )
        if not params:
            return
        # In station order: two gateways' processors updating overlapping stations on
        # PostgreSQL lock the rows in the same order (no deadlock between them).
        params.sort(key=lambda p: p[0])
        # A replayed backlog may arrive after newer readings: "last" stays the newest by ts.
        # (In an UPDATE every right-hand side sees the old row, so the CASEs agree.)
        # Columns of the stored row are qualified (station_state.x): PostgreSQL finds a bare
        # name ambiguous beside excluded.x, SQLite takes either.
        newer = (
            "(station_state.last_reading_ts IS NULL"
            " OR excluded.last_reading_ts >= station_state.last_reading_ts)"
        )

        def keep(col: str) -> str:
            return f"{col}=CASE WHEN {newer} THEN excluded.{col} ELSE station_state.{col} END"

        with self.tx() as c:
            c.executemany(
                "INSERT INTO station_state(id, kind, last_seen, readings_total, last_reading_ts,"
                " last_seq, last_values, last_flags) VALUES (?,?,?,?,?,?,?,?)"
                " ON CONFLICT(id) DO UPDATE SET kind=excluded.kind,"
                " last_seen=max(coalesce(station_state.last_seen, 0), excluded.last_seen),"
                " readings_total=station_state.readings_total + excluded.readings_total,"
                f" {keep('last_seq')}, {keep('last_values')}, {keep('last_flags')},"
                f" {keep('last_reading_ts')}",
                params,
            )

    def record_status(self, station_id: str, state: str, body: dict, at: float) -> None:
        with self.tx() as c:
            c.execute(
                """INSERT INTO station_state(id, kind, last_seen, status, status_body, status_at)
                   VALUES (?,?,?,?,?,?)
                   ON CONFLICT(id) DO UPDATE SET status=excluded.status,
                       kind=coalesce(excluded.kind, station_state.kind),
                       status_body=excluded.status_body, status_at=excluded.status_at,
                       last_seen=CASE WHEN excluded.status='online'
                           THEN max(coalesce(station_state.last_seen, 0), excluded.last_seen)
                           ELSE station_state.last_seen END""",
                (station_id, body.get("kind"), at, state, json.dumps(body), at),
            )

    def record_health(self, station_id: str, body: dict, at: float) -> None:
        with self.tx() as c:
            c.execute(
                """INSERT INTO station_state(id, last_seen, health, health_at) VALUES (?,?,?,?)
                   ON CONFLICT(id) DO UPDATE SET health=excluded.health,
                       health_at=excluded.health_at,
                       last_seen=max(coalesce(station_state.last_seen, 0), excluded.last_seen)""",
                (station_id, at, json.dumps(body), at),
            )

    def record_ota_event(self, station_id: str, sub: str, body: dict, at: float) -> None:
        """An `ota` report or a `cmd/ack`, appended for the server's rollout worker."""
        with self.tx() as c:
            c.execute(
                "INSERT INTO ota_events(station, sub, body, at) VALUES (?,?,?,?)",
                (station_id, sub, json.dumps(body, ensure_ascii=False), at),
            )
            c.execute(
                "UPDATE station_state SET last_seen=max(coalesce(last_seen, 0), ?) WHERE id=?",
                (at, station_id),
            )

    # -- views (read by the server) --------------------------------------------------------
    _COLS = (
        "st.last_seen, st.last_reading_ts, st.last_seq, st.last_values, st.last_flags, "
        "st.readings_total, st.status, st.status_body, st.status_at, st.health, st.health_at"
    )
    # The latest indices' summary the evaluator saved (a primary-key lookup per row).
    # eval_state is the alert store's table (envnet/store/alerts.py): a state file the evaluator
    # never opened has none, and then the list carries no indices (see _views()).
    _INDICES = (
        f"(SELECT e.value FROM eval_state e WHERE e.key = {_sql_str(summary_key(''))} || {{id}})"
        " AS indices"
    )
    _NO_INDICES = "NULL AS indices"

    @staticmethod
    def _view_sql(indices: str) -> tuple[str, str]:
        registered = (
            f"SELECT s.id AS id, s.kind AS kind, s.meta AS meta, s.registered_at AS registered_at, "
            f"{SqliteStateStore._COLS}, {indices.format(id='s.id')} "
            f"FROM stations s LEFT JOIN station_state st ON st.id = s.id"
        )
        # Stations heard from but never provisioned: shown too, marked registered=false.
        unregistered = (
            f"SELECT st.id AS id, st.kind AS kind, NULL AS meta, NULL AS registered_at, "
            f"{SqliteStateStore._COLS}, {indices.format(id='st.id')} "
            f"FROM station_state st WHERE st.id NOT IN (SELECT id FROM stations)"
        )
        return registered, unregistered

    def _views(self) -> tuple[str, str]:
        """(registered, unregistered) station views, with the indices once eval_state exists."""
        if self._with_indices is None:
            if not self.db.has_table("eval_state"):
                return self._view_sql(self._NO_INDICES)  # ask again next time: it may appear
            self._with_indices = self._view_sql(self._INDICES)
        return self._with_indices

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
            "indices": _loads(r["indices"]) or {},
        }

    def list_stations(self) -> list[dict[str, Any]]:
        view, unreg = self._views()
        rows = self.query(f"{view} UNION ALL {unreg} ORDER BY 1")
        return [self._row(r) for r in rows]

    def station_views_json(
        self,
        now: float,
        stale_after_intervals: float,
        kind_interval_s: dict[str, float],
        default_kind: str = "air",
        kind: str | None = None,
        state: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> tuple[int, list[tuple[str, str, bool]]]:
        """GET /stations, done in SQLite: (total matching, [(id, view JSON, suspect)]).

        The view is built by SQLite from the stored JSON texts, spliced as they are (they were
        written by json.dumps here), so the server neither parses nor re-serialises 10,000
        rows. The `state` is derived in SQL exactly as server.app.derive_state does in Python
        (tests/test_stations_scale.py checks the two agree): offline after a last will, unknown
        when never heard, stale when quiet for more than `stale_after_intervals` publish
        intervals (meta.interval_s, else the birth's interval_s, else the kind's), else online
        when the birth says so. `suspect` marks rows whose stored JSON may hold NaN/Infinity
        (Python's json.dumps writes them, JSON has no such tokens): the caller re-encodes those
        few through the slow path. Rows are ordered by id; `limit`/`offset` page them.
        """
        cases = " ".join(
            f"WHEN {_sql_str(k)} THEN {float(v)!r}" for k, v in sorted(kind_interval_s.items())
        )
        default = float(kind_interval_s[default_kind])
        interval = (
            "coalesce(nullif(CAST(json_extract(meta, '$.interval_s') AS REAL), 0),"
            " nullif(CAST(json_extract(status_body, '$.interval_s') AS REAL), 0),"
            f" CASE coalesce(kind, {_sql_str(default_kind)}) {cases} ELSE {default!r} END)"
        )
        derived = (
            "CASE WHEN status = 'offline' THEN 'offline'"
            " WHEN last_seen IS NULL THEN 'unknown'"
            f" WHEN :now - last_seen > :stale * {interval} THEN 'stale'"
            " WHEN status = 'online' THEN 'online' ELSE 'stale' END"
        )
        # Two parts, registered and heard-but-unregistered, each in id order straight from its
        # primary-key index and merged here: no sort of 10,000 wide rows in a temp B-tree.
        view, unreg = self._views()
        parts = (f"SELECT {{cols}} FROM ({view}) v", f"SELECT {{cols}} FROM ({unreg}) v")
        where = (
            f" WHERE (:kind IS NULL OR v.kind = :kind) AND (:state IS NULL OR ({derived}) = :state)"
        )
        args: dict[str, Any] = {
            "now": now,
            "stale": stale_after_intervals,
            "kind": kind,
            "state": state,
        }

        def ts(col: str) -> str:  # %!.17g round-trips a double; json_quote keeps 15 digits
            return f"CASE WHEN {col} IS NULL THEN 'null' ELSE printf('%!.17g', {col}) END"

        obj = (
            "'{\"id\":' || json_quote(id) || ',\"kind\":' || json_quote(kind)"
            " || ',\"registered\":' || CASE WHEN registered_at IS NULL THEN 'false' ELSE 'true' END"
            f" || ',\"state\":\"' || ({derived}) || '\"'"
            f" || ',\"last_seen\":' || {ts('last_seen')}"
            f" || ',\"last_reading_ts\":' || {ts('last_reading_ts')}"
            " || ',\"last_seq\":' || json_quote(last_seq)"
            " || ',\"last_values\":' || coalesce(nullif(last_values, 'null'), '{}')"
            " || ',\"last_flags\":' || coalesce(nullif(last_flags, 'null'), '{}')"
            " || ',\"readings_total\":' || coalesce(readings_total, 0)"
            " || ',\"last_health\":' || coalesce(health, 'null')"
            " || ',\"meta\":' || coalesce(nullif(meta, 'null'), '{}')"
            " || ',\"indices\":' || coalesce(indices, '{}') || '}'"
        )
        suspect = " OR ".join(
            f"instr({c}, {t})"
            for c in ("last_values", "health", "meta")
            for t in ("'NaN'", "'Infinity'")
        )
        cols = f"id, {obj}, {suspect}"
        if self.db.dialect == POSTGRESQL:
            return self._views_json_in_sqlite(cols, where, args, limit, offset)
        with self.db.snapshot() as conn:
            if limit is None and not offset:
                sqls = [p.format(cols=cols) + where + " ORDER BY id" for p in parts]
                rows = list(heapq.merge(*(conn.execute(q, args).fetchall() for q in sqls), key=_id))
                total = len(rows)
            else:
                # Find the page's first and last id cheaply (no JSON built), then build the
                # JSON for that id range only: filtered rows in [lo, hi] are exactly the page.
                if state is None:
                    # Index-only: both id indexes merged in order, stepped over in SQLite (no
                    # wide rows read, no 10,000 ids brought into Python).
                    reg = "SELECT id FROM stations" + (" WHERE kind = :kind" if kind else "")
                    unreg = "SELECT id FROM station_state WHERE id NOT IN (SELECT id FROM stations)"
                    if kind:  # few rows: look their kind up one by one
                        unreg = (
                            f"SELECT u.id FROM ({unreg}) u WHERE"
                            " (SELECT kind FROM station_state x WHERE x.id = u.id) = :kind"
                        )
                    total = conn.execute(
                        f"SELECT (SELECT count(*) FROM ({reg})) + (SELECT count(*) FROM ({unreg}))",
                        args,
                    ).fetchone()[0]
                    lo, hi = conn.execute(
                        f"SELECT min(id), max(id) FROM (SELECT id FROM ({reg} UNION ALL {unreg})"
                        " ORDER BY id LIMIT :limit OFFSET :offset)",
                        {**args, "limit": -1 if limit is None else limit, "offset": offset},
                    ).fetchone()
                else:
                    # The state is derived per row: one pass over the matching ids.
                    ids = " UNION ALL ".join(p.format(cols="id") + where for p in parts)
                    all_ids = [r[0] for r in conn.execute(f"{ids} ORDER BY 1", args)]
                    total = len(all_ids)
                    page = all_ids[offset : None if limit is None else offset + limit]
                    lo, hi = (page[0], page[-1]) if page else (None, None)
                rows = []
                if lo is not None:
                    rng = {**args, "lo": lo, "hi": hi}
                    sqls = [
                        p.format(cols=cols) + where + " AND id BETWEEN :lo AND :hi ORDER BY id"
                        for p in parts
                    ]
                    rows = list(
                        heapq.merge(*(conn.execute(q, rng).fetchall() for q in sqls), key=_id)
                    )
        return total, [(r[0], r[1], bool(r[2])) for r in rows]

    # The view's columns, as station_views_json's SQL reads them.
    _VIEW_COLS = (
        "id, kind, meta, registered_at, last_seen, last_reading_ts, last_seq, last_values,"
        " last_flags, readings_total, status, status_body, status_at, health, health_at, indices"
    )

    def _views_json_in_sqlite(
        self,
        cols: str,
        where: str,
        args: dict[str, Any],
        limit: int | None,
        offset: int,
    ) -> tuple[int, list[tuple[str, str, bool]]]:
        """station_views_json on PostgreSQL: the station rows are read in one snapshot and the
        same SQLite statements build the JSON from them in an in-memory SQLite database, so
        the answer is byte for byte the SQLite path's (SQLite's printf, json_quote and JSON
        functions; the state derived by the same expression). PostgreSQL's float formatting,
        JSON functions and collation would each differ somewhere."""
        view, unreg = self._views()
        with self.db.snapshot() as conn:
            fetched = [
                conn.execute(f"SELECT {self._VIEW_COLS} FROM ({q}) v").fetchall()
                for q in (view, unreg)
            ]
        mem = sqlite3.connect(":memory:")
        try:
            sqls = []
            marks = ",".join("?" * len(self._VIEW_COLS.split(",")))
            for name, rows in zip(("reg", "unreg"), fetched, strict=True):
                # No declared types: every value keeps the type it was read with.
                mem.execute(f"CREATE TABLE {name}({self._VIEW_COLS}, PRIMARY KEY(id))")
                mem.executemany(f"INSERT INTO {name} VALUES ({marks})", [tuple(r) for r in rows])
                sqls.append(f"SELECT {cols} FROM {name} v{where} ORDER BY id")
            built = list(heapq.merge(*(mem.execute(q, args).fetchall() for q in sqls), key=_id))
        finally:
            mem.close()
        page = built[offset : None if limit is None else offset + limit]
        return len(built), [(r[0], r[1], bool(r[2])) for r in page]

    def get_station(self, station_id: str) -> dict[str, Any] | None:
        view, unreg = self._views()
        rows = self.query(f"SELECT * FROM ({view} UNION ALL {unreg}) v WHERE id=?", (station_id,))
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

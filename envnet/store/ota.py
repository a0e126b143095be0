"""OTA releases, rollouts and per-station update state, in the SQLite state store.

Same database file and connection as the station registry (like envnet/store/alerts.py), so a
rollout step, the targets it changes and its audit row commit together in one `state.tx()`.
The gateway only appends what stations say to `ota_events` (envnet/store/state.py); the
rollout worker (server/rollout.py) folds those into the tables here. The tables are the "ota"
owner's in the state file's schema registry (envnet/store/schema.py); `ota_events` is the
"state" owner's (the gateway writes it through the state store).
"""

from __future__ import annotations

import json
import time
from typing import Any

from envnet.store.schema import STATE_DB
from envnet.store.state import SqliteStateStore

# Version 1: the schema as it was before versioning (never edit; append ALTERs as version 2...).
SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS ota_releases (
    version TEXT PRIMARY KEY,
    manifest TEXT NOT NULL,
    manifest_sha256 TEXT NOT NULL,
    signature_checked INTEGER NOT NULL,
    files INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    registered_at REAL NOT NULL,
    registered_by TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ota_rollouts (
    id TEXT PRIMARY KEY,
    version TEXT NOT NULL,
    stages TEXT NOT NULL,
    stage INTEGER NOT NULL DEFAULT 0,
    stage_started_at REAL,
    state TEXT NOT NULL,
    failure_threshold REAL NOT NULL,
    stage_deadline_s REAL NOT NULL,
    reason TEXT,
    created_at REAL NOT NULL,
    created_by TEXT NOT NULL,
    updated_at REAL NOT NULL
);
-- At most one rollout is active (running or paused): a station is never asked for two
-- versions at once. Enforced by the database, so two server processes cannot both start one.
CREATE UNIQUE INDEX IF NOT EXISTS ota_one_active ON ota_rollouts((1))
    WHERE state IN ('running', 'paused');
CREATE TABLE IF NOT EXISTS ota_targets (
    rollout_id TEXT NOT NULL,
    station TEXT NOT NULL,
    stage INTEGER NOT NULL,
    state TEXT NOT NULL,
    cmd_id TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    first_sent_at REAL,
    sent_at REAL,
    acked_at REAL,
    reason TEXT,
    -- 1: a failure the operator accepted when resuming, no longer counted against the stage
    waived INTEGER NOT NULL DEFAULT 0,
    updated_at REAL NOT NULL,
    PRIMARY KEY (rollout_id, station)
);
CREATE INDEX IF NOT EXISTS ota_targets_by_station ON ota_targets(station, updated_at);
CREATE TABLE IF NOT EXISTS ota_station_reports (
    station TEXT PRIMARY KEY,
    version TEXT NOT NULL,
    from_version TEXT,
    state TEXT NOT NULL,
    reason TEXT,
    ts REAL,
    received_at REAL NOT NULL
);
"""
OTA = STATE_DB.register(
    "ota",
    module=__name__,
    tables=("ota_releases", "ota_rollouts", "ota_targets", "ota_station_reports"),
    migrations=(SCHEMA_V1,),
)

ACTIVE_ROLLOUT = ("running", "paused")
MAX_REASON = 500


def _row(r: Any) -> dict[str, Any]:
    return dict(zip(r.keys(), tuple(r), strict=True))


class SqliteOtaStore:
    def __init__(self, state: SqliteStateStore) -> None:
        self.state = state
        state.db.ensure(OTA)

    def _rows(self, sql: str, args: tuple = ()) -> list[dict[str, Any]]:
        return [_row(r) for r in self.state.query(sql, args)]

    # -- releases ----------------------------------------------------------------------------
    def put_release(
        self, manifest_text: str, sha256: str, signature_checked: bool, who: str
    ) -> dict[str, Any]:
        m = json.loads(manifest_text)
        with self.state.tx() as c:
            c.execute(
                "INSERT INTO ota_releases(version, manifest, manifest_sha256, signature_checked,"
                " files, bytes, registered_at, registered_by) VALUES (?,?,?,?,?,?,?,?)"
                " ON CONFLICT(version) DO UPDATE SET manifest=excluded.manifest,"
                " manifest_sha256=excluded.manifest_sha256,"
                " signature_checked=excluded.signature_checked, files=excluded.files,"
                " bytes=excluded.bytes, registered_at=excluded.registered_at,"
                " registered_by=excluded.registered_by",
                (
                    m["version"],
                    manifest_text,
                    sha256,
                    int(signature_checked),
                    len(m["files"]),
                    sum(f["size"] for f in m["files"]),
                    time.time(),
                    who,
                ),
            )
        return self.get_release(m["version"])  # type: ignore[return-value]

    def get_release(self, version: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM ota_releases WHERE version=?", (version,))
        return rows[0] if rows else None

    def list_releases(self) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM ota_releases ORDER BY registered_at")

    # -- rollouts ----------------------------------------------------------------------------
    def get_rollout(self, rollout_id: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM ota_rollouts WHERE id=?", (rollout_id,))
        return _rollout(rows[0]) if rows else None

    def list_rollouts(self, state: str | None = None) -> list[dict[str, Any]]:
        if state is None:
            rows = self._rows("SELECT * FROM ota_rollouts ORDER BY created_at DESC")
        else:
            rows = self._rows(
                "SELECT * FROM ota_rollouts WHERE state=? ORDER BY created_at DESC", (state,)
            )
        return [_rollout(r) for r in rows]

    def active_rollout(self) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM ota_rollouts WHERE state IN ('running', 'paused')")
        return _rollout(rows[0]) if rows else None

    def insert_rollout(self, r: dict[str, Any]) -> None:
        now = time.time()
        with self.state.tx() as c:
            c.execute(
                "INSERT INTO ota_rollouts(id, version, stages, stage, state, failure_threshold,"
                " stage_deadline_s, created_at, created_by, updated_at)"
                " VALUES (?,?,?,0,'running',?,?,?,?,?)",
                (
                    r["id"],
                    r["version"],
                    json.dumps(r["stages"], ensure_ascii=False),
                    r["failure_threshold"],
                    r["stage_deadline_s"],
                    now,
                    r["created_by"],
                    now,
                ),
            )

    def update_rollout(self, rollout_id: str, **changes: Any) -> None:
        cols = ", ".join(f"{k}=?" for k in changes)
        with self.state.tx() as c:
            c.execute(
                f"UPDATE ota_rollouts SET {cols}, updated_at=? WHERE id=?",
                (*changes.values(), time.time(), rollout_id),
            )

    # -- targets -----------------------------------------------------------------------------
    def targets(self, rollout_id: str, stage: int | None = None) -> list[dict[str, Any]]:
        if stage is None:
            return self._rows(
                "SELECT * FROM ota_targets WHERE rollout_id=? ORDER BY stage, station",
                (rollout_id,),
            )
        return self._rows(
            "SELECT * FROM ota_targets WHERE rollout_id=? AND stage=? ORDER BY station",
            (rollout_id, stage),
        )

    def add_targets(self, rollout_id: str, stage: int, stations: list[str]) -> None:
        now = time.time()
        with self.state.tx() as c:
            c.executemany(
                "INSERT OR IGNORE INTO ota_targets(rollout_id, station, stage, state, updated_at)"
                " VALUES (?,?,?,'pending',?)",
                [(rollout_id, s, stage, now) for s in stations],
            )

    def update_target(self, rollout_id: str, station: str, **changes: Any) -> None:
        if "reason" in changes and changes["reason"]:
            changes["reason"] = str(changes["reason"])[:MAX_REASON]
        cols = ", ".join(f"{k}=?" for k in changes)
        with self.state.tx() as c:
            c.execute(
                f"UPDATE ota_targets SET {cols}, updated_at=? WHERE rollout_id=? AND station=?",
                (*changes.values(), time.time(), rollout_id, station),
            )

    def target_by_cmd(self, cmd_id: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM ota_targets WHERE cmd_id=?", (cmd_id,))
        return rows[0] if rows else None

    def latest_target(self, station: str) -> dict[str, Any] | None:
        """The station's target in the newest rollout that named it."""
        rows = self._rows(
            "SELECT t.*, r.version AS version, r.state AS rollout_state FROM ota_targets t"
            " JOIN ota_rollouts r ON r.id = t.rollout_id WHERE t.station=?"
            " ORDER BY r.created_at DESC LIMIT 1",
            (station,),
        )
        return rows[0] if rows else None

    def latest_targets(self) -> dict[str, dict[str, Any]]:
        """latest_target() of every station at once (for GET /ota/stations)."""
        rows = self._rows(
            "SELECT t.*, r.version AS version, r.state AS rollout_state FROM ota_targets t"
            " JOIN ota_rollouts r ON r.id = t.rollout_id ORDER BY r.created_at"
        )
        return {r["station"]: r for r in rows}  # newer rollouts overwrite older ones

    # -- what stations said ------------------------------------------------------------------
    def put_report(self, station: str, body: dict[str, Any], received_at: float) -> None:
        with self.state.tx() as c:
            c.execute(
                "INSERT INTO ota_station_reports(station, version, from_version, state, reason,"
                " ts, received_at) VALUES (?,?,?,?,?,?,?) ON CONFLICT(station) DO UPDATE SET"
                " version=excluded.version, from_version=excluded.from_version,"
                " state=excluded.state, reason=excluded.reason, ts=excluded.ts,"
                " received_at=excluded.received_at",
                (
                    station,
                    body["version"],
                    body.get("from"),
                    body["state"],
                    (body.get("reason") or None) and str(body["reason"])[:MAX_REASON],
                    body.get("ts"),
                    received_at,
                ),
            )

    def reports(self) -> dict[str, dict[str, Any]]:
        return {r["station"]: r for r in self._rows("SELECT * FROM ota_station_reports")}

    def report(self, station: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM ota_station_reports WHERE station=?", (station,))
        return rows[0] if rows else None

    def events_after(self, cursor: int, limit: int = 1000) -> list[dict[str, Any]]:
        rows = self._rows(
            "SELECT * FROM ota_events WHERE id>? ORDER BY id LIMIT ?", (cursor, limit)
        )
        for r in rows:
            r["body"] = json.loads(r["body"])
        return rows

    def prune_events(self, upto_id: int, older_than: float) -> int:
        """Forget folded events; the worker's cursor is past them."""
        with self.state.tx() as c:
            return c.execute(
                "DELETE FROM ota_events WHERE id<=? AND at<?", (upto_id, older_than)
            ).rowcount


def _rollout(r: dict[str, Any]) -> dict[str, Any]:
    return {**r, "stages": json.loads(r["stages"])}

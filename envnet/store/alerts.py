"""The alert engine's store (envnet.domain.alerts.repository.AlertStore) in the SQLite state store.

Same database file and connection as the station registry, so that an alert change, its
history entry and the webhook event it causes share one transaction (`state.tx()`). The
tables are the "alerts" owner's in the state file's schema registry (envnet/store/schema.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from envnet.domain.alerts.repository import OPEN_STATES, Alert, DailyAqi, HistoryEntry
from envnet.store.schema import STATE_DB
from envnet.store.state import SqliteStateStore

# Version 1: the schema as it was before versioning (never edit; append ALTERs as version 2...).
SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS alerts (
    id TEXT PRIMARY KEY,
    station TEXT NOT NULL,
    rule TEXT NOT NULL,
    parameter TEXT NOT NULL,
    state TEXT NOT NULL,
    severity TEXT NOT NULL,
    opened_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    data TEXT NOT NULL
);
-- One open (or acknowledged) alert per (station, rule, parameter), enforced by the database.
CREATE UNIQUE INDEX IF NOT EXISTS alerts_one_open ON alerts(station, rule, parameter)
    WHERE state IN ('open', 'acknowledged');
CREATE INDEX IF NOT EXISTS alerts_by_time ON alerts(opened_at);
CREATE TABLE IF NOT EXISTS alert_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id TEXT NOT NULL,
    at REAL NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alert_history_by_alert ON alert_history(alert_id);
CREATE TABLE IF NOT EXISTS eval_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS daily_aqi (
    day TEXT NOT NULL, station TEXT NOT NULL, station_class TEXT NOT NULL, aqi INTEGER NOT NULL,
    PRIMARY KEY (day, station)
);
"""
# Version 2: a reviewer's invalidation rewrites a station-day's daily_aqi row (the episode's
# input) with the reviewed index; the evaluator's original is kept here until the restore
# puts it back (server/review/recompute.py).
SCHEMA_V2 = """
CREATE TABLE IF NOT EXISTS daily_aqi_original (
    day TEXT NOT NULL, station TEXT NOT NULL, station_class TEXT NOT NULL, aqi INTEGER NOT NULL,
    saved_at REAL NOT NULL,
    PRIMARY KEY (day, station)
);
"""
ALERTS = STATE_DB.register(
    "alerts",
    module=__name__,
    tables=("alerts", "alert_history", "eval_state", "daily_aqi", "daily_aqi_original"),
    migrations=(SCHEMA_V1, SCHEMA_V2),
)


class SqliteAlertStore:
    def __init__(self, state: SqliteStateStore) -> None:
        self.state = state
        state.db.ensure(ALERTS)

    def _rows(self, sql: str, args: tuple = ()) -> list:
        # Inside an open transaction this reads its uncommitted changes (same connection).
        return self.state.query(sql, args)

    @staticmethod
    def _alert(row) -> Alert:
        return Alert.from_dict(json.loads(row["data"]))

    def get_open_alert(self, station: str, rule: str, parameter: str) -> Alert | None:
        rows = self._rows(
            "SELECT data FROM alerts WHERE station=? AND rule=? AND parameter=?"
            " AND state IN ('open','acknowledged')",
            (station, rule, parameter),
        )
        return self._alert(rows[0]) if rows else None

    def get_alert(self, alert_id: str) -> Alert | None:
        rows = self._rows("SELECT data FROM alerts WHERE id=?", (alert_id,))
        return self._alert(rows[0]) if rows else None

    def list_open_alerts(self, station: str | None = None) -> list[Alert]:
        sql = "SELECT data FROM alerts WHERE state IN ('open','acknowledged')"
        args: tuple = ()
        if station is not None:
            sql, args = sql + " AND station=?", (station,)
        return [self._alert(r) for r in self._rows(sql + " ORDER BY opened_at", args)]

    def search(
        self,
        state: str | None = None,
        station: str | None = None,
        severity: str | None = None,
        rule: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 500,
    ) -> list[Alert]:
        """The server's GET /alerts filters; newest first."""
        where: list[str] = []
        args: list[object] = []
        for col, val in (
            ("state", state),
            ("station", station),
            ("severity", severity),
            ("rule", rule),
        ):
            if val is not None:
                where.append(f"{col}=?")
                args.append(val)
        if since is not None:
            where.append("opened_at>=?")
            args.append(since)
        if until is not None:
            where.append("opened_at<=?")
            args.append(until)
        sql = "SELECT data FROM alerts" + (" WHERE " + " AND ".join(where) if where else "")
        rows = self._rows(sql + " ORDER BY opened_at DESC LIMIT ?", (*args, limit))
        return [self._alert(r) for r in rows]

    def count_open(self) -> int:
        return self._rows("SELECT count(*) FROM alerts WHERE state IN ('open','acknowledged')")[0][
            0
        ]

    def insert_alert(self, alert: Alert) -> None:
        d = alert.to_dict()
        with self.state.tx() as c:
            c.execute(
                "INSERT INTO alerts(id, station, rule, parameter, state, severity, opened_at,"
                " updated_at, data) VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    alert.id,
                    alert.station,
                    alert.rule,
                    alert.parameter,
                    alert.state,
                    alert.severity,
                    alert.opened_at,
                    alert.updated_at or alert.opened_at,
                    json.dumps(d, ensure_ascii=False),
                ),
            )

    def update_alert(self, alert_id: str, changes: Mapping[str, Any]) -> None:
        """Merge only the changed fields, so the gateway never overwrites the server's ack."""
        with self.state.tx() as c:
            row = c.execute("SELECT data FROM alerts WHERE id=?", (alert_id,)).fetchone()
            if row is None:
                raise KeyError(alert_id)
            d = {**json.loads(row["data"]), **changes}
            c.execute(
                "UPDATE alerts SET state=?, severity=?, updated_at=?, data=? WHERE id=?",
                (
                    d["state"],
                    d["severity"],
                    d.get("updated_at") or d["opened_at"],
                    json.dumps(d, ensure_ascii=False),
                    alert_id,
                ),
            )

    def append_history(self, entry: HistoryEntry) -> None:
        with self.state.tx() as c:
            c.execute(
                "INSERT INTO alert_history(alert_id, at, data) VALUES (?,?,?)",
                (entry.alert_id, entry.at, json.dumps(entry.to_dict(), ensure_ascii=False)),
            )

    def history(self, alert_id: str) -> list[HistoryEntry]:
        rows = self._rows(
            "SELECT data FROM alert_history WHERE alert_id=? ORDER BY id", (alert_id,)
        )
        return [HistoryEntry(**json.loads(r["data"])) for r in rows]

    def load_state(self, key: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT value FROM eval_state WHERE key=?", (key,))
        return json.loads(rows[0]["value"]) if rows else None

    def save_state(self, key: str, state: dict[str, Any]) -> None:
        with self.state.tx() as c:
            c.execute(
                "INSERT INTO eval_state(key, value) VALUES (?,?) ON CONFLICT(key)"
                " DO UPDATE SET value=excluded.value",
                # ASCII (Chinese labels as \u escapes): GET /stations splices the indices
                # summary saved here into its answer, and an all-ASCII body skips Python's
                # slow path for joining and encoding non-ASCII text (3 ms per 1,000 rows).
                (key, json.dumps(state, allow_nan=False, ensure_ascii=True)),
            )

    def put_daily_aqi(self, day: str, station: str, station_class: str, aqi: int) -> None:
        with self.state.tx() as c:
            c.execute(
                "INSERT INTO daily_aqi(day, station, station_class, aqi) VALUES (?,?,?,?)"
                " ON CONFLICT(day, station) DO UPDATE SET aqi=excluded.aqi,"
                " station_class=excluded.station_class",
                (day, station, station_class, aqi),
            )

    def daily_aqis(self, day: str) -> list[DailyAqi]:
        rows = self._rows("SELECT station, station_class, aqi FROM daily_aqi WHERE day=?", (day,))
        return [DailyAqi(r[0], r[1], r[2]) for r in rows]

    # -- a reviewer's rewrite of daily_aqi (the evaluator never calls these) --------------
    def review_daily_aqi(self, day: str, station: str, aqi: int | None) -> bool:
        """Replace the station-day's daily AQI by the reviewed one (`None`: no valid day left,
        the row goes), keeping the evaluator's original in daily_aqi_original (the first
        time only: a second rewrite keeps the true original). False when neither a row nor a
        kept original exists (the evaluator has not summarised the day): nothing to review."""
        with self.state.tx() as c:
            kept = c.execute(
                "SELECT station_class FROM daily_aqi_original WHERE day=? AND station=?",
                (day, station),
            ).fetchone()
            row = c.execute(
                "SELECT aqi FROM daily_aqi WHERE day=? AND station=?", (day, station)
            ).fetchone()
            if kept is not None and (row[0] if row is not None else None) == aqi:
                return False  # already the reviewed row: a second run writes nothing
            if kept is None:
                cur = c.execute(
                    "INSERT INTO daily_aqi_original(day, station, station_class, aqi, saved_at)"
                    " SELECT day, station, station_class, aqi, ? FROM daily_aqi"
                    " WHERE day=? AND station=?",
                    (time.time(), day, station),
                )
                if cur.rowcount == 0:
                    return False
                kept = c.execute(
                    "SELECT station_class FROM daily_aqi_original WHERE day=? AND station=?",
                    (day, station),
                ).fetchone()
            c.execute("DELETE FROM daily_aqi WHERE day=? AND station=?", (day, station))
            if aqi is not None:
                c.execute(
                    "INSERT INTO daily_aqi(day, station, station_class, aqi) VALUES (?,?,?,?)",
                    (day, station, kept[0], aqi),
                )
        return True

    def restore_daily_aqi(self, day: str, station: str) -> bool:
        """Put the evaluator's original row back exactly; False when none was kept."""
        with self.state.tx() as c:
            cur = c.execute(
                "INSERT INTO daily_aqi(day, station, station_class, aqi)"
                " SELECT day, station, station_class, aqi FROM daily_aqi_original"
                " WHERE day=? AND station=? ON CONFLICT(day, station) DO UPDATE SET"
                " aqi=excluded.aqi, station_class=excluded.station_class",
                (day, station),
            )
            if cur.rowcount == 0:
                return False
            c.execute("DELETE FROM daily_aqi_original WHERE day=? AND station=?", (day, station))
        return True

    def daily_aqi_reviewed(self, day: str, station: str) -> bool:
        """Whether the station-day's row is a reviewer's rewrite (an original is kept)."""
        return bool(
            self._rows("SELECT 1 FROM daily_aqi_original WHERE day=? AND station=?", (day, station))
        )


__all__ = ["SqliteAlertStore", "OPEN_STATES"]

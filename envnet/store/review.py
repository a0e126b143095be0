"""Reviewers' invalidations, the alerts they mark, and calibrations, in the state store.

Tables (the "review" owner's in the state file's schema registry, envnet/store/schema.py):

- `review_invalidations`: one row per invalidation, never deleted. A restore sets
  `restored_at`/`restored_by`; the row stays, so the history of what counted when is kept.
  Active = not restored. Two active invalidations of one station may not overlap in hours
  and parameters (the second is refused: restore or narrow the first).
- `review_alert_marks`: which alerts an invalidation marked (the alerts themselves are not
  changed or deleted; GET /review/invalidations/{id} and GET /alerts readers join here).
- `review_calibrations`: each fitted calibration (station, reference, parameter, period, n,
  slope, humidity, offset, R², RMSE, bias) and its status: `applied` or `withdrawn`.

Every change goes with its audit row (envnet.store.audit) in the same transaction: actions
`review.invalidate`, `review.restore`, `review.calibration.apply`,
`review.calibration.withdraw`.

HJ 212: an invalidation and a restore each record, in their transaction, the correction the
uplink owes the platforms (envnet.store.hj212_corrections; docs/hj212.md "Corrections").

Hooks: `MARK_HOOKS` are called inside the invalidation's transaction with (store, row) and
return the ids of whatever else they marked (cases, issue 16, registers one there); their ids
are returned with the alert marks under their hook's name.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from envnet.domain.review.calibration import Fit, Quality
from envnet.domain.review.invalidation import (
    ALL,
    Request,
    covers,
    params_overlap,
)
from envnet.store import hj212_corrections
from envnet.store.audit import record_audit
from envnet.store.schema import STATE_DB
from envnet.store.state import SqliteStateStore

SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS review_invalidations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    station TEXT NOT NULL,
    start REAL NOT NULL,
    "end" REAL NOT NULL,
    hour_start INTEGER NOT NULL,
    hour_end INTEGER NOT NULL,
    parameters TEXT NOT NULL,
    reason TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    created_by TEXT NOT NULL,
    created_at REAL NOT NULL,
    restored_by TEXT,
    restored_at REAL
);
CREATE INDEX IF NOT EXISTS review_invalidations_by_station
    ON review_invalidations(station, hour_start, hour_end);
CREATE INDEX IF NOT EXISTS review_invalidations_by_hours
    ON review_invalidations(hour_start, hour_end);
CREATE TABLE IF NOT EXISTS review_alert_marks (
    invalidation_id INTEGER NOT NULL REFERENCES review_invalidations(id),
    alert_id TEXT NOT NULL,
    marked_at REAL NOT NULL,
    PRIMARY KEY (invalidation_id, alert_id)
);
CREATE INDEX IF NOT EXISTS review_alert_marks_by_alert ON review_alert_marks(alert_id);
CREATE TABLE IF NOT EXISTS review_calibrations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    station TEXT NOT NULL,
    reference TEXT NOT NULL,
    parameter TEXT NOT NULL,
    period_start INTEGER NOT NULL,
    period_end INTEGER NOT NULL,
    n INTEGER NOT NULL,
    slope REAL NOT NULL,
    humidity REAL NOT NULL,
    "offset" REAL NOT NULL,
    r2 REAL,
    rmse REAL,
    bias REAL,
    status TEXT NOT NULL,
    problems TEXT NOT NULL DEFAULT '[]',
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS review_calibrations_by_station
    ON review_calibrations(station, parameter, period_end);
"""
REVIEW = STATE_DB.register(
    "review",
    module=__name__,
    tables=("review_invalidations", "review_alert_marks", "review_calibrations"),
    migrations=(SCHEMA_V1,),
)

MarkHook = Callable[[SqliteStateStore, "Invalidation"], list[str]]
MARK_HOOKS: dict[str, MarkHook] = {}  # name -> hook (cases: "cases")


class NotFound(LookupError):
    pass


class Conflict(ValueError):
    """The change conflicts with the stored state (overlap, already restored)."""


@dataclass(frozen=True, slots=True)
class Invalidation:
    id: int
    station: str
    start: float
    end: float
    hour_start: int
    hour_end: int
    parameters: tuple[str, ...]
    reason: str
    note: str
    created_by: str
    created_at: float
    restored_by: str | None
    restored_at: float | None

    @property
    def active(self) -> bool:
        return self.restored_at is None

    def covers(self, param: str) -> bool:
        return covers(self.parameters, param)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["parameters"] = list(self.parameters)
        d["active"] = self.active
        return d


def _row(r: Any) -> Invalidation:
    return Invalidation(
        r["id"],
        r["station"],
        r["start"],
        r["end"],
        r["hour_start"],
        r["hour_end"],
        tuple(json.loads(r["parameters"])),
        r["reason"],
        r["note"],
        r["created_by"],
        r["created_at"],
        r["restored_by"],
        r["restored_at"],
    )


def ensure_schema(store: SqliteStateStore) -> None:
    store.db.ensure(REVIEW)


_COLS = (
    'id, station, start, "end", hour_start, hour_end, parameters, reason, note, created_by,'
    " created_at, restored_by, restored_at"
)


def get(store: SqliteStateStore, inv_id: int) -> Invalidation | None:
    ensure_schema(store)
    rows = store.query(f"SELECT {_COLS} FROM review_invalidations WHERE id=?", (inv_id,))
    return _row(rows[0]) if rows else None


def overlapping(store: SqliteStateStore, req: Request) -> list[Invalidation]:
    """Active invalidations of the station whose hours and parameters overlap the request."""
    rows = store.query(
        f"SELECT {_COLS} FROM review_invalidations WHERE station=? AND restored_at IS NULL"
        " AND hour_start < ? AND hour_end > ?",
        (req.station, req.hour_end, req.hour_start),
    )
    return [inv for inv in map(_row, rows) if params_overlap(inv.parameters, req.parameters)]


def add(store: SqliteStateStore, req: Request, actor: str) -> tuple[Invalidation, dict]:
    """Store the invalidation, mark the alerts it touches, write the audit row: one
    transaction. Raises Conflict (nothing written) when it overlaps an active one."""
    ensure_schema(store)
    now = time.time()
    with store.tx() as c:
        clash = overlapping(store, req)
        if clash:
            ids = ", ".join(str(i.id) for i in clash)
            raise Conflict(
                f"overlaps active invalidation(s) {ids} of {req.station} (same hours and"
                " parameters): restore or narrow them first"
            )
        cur = c.execute(
            'INSERT INTO review_invalidations(station, start, "end", hour_start, hour_end,'
            " parameters, reason, note, created_by, created_at) VALUES (?,?,?,?,?,?,?,?,?,?)"
            " RETURNING id",
            (
                req.station,
                req.start,
                req.end,
                req.hour_start,
                req.hour_end,
                json.dumps(list(req.parameters)),
                req.reason,
                req.note,
                actor,
                now,
            ),
        )
        inv = get(store, int(cur.fetchone()[0]))
        assert inv is not None
        marks = {"alerts": mark_alerts(store, inv, now)}
        for name, hook in MARK_HOOKS.items():
            marks[name] = hook(store, inv)
        _owe_hj212(store, inv, "invalidate")
        record_audit(
            store,
            actor=actor,
            action="review.invalidate",
            target=req.station,
            detail={**inv.to_dict(), "marked": marks},
            at=now,
        )
    return inv, marks


def mark_alerts(store: SqliteStateStore, inv: Invalidation, now: float) -> list[str]:
    """Mark (not delete, not change) the alerts the invalidated data opened: the station's
    alerts opened (data time) inside the invalidated hours, on a covered parameter. The
    alerts table is read only if the alert store has made it."""
    if not store.db.has_table("alerts"):
        return []  # no alert store in this file yet: nothing to mark
    rows = store.query(
        "SELECT id, parameter FROM alerts WHERE station=? AND opened_at>=? AND opened_at<?",
        (inv.station, inv.hour_start, inv.hour_end),
    )
    ids = [r["id"] for r in rows if ALL in inv.parameters or r["parameter"] in inv.parameters]
    with store.tx() as c:
        c.executemany(
            "INSERT OR IGNORE INTO review_alert_marks(invalidation_id, alert_id, marked_at)"
            " VALUES (?,?,?)",
            [(inv.id, a, now) for a in ids],
        )
    return ids


def marked_alerts(store: SqliteStateStore, inv_id: int) -> list[str]:
    ensure_schema(store)
    rows = store.query(
        "SELECT alert_id FROM review_alert_marks WHERE invalidation_id=? ORDER BY alert_id",
        (inv_id,),
    )
    return [r[0] for r in rows]


def alert_marks(store: SqliteStateStore, alert_ids: list[str]) -> dict[str, list[int]]:
    """alert id -> ids of the active invalidations that marked it."""
    ensure_schema(store)
    if not alert_ids:
        return {}
    q = ",".join("?" * len(alert_ids))
    rows = store.query(
        "SELECT m.alert_id, m.invalidation_id FROM review_alert_marks m JOIN"
        " review_invalidations i ON i.id = m.invalidation_id"
        f" WHERE i.restored_at IS NULL AND m.alert_id IN ({q})",
        tuple(alert_ids),
    )
    out: dict[str, list[int]] = {}
    for r in rows:
        out.setdefault(r[0], []).append(r[1])
    return out


def restore(store: SqliteStateStore, inv_id: int, actor: str) -> Invalidation:
    """Make the data count again: the row stays, marked restored; audit row in the same tx."""
    ensure_schema(store)
    now = time.time()
    with store.tx() as c:
        inv = get(store, inv_id)
        if inv is None:
            raise NotFound(f"no invalidation {inv_id}")
        if not inv.active:
            raise Conflict(f"invalidation {inv_id} was already restored at {inv.restored_at}")
        c.execute(
            "UPDATE review_invalidations SET restored_at=?, restored_by=? WHERE id=?",
            (now, actor, inv_id),
        )
        _owe_hj212(store, inv, "restore")
        record_audit(
            store,
            actor=actor,
            action="review.restore",
            target=inv.station,
            detail={"id": inv_id, "hour_start": inv.hour_start, "hour_end": inv.hour_end},
            at=now,
        )
    out = get(store, inv_id)
    assert out is not None
    return out


def _owe_hj212(
    store: SqliteStateStore, inv: Invalidation, action: hj212_corrections.Action
) -> None:
    """The HJ 212 hour and day data already sent for these hours are re-sent by the uplink
    (envnet.store.hj212_corrections): recorded in the change's own transaction."""
    hj212_corrections.record(
        store,
        invalidation_id=inv.id,
        action=action,
        station=inv.station,
        hour_start=inv.hour_start,
        hour_end=inv.hour_end,
    )


def search(
    store: SqliteStateStore,
    *,
    station: str | None = None,
    active: bool | None = None,
    since: float | None = None,
    until: float | None = None,
    created_since: float | None = None,
    limit: int = 1000,
) -> list[Invalidation]:
    """Newest first; `since`/`until` select invalidations whose hours overlap that span,
    `created_since` those made at or after that time."""
    ensure_schema(store)
    where: list[str] = []
    args: list[Any] = []
    if station is not None:
        where.append("station=?")
        args.append(station)
    if active is not None:
        where.append("restored_at IS NULL" if active else "restored_at IS NOT NULL")
    if since is not None:
        where.append("hour_end>?")
        args.append(since)
    if until is not None:
        where.append("hour_start<?")
        args.append(until)
    if created_since is not None:
        where.append("created_at>=?")
        args.append(created_since)
    sql = f"SELECT {_COLS} FROM review_invalidations"
    if where:
        sql += " WHERE " + " AND ".join(where)
    rows = store.query(sql + " ORDER BY id DESC LIMIT ?", (*args, limit))
    return [_row(r) for r in rows]


def active_between(store: SqliteStateStore, start: float, end: float) -> list[Invalidation]:
    """Active invalidations touching [start, end): what the reports take out."""
    return search(store, active=True, since=start, until=end, limit=1_000_000)


# -- calibrations ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Calibration:
    id: int
    station: str
    reference: str
    parameter: str
    period_start: int
    period_end: int
    n: int
    slope: float
    humidity: float
    offset: float
    r2: float | None
    rmse: float | None
    bias: float | None
    status: str  # applied | withdrawn
    problems: tuple[str, ...]
    created_at: float

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["problems"] = list(self.problems)
        return d


def save_calibration(
    store: SqliteStateStore,
    *,
    station: str,
    reference: str,
    parameter: str,
    period: tuple[int, int],
    fit: Fit,
    quality: Quality,
    actor: str = "calibration",
) -> Calibration:
    """Store one fitted calibration; `applied` when its quality passes, else `withdrawn`."""
    ensure_schema(store)
    status = "applied" if quality.ok else "withdrawn"
    now = time.time()
    with store.tx() as c:
        cur = c.execute(
            "INSERT INTO review_calibrations(station, reference, parameter, period_start,"
            ' period_end, n, slope, humidity, "offset", r2, rmse, bias, status, problems,'
            " created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) RETURNING id",
            (
                station,
                reference,
                parameter,
                period[0],
                period[1],
                quality.n,
                fit.slope,
                fit.humidity,
                fit.offset,
                quality.r2,
                quality.rmse,
                quality.bias,
                status,
                json.dumps(list(quality.problems)),
                now,
            ),
        )
        cal_id = int(cur.fetchone()[0])
        record_audit(
            store,
            actor=actor,
            action=f"review.calibration.{'apply' if quality.ok else 'withdraw'}",
            target=station,
            detail={"id": cal_id, "parameter": parameter, "problems": list(quality.problems)},
            at=now,
        )
    out = calibrations(store, station=station, parameter=parameter, limit=1)
    return out[0]


def calibrations(
    store: SqliteStateStore,
    *,
    station: str | None = None,
    parameter: str | None = None,
    limit: int = 1000,
) -> list[Calibration]:
    ensure_schema(store)
    where, args = [], []
    for col, v in (("station", station), ("parameter", parameter)):
        if v is not None:
            where.append(f"{col}=?")
            args.append(v)
    sql = "SELECT * FROM review_calibrations"
    if where:
        sql += " WHERE " + " AND ".join(where)
    rows = store.query(sql + " ORDER BY id DESC LIMIT ?", (*args, limit))
    return [
        Calibration(
            r["id"],
            r["station"],
            r["reference"],
            r["parameter"],
            r["period_start"],
            r["period_end"],
            r["n"],
            r["slope"],
            r["humidity"],
            r["offset"],
            r["r2"],
            r["rmse"],
            r["bias"],
            r["status"],
            tuple(json.loads(r["problems"])),
            r["created_at"],
        )
        for r in rows
    ]


def applied_calibration(
    store: SqliteStateStore, station: str, parameter: str
) -> Calibration | None:
    """The latest calibration of the station's parameter, if it is applied (a withdrawn
    latest one means: apply none until a person has looked)."""
    latest = calibrations(store, station=station, parameter=parameter, limit=1)
    return latest[0] if latest and latest[0].status == "applied" else None

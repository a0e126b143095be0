"""HJ 212 corrections owed to the platforms: where the server and the uplink meet.

When a reviewer invalidates or restores data (envnet.store.review add/restore), the hour (2061)
and day (2031) data the HJ 212 uplink already sent for those hours are out of date. The review
store records one row here *in the transaction of the change* (`record`), so a change that
commits always leaves its correction behind, and one that rolls back leaves none. The uplink
process (gateway/uplink_corrections.py) takes the pending rows, re-sends the reviewed data and
marks them done (`mark_done`). Neither process imports the other; they meet in this table.

A row says which station and which hours [hour_start, hour_end) changed and why (`action`,
`invalidate` or `restore`, with the invalidation's id). It does not carry the values: the
uplink reads the readings and the invalidations as they stand when it sends, so two changes
in a row converge on the state after the second.

Table `hj212_corrections` (owner "hj212_corrections" in the state file's registry). Rows are
kept (done ones with `done_at` and how many packets were queued) as the trail of what was
re-sent; they are small (one per review change).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

from envnet.store.schema import STATE_DB
from envnet.store.state import SqliteStateStore

SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS hj212_corrections (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    invalidation_id INTEGER NOT NULL,
    action TEXT NOT NULL,
    station TEXT NOT NULL,
    hour_start INTEGER NOT NULL,
    hour_end INTEGER NOT NULL,
    created_at REAL NOT NULL,
    done_at REAL,
    done_by TEXT,
    packets INTEGER
);
CREATE INDEX IF NOT EXISTS hj212_corrections_pending ON hj212_corrections(done_at, id);
"""
HJ212_CORRECTIONS = STATE_DB.register(
    "hj212_corrections",
    module=__name__,
    tables=("hj212_corrections",),
    migrations=(SCHEMA_V1,),
)

Action = Literal["invalidate", "restore"]


@dataclass(frozen=True, slots=True)
class Correction:
    id: int
    invalidation_id: int
    action: str
    station: str
    hour_start: int
    hour_end: int
    created_at: float
    done_at: float | None
    done_by: str | None
    packets: int | None

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}


def ensure_schema(store: SqliteStateStore) -> None:
    store.db.ensure(HJ212_CORRECTIONS)


def record(
    store: SqliteStateStore,
    *,
    invalidation_id: int,
    action: Action,
    station: str,
    hour_start: int,
    hour_end: int,
    at: float | None = None,
) -> int:
    """One correction owed; call it inside the review change's transaction (store.tx())."""
    if action not in ("invalidate", "restore"):
        raise ValueError(f"action must be invalidate or restore, not {action!r}")
    if hour_end <= hour_start:
        raise ValueError(f"empty hour range [{hour_start}, {hour_end})")
    ensure_schema(store)
    with store.tx() as c:
        cur = c.execute(
            "INSERT INTO hj212_corrections(invalidation_id, action, station, hour_start,"
            " hour_end, created_at) VALUES (?,?,?,?,?,?) RETURNING id",
            (
                invalidation_id,
                action,
                station,
                hour_start,
                hour_end,
                time.time() if at is None else at,
            ),
        )
        return int(cur.fetchone()[0])


_COLS = (
    "id, invalidation_id, action, station, hour_start, hour_end, created_at, done_at, done_by,"
    " packets"
)


def _row(r: Any) -> Correction:
    return Correction(*(r[k] for k in _COLS.split(", ")))


def pending(store: SqliteStateStore, limit: int = 100) -> list[Correction]:
    """Corrections not yet queued by the uplink, oldest first (the order they were made)."""
    ensure_schema(store)
    rows = store.query(
        f"SELECT {_COLS} FROM hj212_corrections WHERE done_at IS NULL ORDER BY id LIMIT ?",
        (limit,),
    )
    return [_row(r) for r in rows]


def search(store: SqliteStateStore, *, station: str | None = None) -> list[Correction]:
    """Every correction (done or not) of a station or of all, oldest first."""
    ensure_schema(store)
    sql, args = f"SELECT {_COLS} FROM hj212_corrections", tuple[str, ...]()
    if station is not None:
        sql, args = sql + " WHERE station=?", (station,)
    return [_row(r) for r in store.query(sql + " ORDER BY id", args)]


def mark_done(store: SqliteStateStore, correction_id: int, by: str, packets: int) -> None:
    """The uplink `by` (its client id) has queued the correction's packets (`packets`)."""
    ensure_schema(store)
    with store.tx() as c:
        c.execute(
            "UPDATE hj212_corrections SET done_at=?, done_by=?, packets=?"
            " WHERE id=? AND done_at IS NULL",
            (time.time(), by, packets, correction_id),
        )

"""The audit trail: who changed what, and when, in the state store's database.

One append-only table, `audit`, in the same SQLite file (and connection) as the station
registry and the alerts, so an audit row can share a transaction with the change it records
(`with state.tx(): change(); record_audit(state, ...)`). Rows are never updated or deleted by
envnet: SQLite triggers refuse UPDATE and DELETE on the table, and no API route writes to it.

Actors are names, never secrets: an API key's *name* (`server.api_keys`), a console user, an
OS user. `detail` must not carry keys or passwords; `record_audit` drops any detail field whose
name looks like a secret (see SECRET_FIELDS) as a last line of defence.

Action names (docs/audit.md lists them all): `alert.ack`, `webhook.subscription.create`,
`webhook.subscription.delete`, `webhook.delivery.redeliver`, `station.provision`,
`station.config.set`, `station.calibrate`, `station.maint.start`, `station.maint.end`,
`station.reboot`. For a station command (console or MQTT) `station_action()` gives the
action and detail from the firmware request and its answer.

The table is the "audit" owner's in the state file's schema registry (envnet/store/schema.py);
it is made the first time the trail is written or read through a store, not when the state
store opens.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envnet.store.schema import STATE_DB
from envnet.store.state import SqliteStateStore

# Version 1: the schema as it was before versioning (never edit; append ALTERs as version 2...).
SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS audit_by_at ON audit(at, id);
CREATE INDEX IF NOT EXISTS audit_by_target ON audit(target, at);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
"""
AUDIT = STATE_DB.register("audit", module=__name__, tables=("audit",), migrations=(SCHEMA_V1,))

# Detail fields never written to the trail, whatever the caller passes.
SECRET_FIELDS = frozenset(
    {"api_key", "api_keys", "password", "passwd", "secret", "token", "authorization"}
)
MAX_LIMIT = 5000


@dataclass(frozen=True)
class AuditRow:
    id: int
    at: float
    actor: str
    action: str
    target: str
    detail: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at,
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "detail": self.detail,
        }


def ensure_schema(store: SqliteStateStore) -> None:
    """Create (or upgrade) the table, its indexes and its append-only triggers (idempotent)."""
    store.db.ensure(AUDIT)


def _clean(detail: dict[str, Any] | None) -> dict[str, Any]:
    if not detail:
        return {}
    out: dict[str, Any] = {}
    for k, v in detail.items():
        if str(k).lower() in SECRET_FIELDS:
            continue
        out[str(k)] = _clean(v) if isinstance(v, dict) else v
    return out


def record_audit(
    store: SqliteStateStore,
    *,
    actor: str,
    action: str,
    target: str,
    detail: dict[str, Any] | None = None,
    at: float | None = None,
) -> int:
    """Append one row; returns its id. Joins the caller's open `store.tx()` if there is one."""
    if not actor or not action:
        raise ValueError("an audit row needs an actor and an action")
    ensure_schema(store)
    body = json.dumps(_clean(detail), ensure_ascii=False, sort_keys=True, default=str)
    with store.tx() as c:
        cur = c.execute(
            "INSERT INTO audit(at, actor, action, target, detail) VALUES (?,?,?,?,?) RETURNING id",
            (time.time() if at is None else float(at), actor, action, target or "", body),
        )
        return int(cur.fetchone()[0])


# -- reading --------------------------------------------------------------------------------
CURSOR_RE = r"^[0-9]{1,18}$"


def encode_cursor(row: AuditRow) -> str:
    """The cursor is the id of the last row of a page; rows are never deleted, so it stays
    valid, and (at, id) of that row is where the next page starts."""
    return str(row.id)


def decode_cursor(cursor: str) -> int:
    """Raises ValueError on anything that is not a cursor this module produced."""
    if not re.match(CURSOR_RE, cursor or ""):
        raise ValueError("not a valid cursor (take next_cursor from the previous page)")
    return int(cursor)


def _where(
    since: float | None,
    until: float | None,
    actor: str | None,
    action: str | None,
    target: str | None,
    cursor: str | None,
) -> tuple[str, list[Any]]:
    where: list[str] = []
    args: list[Any] = []
    for col, val in (("actor", actor), ("target", target)):
        if val is not None:
            where.append(f"{col}=?")
            args.append(val)
    if action is not None:
        # `station.maint` matches station.maint.start and station.maint.end too.
        where.append("(action=? OR action LIKE ? ESCAPE '\\')")
        args += [action, _like_prefix(action) + ".%"]
    if since is not None:
        where.append("at>=?")
        args.append(since)
    if until is not None:
        where.append("at<=?")
        args.append(until)
    if cursor is not None:
        c_id = decode_cursor(cursor)
        c_at = "(SELECT at FROM audit WHERE id=?)"
        where.append(f"(at<{c_at} OR (at={c_at} AND id<?))")
        args += [c_id, c_id, c_id]
    return (" WHERE " + " AND ".join(where)) if where else "", args


def _like_prefix(s: str) -> str:
    return s.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def query_audit(
    store: SqliteStateStore,
    *,
    since: float | None = None,
    until: float | None = None,
    actor: str | None = None,
    action: str | None = None,
    target: str | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> tuple[list[AuditRow], str | None]:
    """Rows newest first, and the cursor for the next (older) page, or None on the last page.

    `action` matches exactly or as a dotted prefix (`station.maint` finds start and end)."""
    ensure_schema(store)
    limit = max(1, min(int(limit), MAX_LIMIT))
    where, args = _where(since, until, actor, action, target, cursor)
    rows = store.query(
        f"SELECT id, at, actor, action, target, detail FROM audit{where}"
        " ORDER BY at DESC, id DESC LIMIT ?",
        (*args, limit + 1),
    )
    out = [_row(r) for r in rows[:limit]]
    more = len(rows) > limit
    return out, (encode_cursor(out[-1]) if more and out else None)


def _row(r: sqlite3.Row) -> AuditRow:
    return AuditRow(
        id=r["id"],
        at=r["at"],
        actor=r["actor"],
        action=r["action"],
        target=r["target"],
        detail=json.loads(r["detail"]) if r["detail"] else {},
    )


def os_user() -> str:
    """The logged-in user's name (the default actor of the command-line tools)."""
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry (some containers): fall back
        return os.environ.get("USER") or os.environ.get("USERNAME") or f"uid-{os.getuid()}"


def record_to_path(path: str | Path, **row: Any) -> int:
    """record_audit for the command-line tools: open the state store at `path` (a
    file or a PostgreSQL URL), append, close."""
    store = SqliteStateStore(path)
    try:
        return record_audit(store, **row)
    finally:
        store.close()

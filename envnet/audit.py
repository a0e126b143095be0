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
"""

from __future__ import annotations

import getpass
import json
import os
import re
import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from envnet.statestore import SqliteStateStore

SCHEMA = """
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
    """Create the table, its indexes and its append-only triggers (idempotent)."""
    if getattr(store, "_audit_schema", False):
        return
    outer = getattr(store, "_depth", 0) == 0  # inside a caller's tx it may yet roll back
    with store.tx() as c:
        for stmt in _statements(SCHEMA):
            c.execute(stmt)
    if outer:
        store._audit_schema = True  # type: ignore[attr-defined]


def _statements(script: str) -> list[str]:
    # Split on ';' that end a statement, keeping the trigger bodies (`...; END;`) whole.
    out, buf = [], ""
    for part in script.split(";"):
        buf += part + ";"
        if buf.strip() == ";":
            buf = ""
        elif sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    return out


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
            "INSERT INTO audit(at, actor, action, target, detail) VALUES (?,?,?,?,?)",
            (time.time() if at is None else float(at), actor, action, target or "", body),
        )
        return int(cur.lastrowid)


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
    """record_audit for the command-line tools: open the state store at `path`, append, close."""
    store = SqliteStateStore(path)
    try:
        return record_audit(store, **row)
    finally:
        store.close()


# -- station commands (serial console, MQTT cmd) ---------------------------------------------
STATION_OPS = ("config", "calibrate", "maint", "reboot")  # the ops that change a station
SECRET_CONFIG_KEYS = ("mqtt.password", "wifi.password")  # firmware/lib/config.py SECRET


def parse_value(text: str) -> Any:
    """As the firmware's console parses a value: JSON where possible, else the bare string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def command_request(words: list[str]) -> dict[str, Any] | None:
    """The firmware request a console line makes, when it changes the station; else None.

    Mirrors firmware/lib/console.py parse() for config set, calibrate, maint and reboot."""
    words = [w for w in words if w != "--json"]
    if not words:
        return None
    op, args = words[0], words[1:]
    if op == "config" and len(args) == 3 and args[0] == "set":
        return {"op": "config", "set": {args[1]: parse_value(args[2])}}
    if op == "calibrate" and args:
        kw = {k: parse_value(v) for k, _, v in (a.partition("=") for a in args[1:])}
        return {"op": "calibrate", "sensor": args[0], "args": kw}
    if op == "maint" and len(args) == 1 and args[0] in ("on", "off"):
        return {"op": "maint", "on": args[0] == "on"}
    if op == "reboot" and not args:
        return {"op": "reboot"}
    return None


def _shown(key: str, value: Any) -> Any:
    return "***" if key in SECRET_CONFIG_KEYS or "password" in key else value


def _maint_row(on: bool, was: bool | None) -> tuple[str, dict[str, Any]] | None:
    if was is not None and bool(was) == on:
        return None  # already in (or out of) maintenance: no window starts or ends
    return ("station.maint.start" if on else "station.maint.end"), {"maint": on}


def _config_row(
    req: dict[str, Any], answer: dict[str, Any], before: dict[str, Any]
) -> tuple[str, dict[str, Any]] | None:
    (key, value), *_ = req["set"].items()
    if key == "maint":
        return _maint_row(bool(value), before.get("maint"))
    if answer.get("changed") == []:
        return None  # the station had that value already
    old = before.get("config", {}).get(key)
    return "station.config.set", {"key": key, "old": _shown(key, old), "new": _shown(key, value)}


def station_action(
    req: dict[str, Any], answer: dict[str, Any], before: dict[str, Any] | None = None
) -> tuple[str, dict[str, Any]] | None:
    """(action, detail) for a station command the station accepted, or None when nothing
    changed. `before` holds what was read first: {"maint": bool, "config": {key: old}}."""
    before = before or {}
    if not answer.get("ok"):
        return None
    op = req.get("op")
    if op == "config" and isinstance(req.get("set"), dict) and len(req["set"]) == 1:
        return _config_row(req, answer, before)
    if op == "config" and isinstance(req.get("set"), dict) and req["set"]:  # several keys (MQTT)
        if answer.get("changed") == []:
            return None
        shown = {k: _shown(k, v) for k, v in req["set"].items()}
        return "station.config.set", {"set": shown, "changed": answer.get("changed")}
    if op == "calibrate":
        detail = {"sensor": req.get("sensor"), "args": req.get("args") or {}}
        return "station.calibrate", {**detail, "result": answer.get("result")}
    if op == "maint" and isinstance(req.get("on"), bool):
        return _maint_row(req["on"], before.get("maint"))
    if op == "reboot":
        return "station.reboot", {}
    return None


# -- `envnet audit`: GET /audit as a terminal table -----------------------------------------
def parse_time(text: str | None) -> float | None:
    """Unix seconds, or an ISO 8601 date/time (UTC when no offset is given)."""
    if text is None or text == "":
        return None
    try:
        return float(text)
    except ValueError:
        pass
    dt = datetime.fromisoformat(text)
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def fetch_pages(
    url: str, api_key: str, params: dict[str, Any], pages: int
) -> tuple[list[dict[str, Any]], str | None]:
    """Up to `pages` pages of GET /audit; the rows and the cursor of the page after them."""
    from urllib.parse import urlencode

    from envnet.tools.views import fetch

    rows: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(pages):
        q = {k: v for k, v in {**params, "cursor": cursor}.items() if v is not None}
        page = fetch(url, "/audit?" + urlencode(q), api_key)
        rows += page["items"]
        cursor = page.get("next_cursor")
        if not cursor:
            break
    return rows, cursor


def audit_table(rows: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    t = Table(title=f"audit trail ({len(rows)} rows, newest first)")
    for col in ("when (UTC)", "actor", "action", "target", "detail"):
        t.add_column(col, overflow="fold")
    for r in rows:
        when = datetime.fromtimestamp(r["at"], UTC).strftime("%Y-%m-%d %H:%M:%S")
        detail = json.dumps(r["detail"], ensure_ascii=False, sort_keys=True)
        t.add_row(when, r["actor"], r["action"], r["target"], detail)
    return t

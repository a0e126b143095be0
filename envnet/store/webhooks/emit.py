"""Putting events in the outbox: `emit`, the one way in, from any process.

    from envnet.domain.webhooks import Event, events_for
    from envnet.store.webhooks import emit

    emit(settings, Event("alert.opened", alert_dict))        # station/severity read from it
    emit(settings, Event("station.offline", {"station": sid, "at": ts}, station=sid))
    for event in events_for(alert_change):                   # atomically with the alert's change
        emit(settings, event, conn=conn)                     # (inside `with store.tx() as conn:`)

Without `conn`, emit commits its own small write transaction: when it returns, the event and
its deliveries are in the state store's SQLite file (settings.store.path), whether or not the
server runs. With `conn` (the caller's open write transaction on the same file) the event
commits together with the caller's change or not at all; call `prepare(settings)` once at
start-up so the outbox tables exist. The body is rendered once (every retry sends the same
bytes and signature) and fanned out into one delivery per matching subscription. An event id
given by the caller makes emitting idempotent: the same id twice is enqueued once.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from envnet.config import Settings
from envnet.domain.webhooks.body import build_body, matches
from envnet.domain.webhooks.catalogue import EVENT_TYPES, PING
from envnet.domain.webhooks.events import Event
from envnet.store.database import is_url
from envnet.store.webhooks.outbox import Outbox, notify

log = logging.getLogger("envnet.webhooks")

Target = Settings | str | Path | Outbox

_outboxes: dict[str, Outbox] = {}
_lock = threading.Lock()


def public_base_url(settings: Settings) -> str:
    """Where links in event bodies point: server.public_url, else http://<server.listen>."""
    return (settings.server.public_url or f"http://{settings.server.listen}").rstrip("/")


def outbox_for(store_path: str | Path) -> Outbox:
    """One Outbox (one SQLite connection) per store file per process."""
    key = str(store_path) if is_url(store_path) else str(Path(store_path).resolve())
    with _lock:
        ob = _outboxes.get(key)
        if ob is None:
            ob = _outboxes[key] = Outbox(store_path)
        return ob


def prepare(target: Settings | str | Path) -> None:
    """Create the outbox tables in the store file (idempotent). Call once at start-up before
    emitting inside your own transaction (`conn=`); emit() without one does it by itself."""
    outbox_for(target.store.location if isinstance(target, Settings) else target)


def _base_url(target: Target, public_url: str | None) -> str:
    if public_url is not None:
        return public_url.rstrip("/")
    if isinstance(target, Settings):
        return public_base_url(target)
    if isinstance(target, Outbox):
        return target.base_url
    return ""  # a bare path: relative links


def emit(
    target: Target,
    event: Event,
    *,
    conn: sqlite3.Connection | None = None,
    public_url: str | None = None,
    only_subscription: str | None = None,
) -> str:
    """Enqueue `event` for every subscription that wants it; returns the event id.

    target: the Settings (store path and public URL come from them), the store's path (links
        in the body are then relative unless `public_url` is given), or an open Outbox.
    conn: the caller's open write transaction on the same store file to join (see the module
        docstring). Do not emit without it while holding such a transaction: SQLite lets one
        writer at a time, and the second would wait for the first (30 s, then fail). With it,
        the server's worker notices the event within webhooks.poll_interval_s.
    only_subscription: deliver to this subscription alone, whatever it subscribed to (ping).
    """
    base = _base_url(target, public_url)
    if conn is not None:
        event_id, _n = _insert(conn, event, base, only_subscription)
        return event_id
    if isinstance(target, Outbox):
        outbox = target
    else:
        outbox = outbox_for(target.store.location if isinstance(target, Settings) else target)
    with outbox.tx() as c:
        event_id, n = _insert(c, event, base, only_subscription)
    if n:
        notify(outbox.path)
    return event_id


def _station_meta(conn: sqlite3.Connection, station: str) -> dict[str, Any] | None:
    try:
        row = conn.execute("SELECT meta FROM stations WHERE id=?", (station,)).fetchone()
    except sqlite3.OperationalError:  # no registry table in this file (yet)
        return None
    try:
        meta = json.loads(row[0]) if row else None
    except ValueError:
        return None
    return meta if isinstance(meta, dict) else None


def _insert(
    conn: sqlite3.Connection, event: Event, base_url: str, only_subscription: str | None
) -> tuple[str, int]:
    """The event and its deliveries, on `conn` inside an open write transaction. Returns (event
    id, number of deliveries created); 0 deliveries when the event id was enqueued before."""
    if event.type == PING and only_subscription is None:
        raise ValueError(f"unknown event type {event.type!r}; one of {', '.join(EVENT_TYPES)}")
    station, district, severity = event.routing()
    units = event.routing_units()
    event_id = event.id or str(uuid.uuid4())
    now = time.time()
    created_at = now if event.created_at is None else event.created_at
    meta = _station_meta(conn, station) if station else None
    if district is None and meta and meta.get("district") is not None:
        district = str(meta["district"])
    body = build_body(event_id, event.type, created_at, event.data, base_url, station, meta)
    try:
        text = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ValueError(f"event payload is not plain JSON: {e}") from None
    cur = conn.execute(
        "INSERT OR IGNORE INTO webhook_events(id, type, station, district, severity, body, "
        "created_at, units) VALUES (?,?,?,?,?,?,?,?)",
        (
            event_id,
            event.type,
            station,
            district,
            severity,
            text,
            created_at,
            json.dumps(list(units), ensure_ascii=False) if units else None,
        ),
    )
    if cur.rowcount == 0:
        return event_id, 0  # enqueued before: idempotent
    # Plain tuples: the caller's connection may have any row factory.
    sql = "SELECT id, events, stations, districts, severities, units FROM webhook_subscriptions"
    if only_subscription is not None:
        rows = conn.execute(f"{sql} WHERE id=?", (only_subscription,)).fetchall()
    else:
        rows = conn.execute(sql).fetchall()
    n = 0
    for r in rows:
        sub = {
            "id": r[0],
            "events": json.loads(r[1]),
            "stations": json.loads(r[2]),
            "districts": json.loads(r[3]),
            "severities": json.loads(r[4]),
            "units": json.loads(r[5]),
        }
        if only_subscription is None and not matches(
            sub, event.type, station, district, severity, units
        ):
            continue
        conn.execute(
            "INSERT INTO webhook_deliveries(id, subscription_id, event_id, status, "
            "next_attempt_at, created_at, updated_at) VALUES (?,?,?,'pending',?,?,?)",
            (str(uuid.uuid4()), sub["id"], event_id, now, now, now),
        )
        n += 1
    log.debug("event %s %s: %d deliveries", event.type, event_id, n)
    return event_id, n

"""Put webhook events in the outbox from any process: the gateway writes, the server delivers.

    from server.events import emit

    emit(settings, "alert.opened", alert_dict)                  # station/severity read from it
    emit(settings, "station.offline", {"station": sid, "at": ts}, station=sid)
    emit(settings, "episode.changed", {"level": "orange", ...}, event_id=f"episode:{day}:orange")

`emit` is synchronous and durable: when it returns, the event and its deliveries are committed
to the state store's SQLite file (settings.store.path), whether or not the server runs. It
costs one small write transaction. Give `event_id` when the caller may emit the same event
twice (a gateway replaying after a crash): the second call is then a no-op.

For the alert engine:

    emit_alert_event(settings, event)                  # an AlertEvent, its own transaction
    with store.tx() as conn:                           # or atomically with the alert's change
        ...save the alert...
        emit_alert_event(settings, event, conn=conn)

(`prepare(settings)` once at start-up creates the outbox tables the second form needs.)
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

from envnet.config import Settings
from server.outbox import EVENT_TYPES, Outbox, enqueue_on, public_base_url

__all__ = [
    "EVENT_TYPES",
    "emit",
    "emit_alert_event",
    "emit_in_transaction",
    "outbox_for",
    "prepare",
]

_outboxes: dict[str, Outbox] = {}
_lock = threading.Lock()


def outbox_for(store_path: str | Path) -> Outbox:
    """One Outbox (one SQLite connection) per store file per process."""
    key = str(Path(store_path).resolve())
    with _lock:
        ob = _outboxes.get(key)
        if ob is None:
            ob = _outboxes[key] = Outbox(store_path)
        return ob


def prepare(target: Settings | str | Path) -> None:
    """Create the outbox tables in the store file (idempotent). Call once at start-up before
    using emit_in_transaction; emit() does it by itself."""
    outbox_for(target.store.path if isinstance(target, Settings) else target)


def _where(target: Settings | str | Path, public_url: str | None) -> tuple[str | Path, str]:
    if isinstance(target, Settings):
        return target.store.path, public_url if public_url is not None else public_base_url(target)
    return target, public_url or ""


def emit(
    target: Settings | str | Path,
    event_type: str,
    payload: dict[str, Any],
    *,
    station: str | None = None,
    district: str | None = None,
    severity: str | None = None,
    event_id: str | None = None,
    created_at: float | None = None,
    public_url: str | None = None,
) -> str:
    """Enqueue one event for every subscription that wants it; returns the event id.

    target: the Settings (store path and public URL come from it) or the store's path.
    event_type: one of EVENT_TYPES (alert.opened, alert.escalated, alert.acknowledged,
        alert.resolved, station.offline, station.online, episode.changed).
    payload: the event's `data` (for alerts: id, station, rule, parameter, severity, window,
        value, limit, standard, opened_at, state, last_value, labels...). Must be plain JSON.
    station, district, severity: what subscription filters match on; each defaults to the
        payload's field of that name (district also to the station's registry entry).
    public_url: base of the links in the body when target is a path (default: relative links).
    """
    path, base = _where(target, public_url)
    return outbox_for(path).enqueue_event(
        event_type,
        payload,
        station,
        district,
        severity,
        event_id=event_id,
        created_at=created_at,
        base_url=base,
    )


def emit_in_transaction(
    conn: sqlite3.Connection,
    target: Settings | str | Path,
    event_type: str,
    payload: dict[str, Any],
    *,
    station: str | None = None,
    district: str | None = None,
    severity: str | None = None,
    event_id: str | None = None,
    created_at: float | None = None,
    public_url: str | None = None,
) -> str:
    """emit() on the caller's connection, inside its open write transaction on the same store
    file (e.g. `with store.tx() as conn:`): the alert change and its event commit together or
    not at all. The server's worker notices within webhooks.poll_interval_s.

    Do not call emit() (which opens its own transaction) while holding store.tx(): SQLite
    lets one writer at a time, and the second would wait for the first (30 s, then fail)."""
    _, base = _where(target, public_url)
    event_id, _n = enqueue_on(
        conn,
        event_type,
        payload,
        station,
        district,
        severity,
        event_id=event_id,
        created_at=created_at,
        base_url=base,
    )
    return event_id


def _alert_event_args(event: Any) -> tuple[str, dict[str, Any], dict[str, Any]]:
    event_type: str = event.type
    alert = getattr(event, "alert", None)
    if alert is not None:
        data = alert.to_dict() if hasattr(alert, "to_dict") else dict(alert)
        transition = event_type.split(".", 1)[1]
        return (
            event_type,
            data,
            {
                "station": data.get("station"),
                "severity": data.get("severity"),
                "event_id": f"{data['id']}:{transition}:{data.get('escalations', 0)}",
                "created_at": event.at,
            },
        )
    episode = dict(getattr(event, "episode", None) or {})
    return (
        event_type,
        episode,
        {
            "event_id": f"episode:{episode.get('day')}:{episode.get('level')}",
            "created_at": event.at,
        },
    )


def emit_alert_event(
    target: Settings | str | Path, event: Any, conn: sqlite3.Connection | None = None
) -> str:
    """Enqueue an `envnet.domain.alerts.engine.AlertEvent` (type, at, alert, episode); with `conn`,
    inside the caller's transaction (see emit_in_transaction).

    The event id is derived from the alert (id, transition, escalation count) or the episode
    (day, level), so emitting the same transition twice enqueues it once."""
    event_type, data, kw = _alert_event_args(event)
    if conn is not None:
        return emit_in_transaction(conn, target, event_type, data, **kw)
    return emit(target, event_type, data, **kw)

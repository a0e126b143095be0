"""The webhook outbox: events, subscriptions and deliveries, persisted in the state store's file.

Any process may put an event in (the gateway through `server.events.emit`, the server itself
when someone acknowledges an alert); the server's `DeliveryWorker` takes them out. Because
everything lives in SQLite (WAL, the same file as the state store), nothing is lost when the
server or the gateway is killed, and the two need not run at the same time.

- `Outbox.enqueue_event` renders the event body once (so every retry sends the same bytes and
  the same signature) and fans it out into one delivery per matching subscription, in one
  transaction. An event id given by the caller makes enqueueing idempotent.
- Deliveries of one subscription go out in order: only the oldest pending delivery of a
  subscription (its head) is ever attempted; a head waiting for its next retry holds the
  ones behind it back. A head that ends (delivered, failed, dead) lets the next one go.
- A worker claims a head with a lease (owner, expiry) inside BEGIN IMMEDIATE, so several
  server processes never send the same delivery at the same time; a crashed owner's lease
  expires (or is released at once by a restart on the same host) and the delivery is retried
  with the same delivery id: at-least-once, idempotent by `X-Envnet-Delivery`.
- Outcomes: 2xx delivered; network error, timeout, 408, 429 or 5xx retried after
  min(cap, base * factor**(n-1)) seconds shortened by up to `jitter` at random (a longer
  Retry-After is honoured, up to the cap), and dead-lettered after `max_attempts`; any other
  status (3xx redirects, 4xx such as 400, 401, 404, 410) fails at once. Every attempt is kept.
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import json
import logging
import os
import random
import secrets
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import httpx

from envnet import __version__
from envnet.config import Settings, WebhookSettings
from envnet.store.state import connect_sqlite

log = logging.getLogger("envnet.webhooks")

EVENT_TYPES: tuple[str, ...] = (
    "alert.opened",
    "alert.escalated",
    "alert.acknowledged",
    "alert.resolved",
    "station.offline",
    "station.online",
    "episode.changed",
)
# The alert engine's station id for network-wide alerts (never a valid station id).
NETWORK = "*"
# Sent only by POST /webhooks/{id}/ping, to the one subscription asked for.
PING = "ping"

# Labels of the event types, Chinese first (the authoritative form), English beside it.
EVENT_LABELS: dict[str, tuple[str, str]] = {
    "alert.opened": ("告警(预警)", "alert opened"),
    "alert.escalated": ("告警升级(催办)", "alert escalated (reminder)"),
    "alert.acknowledged": ("告警已确认", "alert acknowledged"),
    "alert.resolved": ("告警已解除", "alert resolved"),
    "station.offline": ("站点离线", "station offline"),
    "station.online": ("站点恢复在线", "station back online"),
    "episode.changed": ("重污染天气预警等级变化", "heavy-pollution episode level changed"),
    PING: ("连通性测试", "connectivity test"),
}

Status = Literal["pending", "delivered", "failed", "dead"]
STATUSES: tuple[str, ...] = ("pending", "delivered", "failed", "dead")
Outcome = Literal["delivered", "retry", "failed", "dead"]

SIGNATURE_HEADER = "X-Envnet-Signature"
EVENT_HEADER = "X-Envnet-Event"
DELIVERY_HEADER = "X-Envnet-Delivery"
ATTEMPT_HEADER = "X-Envnet-Attempt"
USER_AGENT = f"envnet-webhooks/{__version__}"

SCHEMA = """
CREATE TABLE IF NOT EXISTS webhook_subscriptions (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    secret TEXT NOT NULL,
    events TEXT NOT NULL,
    stations TEXT NOT NULL,
    districts TEXT NOT NULL,
    severities TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS webhook_events (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    station TEXT,
    district TEXT,
    severity TEXT,
    body TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    subscription_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    round_attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL,
    lease_owner TEXT,
    lease_until REAL,
    last_status_code INTEGER,
    last_error TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    finished_at REAL,
    UNIQUE (subscription_id, event_id)
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_head
    ON webhook_deliveries (status, subscription_id, seq);
CREATE INDEX IF NOT EXISTS webhook_deliveries_finished
    ON webhook_deliveries (finished_at);
CREATE TABLE IF NOT EXISTS webhook_attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id TEXT NOT NULL,
    n INTEGER NOT NULL,
    started_at REAL NOT NULL,
    duration_ms REAL NOT NULL,
    status_code INTEGER,
    error TEXT,
    outcome TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS webhook_attempts_delivery ON webhook_attempts (delivery_id, n);
"""


# -- pure parts: signature, policy, body ---------------------------------------------------------
def sign(secret: str, body: bytes) -> str:
    """The `X-Envnet-Signature` value: HMAC-SHA256 of the raw body, keyed by the secret."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str | None) -> bool:
    """What a receiver does (docs/webhooks.md): recompute over the raw body, compare in
    constant time."""
    if not header:
        return False
    return hmac.compare_digest(sign(secret, body).encode(), header.strip().encode())


def classify(status_code: int | None) -> Literal["delivered", "retry", "failed"]:
    """The outcome of one attempt; None means no HTTP answer (refused, reset, timeout)."""
    if status_code is None:
        return "retry"
    if 200 <= status_code < 300:
        return "delivered"
    if status_code in (408, 429) or status_code >= 500:
        return "retry"
    return "failed"


def backoff_s(
    attempt: int, cfg: WebhookSettings, rnd: Callable[[], float] = random.random
) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based) before the next one."""
    full = min(cfg.backoff_cap_s, cfg.backoff_base_s * cfg.backoff_factor ** (attempt - 1))
    return full * (1.0 - cfg.jitter * rnd())


def retry_after_s(value: str | None, now: float) -> float | None:
    """A Retry-After header (delta seconds or an HTTP date) as seconds from now."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def public_base_url(settings: Settings) -> str:
    """Where links in event bodies point: server.public_url, else http://<server.listen>."""
    return (settings.server.public_url or f"http://{settings.server.listen}").rstrip("/")


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _label(value: Any) -> dict[str, str] | None:
    """("中文", "English") or {"zh":..,"en":..} -> {"zh":..,"en":..}."""
    if isinstance(value, dict) and ("zh" in value or "en" in value):
        return {k: str(v) for k, v in value.items() if k in ("zh", "en") and v is not None}
    if (
        isinstance(value, list | tuple)
        and len(value) == 2
        and all(isinstance(v, str) for v in value)
    ):
        return {"zh": value[0], "en": value[1]}
    return None


def _parameter_label(parameter: Any) -> dict[str, str] | None:
    if not isinstance(parameter, str):
        return None
    try:
        from envnet.core.standards import gb3838, hj633
    except ImportError:  # pragma: no cover - the standards package is part of envnet
        return None
    pair = hj633.POLLUTANT_LABELS.get(parameter) or gb3838.PARAM_LABELS.get(parameter)
    return {"zh": pair[0], "en": pair[1]} if pair else None


def build_body(
    event_id: str,
    event_type: str,
    created_at: float,
    payload: dict[str, Any],
    base_url: str,
    station: str | None,
    station_meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON body every subscriber of this event receives (docs/webhooks.md)."""
    data = dict(payload)
    for key in [k for k in data if k.endswith("_label") or k == "category"]:
        label = _label(data[key])
        if label is not None:
            data[key] = label
    # The alert engine's X_zh / X_en pairs (category_zh, level_zh, ...) also as one label X
    # (or X_label when X is taken: the episode's "level" is "orange", its label 橙色预警).
    for key in [k for k in data if k.endswith("_zh")]:
        name = key[:-3]
        zh, en = data.get(key), data.get(f"{name}_en")
        if zh is None and en is None:
            continue
        target = name if name not in data else f"{name}_label"
        if target not in data:
            data[target] = {k: v for k, v in (("zh", zh), ("en", en)) if v is not None}
    if "parameter" in data and "parameter_label" not in data:
        label = _parameter_label(data["parameter"])
        if label:
            data["parameter_label"] = label
    if station and station_meta and "station_name" not in data:
        name = station_meta.get("name")
        name_en = station_meta.get("name_en")
        if name or name_en:
            data["station_name"] = {k: v for k, v in (("zh", name), ("en", name_en)) if v}
    if station and "station" not in data:  # given as an argument only
        data["station"] = station
    links: dict[str, str] = {}
    if event_type.startswith("alert.") and data.get("id") is not None:
        links["self"] = f"{base_url}/alerts/{data['id']}"
    if station:
        links["station"] = f"{base_url}/stations/{station}"
    zh, en = EVENT_LABELS.get(event_type, (event_type, event_type))
    return {
        "id": event_id,
        "type": event_type,
        "created_at": iso(created_at),
        "label": {"zh": zh, "en": en},
        "data": data,
        "links": links,
    }


def matches(sub: dict[str, Any], event_type: str, station, district, severity) -> bool:
    """A subscription wants an event of one of its types; each non-empty filter (stations,
    districts, severities) must contain the event's value when the event has one. Events
    without the field (episode.changed has no station) pass that filter."""
    if event_type not in sub["events"]:
        return False
    for values, value in (
        (sub["stations"], station),
        (sub["districts"], district),
        (sub["severities"], severity),
    ):
        if values and value is not None and value not in values:
            return False
    return True


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


def enqueue_on(
    conn: sqlite3.Connection,
    event_type: str,
    payload: dict[str, Any],
    station: str | None = None,
    district: str | None = None,
    severity: str | None = None,
    *,
    event_id: str | None = None,
    created_at: float | None = None,
    base_url: str = "",
    only_subscription: str | None = None,
) -> tuple[str, int]:
    """Enqueue on `conn` inside the caller's open write transaction (the outbox tables must
    exist: create an Outbox on the file once beforehand). This is the transactional outbox:
    commit an alert's change and its event together, or neither. Returns (event id, number of
    deliveries created); 0 deliveries when `event_id` was enqueued before."""
    if event_type not in EVENT_TYPES and not (event_type == PING and only_subscription):
        raise ValueError(f"unknown event type {event_type!r}; one of {', '.join(EVENT_TYPES)}")
    if not isinstance(payload, dict):
        raise TypeError("payload must be a dict")
    station = station if station is not None else _str_or_none(payload.get("station"))
    if station == NETWORK:
        station = None  # the engine's network-wide alerts (the episode) have no station
    district = district if district is not None else _str_or_none(payload.get("district"))
    severity = severity if severity is not None else _str_or_none(payload.get("severity"))
    event_id = event_id or str(uuid.uuid4())
    now = time.time()
    created_at = now if created_at is None else created_at
    meta = _station_meta(conn, station) if station else None
    if district is None and meta:
        district = _str_or_none(meta.get("district"))
    body = build_body(
        event_id, event_type, created_at, payload, base_url.rstrip("/"), station, meta
    )
    try:
        text = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ValueError(f"event payload is not plain JSON: {e}") from None
    cur = conn.execute(
        "INSERT OR IGNORE INTO webhook_events(id, type, station, district, severity, body, "
        "created_at) VALUES (?,?,?,?,?,?,?)",
        (event_id, event_type, station, district, severity, text, created_at),
    )
    if cur.rowcount == 0:
        return event_id, 0  # enqueued before: idempotent
    # Plain tuples: the caller's connection may have any row factory.
    sql = "SELECT id, events, stations, districts, severities FROM webhook_subscriptions"
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
        }
        if only_subscription is None and not matches(sub, event_type, station, district, severity):
            continue
        conn.execute(
            "INSERT INTO webhook_deliveries(id, subscription_id, event_id, status, "
            "next_attempt_at, created_at, updated_at) VALUES (?,?,?,'pending',?,?,?)",
            (str(uuid.uuid4()), sub["id"], event_id, now, now, now),
        )
        n += 1
    log.debug("event %s %s: %d deliveries", event_type, event_id, n)
    return event_id, n


# -- in-process wake-ups ----------------------------------------------------------------------
_wakers: dict[str, set[Callable[[], None]]] = {}
_wakers_lock = threading.Lock()


def _key(path: str | Path) -> str:
    return str(Path(path).resolve())


def _notify(path: str | Path) -> None:
    with _wakers_lock:
        callbacks = list(_wakers.get(_key(path), ()))
    for cb in callbacks:
        cb()


@dataclass(frozen=True)
class Claim:
    delivery_id: str
    seq: int
    subscription_id: str
    url: str
    secret: str
    event_id: str
    event_type: str
    body: str
    attempts: int
    round_attempts: int


class Conflict(Exception):
    """The delivery is pending already (queued or being attempted)."""


class Outbox:
    """The outbox tables in the state store's SQLite file (one instance per process is plenty)."""

    def __init__(self, path: str | Path, base_url: str = "") -> None:
        self.path = Path(path)
        self.base_url = base_url.rstrip("/")
        self._conn = connect_sqlite(self.path)
        self._lock = threading.Lock()
        with self._lock:
            self._conn.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _query(self, sql: str, args: tuple | dict = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    # -- subscriptions ------------------------------------------------------------------------
    @staticmethod
    def _sub(r: sqlite3.Row) -> dict[str, Any]:
        return {
            "id": r["id"],
            "url": r["url"],
            "secret": r["secret"],
            "events": json.loads(r["events"]),
            "stations": json.loads(r["stations"]),
            "districts": json.loads(r["districts"]),
            "severities": json.loads(r["severities"]),
            "description": r["description"],
            "created_at": r["created_at"],
        }

    def create_subscription(
        self,
        url: str,
        secret: str,
        events: list[str],
        stations: list[str] | None = None,
        districts: list[str] | None = None,
        severities: list[str] | None = None,
        description: str = "",
    ) -> dict[str, Any]:
        sub_id = "wh_" + secrets.token_hex(8)
        dumps = lambda v: json.dumps(list(v or []), ensure_ascii=False)  # noqa: E731
        with self.tx() as c:
            c.execute(
                "INSERT INTO webhook_subscriptions(id, url, secret, events, stations, districts, "
                "severities, description, created_at) VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    sub_id,
                    url,
                    secret,
                    dumps(events),
                    dumps(stations),
                    dumps(districts),
                    dumps(severities),
                    description,
                    time.time(),
                ),
            )
        sub = self.get_subscription(sub_id)
        assert sub is not None
        return sub

    def list_subscriptions(self) -> list[dict[str, Any]]:
        rows = self._query("SELECT * FROM webhook_subscriptions ORDER BY created_at, id")
        return [self._sub(r) for r in rows]

    def get_subscription(self, sub_id: str) -> dict[str, Any] | None:
        rows = self._query("SELECT * FROM webhook_subscriptions WHERE id=?", (sub_id,))
        return self._sub(rows[0]) if rows else None

    def delete_subscription(self, sub_id: str) -> bool:
        """Remove the subscription with its deliveries and their attempts."""
        with self.tx() as c:
            c.execute(
                "DELETE FROM webhook_attempts WHERE delivery_id IN "
                "(SELECT id FROM webhook_deliveries WHERE subscription_id=?)",
                (sub_id,),
            )
            c.execute("DELETE FROM webhook_deliveries WHERE subscription_id=?", (sub_id,))
            return c.execute("DELETE FROM webhook_subscriptions WHERE id=?", (sub_id,)).rowcount > 0

    # -- events -----------------------------------------------------------------------------------
    def enqueue_event(
        self,
        event_type: str,
        payload: dict[str, Any],
        station: str | None = None,
        district: str | None = None,
        severity: str | None = None,
        *,
        event_id: str | None = None,
        created_at: float | None = None,
        base_url: str | None = None,
        only_subscription: str | None = None,
    ) -> str:
        """Put an event in the outbox: one delivery per matching subscription. Returns the
        event id. The same `event_id` twice is enqueued once (the second call is a no-op)."""
        with self.tx() as c:
            event_id, n = enqueue_on(
                c,
                event_type,
                payload,
                station,
                district,
                severity,
                event_id=event_id,
                created_at=created_at,
                base_url=self.base_url if base_url is None else base_url,
                only_subscription=only_subscription,
            )
        if n:
            _notify(self.path)
        return event_id

    # -- the worker's side --------------------------------------------------------------------
    _HEADS = (
        "SELECT d.* FROM (SELECT subscription_id, MIN(seq) AS seq FROM webhook_deliveries "
        "WHERE status='pending' GROUP BY subscription_id) h JOIN webhook_deliveries d "
        "ON d.seq = h.seq"
    )

    def claim_due(
        self, owner: str, now: float, limit: int, lease_s: float, exclude: set[str] = frozenset()
    ) -> list[Claim]:
        """Lease up to `limit` subscription heads that are due and not leased by anyone."""
        if limit <= 0:
            return []
        with self.tx() as c:
            rows = c.execute(
                f"SELECT d.seq, d.id, d.subscription_id, d.event_id, d.attempts, d.round_attempts,"
                f" s.url, s.secret, e.type, e.body FROM ({self._HEADS}) d "
                f"JOIN webhook_subscriptions s ON s.id = d.subscription_id "
                f"JOIN webhook_events e ON e.id = d.event_id "
                f"WHERE d.next_attempt_at <= :now "
                f"AND (d.lease_until IS NULL OR d.lease_until <= :now) "
                f"ORDER BY d.next_attempt_at, d.seq",
                {"now": now},
            ).fetchall()
            claims = []
            for r in rows:
                if r["subscription_id"] in exclude:
                    continue
                c.execute(
                    "UPDATE webhook_deliveries SET lease_owner=?, lease_until=? WHERE seq=?",
                    (owner, now + lease_s, r["seq"]),
                )
                claims.append(
                    Claim(
                        delivery_id=r["id"],
                        seq=r["seq"],
                        subscription_id=r["subscription_id"],
                        url=r["url"],
                        secret=r["secret"],
                        event_id=r["event_id"],
                        event_type=r["type"],
                        body=r["body"],
                        attempts=r["attempts"],
                        round_attempts=r["round_attempts"],
                    )
                )
                if len(claims) >= limit:
                    break
            return claims

    def next_due_at(self, exclude: set[str] = frozenset()) -> float | None:
        """When the earliest head becomes attemptable (its retry time, or its lease's end)."""
        rows = self._query(
            f"SELECT subscription_id, max(next_attempt_at, coalesce(lease_until, 0)) AS due "
            f"FROM ({self._HEADS})"
        )
        dues = [r["due"] for r in rows if r["subscription_id"] not in exclude]
        return min(dues) if dues else None

    def release_leases(self, owner: str) -> int:
        with self.tx() as c:
            return c.execute(
                "UPDATE webhook_deliveries SET lease_owner=NULL, lease_until=NULL "
                "WHERE lease_owner=?",
                (owner,),
            ).rowcount

    def release_dead_owners(self, host: str) -> int:
        """Release leases held by processes of this host that no longer run (a killed server),
        so that a restart retries their deliveries at once instead of after the lease."""
        rows = self._query(
            "SELECT DISTINCT lease_owner FROM webhook_deliveries WHERE lease_owner LIKE ?",
            (f"{host}:%",),
        )
        released = 0
        for r in rows:
            owner = r["lease_owner"]
            try:
                pid = int(owner.split(":")[1])
            except (IndexError, ValueError):
                continue
            if pid == os.getpid() or _pid_alive(pid):
                continue
            released += self.release_leases(owner)
        return released

    def record_attempt(
        self,
        claim: Claim,
        owner: str,
        cfg: WebhookSettings,
        started_at: float,
        duration_ms: float,
        status_code: int | None,
        error: str | None,
        retry_after: float | None = None,
    ) -> Outcome:
        """Keep the attempt and move the delivery on: delivered, retried later, failed, dead."""
        now = time.time()
        outcome: Outcome = classify(status_code)
        next_at: float | None = None
        round_n = claim.round_attempts + 1
        if outcome == "retry":
            if round_n >= cfg.max_attempts:
                outcome = "dead"
            else:
                delay = backoff_s(round_n, cfg)
                if retry_after is not None:
                    delay = max(delay, min(retry_after, cfg.backoff_cap_s))
                next_at = now + delay
        status: Status = "pending" if outcome == "retry" else outcome  # type: ignore[assignment]
        with self.tx() as c:
            row = c.execute(
                "SELECT attempts, lease_owner FROM webhook_deliveries WHERE id=?",
                (claim.delivery_id,),
            ).fetchone()
            if row is None:
                return outcome  # the subscription was deleted meanwhile
            c.execute(
                "INSERT INTO webhook_attempts(delivery_id, n, started_at, duration_ms, "
                "status_code, error, outcome) VALUES (?,?,?,?,?,?,?)",
                (
                    claim.delivery_id,
                    row["attempts"] + 1,
                    started_at,
                    duration_ms,
                    status_code,
                    error,
                    outcome,
                ),
            )
            if row["lease_owner"] != owner:
                # Our lease ran out and someone else holds the delivery now: count the
                # attempt, leave the state to them.
                c.execute(
                    "UPDATE webhook_deliveries SET attempts=attempts+1 WHERE id=?",
                    (claim.delivery_id,),
                )
                return outcome
            c.execute(
                "UPDATE webhook_deliveries SET status=?, attempts=attempts+1, round_attempts=?, "
                "next_attempt_at=?, last_status_code=?, last_error=?, updated_at=?, "
                "finished_at=?, lease_owner=NULL, lease_until=NULL WHERE id=?",
                (
                    status,
                    round_n,
                    next_at,
                    status_code,
                    error,
                    now,
                    None if status == "pending" else now,
                    claim.delivery_id,
                ),
            )
        return outcome

    # -- inspection and redelivery ------------------------------------------------------------
    def _attempts(self, delivery_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {d: [] for d in delivery_ids}
        for i in range(0, len(delivery_ids), 500):
            chunk = delivery_ids[i : i + 500]
            rows = self._query(
                f"SELECT * FROM webhook_attempts WHERE delivery_id IN "
                f"({','.join('?' * len(chunk))}) ORDER BY delivery_id, n",
                tuple(chunk),
            )
            for r in rows:
                out[r["delivery_id"]].append(
                    {
                        "n": r["n"],
                        "at": r["started_at"],
                        "duration_ms": round(r["duration_ms"], 1),
                        "status_code": r["status_code"],
                        "error": r["error"],
                        "outcome": r["outcome"],
                    }
                )
        return out

    _DELIVERY_SELECT = (
        "SELECT d.*, e.type AS event_type, e.body AS body FROM webhook_deliveries d "
        "JOIN webhook_events e ON e.id = d.event_id"
    )

    @staticmethod
    def _delivery(r: sqlite3.Row, attempts: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": r["id"],
            "subscription_id": r["subscription_id"],
            "event_id": r["event_id"],
            "event_type": r["event_type"],
            "status": r["status"],
            "attempts": r["attempts"],
            "next_attempt_at": r["next_attempt_at"] if r["status"] == "pending" else None,
            "last_status_code": r["last_status_code"],
            "last_error": r["last_error"],
            "created_at": r["created_at"],
            "finished_at": r["finished_at"],
            "attempt_log": attempts,
        }

    def list_deliveries(
        self, sub_id: str, status: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """Newest first."""
        sql = f"{self._DELIVERY_SELECT} WHERE d.subscription_id=?"
        args: tuple = (sub_id,)
        if status:
            sql += " AND d.status=?"
            args += (status,)
        rows = self._query(sql + " ORDER BY d.seq DESC LIMIT ?", (*args, limit))
        attempts = self._attempts([r["id"] for r in rows])
        return [self._delivery(r, attempts[r["id"]]) for r in rows]

    def get_delivery(self, sub_id: str, delivery_id: str) -> dict[str, Any] | None:
        rows = self._query(
            f"{self._DELIVERY_SELECT} WHERE d.subscription_id=? AND d.id=?", (sub_id, delivery_id)
        )
        if not rows:
            return None
        out = self._delivery(rows[0], self._attempts([delivery_id])[delivery_id])
        out["body"] = json.loads(rows[0]["body"])
        return out

    def redeliver(self, sub_id: str, delivery_id: str) -> dict[str, Any] | None:
        """Queue a finished delivery again (same delivery id, same body, a fresh round of
        attempts). None when unknown; Conflict when it is pending already."""
        now = time.time()
        with self.tx() as c:
            row = c.execute(
                "SELECT status FROM webhook_deliveries WHERE subscription_id=? AND id=?",
                (sub_id, delivery_id),
            ).fetchone()
            if row is None:
                return None
            if row["status"] == "pending":
                raise Conflict(f"delivery {delivery_id} is pending already")
            c.execute(
                "UPDATE webhook_deliveries SET status='pending', round_attempts=0, "
                "next_attempt_at=?, finished_at=NULL, updated_at=?, lease_owner=NULL, "
                "lease_until=NULL WHERE id=?",
                (now, now, delivery_id),
            )
        _notify(self.path)
        return self.get_delivery(sub_id, delivery_id)

    def counts(self, sub_id: str | None = None) -> dict[str, int]:
        sql = "SELECT status, COUNT(*) AS n FROM webhook_deliveries"
        args: tuple = ()
        if sub_id is not None:
            sql += " WHERE subscription_id=?"
            args = (sub_id,)
        out = dict.fromkeys(STATUSES, 0)
        for r in self._query(sql + " GROUP BY status", args):
            out[r["status"]] = r["n"]
        return out

    def counts_by_subscription(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        rows = self._query(
            "SELECT subscription_id, status, COUNT(*) AS n FROM webhook_deliveries "
            "GROUP BY subscription_id, status"
        )
        for r in rows:
            out.setdefault(r["subscription_id"], dict.fromkeys(STATUSES, 0))[r["status"]] = r["n"]
        return out

    def oldest_pending_at(self) -> float | None:
        rows = self._query(
            "SELECT MIN(created_at) AS t FROM webhook_deliveries WHERE status='pending'"
        )
        return rows[0]["t"] if rows else None

    def prune(self, older_than: float) -> int:
        """Forget finished deliveries (and their attempts) that ended before `older_than`,
        and events nothing refers to any more."""
        with self.tx() as c:
            c.execute(
                "DELETE FROM webhook_attempts WHERE delivery_id IN (SELECT id FROM "
                "webhook_deliveries WHERE status!='pending' AND finished_at < ?)",
                (older_than,),
            )
            n = c.execute(
                "DELETE FROM webhook_deliveries WHERE status!='pending' AND finished_at < ?",
                (older_than,),
            ).rowcount
            c.execute(
                "DELETE FROM webhook_events WHERE created_at < ? AND id NOT IN "
                "(SELECT event_id FROM webhook_deliveries)",
                (older_than,),
            )
        return n


def _str_or_none(v: Any) -> str | None:
    return None if v is None else str(v)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- the delivery worker -------------------------------------------------------------------------
@dataclass
class AttemptResult:
    started_at: float
    duration_ms: float
    status_code: int | None
    error: str | None
    retry_after: float | None


class DeliveryWorker:
    """Delivers the outbox from the server process: one thread that claims due subscription
    heads, a small pool that sends them (one delivery per subscription at a time)."""

    def __init__(self, outbox: Outbox, cfg: WebhookSettings) -> None:
        self.outbox = outbox
        self.cfg = cfg
        self.host = socket.gethostname()
        self.owner = f"{self.host}:{os.getpid()}:{secrets.token_hex(4)}"
        # A claim outlives any one attempt (connect + write + read timeouts) comfortably.
        self.lease_s = 3 * cfg.timeout_s + 5.0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._inflight: set[str] = set()
        self._inflight_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._clients: list[httpx.Client] = []
        self._clients_lock = threading.Lock()
        self._last_prune = 0.0

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        try:
            n = self.outbox.release_dead_owners(self.host)
            if n:
                log.info("took over %d webhook deliveries from a server that stopped", n)
        except sqlite3.Error as e:
            log.warning("could not check stale webhook leases: %s", e)
        self._pool = ThreadPoolExecutor(self.cfg.concurrency, thread_name_prefix="webhook")
        with _wakers_lock:
            _wakers.setdefault(_key(self.outbox.path), set()).add(self.wake)
        self._thread = threading.Thread(target=self._loop, name="webhook-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop claiming; let attempts in flight finish (each is bounded by the timeout)."""
        if self._thread is None:
            return
        with _wakers_lock:
            _wakers.get(_key(self.outbox.path), set()).discard(self.wake)
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout if timeout is not None else self.lease_s)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        try:
            self.outbox.release_leases(self.owner)
        except sqlite3.Error as e:
            log.warning("could not release webhook leases: %s", e)
        with self._clients_lock:
            for client in self._clients:
                client.close()
            self._clients.clear()
        self._thread = None
        self._pool = None

    def wake(self) -> None:
        self._wake.set()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- the loop -------------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            delay = self.cfg.poll_interval_s
            try:
                delay = self._tick()
            except Exception:
                log.exception("webhook worker: tick failed; retrying")
            self._wake.wait(max(0.0, min(delay, self.cfg.poll_interval_s)))
            self._wake.clear()

    def _tick(self) -> float:
        now = time.time()
        with self._inflight_lock:
            busy = set(self._inflight)
        free = self.cfg.concurrency - len(busy)
        claims = self.outbox.claim_due(self.owner, now, free, self.lease_s, busy)
        assert self._pool is not None
        for claim in claims:
            with self._inflight_lock:
                self._inflight.add(claim.subscription_id)
            self._pool.submit(self._run, claim)
        if self.cfg.keep_days and now - self._last_prune > 3600:
            self._last_prune = now
            n = self.outbox.prune(now - self.cfg.keep_days * 86400)
            if n:
                log.info("pruned %d finished webhook deliveries", n)
        with self._inflight_lock:
            busy = set(self._inflight)
        if len(busy) >= self.cfg.concurrency:
            return self.cfg.poll_interval_s  # full: a finishing attempt wakes the loop
        due = self.outbox.next_due_at(busy)
        return self.cfg.poll_interval_s if due is None else due - time.time()

    def _client(self) -> httpx.Client:
        client = getattr(self._local, "client", None)
        if client is None:
            client = httpx.Client(
                timeout=httpx.Timeout(self.cfg.timeout_s),
                follow_redirects=False,
                headers={"User-Agent": USER_AGENT},
            )
            self._local.client = client
            with self._clients_lock:
                self._clients.append(client)
        return client

    def attempt(self, claim: Claim) -> AttemptResult:
        """One HTTP POST of the delivery; never raises."""
        body = claim.body.encode("utf-8")
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            SIGNATURE_HEADER: sign(claim.secret, body),
            EVENT_HEADER: claim.event_type,
            DELIVERY_HEADER: claim.delivery_id,
            ATTEMPT_HEADER: str(claim.attempts + 1),
        }
        started = time.time()
        t0 = time.monotonic()
        code: int | None = None
        error: str | None = None
        retry_after: float | None = None
        try:
            with self._client().stream("POST", claim.url, content=body, headers=headers) as r:
                code = r.status_code
                snippet = b""
                for chunk in r.iter_bytes():  # a little of the answer, for the attempt log
                    snippet += chunk
                    if len(snippet) >= 512 or time.monotonic() - t0 > 2 * self.cfg.timeout_s:
                        break
                if not 200 <= code < 300:
                    text = snippet[:200].decode("utf-8", "replace").strip()
                    error = f"HTTP {code}" + (f": {text}" if text else "")
                    if 300 <= code < 400 and r.headers.get("location"):
                        error = f"HTTP {code}: redirect to {r.headers['location']} not followed"
                    if code in (429, 503):
                        retry_after = retry_after_s(r.headers.get("retry-after"), time.time())
        except httpx.TimeoutException as e:
            error = f"timeout after {self.cfg.timeout_s:g} s ({type(e).__name__})"
        except httpx.ConnectError as e:
            error = f"connection failed: {e}"
        except httpx.HTTPError as e:
            error = f"{type(e).__name__}: {e}"
        except Exception as e:  # a bad URL that slipped through, an SSL surprise...
            error = f"{type(e).__name__}: {e}"
        if code is not None and error is None and not 200 <= code < 300:
            error = f"HTTP {code}"
        duration_ms = (time.monotonic() - t0) * 1000
        return AttemptResult(started, duration_ms, code, error, retry_after)

    def _run(self, claim: Claim) -> None:
        from server import metrics

        try:
            res = self.attempt(claim)
            outcome = self.outbox.record_attempt(
                claim,
                self.owner,
                self.cfg,
                res.started_at,
                res.duration_ms,
                res.status_code,
                res.error,
                res.retry_after,
            )
            metrics.webhook_attempts.labels(outcome=outcome).inc()
            metrics.webhook_attempt_seconds.observe(res.duration_ms / 1000)
            level = logging.INFO if outcome == "delivered" else logging.WARNING
            log.log(
                level,
                "webhook %s %s -> %s: %s%s",
                claim.event_type,
                claim.delivery_id,
                claim.url,
                outcome,
                f" ({res.error})" if res.error else "",
            )
        except Exception:
            log.exception("webhook delivery %s: could not record the attempt", claim.delivery_id)
        finally:
            with self._inflight_lock:
                self._inflight.discard(claim.subscription_id)
            self._wake.set()

"""The webhook outbox: events, subscriptions and deliveries, persisted in the state store's file.

Any process puts events in (`envnet.store.webhooks.emit`: the gateway's alert evaluator, the
server when someone acknowledges an alert); the server's `DeliveryWorker` (server/delivery.py)
takes them out. Because everything lives in SQLite (WAL, the same file as the state store),
nothing is lost when the server or the gateway is killed, and the two need not run at the same
time.

- Deliveries of one subscription go out in order: only the oldest pending delivery of a
  subscription (its head) is ever attempted; a head waiting for its next retry holds the
  ones behind it back. A head that ends (delivered, failed, dead) lets the next one go.
- A worker claims a head with a lease (owner, expiry) inside BEGIN IMMEDIATE, so several
  server processes never send the same delivery at the same time; a crashed owner's lease
  expires (or is released at once by a restart on the same host) and the delivery is retried
  with the same delivery id: at-least-once, idempotent by `X-Envnet-Delivery`.
- Every attempt is kept; what an answer means and when to retry is
  envnet/domain/webhooks/policy.py.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from collections.abc import Set as AbstractSet
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envnet.domain.webhooks.policy import STATUSES, Outcome, RetryPolicy, Status, next_step
from envnet.store.database import is_url, open_database
from envnet.store.schema import STATE_DB

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

# Version 2: subscriptions filter by responsible unit (the supervision loop's cases,
# docs/cases.md) as they do by district; an event records the units it concerns (a JSON list,
# NULL for an event about no unit), as it records its district.
UNITS = """
ALTER TABLE webhook_subscriptions ADD COLUMN units TEXT NOT NULL DEFAULT '[]';
ALTER TABLE webhook_events ADD COLUMN units TEXT;
"""

# The webhook tables live in the state file; version 1 is the 0.1.0 schema above.
WEBHOOKS = STATE_DB.register(
    "webhooks",
    module=__name__,
    tables=("webhook_subscriptions", "webhook_events", "webhook_deliveries", "webhook_attempts"),
    migrations=(SCHEMA, UNITS),
)


# -- in-process wake-ups ----------------------------------------------------------------------
# A worker in this process is woken when an event is enqueued or a delivery re-queued here;
# other processes' events it finds by polling (webhooks.poll_interval_s).
_wakers: dict[str, set[Callable[[], None]]] = {}
_wakers_lock = threading.Lock()


def _key(path: str | Path) -> str:
    return str(path) if is_url(path) else str(Path(path).resolve())


def watch(path: str | Path, wake: Callable[[], None]) -> None:
    """Call `wake` when this process puts something to deliver in the outbox at `path`."""
    with _wakers_lock:
        _wakers.setdefault(_key(path), set()).add(wake)


def unwatch(path: str | Path, wake: Callable[[], None]) -> None:
    with _wakers_lock:
        _wakers.get(_key(path), set()).discard(wake)


def notify(path: str | Path) -> None:
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
        self.path: str | Path = path if is_url(path) else Path(path)  # or store.url
        self.base_url = base_url.rstrip("/")
        self.db = open_database(self.path)
        self.db.ensure(WEBHOOKS)

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        with self.db.transaction() as conn:
            yield conn

    def _query(self, sql: str, args: tuple | dict = ()) -> list[sqlite3.Row]:
        return self.db.query(sql, args)

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
            "units": json.loads(r["units"]),
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
        units: list[str] | None = None,
    ) -> dict[str, Any]:
        sub_id = "wh_" + secrets.token_hex(8)
        dumps = lambda v: json.dumps(list(v or []), ensure_ascii=False)  # noqa: E731
        with self.tx() as c:
            c.execute(
                "INSERT INTO webhook_subscriptions(id, url, secret, events, stations, districts, "
                "severities, description, created_at, units) VALUES (?,?,?,?,?,?,?,?,?,?)",
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
                    dumps(units),
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

    # -- the worker's side --------------------------------------------------------------------
    _HEADS = (
        "SELECT d.* FROM (SELECT subscription_id, MIN(seq) AS seq FROM webhook_deliveries "
        "WHERE status='pending' GROUP BY subscription_id) h JOIN webhook_deliveries d "
        "ON d.seq = h.seq"
    )

    def claim_due(
        self,
        owner: str,
        now: float,
        limit: int,
        lease_s: float,
        exclude: AbstractSet[str] = frozenset(),
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

    def next_due_at(self, exclude: AbstractSet[str] = frozenset()) -> float | None:
        """When the earliest head becomes attemptable (its retry time, or its lease's end)."""
        rows = self._query(
            f"SELECT subscription_id, max(next_attempt_at, coalesce(lease_until, 0)) AS due "
            f"FROM ({self._HEADS}) h2"
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
        cfg: RetryPolicy,
        started_at: float,
        duration_ms: float,
        status_code: int | None,
        error: str | None,
        retry_after: float | None = None,
    ) -> Outcome:
        """Keep the attempt and move the delivery on: delivered, retried later, failed, dead."""
        now = time.time()
        round_n = claim.round_attempts + 1
        outcome, next_at = next_step(status_code, round_n, retry_after, cfg, now)
        status: Status = "pending" if outcome == "retry" else outcome
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
        notify(self.path)
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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

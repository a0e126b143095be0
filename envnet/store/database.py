"""One SQLite database file, opened the way every envnet store opens it.

`Database` is the one connection wrapper of the storage layer: the state store (and the alert,
OTA and audit stores that share its connection), the gateway's buffer and the HJ 212 uplink's
outbox each hold one. It gives:

- `connect()`: WAL journal, `synchronous` NORMAL (FULL for the uplink outbox, which must not
  lose an acknowledged packet even on power loss), a 30 s busy timeout so a writer in another
  process is waited for rather than failed, rows as `sqlite3.Row`, autocommit mode (the
  transactions below are explicit).
- `transaction()`: one write transaction, BEGIN IMMEDIATE so that two processes never deadlock
  upgrading a read lock to a write lock. Nested calls join the outer transaction as a savepoint:
  if the inner block fails, only its own writes are undone and the outer transaction goes on.
- `snapshot()`: several reads that see one state of the file (a WAL read transaction).
- `query()` / `execute()`: one statement; inside an open transaction of this thread they see
  its uncommitted changes (same connection).

Thread safety: one connection per `Database`, guarded by a re-entrant lock held for the whole
of a transaction or snapshot and for every single statement, so threads of one process can
share a `Database` (the server's request threads, the gateway's writer and evaluator) and a
thread inside `transaction()` may call the store's other methods, which join it.

Schema: `ensure(owner)` brings one owner's tables to the version the code knows
(envnet/store/schema.py); stores call it when they open.

PostgreSQL: `open_database(location)` gives this class for a file path and
envnet/store/postgres.py's `PgDatabase` (the same interface) for a `postgresql://` URL
(`store.url`: gateways on several machines sharing one state store). Code that must differ by
engine asks `db.dialect`; `order_lock` and `has_table` are here so that it rarely has to.

Errors: the stores catch sqlite3's exception classes; PgDatabase raises psycopg's errors as
subclasses of them (a unique violation is a `sqlite3.IntegrityError`, a lost connection a
`sqlite3.OperationalError`), so one `except` serves both engines. `IntegrityError` below is the
name to catch a refused duplicate by.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from envnet.store.dialect import SQLITE
from envnet.store.nesting import savepoint
from envnet.store.schema import Owner, migrate

BUSY_TIMEOUT_S = 30
# A write refused by a constraint (a duplicate key), on either engine: SQLite raises this class,
# PgDatabase a subclass of it (envnet/store/postgres.py).
IntegrityError = sqlite3.IntegrityError
Synchronous = Literal["NORMAL", "FULL"]


def connect(path: str | Path, synchronous: Synchronous = "NORMAL") -> sqlite3.Connection:
    """A connection tuned for one writer process and many readers across processes."""
    if synchronous not in ("NORMAL", "FULL"):
        raise ValueError(f"synchronous must be NORMAL or FULL, not {synchronous!r}")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(
        str(path), timeout=BUSY_TIMEOUT_S, check_same_thread=False, isolation_level=None
    )
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_S * 1000}")
    conn.row_factory = sqlite3.Row
    return conn


def is_url(location: str | Path) -> bool:
    """A PostgreSQL URL (store.url) rather than a SQLite file path."""
    return isinstance(location, str) and location.startswith(("postgresql://", "postgres://"))


def open_database(location: str | Path, synchronous: Synchronous = "NORMAL") -> Any:
    """The state store's database: a SQLite file, or a PostgreSQL server for a
    `postgresql://` URL (psycopg is imported only then)."""
    if is_url(location):
        from envnet.store.postgres import PgDatabase

        return PgDatabase(str(location))
    return Database(location, synchronous)


class Database:
    """One SQLite file and the one connection this process uses for it."""

    dialect = SQLITE

    def __init__(self, path: str | Path, synchronous: Synchronous = "NORMAL") -> None:
        self.path = Path(path)
        self._conn = connect(self.path, synchronous)
        self._lock = threading.RLock()
        self._depth = 0  # nesting of transaction() on this connection (0: none open)
        self._ensured: set[tuple[str, str]] = set()  # owners known to be current in this file

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @property
    def in_transaction(self) -> bool:
        """A transaction() is open on this connection (by this thread, if it holds the lock)."""
        return self._depth > 0

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE); a nested call is a savepoint in it.

        An alert change, its history and its webhook event (envnet.store.webhooks.emit with conn=)
        commit together or not at all this way; the evaluator commits a run of messages at once,
        each message in its own savepoint, so one bad message does not undo the others."""
        with self._lock:
            conn = self._conn
            if self._depth:
                with savepoint(self, conn):
                    yield conn
                return
            conn.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                # Also when COMMIT itself failed (a full disk): the transaction is still open.
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            finally:
                self._depth = 0

    @contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """Several reads that must see one state of the database (a WAL read transaction),
        e.g. a page's total, its id range and its rows while the gateway keeps writing."""
        with self._lock:
            conn = self._conn
            if self._depth or conn.in_transaction:  # already inside one: it is the snapshot
                yield conn
                return
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                conn.execute("COMMIT")

    def query(self, sql: str, args: tuple | dict[str, Any] = ()) -> list[sqlite3.Row]:
        """A read; inside an open transaction() it sees that transaction's own changes."""
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    def execute(self, sql: str, args: tuple | dict[str, Any] = ()) -> sqlite3.Cursor:
        """One statement, committed at once outside a transaction() (autocommit). Read
        `rowcount` / `lastrowid` from the cursor; use query() for rows."""
        with self._lock:
            return self._conn.execute(sql, args)

    def has_table(self, name: str) -> bool:
        return bool(
            self.query("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,))
        )

    def order_lock(self, name: str, keys: Any) -> None:
        """Commit order (PgDatabase.order_lock): nothing to do, BEGIN IMMEDIATE already lets
        one writer at a time commit."""

    def ensure(self, *owners: Owner) -> None:
        """Bring each owner's tables to its current version (envnet/store/schema.py). Cheap
        after the first call: an owner found current is not looked at again by this Database."""
        for owner in owners:
            if (owner.registry, owner.name) in self._ensured:
                continue
            with self._lock:
                outer = not self._depth  # inside a caller's transaction it may yet roll back
                migrate(self, owner)
                if outer:
                    self._ensured.add((owner.registry, owner.name))

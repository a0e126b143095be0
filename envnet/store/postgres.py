"""The state store on PostgreSQL: `PgDatabase`, envnet/store/database.py's `Database` for a
server that gateways on several machines share (`store.url = "postgresql://..."`).

Same interface and the same guarantees as the SQLite `Database`, so the stores above it do not
know which one they hold:

- `transaction()`: one write transaction (BEGIN; READ COMMITTED); a nested call is a savepoint,
  undone alone if its block fails. The stores' SQLite SQL is translated on the way
  (envnet/store/dialect.py); rows read by index or by column name like `sqlite3.Row`.
- `snapshot()`: several reads in one REPEATABLE READ transaction (one state of the database).
- `query()` / `execute()`: one statement; outside a transaction it commits at once.
- `ensure(owner)`: the schema registry's migrations (envnet/store/schema.py), translated, in
  one transaction; two processes that start together migrate once (a transaction-level
  advisory lock serialises them, as SQLite's write lock does).
- `order_lock(name, keys)`: what SQLite's single writer gives for free. Transaction-level
  advisory locks, taken in key order and held to the commit: two gateways' processors that
  append to the same evaluation-queue partition commit one after the other, so the ids of a
  partition become visible in id order (gateway/evalqueue.py).
- `try_session_lock(url, name, key)`: a session advisory lock on a connection of its own, held until
  that connection closes (or its process dies: PostgreSQL then drops the session and the lock).
  The evaluator's partition ownership across machines (gateway/evaluation.py).

Thread safety as in `Database`: one connection, a re-entrant lock held for a whole transaction
or snapshot and for every statement.

Errors come as sqlite3's classes (subclasses of them), so the stores' `except` clauses serve
both engines: a constraint violation is a `sqlite3.IntegrityError` (envnet.store.database's
`IntegrityError`), a lost connection or a server shutting down a `sqlite3.OperationalError`,
anything else a `sqlite3.DatabaseError`; the psycopg error is the `__cause__`.

A lost connection (the server restarted, a failover) is reopened at the start of the next unit
of work, so gateways and servers outlive a database restart: when the first statement of a
transaction() or snapshot() (its BEGIN), or a read outside them, fails because the connection
is gone, a new connection is made and the statement run again; nothing had run on the old one.
A write outside a transaction is run again only when the server said it ended the session
before the statement (SQLSTATE 57P01/57P02, a shutdown); a connection that dies inside a
transaction fails that transaction (rolled back by the server), and the caller's retry gets
a new connection. If the server is still down, the reconnect's error goes to the caller.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.adapt import Loader

from envnet.store.dialect import POSTGRESQL, redacted, to_postgres
from envnet.store.nesting import savepoint
from envnet.store.schema import Owner, migrate

log = logging.getLogger(__name__)


class PgIntegrityError(sqlite3.IntegrityError):
    """psycopg's IntegrityError (unique, foreign key, not null, check violation)."""


class PgOperationalError(sqlite3.OperationalError):
    """psycopg's OperationalError: the connection lost, the server shutting down, ..."""


class PgDatabaseError(sqlite3.DatabaseError):
    """Any other psycopg error (a syntax error, an undefined table, ...)."""


def _as_sqlite(e: psycopg.Error) -> sqlite3.DatabaseError:
    """`e` as the sqlite3 class the stores catch (the original is its __cause__)."""
    if isinstance(e, psycopg.IntegrityError):
        cls: type[sqlite3.DatabaseError] = PgIntegrityError
    elif isinstance(e, psycopg.OperationalError):
        cls = PgOperationalError
    else:
        cls = PgDatabaseError
    err = cls(str(e))
    err.sqlstate = e.sqlstate  # type: ignore[attr-defined]
    return err


# The server ended the session before the statement (a restart): it did not run.
_SESSION_ENDED = {"57P01", "57P02"}


class Row:
    """A result row read like sqlite3.Row: by position, by column name, keys(), iteration."""

    __slots__ = ("_values", "_index")

    def __init__(self, values: Sequence[Any], index: dict[str, int]) -> None:
        self._values = tuple(values)
        self._index = index

    def __getitem__(self, key: int | str | slice) -> Any:
        if isinstance(key, str):
            return self._values[self._index[key]]
        return self._values[key]

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __eq__(self, other: object) -> bool:
        return tuple(self) == (tuple(other) if isinstance(other, Row | tuple) else other)

    def __hash__(self) -> int:
        return hash(self._values)

    def keys(self) -> list[str]:
        return list(self._index)

    def __repr__(self) -> str:
        return f"Row{self._values!r}"


def _row_factory(cursor: Any) -> Any:
    desc = cursor.description or ()
    index = {c.name: i for i, c in enumerate(desc)}
    return lambda values: Row(values, index)


class _NumericLoader(Loader):
    """numeric as SQLite gives it: sum() of integers is an int, anything else a float (not
    Decimal, which the stores' arithmetic and json.dumps would trip over)."""

    def load(self, data: Any) -> int | float:
        text = bytes(data).decode()
        try:
            return int(text)
        except ValueError:
            return float(text)


class PgCursor:
    """What the stores read from `conn.execute(...)`: rows, rowcount; as sqlite3.Cursor."""

    def __init__(self, cur: Any) -> None:  # a psycopg cursor with _row_factory
        self._cur = cur

    @property
    def rowcount(self) -> int:
        return self._cur.rowcount

    @property
    def lastrowid(self) -> int:
        raise NotImplementedError("PostgreSQL has no lastrowid: use INSERT ... RETURNING id")

    def fetchone(self) -> Row | None:
        return self._cur.fetchone() if self._cur.description else None

    def fetchall(self) -> list[Row]:
        return self._cur.fetchall() if self._cur.description else []

    def __iter__(self) -> Iterator[Row]:
        return iter(self.fetchall())


_OPEN = {
    psycopg.pq.TransactionStatus.ACTIVE,
    psycopg.pq.TransactionStatus.INTRANS,
    psycopg.pq.TransactionStatus.INERROR,
}


class PgConnection:
    """The `conn` a transaction yields: execute / executemany with SQLite's SQL."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.raw = conn

    @property
    def in_transaction(self) -> bool:
        # UNKNOWN (a lost connection) is not a transaction: the next unit of work reconnects
        return self.raw.info.transaction_status in _OPEN

    def execute(self, sql: str, args: Sequence[Any] | dict[str, Any] = ()) -> PgCursor:
        params = args if args else None
        try:
            return PgCursor(self.raw.execute(to_postgres(sql, params is not None), params))
        except psycopg.Error as e:
            raise _as_sqlite(e) from e

    def executemany(self, sql: str, rows: Iterable[Sequence[Any] | dict[str, Any]]) -> PgCursor:
        cur = self.raw.cursor()
        try:
            cur.executemany(to_postgres(sql), list(rows))
        except psycopg.Error as e:
            raise _as_sqlite(e) from e
        return PgCursor(cur)


def lock_key(name: str) -> int:
    """A stable 31-bit key for an advisory lock's first half (crc32, like the partitions)."""
    return zlib.crc32(f"envnet:{name}".encode()) & 0x7FFFFFFF


def _connect(url: str) -> psycopg.Connection:
    conn = psycopg.connect(
        url,
        autocommit=True,  # transactions are explicit, as with SQLite (BEGIN ... COMMIT)
        cursor_factory=psycopg.ClientCursor,  # SQLite-style untyped NULL parameters work
        row_factory=_row_factory,
        application_name="envnet",
    )
    conn.adapters.register_loader("numeric", _NumericLoader)
    return conn


class PgDatabase:
    """One PostgreSQL database and the one connection this process uses for it."""

    dialect = POSTGRESQL

    def __init__(self, url: str) -> None:
        self.url = url
        self.path = redacted(url)  # what messages name (the SQLite Database's file path)
        try:
            self._raw = _connect(url)
        except psycopg.Error as e:
            raise _as_sqlite(e) from e
        self._conn = PgConnection(self._raw)
        self._lock = threading.RLock()
        self._depth = 0
        self._ensured: set[tuple[str, str]] = set()
        self.reconnects = 0  # connections reopened after a loss (tests, logs)

    def close(self) -> None:
        with self._lock:
            self._raw.close()

    def _reconnect(self, why: Exception) -> None:
        """A new connection in place of a lost one (the lock is held, no transaction open)."""
        log.warning("PostgreSQL connection to %s lost (%s); reconnecting", self.path, why)
        try:
            self._raw.close()
        except psycopg.Error:
            pass
        try:
            raw = _connect(self.url)
        except psycopg.Error as e:
            raise _as_sqlite(e) from e
        self._raw, self._conn = raw, PgConnection(raw)
        self.reconnects += 1

    def _lost(self, e: sqlite3.Error) -> bool:
        return isinstance(e, PgOperationalError) and (self._raw.broken or self._raw.closed)

    def _first(self, sql: str, args: tuple | dict[str, Any] = (), always: bool = True) -> Any:
        """The first statement of a unit of work, run again on a new connection when the old
        one turns out to be gone (`always` False: only when the server says it ended the
        session before the statement)."""
        if self._raw.closed:
            self._reconnect(RuntimeError("connection closed"))
        try:
            return self._conn.execute(sql, args)
        except sqlite3.OperationalError as e:
            if not self._lost(e):
                raise
            if not always and getattr(e, "sqlstate", None) not in _SESSION_ENDED:
                self._reconnect(e)  # for the next unit of work; this one may have run
                raise
            self._reconnect(e)
            return self._conn.execute(sql, args)

    @property
    def in_transaction(self) -> bool:
        return self._depth > 0

    @contextmanager
    def transaction(self) -> Iterator[PgConnection]:
        with self._lock:
            conn = self._conn
            if self._depth:
                with savepoint(self, conn):
                    yield conn
                return
            self._first("BEGIN")
            conn = self._conn  # a new one if the old was lost
            self._depth = 1
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction and not (self._raw.closed or self._raw.broken):
                    conn.execute("ROLLBACK")
                raise
            finally:
                self._depth = 0

    @contextmanager
    def snapshot(self) -> Iterator[PgConnection]:
        with self._lock:
            conn = self._conn
            if self._depth or conn.in_transaction:
                yield conn
                return
            self._first("BEGIN ISOLATION LEVEL REPEATABLE READ")
            conn = self._conn
            try:
                yield conn
            finally:
                conn.execute("COMMIT")

    def query(self, sql: str, args: tuple | dict[str, Any] = ()) -> list[Row]:
        with self._lock:
            if self._depth or self._conn.in_transaction:
                return self._conn.execute(sql, args).fetchall()
            return self._first(sql, args).fetchall()

    def execute(self, sql: str, args: tuple | dict[str, Any] = ()) -> PgCursor:
        with self._lock:
            if self._depth or self._conn.in_transaction:
                return self._conn.execute(sql, args)
            return self._first(sql, args, always=False)

    def has_table(self, name: str) -> bool:
        return bool(self.query("SELECT to_regclass(?) IS NOT NULL", (name,))[0][0])

    def order_lock(self, name: str, keys: Iterable[int]) -> None:
        """Inside a transaction(): wait for, and hold to its end, one lock per key, in key
        order (so two transactions taking overlapping sets cannot deadlock)."""
        if not self._depth:
            raise RuntimeError("order_lock() outside a transaction would hold nothing")
        first = lock_key(name)
        for key in sorted(set(keys)):
            self._conn.execute("SELECT pg_advisory_xact_lock(?, ?)", (first, key))

    def ensure(self, *owners: Owner) -> None:
        for owner in owners:
            if (owner.registry, owner.name) in self._ensured:
                continue
            with self._lock:
                outer = not self._depth
                with self.transaction():
                    # One migrating process at a time (SQLite: its write lock).
                    self.order_lock("schema", [0])
                    migrate(self, owner)
                if outer:
                    self._ensured.add((owner.registry, owner.name))


def try_session_lock(url: str, name: str, key: int) -> SessionLock | None:
    """The lock (name, key) on a connection of its own, or None when another session holds
    it. Closing the SessionLock (or the process dying: PostgreSQL ends the session) lets it go.
    gateway/evaluation.py's partition ownership across machines."""
    conn = _connect(url)
    row = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (lock_key(name), key)).fetchone()
    if not row or not row[0]:
        conn.close()
        return None
    return SessionLock(conn)


class SessionLock:
    """A held session advisory lock; a context manager that releases it on exit."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self._conn = conn

    def close(self) -> None:
        self._conn.close()  # the session ends: PostgreSQL releases its advisory locks

    def held(self) -> bool:
        """Still held: its session is alive. A database restart ends every session, and its
        locks with it, so an evaluator must stop when this turns False (it is not reconnected:
        another process may have taken the lock by then)."""
        if self._conn.closed:
            return False
        try:
            self._conn.execute("SELECT 1")
        except psycopg.Error:
            self._conn.close()
            return False
        return True

    def __enter__(self) -> SessionLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

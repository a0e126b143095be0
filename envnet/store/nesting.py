"""Nested transactions: one savepoint SQL for both engines (envnet/store/database.py's
`Database` and envnet/store/postgres.py's `PgDatabase` call `transaction()` inside an open
one this way)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol


class Nested(Protocol):
    _depth: int  # how deep transaction() is nested on the connection (0: none open)


@contextmanager
def savepoint(db: Nested, conn: Any) -> Iterator[None]:
    """A nested transaction(): a savepoint in the open one, so that an inner failure undoes
    only its own part (one SQL for SQLite and PostgreSQL)."""
    name = f"sp{db._depth}"
    conn.execute(f"SAVEPOINT {name}")
    db._depth += 1
    try:
        yield
    except BaseException:
        conn.execute(f"ROLLBACK TO SAVEPOINT {name}")
        conn.execute(f"RELEASE SAVEPOINT {name}")
        raise
    finally:
        db._depth -= 1
    conn.execute(f"RELEASE SAVEPOINT {name}")

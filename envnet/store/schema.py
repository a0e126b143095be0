"""Who owns which table, and the versioned migrations that build and change them.

Every table of an envnet SQLite file belongs to exactly one *owner*: one module, which declares
its tables and its ordered migrations as data and is the only code that changes their shape.
The owners of one file form a `Registry`; each file has its own:

- `STATE_DB` (settings.store.path, "state.db"): the state store and the stores that share its
  connection (envnet/store/state.py, alerts.py, ota.py, audit.py), and the webhook outbox;
- gateway/buffer.py's `BUFFER_DB` (gateway.buffer_path) and gateway/uplink.py's `UPLINK_DB`
  (uplink.outbox_path), each with one owner.

`STATE_DB.ownership()` (and `describe()`) lists table -> owner -> module, for
docs/architecture.md.

Migrations. `migrations[0]` is version 1, `migrations[1]` version 2, and so on; a migration is
a SQL script (statements separated by `;`, trigger bodies kept whole). Version 1 of every owner
is the schema as it was before versioning, written with CREATE ... IF NOT EXISTS, so a file
made by an older release (tables present, no version recorded) is adopted by it unchanged and a
fresh file is exactly what that release made. Later versions are ALTER TABLE / CREATE INDEX
steps: never edit a released migration, append a new one.

When a store opens (`Database.ensure(owner)`), the owner's pending migrations run in order in
one write transaction (BEGIN IMMEDIATE, or a savepoint inside a caller's transaction) together
with the new version number: a migration that fails half-way leaves the file at the version it
had, and two processes opening the file at once do it once (the second re-reads the version
under the write lock and finds nothing to do). A file whose owner version is newer than the
code is refused (`SchemaTooNewError`, naming both versions) rather than used by code that does
not know its columns. A file already current costs one read and no write lock.

Where versions are recorded: a table `schema_versions(owner, version, updated_at)` in each
file, one row per owner, rather than `PRAGMA user_version`. user_version is one integer per
file, while one file here holds several owners that change independently (the webhook tables
are being moved to their own module while the others stay put): one integer would force every
module to number its changes in one shared sequence and would make "which module's change is
this file missing" unanswerable. A row per owner keeps each module's history its own, is
readable with plain SQL when diagnosing a file, and lets owners that are not yet registered (a
table created the old way, by CREATE IF NOT EXISTS at open, like the webhook tables today) live
beside registered ones. user_version is left at 0 and not used.
"""

from __future__ import annotations

import re
import sqlite3
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

VERSIONS_TABLE = "schema_versions"
VERSIONS_DDL = f"""CREATE TABLE IF NOT EXISTS {VERSIONS_TABLE} (
    owner TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    updated_at REAL NOT NULL
)"""

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
# The tables a statement creates, alters or drops, or hangs an index or trigger on.
_TABLE_RE = re.compile(
    r"\b(?:CREATE\s+(?:TEMP\s+|TEMPORARY\s+)?TABLE|ALTER\s+TABLE|DROP\s+TABLE)"
    r"\s+(?:IF\s+(?:NOT\s+)?EXISTS\s+)?[\"`\[]?(\w+)"
    r"|\bON\s+[\"`\[]?(\w+)",
    re.IGNORECASE,
)


class SchemaError(RuntimeError):
    """The file's schema cannot be brought to what this code needs."""


class SchemaTooNewError(SchemaError):
    """The file was written by a newer release than this code."""


class MigrationError(SchemaError):
    """A migration failed; its transaction was rolled back, the file keeps its old version."""


class _Db(Protocol):  # what migrate() needs of envnet.store.database.Database (or PgDatabase)
    @property
    def path(self) -> str | Path: ...

    def transaction(self) -> AbstractContextManager[Any]: ...
    def query(self, sql: str, args: Any = ()) -> list[Any]: ...
    def has_table(self, name: str) -> bool: ...


@dataclass(frozen=True)
class Owner:
    """One module's tables in one file, and the migrations that make them."""

    registry: str
    name: str
    module: str
    tables: tuple[str, ...]
    migrations: tuple[str, ...]

    @property
    def version(self) -> int:
        """The version this code brings the file to."""
        return len(self.migrations)


def statements(script: str) -> list[str]:
    """Split a SQL script into statements on the `;` that end one (trigger bodies, whose
    `...; END;` contain semicolons, stay whole). Comments before a statement go with it."""
    out, buf = [], ""
    for part in script.split(";"):
        buf += part + ";"
        if sqlite3.complete_statement(buf):
            stmt = buf.strip()
            if _strip_comments(stmt).strip(" \n\t;"):
                out.append(stmt)
            buf = ""
    if _strip_comments(buf).strip(" \n\t;"):
        raise SchemaError(f"incomplete SQL statement at the end of a migration: {buf.strip()!r}")
    return out


def _strip_comments(sql: str) -> str:
    return re.sub(r"--[^\n]*", "", sql)


def _strip_literals(sql: str) -> str:
    return re.sub(r"'(?:[^']|'')*'", "''", _strip_comments(sql))


class Registry:
    """The owners of one database file's tables (one registry per kind of file)."""

    def __init__(self, name: str, file: str) -> None:
        self.name = name
        self.file = file  # where the file is configured, for messages and docs
        self._owners: dict[str, Owner] = {}

    def register(
        self, name: str, *, module: str, tables: tuple[str, ...], migrations: tuple[str, ...]
    ) -> Owner:
        """Declare `module`'s tables and their migrations (oldest first); returns the Owner
        to pass to `Database.ensure`. Refuses a table that another owner already has, and a
        migration that touches a table its owner does not declare."""
        if not _NAME_RE.match(name):
            raise ValueError(f"owner name {name!r}: lower-case letters, digits and _ only")
        if not migrations or not all(isinstance(m, str) and m.strip() for m in migrations):
            raise ValueError(f"owner {name!r}: migrations must be non-empty SQL scripts")
        owner = Owner(self.name, name, module, tuple(tables), tuple(migrations))
        known = self._owners.get(name)
        if known is not None:
            if known == owner:  # the same module imported twice (e.g. reloaded)
                return known
            raise ValueError(f"{self.name}: owner {name!r} is already registered by {known.module}")
        for other in self._owners.values():
            shared = set(owner.tables) & set(other.tables)
            if shared:
                raise ValueError(
                    f"{self.name}: table(s) {sorted(shared)} already owned by {other.name!r}"
                    f" ({other.module}); a table has exactly one owner"
                )
        if VERSIONS_TABLE in owner.tables:
            raise ValueError(f"{VERSIONS_TABLE} belongs to the registry itself")
        touched: set[str] = set()
        for n, script in enumerate(owner.migrations, 1):
            for stmt in statements(script):
                for m in _TABLE_RE.finditer(_strip_literals(stmt)):
                    touched.add((m.group(1) or m.group(2)).lower())
            strangers = touched - {t.lower() for t in owner.tables}
            if strangers:
                raise ValueError(
                    f"owner {name!r}, migration {n}: touches {sorted(strangers)}, which"
                    f" {name!r} does not own (declare them in tables=, or ask their owner)"
                )
        missing = {t.lower() for t in owner.tables} - touched
        if missing:
            raise ValueError(f"owner {name!r}: no migration creates {sorted(missing)}")
        self._owners[name] = owner
        return owner

    def owners(self) -> list[Owner]:
        return list(self._owners.values())

    def owner_of(self, table: str) -> Owner | None:
        return next((o for o in self._owners.values() if table in o.tables), None)

    def ownership(self) -> list[tuple[str, str, str]]:
        """(table, owner, module) for every registered table, by table name."""
        return sorted((t, o.name, o.module) for o in self._owners.values() for t in o.tables)

    def describe(self) -> str:
        """The ownership as a Markdown table (docs/architecture.md)."""
        lines = [
            f"Tables of {self.file}:",
            "",
            "| table | owner | module | version |",
            "|---|---|---|---|",
        ]
        for table, name, module in self.ownership():
            v = self._owners[name].version
            lines.append(f"| {table} | {name} | {module} | {v} |")
        return "\n".join(lines)


def recorded_version(db: _Db, owner: Owner) -> int:
    """The owner's version in the file; 0 when none is recorded (a fresh file, or one made
    before versioning)."""
    # Asked first rather than caught: in PostgreSQL a failed statement spoils the transaction.
    if not db.has_table(VERSIONS_TABLE):
        return 0
    rows = db.query(f"SELECT version FROM {VERSIONS_TABLE} WHERE owner=?", (owner.name,))
    return int(rows[0][0]) if rows else 0


def _refuse_newer(db: _Db, owner: Owner, found: int) -> None:
    if found > owner.version:
        raise SchemaTooNewError(
            f"{db.path}: the {owner.name!r} tables ({owner.module}) are at schema version"
            f" {found}, newer than this code knows (version {owner.version}). The file was"
            f" written by a newer envnet release: run that release, or restore a backup taken"
            f" before the upgrade."
        )


def migrate(db: _Db, owner: Owner) -> int:
    """Bring the owner's tables to `owner.version`; returns the version the file was at.

    All pending migrations and the new version commit in one transaction, or none of them."""
    found = recorded_version(db, owner)
    _refuse_newer(db, owner, found)
    if found == owner.version:
        return found
    with db.transaction() as conn:
        conn.execute(VERSIONS_DDL)
        # Under the write lock: another process may have migrated since the read above.
        found = recorded_version(db, owner)
        _refuse_newer(db, owner, found)
        for version in range(found + 1, owner.version + 1):
            for stmt in statements(owner.migrations[version - 1]):
                try:
                    conn.execute(stmt)
                except Exception as e:  # sqlite3.Error, or psycopg.Error on PostgreSQL
                    raise MigrationError(
                        f"{db.path}: migration {version} of {owner.name!r} ({owner.module})"
                        f" failed: {e}; nothing was changed, the file stays at version {found}."
                        f" Statement: {stmt}"
                    ) from e
        if found != owner.version:
            conn.execute(
                f"INSERT INTO {VERSIONS_TABLE}(owner, version, updated_at) VALUES (?,?,?)"
                " ON CONFLICT(owner) DO UPDATE SET version=excluded.version,"
                " updated_at=excluded.updated_at",
                (owner.name, owner.version, time.time()),
            )
    return found


def versions(db: _Db) -> dict[str, int]:
    """Every owner's recorded version in the file (for diagnostics and tests)."""
    if not db.has_table(VERSIONS_TABLE):
        return {}
    return {r[0]: int(r[1]) for r in db.query(f"SELECT owner, version FROM {VERSIONS_TABLE}")}


# The state store's file (settings.store.path). Owners register themselves when their module
# is imported: envnet.store.state ("state"), envnet.store.alerts ("alerts"), envnet.store.ota
# ("ota"), envnet.store.audit ("audit"), envnet.store.webhooks.outbox ("webhooks"),
# envnet.store.users ("users"). Each version 1 is the 0.1.0 schema text (CREATE IF NOT EXISTS),
# which adopts the tables existing files already have; later changes are new migrations.
STATE_DB = Registry("state", "settings.store.path (state.db)")

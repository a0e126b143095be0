"""Console users, their sessions and failed logins, in the state store's database.

Passwords are hashed with Argon2id (argon2-cffi, its default parameters); a session is a
random token the browser keeps in a cookie, stored here only as its SHA-256, with the CSRF
token of that session's forms. Failed logins are kept for throttling (docs/pages.md).

Roles (docs/pages.md): `duty_room` (督办值班室), `unit` (责任单位, with a unit id), `reviewer`
(数据审核), `admin` (管理员).

The tables are the "users" owner's in the state file's schema registry (envnet/store/schema.py).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from envnet.store.schema import STATE_DB
from envnet.store.state import SqliteStateStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    unit TEXT,
    disabled INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS user_sessions (
    token_hash TEXT PRIMARY KEY,
    "user" TEXT NOT NULL REFERENCES users(name),
    csrf TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS user_sessions_by_user ON user_sessions("user");
CREATE TABLE IF NOT EXISTS login_failures (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    client TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS login_failures_by_name ON login_failures(name, at);
CREATE INDEX IF NOT EXISTS login_failures_by_client ON login_failures(client, at);
"""
USERS = STATE_DB.register(
    "users",
    module=__name__,
    tables=("users", "user_sessions", "login_failures"),
    migrations=(SCHEMA,),
)

ROLES: dict[str, tuple[str, str]] = {
    "duty_room": ("督办值班室", "duty room"),
    "unit": ("责任单位", "responsible unit"),
    "reviewer": ("数据审核", "data reviewer"),
    "admin": ("管理员", "administrator"),
}
USER_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
UNIT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MIN_PASSWORD = 10
_hasher = PasswordHasher()
# Verified against when the user does not exist, so that a wrong name costs as long as a
# wrong password (no timing hint of which names exist).
_DUMMY_HASH = _hasher.hash("not a password of anyone")


class UserError(ValueError):
    """A user could not be added or changed; str() says why."""


@dataclass(frozen=True)
class User:
    name: str
    role: str
    unit: str | None
    disabled: bool
    created_at: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role,
            "unit": self.unit,
            "disabled": self.disabled,
            "created_at": self.created_at,
        }


@dataclass(frozen=True)
class Session:
    user: User
    csrf: str
    expires_at: float


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class UserStore:
    def __init__(self, state: SqliteStateStore) -> None:
        self.state = state
        state.db.ensure(USERS)

    # -- users -------------------------------------------------------------------------------
    def add(self, name: str, password: str, role: str, unit: str | None = None) -> User:
        if not USER_NAME_RE.match(name):
            raise UserError(f"bad user name {name!r}: letters, digits, _ . @ - (up to 64)")
        if role not in ROLES:
            raise UserError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
        if role == "unit":
            if not unit or not UNIT_RE.match(unit):
                raise UserError("a unit user needs --unit: letters, digits, _ . - (up to 64)")
        elif unit:
            raise UserError(f"--unit is for the unit role only (role {role!r})")
        if len(password) < MIN_PASSWORD:
            raise UserError(f"the password must have at least {MIN_PASSWORD} characters")
        now = time.time()
        with self.state.tx() as c:
            if c.execute("SELECT 1 FROM users WHERE name=?", (name,)).fetchone():
                raise UserError(f"user {name!r} exists")
            c.execute(
                "INSERT INTO users(name, password_hash, role, unit, disabled, created_at,"
                " updated_at) VALUES (?,?,?,?,0,?,?)",
                (name, _hasher.hash(password), role, unit, now, now),
            )
        user = self.get(name)
        assert user is not None
        return user

    def get(self, name: str) -> User | None:
        rows = self.state.query(
            "SELECT name, role, unit, disabled, created_at FROM users WHERE name=?", (name,)
        )
        return _user(rows[0]) if rows else None

    def list(self) -> list[User]:
        rows = self.state.query(
            "SELECT name, role, unit, disabled, created_at FROM users ORDER BY name"
        )
        return [_user(r) for r in rows]

    def disable(self, name: str) -> bool:
        """Disable a user and end their sessions; False if already disabled."""
        with self.state.tx() as c:
            row = c.execute("SELECT disabled FROM users WHERE name=?", (name,)).fetchone()
            if row is None:
                raise UserError(f"no user {name!r}")
            c.execute('DELETE FROM user_sessions WHERE "user"=?', (name,))
            if row[0]:
                return False
            c.execute("UPDATE users SET disabled=1, updated_at=? WHERE name=?", (time.time(), name))
            return True

    def authenticate(self, name: str, password: str) -> User | None:
        """The user when the password is right and the user is enabled, else None."""
        rows = self.state.query("SELECT password_hash FROM users WHERE name=?", (name,))
        stored = rows[0][0] if rows else _DUMMY_HASH
        try:
            _hasher.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        user = self.get(name) if rows else None
        if user is None or user.disabled:
            return None
        if _hasher.check_needs_rehash(stored):
            with self.state.tx() as c:
                c.execute(
                    "UPDATE users SET password_hash=? WHERE name=?", (_hasher.hash(password), name)
                )
        return user

    # -- sessions ----------------------------------------------------------------------------
    def open_session(self, user: User, ttl_s: float) -> tuple[str, Session]:
        """A new session: (the token for the cookie, the session with its CSRF token)."""
        token = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        now = time.time()
        with self.state.tx() as c:
            c.execute("DELETE FROM user_sessions WHERE expires_at < ?", (now,))
            c.execute(
                'INSERT INTO user_sessions(token_hash, "user", csrf, created_at, expires_at)'
                " VALUES (?,?,?,?,?)",
                (_token_hash(token), user.name, csrf, now, now + ttl_s),
            )
        return token, Session(user, csrf, now + ttl_s)

    def session(self, token: str | None) -> Session | None:
        """The live session of a cookie token; None when unknown, expired or disabled."""
        if not token:
            return None
        rows = self.state.query(
            "SELECT s.csrf, s.expires_at, u.name, u.role, u.unit, u.disabled, u.created_at"
            ' FROM user_sessions s JOIN users u ON u.name = s."user" WHERE s.token_hash=?',
            (_token_hash(token),),
        )
        if not rows or rows[0]["expires_at"] < time.time() or rows[0]["disabled"]:
            return None
        r = rows[0]
        return Session(_user(r), r["csrf"], r["expires_at"])

    def close_session(self, token: str) -> None:
        with self.state.tx() as c:
            c.execute("DELETE FROM user_sessions WHERE token_hash=?", (_token_hash(token),))

    # -- throttling --------------------------------------------------------------------------
    def record_failure(self, name: str, client: str) -> None:
        with self.state.tx() as c:
            c.execute(
                "INSERT INTO login_failures(name, client, at) VALUES (?,?,?)",
                (name[:64], client, time.time()),
            )

    def throttled(self, name: str, client: str, max_failures: int, window_s: float) -> bool:
        """True when the name, or the client address, failed `max_failures` times lately."""
        since = time.time() - window_s
        rows = self.state.query(
            "SELECT (SELECT count(*) FROM login_failures WHERE name=? AND at>=?),"
            " (SELECT count(*) FROM login_failures WHERE client=? AND at>=?)",
            (name[:64], since, client, since),
        )
        by_name, by_client = rows[0][0], rows[0][1]
        return by_name >= max_failures or by_client >= max_failures

    def clear_failures(self, name: str) -> None:
        with self.state.tx() as c:
            c.execute("DELETE FROM login_failures WHERE name=?", (name[:64],))


def _user(r: Any) -> User:
    return User(r["name"], r["role"], r["unit"], bool(r["disabled"]), r["created_at"])

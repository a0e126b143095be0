"""API keys: `Authorization: Bearer KEY` on every route that changes state, and who sent it.

Keys and their names come from the configuration:
- `server.api_key` (ENVNET_SERVER_API_KEY): the original single key; its name is `admin`;
- `server.api_keys` (ENVNET_SERVER_API_KEYS): named keys, a TOML table `name = "key"` or
  `duty-room:KEY1,ops:KEY2` in the environment. The name is what the audit trail records as
  the actor (docs/audit.md); the key itself is never stored or logged.

Use `require_api_key` as a route dependency exactly as before:
`@router.post(..., dependencies=[Depends(require_api_key)])`, or take the caller's key name
with `who: ApiKeyName` (same checks, returns the name):
- no key configured on the server: 403 for every such route, with a message telling the
  operator to set ENVNET_SERVER_API_KEY: the API is read-only until then;
- no `Authorization: Bearer ...` header (or another scheme): 401 with `WWW-Authenticate: Bearer`;
- a key that is none of the configured ones: 403.
The presented key is compared with every configured key, in constant time each (over SHA-256
digests, so neither the key's length nor which key matched shows in the timing).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from envnet.config import Settings

ADMIN_KEY_NAME = "admin"  # the name of `server.api_key`

NOT_CONFIGURED = (
    "this server has no API key, so every state-changing call is refused: "
    "set ENVNET_SERVER_API_KEY (or server.api_key in the config file) and restart the server"
)

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="apiKey",
    description=(
        "One of the server's API keys (`server.api_key`, or a named key in `server.api_keys`), "
        "sent as `Authorization: Bearer KEY`."
    ),
)


def named_keys(settings: Settings | None) -> dict[str, str]:
    """Every configured key by name: `admin` for server.api_key, then server.api_keys."""
    if settings is None:
        return {}
    keys = {ADMIN_KEY_NAME: settings.server.api_key} if settings.server.api_key else {}
    keys.update({n: k for n, k in settings.server.api_keys.items() if k})
    return keys


def configured_key(request: Request) -> str:
    """The single `server.api_key` (kept for callers that predate named keys)."""
    settings = getattr(request.app.state, "settings", None)
    return settings.server.api_key if settings is not None else ""


def _digest(s: str) -> bytes:
    return hashlib.sha256(s.encode()).digest()


def match_key(presented: str, keys: dict[str, str]) -> str | None:
    """The name of the key equal to `presented`, or None; looks at every key every time."""
    got = _digest(presented)
    found: str | None = None
    for name, key in keys.items():
        if hmac.compare_digest(got, _digest(key)) and found is None:
            found = name
    return found


def api_key_name(
    request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> str:
    """FastAPI dependency: the name of the caller's API key; 401/403 as require_api_key."""
    keys = named_keys(getattr(request.app.state, "settings", None))
    if not keys:
        raise HTTPException(403, NOT_CONFIGURED)
    if creds is None or not creds.credentials:
        raise HTTPException(
            401,
            "missing API key: send the header 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    name = match_key(creds.credentials, keys)
    if name is None:
        raise HTTPException(403, "wrong API key")
    return name


def require_api_key(
    request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> None:
    """FastAPI dependency: let the request through only with one of the configured keys."""
    api_key_name(request, creds)


ApiKeyName = Annotated[str, Depends(api_key_name)]


# -- roles on named keys (cases, docs/cases.md) -------------------------------------------------
class Role:
    """What a key may do with cases: duty_room, reviewer, admin, or unit (with its unit id)."""

    __slots__ = ("name", "kind", "unit")

    def __init__(self, name: str, kind: str, unit: str | None = None) -> None:
        self.name, self.kind, self.unit = name, kind, unit

    def may(self, *kinds: str) -> bool:
        """Whether this role is one of `kinds`; admin may do everything."""
        return self.kind in kinds or self.kind == "admin"


def role_of(settings: Settings | None, key_name: str) -> Role:
    """server.key_roles[name]; a key without a role (and `admin`) keeps full rights."""
    spec = settings.server.key_roles.get(key_name, "admin") if settings else "admin"
    kind, _, unit = spec.partition(":")
    return Role(key_name, kind, unit or None)


def caller_role(request: Request, who: ApiKeyName) -> Role:
    """FastAPI dependency: the caller's role (after the key checks of api_key_name)."""
    return role_of(getattr(request.app.state, "settings", None), who)


CallerRole = Annotated[Role, Depends(caller_role)]


def require_role(role: str) -> Callable[[Request, str], str]:
    """FastAPI dependency factory: the caller's key name when its role (server.key_roles) is
    `role` or admin; 401/403 as api_key_name, and 403 naming the role otherwise. Use as
    `who: Annotated[str, Depends(require_role("reviewer"))]`."""

    def dependency(request: Request, name: ApiKeyName) -> str:
        have = role_of(getattr(request.app.state, "settings", None), name)
        if not have.may(role):
            raise HTTPException(
                403, f"the API key {name!r} lacks the role {role!r} (server.key_roles: {have.kind})"
            )
        return name

    return dependency

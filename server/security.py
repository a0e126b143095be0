"""The API key: `Authorization: Bearer KEY` on every route that changes state.

Use it as a route dependency: `@router.post(..., dependencies=[Depends(require_api_key)])`.
- no key configured on the server (`server.api_key` empty): 403 for every such route, with a
  message telling the operator to set ENVNET_SERVER_API_KEY: the API is read-only until then;
- no `Authorization: Bearer ...` header (or another scheme): 401 with `WWW-Authenticate: Bearer`;
- a wrong key: 403.
Keys are compared in constant time.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

NOT_CONFIGURED = (
    "this server has no API key, so every state-changing call is refused: "
    "set ENVNET_SERVER_API_KEY (or server.api_key in the config file) and restart the server"
)

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="apiKey",
    description="The server's API key (`server.api_key`), sent as `Authorization: Bearer KEY`.",
)


def configured_key(request: Request) -> str:
    settings = getattr(request.app.state, "settings", None)
    return settings.server.api_key if settings is not None else ""


def require_api_key(
    request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> None:
    """FastAPI dependency: let the request through only with the right API key."""
    key = configured_key(request)
    if not key:
        raise HTTPException(403, NOT_CONFIGURED)
    if creds is None or not creds.credentials:
        raise HTTPException(
            401,
            "missing API key: send the header 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not hmac.compare_digest(creds.credentials.encode(), key.encode()):
        raise HTTPException(403, "wrong API key")

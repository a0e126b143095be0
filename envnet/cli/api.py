"""The server's REST API from the terminal: one GET and one POST/PUT with one-line errors.

Used by `envnet stations|alerts|audit|ota|review`; where the server is and which key to send come
from envnet/cli/common.py (api_target).
"""

from __future__ import annotations

from typing import Any

import httpx


class ApiError(RuntimeError):
    """str() is the one line shown."""


def _headers(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def fetch(url: str, path: str, api_key: str = "", timeout: float = 10.0) -> Any:
    """GET url+path as JSON."""
    full = url.rstrip("/") + path
    try:
        r = httpx.get(full, headers=_headers(api_key), timeout=timeout)
    except httpx.HTTPError as e:
        raise ApiError(f"cannot reach the envnet server at {url}: {e}") from None
    if r.status_code == 404:
        raise ApiError(f"{full}: not found (404): this server does not offer {path} yet")
    if r.status_code in (401, 403):
        raise ApiError(f"{full}: refused ({r.status_code}): check --api-key")
    if r.status_code >= 400:
        raise ApiError(f"{full}: HTTP {r.status_code}: {r.text[:200]}")
    return r.json()


def send(
    url: str,
    path: str,
    api_key: str,
    body: dict | None = None,
    put: bool = False,
    method: str | None = None,
    timeout: float = 30,
) -> Any:
    """POST (or PUT, or `method`, e.g. DELETE) a JSON body to url+path; the answer as JSON."""
    full = url.rstrip("/") + path
    try:
        r = httpx.request(
            method or ("PUT" if put else "POST"),
            full,
            json=body,
            headers=_headers(api_key),
            timeout=timeout,
        )
    except httpx.HTTPError as e:
        raise ApiError(f"cannot reach the envnet server at {url}: {e}") from None
    if r.status_code in (401, 403):
        raise ApiError(f"{full}: refused ({r.status_code}): check --api-key")
    if r.status_code >= 400:
        try:
            detail = r.json().get("detail", r.text)
        except ValueError:
            detail = r.text
        raise ApiError(f"{full}: HTTP {r.status_code}: {str(detail)[:300]}")
    return r.json()

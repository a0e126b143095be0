"""What clients see when something goes wrong: JSON bodies, never a stack trace.

Every error answer is `{"error": "<code>", "detail": ...}` with the HTTP status as usual:
`detail` is one sentence, or for 422 a list of `{"loc", "msg", "type"}` naming each bad field
(the rejected input itself is not echoed back: it may be a secret). Unexpected exceptions are
logged here with their traceback and answered with a bare 500; a busy SQLite file answers 503
with Retry-After. Request bodies larger than the limit are refused with 413 before the
application reads them.
"""

from __future__ import annotations

import http
import json
import logging
import sqlite3
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("envnet.server")

# The API's bodies are small (a webhook subscription, an acknowledgement).
MAX_BODY_BYTES = 64 * 1024


# Stable codes (http.HTTPStatus phrases change between Python versions).
ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "too_many_requests",
    500: "internal_error",
    503: "unavailable",
}


def error_code(status: int) -> str:
    if status in ERROR_CODES:
        return ERROR_CODES[status]
    try:
        return http.HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"


def error_body(status: int, detail: Any) -> dict[str, Any]:
    return {"error": error_code(status), "detail": detail}


def _route_methods(routes: list[Any], path: str, into: set[str]) -> None:
    for route in routes:
        inner = getattr(route, "original_router", None) or getattr(route, "router", None)
        if inner is not None and hasattr(inner, "routes") and not hasattr(route, "path_regex"):
            _route_methods(inner.routes, path, into)
            continue
        regex = getattr(route, "path_regex", None)
        if regex is not None and getattr(route, "methods", None) and regex.match(path):
            into |= set(route.methods)


def _allowed_methods(request: Request) -> str | None:
    """Every method some route serves at this path (Starlette names only the first route's)."""
    methods: set[str] = set()
    _route_methods(request.app.router.routes, request.scope.get("path", ""), methods)
    return ", ".join(sorted(methods)) if methods else None


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if exc.detail is not None else http.HTTPStatus(exc.status_code).phrase
    headers = dict(getattr(exc, "headers", None) or {})
    if exc.status_code == 405 and (allow := _allowed_methods(request)):
        headers["Allow"] = allow
    return JSONResponse(
        error_body(exc.status_code, detail), status_code=exc.status_code, headers=headers or None
    )


def _loc(loc: Any) -> list[Any]:
    return [p if isinstance(p, int | str) else str(p) for p in (loc or ())]


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": _loc(e.get("loc")), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
        for e in exc.errors()
    ]
    return JSONResponse(error_body(422, errors), status_code=422)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
        log.warning("%s %s: state store busy: %s", request.method, request.url.path, exc)
        return JSONResponse(
            error_body(503, "the state store is busy; retry shortly"),
            status_code=503,
            headers={"Retry-After": "1"},
        )
    if isinstance(exc, sqlite3.OperationalError) and hasattr(exc, "sqlstate"):
        # PostgreSQL (envnet/store/postgres.py) lost or refusing: restarting, failing over
        log.warning("%s %s: state store unreachable: %s", request.method, request.url.path, exc)
        return JSONResponse(
            error_body(503, "the state store is unreachable; retry shortly"),
            status_code=503,
            headers={"Retry-After": "5"},
        )
    # The traceback goes to the server log (uvicorn prints it); the client gets one line.
    log.error("%s %s failed: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
    return JSONResponse(error_body(500, "internal error; the server log has the details"), 500)


class BodySizeLimit:
    """ASGI middleware: 413 for request bodies over `max_bytes`.

    A declared Content-Length over the limit is refused without reading the body. A body sent
    without Content-Length (chunked) is read up to the limit and then handed on unchanged.
    """

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _too_large(self, send: Send) -> None:
        body = json.dumps(
            error_body(413, f"request body larger than {self.max_bytes} bytes")
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or ())
        length = headers.get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                declared = -1
            if declared < 0:
                await send_error(send, 400, "bad Content-Length header")
                return
            if declared > self.max_bytes:
                await self._too_large(send)
                return
            await self.app(scope, receive, send)  # the server enforces Content-Length itself
            return
        if headers.get(b"transfer-encoding") is None:
            await self.app(scope, receive, send)  # no body at all
            return
        # Chunked: read the whole body here (bounded), then replay it to the application.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message], receive), send)
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        first: Message = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _replay([first], receive), send)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


async def send_error(send: Send, status: int, detail: str) -> None:
    body = json.dumps(error_body(status, detail)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


ERROR_SCHEMA = {
    "title": "Error",
    "type": "object",
    "required": ["error", "detail"],
    "properties": {
        "error": {"type": "string", "description": "A short stable code, e.g. not_found"},
        "detail": {"description": "What went wrong: a sentence (a list of fields for 422)"},
    },
}


def _document_errors(schema: dict[str, Any], max_body_bytes: int) -> dict[str, Any]:
    """Add the error answers every route can give to the OpenAPI document."""
    schema.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    ref = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for item in schema.get("paths", {}).values():
        for op in item.values():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            extra: dict[str, str] = {"500": "Internal error (details only in the server log)"}
            if any(p.get("in") == "path" for p in op.get("parameters", [])):
                extra["404"] = "Not found"
            if "requestBody" in op:
                extra["400"] = "The body could not be read (not UTF-8 JSON)"
                extra["413"] = f"Request body larger than {max_body_bytes} bytes"
            if op.get("security"):
                extra["401"] = "No API key sent (Authorization: Bearer KEY)"
                extra["403"] = "Wrong API key, or none configured on the server"
            for code, description in extra.items():
                answer = op["responses"].setdefault(code, {"description": description})
                answer.setdefault("content", ref)
    return schema


def install(app: FastAPI, max_body_bytes: int = MAX_BODY_BYTES) -> None:
    """JSON error handlers, the body size limit, and the error answers in the OpenAPI schema."""
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)
    plain_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _document_errors(plain_openapi(), max_body_bytes)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

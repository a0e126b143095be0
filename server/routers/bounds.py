"""Bounds of the query parameters the routers share, so the schema states them and a value
outside them is a 422 before it reaches SQLite (which stores 64-bit integers and compares NaN
oddly): `GET /stations?offset=261617687822842658816` once answered 500. `no_unknown_params`
refuses a query parameter the route does not know (the filters of /audit, /cases, /review)."""

from __future__ import annotations

from fastapi import Request
from fastapi.exceptions import RequestValidationError

MAX_OFFSET = 1_000_000_000  # rows a page may skip: far beyond any network's stations
MIN_UNIX_S = 0.0
MAX_UNIX_S = 4_102_444_800.0  # 2100-01-01T00:00:00Z, the reports' last day too


def no_unknown_params(request: Request) -> None:
    """A misspelt filter (`?overdu=true`, `?actr=`) must not silently answer for everything:
    422, as must a parameter given twice."""
    route = request.scope.get("route")
    if route is None:
        return
    known: set[str] = set()
    todo = [route.dependant]
    while todo:  # the route's own query parameters and those of its dependencies
        d = todo.pop()
        known |= {p.alias for p in d.query_params}
        todo += d.dependencies
    unknown = [k for k in request.query_params if k not in known]
    if unknown:
        raise RequestValidationError(
            [{"loc": ("query", k), "msg": "unknown query parameter", "type": "extra_forbidden"}
             for k in unknown]
        )  # fmt: skip
    twice = sorted({k for k, _ in request.query_params.multi_items()
                    if len(request.query_params.getlist(k)) > 1})  # fmt: skip
    if twice:
        raise RequestValidationError(
            [{"loc": ("query", k), "msg": "given more than once", "type": "value_error"}
             for k in twice]
        )  # fmt: skip

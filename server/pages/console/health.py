"""Console: station health (state, battery, signal, last seen, buffered readings, firmware)."""

# No `from __future__ import annotations`: the Depends() in Annotated[...] names a local
# (the console object), which FastAPI could not resolve from a string annotation.
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from envnet.store.users import Session
from server.pages.console.context import Console


def router(console: Console, roles: frozenset[str]) -> APIRouter:
    api = APIRouter(prefix="/console/health", include_in_schema=False)

    @api.get("", response_class=HTMLResponse)
    def health(request: Request, session: Annotated[Session, Depends(console.session)]) -> Response:
        console.allow(session, roles)
        stations = console.views.all(with_indices=False)
        return console.page(
            request, session, "console/health.html", {"stations": stations}, "health"
        )

    return api

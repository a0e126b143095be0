"""Console: OTA rollouts, read only (changes go through the API, docs/ota.md)."""

# No `from __future__ import annotations`: the Depends() in Annotated[...] names a local
# (the console object), which FastAPI could not resolve from a string annotation.
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from envnet.store.ota import SqliteOtaStore
from envnet.store.users import Session
from server.pages.console.context import Console
from server.routers.ota import _rollout_view


def router(console: Console, roles: frozenset[str]) -> APIRouter:
    api = APIRouter(prefix="/console/rollouts", include_in_schema=False)
    ota = SqliteOtaStore(console.store)

    @api.get("", response_class=HTMLResponse)
    def rollouts(
        request: Request, session: Annotated[Session, Depends(console.session)]
    ) -> Response:
        console.allow(session, roles)
        # The same view as GET /ota/rollouts (stage counts), so the two never disagree.
        views = [_rollout_view(ota, r, False) for r in ota.list_rollouts()]
        ctx = {"rollouts": views, "releases": ota.list_releases()}
        return console.page(request, session, "console/rollouts.html", ctx, "rollouts")

    return api

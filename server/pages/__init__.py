"""The web pages (docs/pages.md): public pages, the console, offline API docs, static files.

`install(app, ...)` is all server/app.py calls. Routers per page set: public.py (no key),
console/ (login; one router per section), docs.py (/docs, /redoc from vendored assets).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from envnet.config import Settings
from envnet.store.state import SqliteStateStore
from envnet.store.users import UserStore
from server.pages import console as console_pages
from server.pages import docs, public
from server.pages.console.context import CONSOLE, Console, LoginRequired
from server.pages.console.sections import visible
from server.pages.templating import STATIC_DIR, make_templates, render
from server.pages.views import StationViews
from server.reports.service import Reports


def install(app: FastAPI, settings: Settings, store: SqliteStateStore, stale_after: float) -> None:
    """Static files and /docs, /redoc always; the public pages and console when enabled.

    The app must be created with docs_url=None and redoc_url=None (FastAPI's own load from a
    CDN)."""
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(docs.router(app))
    if not settings.pages.enabled:
        return
    templates = make_templates(settings.reports.timezone)
    views = StationViews(store, stale_after)
    app.include_router(public.router(settings, views, Reports(settings, store), templates))
    # The console's case pages act through the API's desk: server/app.py installs the cases
    # API first.
    desk = getattr(app.state, "case_desk", None)
    console = Console(settings, store, UserStore(store), views, templates, visible, desk)
    for r in console_pages.routers(console):
        app.include_router(r)

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, exc: LoginRequired) -> Response:
        return RedirectResponse(f"{CONSOLE}/login", status_code=303)

    @app.exception_handler(public.PageError)
    async def _page_error(request: Request, exc: public.PageError) -> Response:
        ctx = {"status": exc.status, "zh": exc.zh, "en": exc.en}
        return render(templates, request, "error.html", ctx, exc.status)

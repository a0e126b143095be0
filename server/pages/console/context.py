"""What every console section gets: the stores, the templates, the logged-in session, and
the checks every form goes through (role, CSRF)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from envnet.config import Settings
from envnet.store.state import SqliteStateStore
from envnet.store.users import ROLES, Session, UserStore
from server.pages.public import PageError
from server.pages.templating import render
from server.pages.views import StationViews
from server.routers.cases import CaseDesk

SESSION_COOKIE = "envnet_session"
LOGIN_CSRF_COOKIE = "envnet_login_csrf"
CONSOLE = "/console"


class LoginRequired(Exception):
    """No live session: the browser is sent to the login page."""


@dataclass
class Console:
    settings: Settings
    store: SqliteStateStore
    users: UserStore
    views: StationViews
    templates: Jinja2Templates
    nav: Callable[[Session], list[Any]]  # the sections this session may open
    cases: CaseDesk | None = None  # the API's case desk (server/routers/cases.py), when on

    def session(self, request: Request) -> Session:
        """FastAPI dependency: the logged-in session, or a redirect to the login page."""
        s = self.users.session(request.cookies.get(SESSION_COOKIE))
        if s is None:
            raise LoginRequired()
        return s

    def allow(self, session: Session, roles: frozenset[str]) -> None:
        if session.user.role not in roles:
            raise PageError(
                403,
                f"角色“{ROLES[session.user.role][0]}”不能打开此页",
                f"the role {session.user.role} may not open this page",
            )

    def check_csrf(self, session: Session, token: str | None) -> None:
        """Every console form carries its session's CSRF token; anything else is refused."""
        if not token or not secrets.compare_digest(token, session.csrf):
            raise PageError(
                403, "表单已失效，请刷新后重试", "form refused: missing or wrong CSRF token"
            )

    def page(
        self, request: Request, session: Session, name: str, ctx: dict[str, Any], active: str
    ) -> HTMLResponse:
        full = {
            "session": session,
            "user": session.user,
            "roles": ROLES,
            "csrf": session.csrf,
            "sections": self.nav(session),
            "active": active,
            **ctx,
        }
        return render(self.templates, request, name, full)

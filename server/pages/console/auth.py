"""Login, logout and the console's landing page.

The login form is protected by a double-submit token (a random value in a short-lived
cookie and in the form) because there is no session yet; after login every form carries the
session's own CSRF token. Failed logins are throttled per user name and per client address
(`pages.login_max_failures` within `pages.login_window_s`).
"""

# No `from __future__ import annotations`: the Depends() in Annotated[...] names a local
# (the console object), which FastAPI could not resolve from a string annotation.
import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from envnet.store.audit import record_audit
from envnet.store.users import Session
from server.pages.console.context import CONSOLE, LOGIN_CSRF_COOKIE, SESSION_COOKIE, Console
from server.pages.templating import render


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def router(console: Console) -> APIRouter:
    api = APIRouter(prefix=CONSOLE, include_in_schema=False)
    cfg = console.settings.pages

    def login_form(request: Request, error: tuple[str, str] | None, status: int) -> Response:
        token = secrets.token_urlsafe(32)
        resp = render(
            console.templates,
            request,
            "console/login.html",
            {"login_csrf": token, "error": error, "name": ""},
            status,
        )
        resp.set_cookie(
            LOGIN_CSRF_COOKIE,
            token,
            max_age=3600,
            path=f"{CONSOLE}/login",
            secure=cfg.cookie_secure,
            httponly=True,
            samesite="strict",
        )
        return resp

    @api.get("/login", response_class=HTMLResponse)
    def login_page(request: Request) -> Response:
        return login_form(request, None, 200)

    @api.post("/login")
    def login(
        request: Request,
        name: Annotated[str, Form(max_length=64)] = "",
        password: Annotated[str, Form(max_length=1024)] = "",
        csrf: Annotated[str, Form(max_length=128)] = "",
    ) -> Response:
        cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
        if not csrf or not cookie or not secrets.compare_digest(csrf, cookie):
            return login_form(
                request, ("表单已失效，请重试", "form refused: missing or wrong CSRF token"), 403
            )
        client = _client(request)
        users = console.users
        if users.throttled(name, client, cfg.login_max_failures, cfg.login_window_s):
            users.record_failure(name, client)
            return login_form(
                request,
                ("登录失败次数过多，请稍后再试", "too many failed logins: try again later"),
                429,
            )
        user = users.authenticate(name, password)
        if user is None:
            users.record_failure(name, client)
            return login_form(
                request, ("用户名或密码错误", "wrong user name or password (or disabled)"), 401
            )
        users.clear_failures(name)
        token, _ = users.open_session(user, cfg.session_hours * 3600)
        record_audit(
            console.store,
            actor=user.name,
            action="console.login",
            target=user.name,
            detail={"client": client, "role": user.role},
        )
        resp = RedirectResponse(CONSOLE, status_code=303)
        resp.set_cookie(
            SESSION_COOKIE,
            token,
            max_age=int(cfg.session_hours * 3600),
            path=CONSOLE,
            secure=cfg.cookie_secure,
            httponly=True,
            samesite="strict",
        )
        resp.delete_cookie(LOGIN_CSRF_COOKIE, path=f"{CONSOLE}/login")
        return resp

    @api.post("/logout")
    def logout(
        request: Request,
        session: Annotated[Session, Depends(console.session)],
        csrf: Annotated[str, Form(max_length=128)] = "",
    ) -> Response:
        console.check_csrf(session, csrf)
        console.users.close_session(request.cookies.get(SESSION_COOKIE, ""))
        record_audit(
            console.store,
            actor=session.user.name,
            action="console.logout",
            target=session.user.name,
        )
        resp = RedirectResponse(f"{CONSOLE}/login", status_code=303)
        resp.delete_cookie(SESSION_COOKIE, path=CONSOLE)
        return resp

    @api.get("", response_class=HTMLResponse)
    def home(request: Request, session: Annotated[Session, Depends(console.session)]) -> Response:
        sections = console.nav(session)
        if sections:
            return RedirectResponse(sections[0].path, status_code=303)
        return console.page(request, session, "console/home.html", {}, "home")

    return api

"""Console: alerts, and acknowledging one (the same transaction as POST /alerts/{id}/ack:
the change, its history, its webhook event and an audit row with the user's name)."""

# No `from __future__ import annotations`: the Depends() in Annotated[...] names a local
# (the console object), which FastAPI could not resolve from a string annotation.
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from envnet.store.alerts import SqliteAlertStore
from envnet.store.users import Session
from server.pages.console.context import Console
from server.pages.public import PageError
from server.routers.alerts import AckRequest, acknowledge_alert

ACK_ROLES = frozenset({"duty_room", "admin"})


def router(console: Console, roles: frozenset[str]) -> APIRouter:
    api = APIRouter(prefix="/console/alerts", include_in_schema=False)
    alerts = SqliteAlertStore(console.store)
    state = console.store

    @api.get("", response_class=HTMLResponse)
    def list_alerts(
        request: Request,
        session: Annotated[Session, Depends(console.session)],
        show: Literal["open", "acknowledged", "resolved"] = Query("open", alias="state"),
    ) -> Response:
        console.allow(session, roles)
        found = alerts.search(show, None, None, None, None, None, 500)
        ctx = {"alerts": found, "show": show, "can_ack": session.user.role in ACK_ROLES}
        return console.page(request, session, "console/alerts.html", ctx, "alerts")

    @api.post("/{alert_id}/ack")
    def ack(
        alert_id: str,
        session: Annotated[Session, Depends(console.session)],
        csrf: Annotated[str, Form(max_length=128)] = "",
        note: Annotated[str, Form(max_length=1000)] = "",
    ) -> Response:
        console.allow(session, roles & ACK_ROLES)
        console.check_csrf(session, csrf)
        who = session.user.name
        body = AckRequest(by=who, note=note or None)
        try:
            acknowledge_alert(console.settings, state, alerts, alert_id, who, body)
        except KeyError:
            raise PageError(404, f"没有告警 {alert_id}", f"no alert {alert_id}") from None
        return RedirectResponse("/console/alerts", status_code=303)

    return api

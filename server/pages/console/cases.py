"""Console: the supervision loop's cases (docs/cases.md), their slips, history, linked alerts
and evidence; a unit signs and reports (text, photos, position), the duty room verifies or
returns with a reason.

Every read and action goes through the API's `CaseDesk` (server/routers/cases.py) as the
logged-in user, so the role checks, a unit's ownership (403 and an audit row), the photo
limits, the state transitions, the history, audit rows and webhook events are the API's own;
only their HTTP errors are shown here as the error page. A unit user sees its own unit's cases
only; opening another unit's case is refused and audited (`case.view.refused`).
"""

# No `from __future__ import annotations`: the Depends() in Annotated[...] names a local
# (the console object), which FastAPI could not resolve from a string annotation.
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from envnet.domain.cases import SLIP_KINDS, STATES
from envnet.store.case_queries import list_cases
from envnet.store.users import Session
from server.pages.console.context import Console
from server.pages.public import PageError
from server.routers.cases import PHOTO_MAGIC, CaseDesk
from server.security import Role

CASE_ID = re.compile(r"^[0-9a-f]{16}$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
LIST_LIMIT = 500
STATE_LABELS = {
    "assigned": "已交办",
    "signed": "已签收",
    "handling": "处理中",
    "reported": "已反馈",
    "verified": "已核查",
    "closed": "已办结",
}
# The error page's Chinese line per status; the English line is the API's own message.
ERROR_ZH = {
    403: "无权进行此操作",
    404: "没有这个案件",
    409: "案件当前状态不允许此操作",
    413: "照片过大",
    415: "照片类型不符（仅限 JPEG、PNG）",
    422: "输入有误",
}


def role_of(session: Session) -> Role:
    """The console user as the desk's caller: their name (the audit's actor), role and unit."""
    u = session.user
    return Role(u.name, u.role, u.unit)


@contextmanager
def as_page() -> Iterator[None]:
    """The desk's HTTP errors as the console's error page (same status, the API's message)."""
    try:
        yield
    except HTTPException as e:
        zh = ERROR_ZH.get(e.status_code, "操作未完成")
        raise PageError(e.status_code, zh, str(e.detail)) from None
    except RequestValidationError as e:
        msg = "; ".join(str(err.get("msg")) for err in e.errors())
        raise PageError(422, ERROR_ZH[422], msg) from None


def _case_id(case_id: str) -> str:
    if not CASE_ID.match(case_id):
        raise PageError(404, ERROR_ZH[404], f"no case {case_id}")
    return case_id


def _coordinate(text: str, name: str, bound: float) -> float | None:
    if not text.strip():
        return None
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not -bound <= v <= bound:  # NaN fails too
        raise PageError(422, ERROR_ZH[422], f"{name}: a number between -{bound} and {bound}")
    return v


def router(console: Console, roles: frozenset[str]) -> APIRouter:
    api = APIRouter(prefix="/console/cases", include_in_schema=False)

    def desk() -> CaseDesk:
        if console.cases is None:
            raise PageError(404, "本服务器未启用督办案件", "cases are not enabled on this server")
        return console.cases

    def back(case_id: str) -> Response:
        return RedirectResponse(f"/console/cases/{case_id}", status_code=303)

    @api.get("", response_class=HTMLResponse)
    def list_page(
        request: Request,
        session: Annotated[Session, Depends(console.session)],
        state: Literal[("", *STATES)] = "",  # type: ignore[valid-type]
        overdue: Literal["", "true", "false"] = "",
        unit: Annotated[str, Query(max_length=64)] = "",
    ) -> Response:
        console.allow(session, roles)
        d = desk()
        me = session.user
        if me.role == "unit":
            unit = me.unit or "-"  # a unit user without a unit sees nothing
        total, found = list_cases(
            d.store,
            d.clock(),
            state=state or None,
            unit=unit or None,
            overdue={"true": True, "false": False}.get(overdue),
            limit=LIST_LIMIT,
        )
        ctx = {
            "cases": found,
            "total": total,
            "state": state,
            "overdue": overdue,
            "unit": unit,
            "states": STATES,
            "state_labels": STATE_LABELS,
            "now": d.clock(),
        }
        return console.page(request, session, "console/cases.html", ctx, "cases")

    @api.get("/{case_id}", response_class=HTMLResponse)
    def case_page(
        request: Request, case_id: str, session: Annotated[Session, Depends(console.session)]
    ) -> Response:
        console.allow(session, roles)
        d = desk()
        with as_page():
            # action "view": a unit user opening another unit's case leaves an audit row.
            case = d.detail(role_of(session), _case_id(case_id), "view")
        me = session.user
        acts = me.role in ("unit", "admin")
        checks = me.role in ("duty_room", "admin")
        ctx = {
            "case": case,
            "unit": d.store.grid.unit(case["unit"]),
            "slip_kinds": SLIP_KINDS,
            "state_labels": STATE_LABELS,
            "can_sign": acts and case["state"] == "assigned",
            "can_report": acts and case["state"] in ("signed", "handling"),
            "can_verify": checks and case["state"] == "reported",
            "photo_max": d.photo_max,
            "photo_count": d.photo_count,
            "photo_types": ",".join(PHOTO_MAGIC),
        }
        return console.page(request, session, "console/case.html", ctx, "cases")

    @api.get("/{case_id}/photos/{sha256}")
    def photo(
        case_id: str, sha256: str, session: Annotated[Session, Depends(console.session)]
    ) -> Response:
        """A report's photo, to those who may open its case (the API's photo route needs a key)."""
        console.allow(session, roles)
        d = desk()
        with as_page():
            case = d.detail(role_of(session), _case_id(case_id), "view")
            shas = {s for r in case["evidence"]["reports"] for s in r["photos"]}
            if not SHA256.match(sha256) or sha256 not in shas:
                raise HTTPException(404, f"case {case_id} has no photo {sha256}")
            data, content_type = d.photo(sha256)
        return Response(data, media_type=content_type, headers={"Cache-Control": "private"})

    def note_action(action: str) -> None:
        """sign (the unit) and verify (the duty room): a CSRF-checked form with an optional
        note; the desk checks the role and the case's state."""

        def handler(
            case_id: str,
            session: Annotated[Session, Depends(console.session)],
            csrf: Annotated[str, Form(max_length=128)] = "",
            note: Annotated[str, Form(max_length=2000)] = "",
        ) -> Response:
            console.allow(session, roles)
            console.check_csrf(session, csrf)
            with as_page():
                desk().act(
                    role_of(session), _case_id(case_id), action, detail={"note": note or None}
                )
            return back(case_id)

        api.post(f"/{{case_id}}/{action}", name=action)(handler)

    note_action("sign")
    note_action("verify")

    @api.post("/{case_id}/report")
    def report(
        case_id: str,
        session: Annotated[Session, Depends(console.session)],
        csrf: Annotated[str, Form(max_length=128)] = "",
        text: Annotated[str, Form(max_length=5000)] = "",
        lat: Annotated[str, Form(max_length=32)] = "",
        lon: Annotated[str, Form(max_length=32)] = "",
        photos: Annotated[list[UploadFile] | None, File()] = None,
    ) -> Response:
        console.allow(session, roles)
        console.check_csrf(session, csrf)
        if not text.strip():
            raise PageError(422, "请填写处理情况", "text: say what was done")
        la, lo = _coordinate(lat, "lat", 90), _coordinate(lon, "lon", 180)
        # A file input left empty still sends one part, without a name and without content.
        files = [f for f in photos or [] if f.filename]
        with as_page():
            desk().report(
                role_of(session),
                _case_id(case_id),
                text,
                la,
                lo,
                files,
                decode=lambda f: (f.content_type or "", f.file.read()),
            )
        return back(case_id)

    @api.post("/{case_id}/return")
    def return_(
        case_id: str,
        session: Annotated[Session, Depends(console.session)],
        csrf: Annotated[str, Form(max_length=128)] = "",
        reason: Annotated[str, Form(max_length=2000)] = "",
    ) -> Response:
        console.allow(session, roles)
        console.check_csrf(session, csrf)
        if not reason.strip():
            raise PageError(422, "退回须说明理由", "reason: say why the case is returned")
        with as_page():
            desk().act(role_of(session), _case_id(case_id), "return", detail={"reason": reason})
        return back(case_id)

    return api

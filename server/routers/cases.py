"""The supervision loop over HTTP: /cases (list, detail, open, sign, report, verify, return,
reassign), /units, /cells and /reports/supervision (docs/cases.md).

Every route needs an API key; what a key may do is its role (`server.key_roles`): the duty room
opens, verifies, returns and reassigns; a unit signs and reports its own cases and sees only
those; a reviewer reads; admin (and any key without a role) may do everything. A unit acting
on another unit's case gets 403 and leaves an audit row. Times come from the cases' clock
(server/cases_clock.py), so tests and the demo can move it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Response
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from envnet.domain.alerts import RULES, SEVERITIES
from envnet.domain.cases import SLIP_KINDS, STATES, TransitionError, load_policy
from envnet.store.case_queries import list_cases, supervision
from envnet.store.case_schedule import CaseScheduler
from envnet.store.cases import CaseError, CaseStore, NotFound
from envnet.store.state import SqliteStateStore
from server.cases_clock import Clock, make_clock
from server.cases_scheduler import CaseSchedulerWorker
from server.lifespan import run_with_app
from server.routers.bounds import MAX_OFFSET, no_unknown_params
from server.security import CallerRole, Role, require_api_key

Id = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
CaseId = Annotated[str, PathParam(pattern=r"^[0-9a-f]{16}$", description="The case's id")]
Note = Annotated[str, StringConstraints(max_length=2000)]
# Photo types accepted, by their first bytes (the declared type must match the content).
PHOTO_MAGIC = {"image/jpeg": b"\xff\xd8\xff", "image/png": b"\x89PNG\r\n\x1a\n"}
PERIOD_S = {"week": 7 * 86400, "month": 30 * 86400}


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CaseCreate(_Body):
    station: Id | None = Field(None, description="The station (its cell names the unit)")
    rule: Literal[tuple(RULES)] = Field("water_class")  # type: ignore[valid-type]
    parameter: Id = Field(description="e.g. pm25, nh3n; 'manual' for a case without one")
    severity: Literal[tuple(SEVERITIES)] = "medium"  # type: ignore[valid-type]
    unit: Id | None = Field(None, description="The responsible unit (default: from cell/station)")
    cell: Id | None = None
    title: Note = ""


class ActNote(_Body):
    note: Note | None = None


class Photo(_Body):
    content_type: Literal[tuple(PHOTO_MAGIC)]  # type: ignore[valid-type]
    data_base64: str = Field(max_length=20_000_000)


class ReportBody(_Body):
    text: Annotated[str, StringConstraints(min_length=1, max_length=5000)]
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)
    photos: list[Photo] = Field(default_factory=list, max_length=50)


class ReturnBody(_Body):
    reason: Annotated[str, StringConstraints(min_length=1, max_length=2000)]


class ReassignBody(_Body):
    unit: Id
    reason: Note | None = None


def _invalid(loc: tuple[Any, ...], msg: str) -> RequestValidationError:
    """A 422 in the same shape as FastAPI's own (a list naming the field)."""
    return RequestValidationError([{"loc": loc, "msg": msg, "type": "value_error"}])


def _case_error(e: CaseError) -> HTTPException:
    """409, not 422: the request is well formed, the grid or registry does not fit it (an
    unknown unit, cell or station; a second open case for one station, rule and parameter)."""
    return HTTPException(409, str(e))


def _need(role: Role, *kinds: str) -> None:
    if not role.may(*kinds):
        raise HTTPException(403, f"the key {role.name!r} ({role.kind}) may not do this")


# Who may take each action (admin may take every one).
ACTION_ROLES: dict[str, tuple[str, ...]] = {
    "sign": ("unit",),
    "report": ("unit",),
    "verify": ("duty_room",),
    "return": ("duty_room",),
    "reassign": ("duty_room",),
}


@dataclass(frozen=True)
class CaseDesk:
    """Reading and acting on cases as a caller with a role: the one place that checks the
    role, the unit's ownership (403 with an audit row for a refused action), the photos and
    the state, and maps the store's errors to HTTP statuses. The API routes below and the
    console's case pages (server/pages/console/cases.py) both go through it; the console
    turns its HTTPException into its error page."""

    store: CaseStore
    clock: Clock
    photos_dir: Path
    photo_max: int
    photo_count: int

    def case_for(
        self, role: Role, case_id: str, action: str | None = None, now: float | None = None
    ) -> dict[str, Any]:
        """The case, when `role` may see it: 404 when unknown; 403 when it is another unit's
        (with an audit row when `action` is given: the API audits refused actions)."""
        now = self.clock() if now is None else now
        c = self.store.get(case_id, now)
        if c is None:
            raise HTTPException(404, f"case {case_id} is not known")
        if role.kind == "unit" and c["unit"] != role.unit:
            if action is not None:
                self.store.record_refusal(c["id"], role.name, action, f"case of unit {c['unit']}, "
                                          f"key of unit {role.unit}", now)  # fmt: skip
            raise HTTPException(403, f"case {c['id']} belongs to another unit")
        return c

    def detail(self, role: Role, case_id: str, action: str | None = None) -> dict[str, Any]:
        """GET /cases/{id}: the case with its slips, history, linked alerts and evidence."""
        now = self.clock()
        self.case_for(role, case_id, action, now)
        return self.store.detail(case_id, now)  # type: ignore[return-value]

    def act(self, role: Role, case_id: str, action: str, **kw: Any) -> dict[str, Any]:
        """sign | verify | return | reassign (report: `report`) as `role`; its audit rows
        and events carry `role.name`."""
        _need(role, *ACTION_ROLES[action])
        now = self.clock()
        self.case_for(role, case_id, action, now)
        try:
            return self.store.act(case_id, action, at=now, actor=role.name, **kw)
        except NotFound:
            raise HTTPException(404, f"case {case_id} is not known") from None
        except TransitionError as e:
            raise HTTPException(409, str(e)) from None
        except CaseError as e:
            raise _case_error(e) from None

    def report(
        self,
        role: Role,
        case_id: str,
        text: str,
        lat: float | None,
        lon: float | None,
        photos: Sequence[Any],
        decode: Callable[[Any], tuple[str, bytes]] = lambda p: p,
    ) -> dict[str, Any]:
        """The unit's report: text, position and photos (`decode` gives each one's content
        type and bytes, after the role and ownership checks), each photo checked (count 422,
        size 413, type 415) and stored by SHA-256 only once the case accepts a report."""
        _need(role, *ACTION_ROLES["report"])
        now = self.clock()
        c = self.case_for(role, case_id, "report", now)
        if len(photos) > self.photo_count:
            raise _invalid(("body", "photos"), f"at most {self.photo_count} photos per report")
        blobs = [decode(p) for p in photos]
        for content_type, data in blobs:
            check_photo(content_type, data, self.photo_max)
        if c["state"] not in ("signed", "handling"):
            raise HTTPException(409, f"case {case_id} is {c['state']}: nothing to report")
        shas = [_store_photo(self.store, self.photos_dir, ct, data, now) for ct, data in blobs]
        rep = {"text": text, "lat": lat, "lon": lon, "photos": shas}
        return self.act(role, case_id, "report", report=rep, detail={"photos": shas})

    def photo(self, sha256: str) -> tuple[bytes, str]:
        """A stored photo's bytes and content type; 404 when unknown."""
        p = self.store.photo(sha256)
        f = self.photos_dir / sha256
        if p is None or not f.is_file():
            raise HTTPException(404, f"photo {sha256} is not known")
        return f.read_bytes(), p["content_type"]


def router(desk: CaseDesk) -> APIRouter:
    cases, clock = desk.store, desk.clock
    api = APIRouter(
        tags=["cases"],
        dependencies=[Depends(require_api_key), Depends(no_unknown_params)],
        responses={403: {"description": "Wrong key, or its role may not do this"}},
    )
    conflict: dict[int | str, dict[str, Any]] = {
        409: {"description": "The case's state does not allow it, or an unknown unit / cell / "
              "station, or an open case for the same station, rule and parameter"}
    }  # fmt: skip

    @api.get("/cases")
    def get_cases(
        role: CallerRole,
        response: Response,
        state: Literal[tuple(STATES)] | None = None,  # type: ignore[valid-type]
        unit: Id | None = None,
        district: Annotated[str, StringConstraints(max_length=64)] | None = None,
        overdue: bool | None = None,
        slip: Literal[tuple(SLIP_KINDS)] | None = Query(  # type: ignore[valid-type]
            None, description="has a slip of this type"
        ),
        limit: int = Query(100, ge=1, le=10_000),
        offset: int = Query(0, ge=0, le=MAX_OFFSET),
    ) -> list[dict[str, Any]]:
        """Cases newest first; `X-Total-Count` gives how many match. A unit's key sees its own."""
        if role.kind == "unit":
            if unit is not None and unit != role.unit:
                raise HTTPException(403, "a unit's key sees its own cases only")
            unit = role.unit
        total, rows = list_cases(
            cases, clock(), state=state, unit=unit, district=district, overdue=overdue,
            slip=slip, limit=limit, offset=offset,
        )  # fmt: skip
        response.headers["X-Total-Count"] = str(total)
        return rows

    @api.get("/cases/{case_id}")
    def get_case(role: CallerRole, case_id: CaseId) -> dict[str, Any]:
        """The case with its slips, history, linked alerts and evidence."""
        return desk.detail(role, case_id)

    @api.post("/cases", status_code=201, responses=conflict)
    def open_case(role: CallerRole, body: CaseCreate) -> dict[str, Any]:
        """Open a case by hand (duty room)."""
        _need(role, "duty_room")
        try:
            return cases.open_case(
                rule=body.rule, parameter=body.parameter, severity=body.severity, at=clock(),
                actor=role.name, station=body.station, unit=body.unit, cell=body.cell,
                title=body.title,
            )  # fmt: skip
        except CaseError as e:
            raise _case_error(e) from None

    @api.post("/cases/{case_id}/sign", responses=conflict)
    def sign(role: CallerRole, case_id: CaseId, body: ActNote | None = None) -> dict[str, Any]:
        """The responsible unit signs the case (签收)."""
        return desk.act(role, case_id, "sign", detail={"note": (body or ActNote()).note})

    @api.post(
        "/cases/{case_id}/report",
        responses={
            **conflict,
            413: {"description": "A photo larger than cases.photo_max_bytes"},
            415: {"description": "A photo whose content is not its declared type"},
        },
    )
    def report(role: CallerRole, case_id: CaseId, body: ReportBody) -> dict[str, Any]:
        """The unit reports its handling: text, photos (JPEG/PNG, stored by SHA-256), position."""
        return desk.report(
            role, case_id, body.text, body.lat, body.lon, body.photos, decode=_decode_photo
        )

    @api.post("/cases/{case_id}/verify", responses=conflict)
    def verify(role: CallerRole, case_id: CaseId, body: ActNote | None = None) -> dict[str, Any]:
        """The duty room verifies the handling; the case closes (only this closes a case)."""
        return desk.act(role, case_id, "verify", detail={"note": (body or ActNote()).note})

    @api.post("/cases/{case_id}/return", responses=conflict)
    def return_(role: CallerRole, case_id: CaseId, body: ReturnBody) -> dict[str, Any]:
        """The duty room returns the case for more work, with a reason."""
        return desk.act(role, case_id, "return", detail={"reason": body.reason})

    @api.post("/cases/{case_id}/reassign", responses=conflict)
    def reassign(role: CallerRole, case_id: CaseId, body: ReassignBody) -> dict[str, Any]:
        """The duty room gives the case to another unit (it signs again)."""
        return desk.act(role, case_id, "reassign", unit=body.unit, detail={"reason": body.reason})

    @api.get("/cases/photos/{sha256}", response_class=Response)
    def photo(sha256: Annotated[str, PathParam(pattern=r"^[0-9a-f]{64}$")]) -> Response:
        data, content_type = desk.photo(sha256)
        return Response(data, media_type=content_type)

    @api.get("/units", tags=["grid"])
    def units(district: Annotated[str, StringConstraints(max_length=64)] | None = None):
        """Responsible units: id, names, kind, district, parent (escalation), contacts."""
        return cases.grid.units(district)

    @api.get("/cells", tags=["grid"])
    def cells(district: Annotated[str, StringConstraints(max_length=64)] | None = None):
        """Grid cells (街道 / 乡镇): district and responsible unit."""
        return cases.grid.cells(district)

    @api.get("/reports/supervision", tags=["reports"])
    def supervision_report(period: Literal["week", "month"] = "week") -> dict[str, Any]:
        """周调度、月排名: per unit and district, cases opened in the last week (7 days) or
        month (30 days): signed and reported on time, overdue, mean time to close, ranked."""
        now = clock()
        return {"period": period, **supervision(cases, now - PERIOD_S[period], now)}

    return api


def _decode_photo(p: Photo) -> tuple[str, bytes]:
    try:
        return p.content_type, base64.b64decode(p.data_base64, validate=True)
    except (binascii.Error, ValueError):
        raise _invalid(("body", "photos", "data_base64"), "not base64") from None


def check_photo(content_type: str, data: bytes, limit: int) -> None:
    """413 over the size limit; 415 for a type not accepted or content not of its type."""
    if len(data) > limit:
        raise HTTPException(413, f"photo larger than {limit} bytes ({len(data)})")
    magic = PHOTO_MAGIC.get(content_type)
    if magic is None:
        raise HTTPException(415, f"photo type {content_type!r}: one of {', '.join(PHOTO_MAGIC)}")
    if not data.startswith(magic):
        raise HTTPException(415, f"photo content is not {content_type}")


def _store_photo(cases: CaseStore, d: Path, content_type: str, data: bytes, now: float) -> str:
    sha = hashlib.sha256(data).hexdigest()
    d.mkdir(parents=True, exist_ok=True)
    target = d / sha
    if not target.exists():
        tmp = d / f".{sha}.{os.getpid()}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, target)
    cases.put_photo(sha, content_type, len(data), now)
    return sha


def install(app: Any, settings: Any, state: Any) -> None:
    """Cases on an app from create_app: the grid file loaded into the store, the routes, and
    the scheduler started and stopped with the app's lifespan."""
    cfg = settings.cases
    store = CaseStore(state, load_policy(cfg.policy_file or None), settings)
    if cfg.grid_file:
        store.grid.load_file(cfg.grid_file)
    clock = make_clock(cfg)
    desk = CaseDesk(store, clock, Path(cfg.photos_dir), cfg.photo_max_bytes, cfg.photo_max_count)
    app.state.cases = store
    app.state.cases_clock = clock
    app.state.case_desk = desk  # the console's case pages act through it too
    app.include_router(router(desk))
    # The scheduler reads and writes on a connection of its own: a pass over many cases then
    # never holds the request handlers' connection (WAL lets both read at once).
    own = CaseStore(SqliteStateStore(settings.store.location), store.policy, settings)
    worker = CaseSchedulerWorker(CaseScheduler(own), clock, cfg.tick_s, cfg.from_alerts)
    app.state.case_scheduler = worker
    run_with_app(app, worker)

"""Data review (数据审核): POST/GET /review/invalidations, DELETE /review/invalidations/{id}
(restore), POST /review/invalidations/{id}/recompute, GET /review/calibrations,
POST /review/calibrations/{station}/refit. docs/review.md.

Every change needs an API key with the `reviewer` role (server.key_roles; the admin key
has every role) and writes an audit row in the transaction of the change. After the change
is committed the stored figures over its hours are recomputed (server/review/recompute.py) and
the answer says what was rewritten; if InfluxDB did not answer, the change stands (reports
computed on request already reflect it) and `recompute.error` says so: retry with
POST /review/invalidations/{id}/recompute.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from pydantic import AwareDatetime, BaseModel, Field

from envnet.config import Settings
from envnet.core import calendar as cal
from envnet.core import contract
from envnet.domain.review.invalidation import (
    ALL,
    SPELLINGS,
    InvalidationError,
    UnknownStation,
    check_request,
)
from envnet.store import review
from envnet.store.influx.reports import InfluxQL
from envnet.store.state import SqliteStateStore
from server import metrics
from server.reports.service import Reports
from server.review.alerting import AlertSink
from server.review.calibrate import Calibrator, RefitRefused
from server.review.recompute import Recomputer
from server.routers.bounds import MAX_UNIX_S, MIN_UNIX_S, no_unknown_params
from server.security import require_api_key, require_role

Reviewer = Annotated[str, Depends(require_role("reviewer"))]
# What a change can answer besides 2xx (FastAPI adds 422): documented for clients.
RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "refused: inverted or future range, a parameter the station lacks"},
    403: {"description": "the API key lacks the reviewer role"},
    404: {"description": "no such station in the registry, or no such invalidation"},
    409: {"description": "overlaps an active invalidation, or already restored"},
}


# Every parameter of the contract, and "*" (a station's own kind is checked in the handler).
Param = Literal[tuple(sorted({ALL, *(p for k in contract.KINDS.values() for p in k["params"])}))]  # type: ignore[valid-type]
Reason = Literal[SPELLINGS]  # type: ignore[valid-type]


class InvalidationIn(BaseModel):
    station: str = Field(pattern=contract.STATION_ID_RE.pattern)
    start: AwareDatetime = Field(description="ISO 8601 with offset, or unix seconds")
    end: AwareDatetime = Field(description="exclusive; every clock hour touched is covered")
    parameters: list[Param] = Field(  # type: ignore[valid-type]
        default_factory=lambda: [ALL], max_length=64, description='parameter names, or ["*"]'
    )
    reason: Reason = Field(description="maintenance, calibration, local interference, ...")
    note: str = Field("", max_length=2000)


class RefitIn(BaseModel):
    parameters: list[str] | None = Field(
        None, max_length=16, description="default: every parameter of review.calibration_parameters"
    )


def _ts(d: datetime) -> float:
    return d.timestamp()


def router(settings: Settings, state: SqliteStateStore) -> APIRouter:
    # A misspelt filter must not answer for everything (bounds.no_unknown_params).
    api = APIRouter(
        prefix="/review",
        tags=["review"],
        responses=RESPONSES,
        dependencies=[Depends(no_unknown_params)],
    )
    reports = Reports(settings, state, InfluxQL(settings.influx))
    recompute = Recomputer(settings, state, reports)
    review.ensure_schema(state)

    def station_params(station: str) -> list[str] | None:
        meta = state.get_station(station)
        if meta is None or not (meta.get("registered") or meta.get("kind")):
            return None
        kind = meta.get("kind") or "air"
        return list(contract.KINDS.get(kind, {}).get("params", {}))

    def run(inv: review.Invalidation) -> dict[str, Any]:
        try:
            return recompute.run(inv.station, inv.hour_start, inv.hour_end).to_dict()
        except Exception as e:  # noqa: BLE001 - InfluxDB down or refusing: the change stands
            return {"error": f"figures not rewritten: {e}"}

    def answer(inv: review.Invalidation, **extra: Any) -> dict[str, Any]:
        return {
            **inv.to_dict(),
            "alerts_marked": review.marked_alerts(state, inv.id),
            **extra,
        }

    @api.post("/invalidations", status_code=201)
    def invalidate(body: InvalidationIn, who: Reviewer) -> dict[str, Any]:
        """Invalidate a station's data over a time range (every clock hour it touches), for
        some parameters or all, with a reason; figures over it are recomputed."""
        offset = cal.hour_offset_s(reports.zone, cal.date_of(_ts(body.start), reports.zone))
        try:
            req = check_request(
                station=body.station,
                start=_ts(body.start),
                end=_ts(body.end),
                parameters=body.parameters,
                reason=body.reason,
                note=body.note,
                station_params=station_params(body.station),
                now=time.time(),
                offset_s=offset,
            )
        except UnknownStation as e:
            raise HTTPException(404, str(e)) from None
        except InvalidationError as e:
            raise HTTPException(400, str(e)) from None
        try:
            inv, marks = review.add(state, req, who)
        except review.Conflict as e:
            raise HTTPException(409, str(e)) from None
        return answer(inv, marked=marks, recompute=run(inv))

    @api.get("/invalidations", dependencies=[Depends(require_api_key)])
    def list_invalidations(
        station: str | None = Query(None, pattern=contract.STATION_ID_RE.pattern),
        active: bool | None = None,
        since: float | None = Query(
            None, ge=MIN_UNIX_S, le=MAX_UNIX_S, description="unix s: overlapping hours from"
        ),
        until: float | None = Query(
            None, ge=MIN_UNIX_S, le=MAX_UNIX_S, description="unix s: overlapping hours until"
        ),
        limit: int = Query(1000, ge=1, le=100_000),
    ) -> list[dict[str, Any]]:
        """Invalidations, newest first; restored ones stay listed (active=false)."""
        rows = review.search(
            state, station=station, active=active, since=since, until=until, limit=limit
        )
        return [answer(inv) for inv in rows]

    @api.delete("/invalidations/{inv_id}")
    def restore(inv_id: Annotated[int, Path(ge=1)], who: Reviewer) -> dict[str, Any]:
        """Restore: the data counts again and the figures over it are recomputed. The
        invalidation stays listed, with restored_at and restored_by."""
        try:
            inv = review.restore(state, inv_id, who)
        except review.NotFound as e:
            raise HTTPException(404, str(e)) from None
        except review.Conflict as e:
            raise HTTPException(409, str(e)) from None
        return answer(inv, recompute=run(inv))

    @api.post("/invalidations/{inv_id}/recompute")
    def recompute_again(inv_id: Annotated[int, Path(ge=1)], who: Reviewer) -> dict[str, Any]:
        """Rewrite the stored figures over an invalidation's hours again (idempotent)."""
        inv = review.get(state, inv_id)
        if inv is None:
            raise HTTPException(404, f"no invalidation {inv_id}")
        return answer(inv, recompute=run(inv))

    @api.get("/calibrations", dependencies=[Depends(require_api_key)])
    def list_calibrations(
        station: str | None = Query(None, pattern=contract.STATION_ID_RE.pattern),
        parameter: str | None = Query(None, pattern=r"^[a-z0-9_]{1,32}$"),
        limit: int = Query(1000, ge=1, le=100_000),
    ) -> list[dict[str, Any]]:
        """Fitted calibrations (id, period, n, R², RMSE, bias, applied or withdrawn)."""
        rows = review.calibrations(state, station=station, parameter=parameter, limit=limit)
        return [c.to_dict() for c in rows]

    @api.post("/calibrations/{station}/refit", status_code=201)
    def refit(
        station: Annotated[str, Path(pattern=contract.STATION_ID_RE.pattern)],
        who: Reviewer,
        body: RefitIn | None = None,
    ) -> list[dict[str, Any]]:
        """Fit the station's calibration afresh on the last calibration_window_days of pairs
        with its reference and apply it from now (after a withdrawal: a person has looked).
        All parameters or none; 409 with the reason when there is no reference pair, too few
        pairs, or the fit fails its limits."""
        calibrator = Calibrator(settings, state, reports, AlertSink(settings, state))
        try:
            cals = calibrator.refit(station, body.parameters if body else None, time.time(), who)
        except RefitRefused as e:
            raise HTTPException(e.status, str(e)) from None
        metrics.review_calibrations_fitted.inc(len(cals))
        return [c.to_dict() for c in cals]

    return api

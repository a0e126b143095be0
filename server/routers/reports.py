"""GET /reports/daily, /reports/period, /reports/targets, /reports/completeness, and
POST /reports/daily/publish (writes the bulletin to InfluxDB). docs/reports.md.

Every report answers JSON, or CSV with `?format=csv` or `Accept: text/csv`; `?table=` picks
one of a report's CSV tables (the first by default).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from envnet.config import Settings
from envnet.domain.reports import export
from envnet.store.influx.reports import InfluxQL, ReportQueryError
from envnet.store.state import SqliteStateStore
from server.reports.service import ReportRangeError, Reports
from server.security import require_api_key

Format = Literal["json", "csv"] | None
# What a report can answer besides 200 (FastAPI adds 422): documented for clients.
RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {}}, "description": "the report (JSON, or CSV if asked)"},
    400: {"description": "an impossible range (to before from, too long, outside 2000..2099)"},
    503: {"description": "InfluxDB did not answer: the report cannot be computed now"},
}


def _wants_csv(request: Request, fmt: Format) -> bool:
    if fmt is not None:
        return fmt == "csv"
    return "text/csv" in request.headers.get("accept", "")


def _answer(
    request: Request, fmt: Format, table: str | None, make: Callable[[], dict[str, Any]]
) -> Response:
    try:
        report = make()
    except ReportRangeError as e:
        raise HTTPException(400, str(e)) from None
    except ReportQueryError as e:
        raise HTTPException(503, f"report data unavailable: {e}") from None
    if not _wants_csv(request, fmt):
        return JSONResponse(report)
    try:
        body = export.to_csv(report, table)
    except KeyError as e:
        raise HTTPException(400, str(e.args[0])) from None
    name = f"{report['report']}-{table or 'main'}.csv"
    return PlainTextResponse(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def router(settings: Settings, state: SqliteStateStore) -> APIRouter:
    reports = Reports(settings, state, InfluxQL(settings.influx))
    api = APIRouter(prefix="/reports", tags=["reports"], responses=RESPONSES)

    @api.get("/daily")
    def daily(
        request: Request,
        day: Annotated[date, Query(alias="date", description="local day, YYYY-MM-DD")],
        format: Format = None,  # noqa: A002 - the query parameter's public name
        table: Literal["air", "water"] | None = Query(None, description="CSV table"),
    ) -> Response:
        """Daily AQI bulletin (HJ 633-2012) per station, district and the city."""
        return _answer(request, format, table, lambda: reports.daily(day))

    @api.post("/daily/publish", dependencies=[Depends(require_api_key)])
    def publish(day: Annotated[date, Query(alias="date")]) -> dict[str, Any]:
        """Write the day's bulletin to InfluxDB (idempotent: a rerun replaces the points)."""
        try:
            lines = reports.bulletin_lines(reports.daily(day))
            reports.db.write(lines)
        except ReportRangeError as e:
            raise HTTPException(400, str(e)) from None
        except ReportQueryError as e:
            raise HTTPException(503, f"report data unavailable: {e}") from None
        except Exception as e:  # the write path's errors (InfluxWriteError) carry the reason
            raise HTTPException(503, f"bulletin not written: {e}") from None
        return {"date": day.isoformat(), "points": len(lines)}

    @api.get("/period")
    def period(
        request: Request,
        first: Annotated[date, Query(alias="from")],
        last: Annotated[date, Query(alias="to")],
        group: Literal["station", "district", "city"] = "district",
        format: Format = None,  # noqa: A002
        table: Literal["air", "water", "water_months", "water_days"] | None = None,
    ) -> Response:
        """Good-days ratio, period statistics, categories, ranking; river sections."""
        return _answer(request, format, table, lambda: reports.period(first, last, group))

    @api.get("/targets")
    def targets(
        request: Request,
        year: int = Query(..., ge=2000, le=2100),
        format: Format = None,  # noqa: A002
        table: Literal["targets", "water"] | None = None,
    ) -> Response:
        """Year-to-date progress against the plan targets (`[targets]`)."""
        return _answer(request, format, table, lambda: reports.targets(year))

    @api.get("/completeness")
    def completeness(
        request: Request,
        first: Annotated[date, Query(alias="from")],
        last: Annotated[date, Query(alias="to")],
        format: Format = None,  # noqa: A002
        table: Literal["days", "months"] | None = None,
    ) -> Response:
        """Valid hours / expected hours per station per day and month, latency p50/p95."""
        return _answer(request, format, table, lambda: reports.completeness(first, last))

    return api

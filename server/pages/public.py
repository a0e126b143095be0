"""The public pages (no key): station map and list, a station's real-time report, the daily
bulletin and the river sections. Chinese first, English beside; they reload themselves.

Every figure comes from the stores and the report service: the evaluator's latest indices
(real-time AQI, water class), InfluxDB's stored hourly AQI (the 24-hour chart), and
`Reports.daily` (the bulletin, the sections' daily class).
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from envnet.config import Settings
from envnet.core import calendar as cal
from envnet.core import contract
from envnet.store.influx.aqi_history import hourly_aqi
from envnet.store.influx.reports import ReportQueryError
from server.pages import drawing
from server.pages.templating import render
from server.pages.views import StationViews
from server.reports.service import ReportRangeError, Reports

CHART_HOURS = 24


class PageError(Exception):
    """A page that cannot be shown: rendered as the error page with this status."""

    def __init__(self, status: int, zh: str, en: str) -> None:
        super().__init__(en)
        self.status, self.zh, self.en = status, zh, en


def router(
    settings: Settings, views: StationViews, reports: Reports, templates: Jinja2Templates
) -> APIRouter:
    api = APIRouter(include_in_schema=False)
    base = {"refresh_s": settings.pages.refresh_s, "pages": settings.pages}

    def today() -> date:
        import time

        return cal.date_of(int(time.time()), reports.zone)

    @api.get("/")
    def home() -> RedirectResponse:
        return RedirectResponse("/public", status_code=307)

    @api.get("/public", response_class=HTMLResponse)
    def stations(request: Request) -> HTMLResponse:
        all_stations = views.all()
        air = [s for s in all_stations if s.kind == "air"]
        water = [s for s in all_stations if s.kind == "water"]
        ctx = {
            **base,
            "nav": "map",
            "air": air,
            "water": water,
            "map": drawing.station_map(all_stations),
            "map_w": drawing.MAP_W,
            "map_h": drawing.MAP_H,
        }
        return render(templates, request, "public/stations.html", ctx)

    @api.get("/public/stations/{station_id}", response_class=HTMLResponse)
    def station(
        request: Request,
        station_id: Annotated[str, Path(pattern=contract.STATION_ID_RE.pattern)],
    ) -> HTMLResponse:
        st = views.one(station_id)
        if st is None:
            raise PageError(404, f"没有站点 {station_id}", f"no station {station_id}")
        history, history_error = [], None
        end = (st.realtime or {}).get("ts")
        if end is not None:
            try:
                history = hourly_aqi(reports.db, st.id, end - CHART_HOURS * 3600 + 1, end)
            except ReportQueryError as e:
                history_error = str(e)
        ctx = {
            **base,
            "nav": "map",
            "st": st,
            "chart": drawing.aqi_chart(history, CHART_HOURS),
            "history": history,
            "history_error": history_error,
        }
        return render(templates, request, "public/station.html", ctx)

    def _report(d: date | None) -> tuple[date, dict[str, Any] | None, str | None]:
        d = d or today() - timedelta(days=1)
        try:
            return d, reports.daily(d), None
        except ReportRangeError as e:
            raise PageError(400, "日期无效", str(e)) from None
        except ReportQueryError as e:
            return d, None, str(e)

    @api.get("/public/bulletin", response_class=HTMLResponse)
    def bulletin(
        request: Request,
        day: Annotated[date | None, Query(alias="date", description="YYYY-MM-DD")] = None,
    ) -> HTMLResponse:
        d, report, error = _report(day)
        ctx = {
            **base,
            "nav": "bulletin",
            "day": d,
            "prev": d - timedelta(days=1),
            "next": d + timedelta(days=1) if d < today() else None,
            "report": report,
            "error": error,
        }
        return render(templates, request, "public/bulletin.html", ctx, 503 if error else 200)

    @api.get("/public/rivers", response_class=HTMLResponse)
    def rivers(
        request: Request,
        day: Annotated[date | None, Query(alias="date", description="YYYY-MM-DD")] = None,
    ) -> HTMLResponse:
        d, report, error = _report(day)
        realtime = {s.id: s for s in views.all() if s.kind == "water"}
        ctx = {
            **base,
            "nav": "rivers",
            "day": d,
            "prev": d - timedelta(days=1),
            "next": d + timedelta(days=1) if d < today() else None,
            "sections": (report or {}).get("water", []),
            "realtime": realtime,
            "error": error,
        }
        return render(templates, request, "public/rivers.html", ctx, 503 if error else 200)

    return api

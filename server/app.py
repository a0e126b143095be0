"""The envnet server (FastAPI): what the bureau and the duty room ask about stations.

It reads the state store the gateway writes. A station's state is derived at request time:
`online` when its retained birth says so and it has been heard within 3 publish intervals,
`stale` when it claims online but has gone quiet, `offline` after its last will, `unknown`
when it has never been heard.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from fastapi import FastAPI, HTTPException, Path, Query, Request, Response
from pydantic import BaseModel, Field

from envnet import __version__
from envnet.config import Settings
from envnet.core import contract
from envnet.domain.alerts import latest_indices
from envnet.store.alerts import SqliteAlertStore
from envnet.store.state import SqliteStateStore
from server import pages
from server.routers import alerts as alerts_api
from server.routers import audit as audit_api
from server.routers import cases as cases_api
from server.routers import ota as ota_api
from server.routers import reports as reports_api
from server.routers import review as review_api
from server.routers.bounds import MAX_OFFSET
from server.routers.webhooks import install

STALE_AFTER_INTERVALS = 3
DEFAULT_PAGE = 1000  # GET /stations?limit= (docs/performance.md, "Server")
MAX_PAGE = 100_000

StationState = Literal["online", "offline", "stale", "unknown"]


class StationView(BaseModel):
    id: str
    kind: str | None
    registered: bool
    state: StationState
    last_seen: float | None = Field(None, description="Unix time of the last message (any topic)")
    last_reading_ts: float | None = None
    last_seq: int | None = None
    last_values: dict[str, float] = {}
    last_flags: dict[str, str] = {}
    readings_total: int = 0
    last_health: dict[str, Any] | None = None
    meta: dict[str, Any] = {}
    indices: dict[str, Any] = Field(
        {},
        description=(
            "latest real-time AQI (aqi_1h), daily AQI (aqi_24h) and water class (water). "
            "The list carries each one's summary (aqi, category, primary; water class, "
            "provisional, basis, missing, meets_target); /stations/{id} the whole record "
            "(IAQI per indicator, the nine real-time concentrations, clauses)"
        ),
    )


def interval_s(station: dict) -> float:
    meta = station.get("meta") or {}
    if meta.get("interval_s"):
        return float(meta["interval_s"])
    status_interval = (station.get("status_body") or {}).get("interval_s")
    if status_interval:
        return float(status_interval)
    return float(
        contract.KINDS.get(station.get("kind") or "air", contract.KINDS["air"])["interval_s"]
    )


def derive_state(station: dict, now: float) -> StationState:
    if station["status"] == "offline":
        return "offline"
    if station["last_seen"] is None:
        return "unknown"
    if now - station["last_seen"] > STALE_AFTER_INTERVALS * interval_s(station):
        return "stale"
    return "online" if station["status"] == "online" else "stale"


def view(station: dict, now: float) -> StationView:
    return StationView(
        id=station["id"],
        kind=station["kind"],
        registered=station["registered"],
        state=derive_state(station, now),
        last_seen=station["last_seen"],
        last_reading_ts=station["last_reading_ts"],
        last_seq=station["last_seq"],
        last_values=station["last_values"],
        last_flags=station["last_flags"],
        readings_total=station["readings_total"],
        last_health=station["health"],
        meta=station["meta"],
        indices=station.get("indices") or {},
    )


def create_app(settings: Settings) -> FastAPI:
    store = SqliteStateStore(settings.store.location)
    alert_store = SqliteAlertStore(store)
    app = FastAPI(
        title="envnet",
        version=__version__,
        description="Station health and exceedance alerts for a city's air and water network.",
        docs_url=None,  # /docs and /redoc come from server.pages.docs, with vendored assets
        redoc_url=None,
    )
    app.state.store = store
    app.state.settings = settings

    @app.get("/healthz", tags=["meta"])
    def healthz() -> dict[str, Any]:
        """Liveness: the server runs and its state store answers."""
        store.get_kv("healthz")
        return {"ok": True, "version": __version__}

    kind_intervals = {k: float(v["interval_s"]) for k, v in contract.KINDS.items()}

    @app.get(
        "/stations",
        response_model=list[StationView],
        tags=["stations"],
        responses={
            200: {
                "headers": {
                    "X-Total-Count": {
                        "description": "stations matching kind/state before paging",
                        "schema": {"type": "integer"},
                    },
                    "Link": {
                        "description": 'rel="next" URL of the next page, when there is one',
                        "schema": {"type": "string"},
                    },
                }
            }
        },
    )
    def list_stations(
        request: Request,
        kind: Literal["air", "water"] | None = None,
        state: StationState | None = None,
        limit: int = Query(DEFAULT_PAGE, ge=1, le=MAX_PAGE, description="page size"),
        offset: int = Query(0, ge=0, le=MAX_OFFSET, description="stations to skip (ordered by id)"),
    ) -> Response:
        """Stations ordered by id, filtered by kind and derived state, optionally paged.

        The answer stays a JSON list of at most `limit` stations (default 1,000: one page
        holds a whole city network); `X-Total-Count` gives the number matching, and a
        `Link: <...>; rel="next"` header points at the next page when there is one."""
        now = time.time()
        total, rows = store.station_views_json(
            now, STALE_AFTER_INTERVALS, kind_intervals, "air", kind, state, limit, offset
        )
        parts = []
        for sid, text, suspect in rows:
            if suspect:  # stored JSON may hold NaN/Infinity: re-encode this one (NaN -> null)
                s = store.get_station(sid)
                if s is not None:
                    text = view(s, now).model_dump_json()
            parts.append(text)
        headers = {"X-Total-Count": str(total)}
        if offset + len(rows) < total:
            nxt = request.url.include_query_params(limit=limit, offset=offset + len(rows))
            headers["Link"] = f'<{nxt}>; rel="next"'
        body = "[" + ",".join(parts) + "]"
        return Response(body.encode(), media_type="application/json", headers=headers)

    @app.get("/stations/{station_id}", response_model=StationView, tags=["stations"])
    def get_station(station_id: str = Path(pattern=contract.STATION_ID_RE.pattern)) -> StationView:
        s = store.get_station(station_id)
        if s is None:
            raise HTTPException(404, f"station {station_id} is not known")
        v = view(s, time.time())
        v.indices = latest_indices(alert_store, station_id)
        return v

    app.include_router(alerts_api.router(settings, store))

    app.include_router(reports_api.router(settings, store))  # /reports, docs/reports.md

    app.include_router(review_api.router(settings, store))  # /review (docs/review.md)
    from server.lifespan import run_with_app
    from server.review.worker import ReviewWorker

    # calibration against reference stations and neighbour checks, every review.check_interval_s
    run_with_app(app, ReviewWorker(settings, store))

    app.include_router(audit_api.router(store))  # GET /audit (docs/audit.md)

    ota_api.install(app, settings, store)  # /ota/...: release files, releases, rollouts

    install(app, settings)  # /webhooks, /metrics, JSON errors, body limit, delivery worker

    cases_api.install(app, settings, store)  # /cases, /units, /cells, the slip scheduler

    # After the cases API: the console's case pages use its desk (app.state.case_desk).
    pages.install(app, settings, store, STALE_AFTER_INTERVALS)  # /public, /console, /docs
    return app

"""The daily bulletin as InfluxDB points (measurement `reports.bulletin_measurement`,
default `aqi_daily`; the alert engine's own points are `aqi`, so the two never mix).

One point per station, district and the city, stamped at the local day's start: tags scope
(station | district | city), id, edition, and district where known; fields aqi, level,
category_zh/en, primary (comma-separated), valid, stations_reporting, iaqi_<pollutant> and
c_<pollutant> (the daily concentrations, O3 as c_o3_8h). Writing the same day again replaces
its points (same series, same time), so re-running a bulletin is safe.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

from envnet.core import calendar as cal
from envnet.store.influx.line_protocol import line


def _fields(e: Mapping[str, Any]) -> dict[str, object]:
    fields: dict[str, object] = {
        "valid": bool(e["valid"]),
        "stations_reporting": e["stations_reporting"],
    }
    if e["aqi"] is not None:
        fields.update(
            aqi=int(e["aqi"]),
            level=int(e["level"]),
            category_zh=e["category_zh"],
            category_en=e["category_en"],
            primary=",".join(e["primary"]),
        )
    fields.update({f"iaqi_{p}": int(v) for p, v in e["iaqi"].items()})
    fields.update({f"c_{p}": float(v) for p, v in e["concentrations"].items()})
    return fields


def lines(report: Mapping[str, Any], measurement: str, zone: ZoneInfo) -> list[str]:
    ts_ms = cal.day_start(date.fromisoformat(report["date"]), zone) * 1000
    out = []
    for e in [*report["stations"], *report["districts"], report["city"]]:
        tags = {
            "scope": e["scope"],
            "id": e["id"],
            "district": e.get("district"),
            "edition": report["edition"],
        }
        out.append(line(measurement, tags, _fields(e), ts_ms))
    return out

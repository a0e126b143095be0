"""What the alert engine hands out and keeps per station: lifecycle events, index records for
InfluxDB, a station's registry facts, and the latest-indices summary the server lists.

Plain data and pure functions; envnet/domain/alerts/engine.py produces them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from envnet.core import contract
from envnet.core.standards import gb3838, hj633
from envnet.domain.alerts.repository import Alert, AlertStore

EventType = Literal[
    "alert.opened", "alert.escalated", "alert.acknowledged", "alert.resolved", "episode.changed"
]
NETWORK = "*"  # the station of network-wide alerts; never a valid station id


@dataclass(frozen=True, slots=True)
class AlertEvent:
    type: EventType
    at: float  # wall-clock time of the change
    alert: Alert | None = None
    episode: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The webhook body."""
        d: dict[str, Any] = {"type": self.type, "at": self.at}
        if self.alert is not None:
            d["alert"] = self.alert.to_dict()
        if self.episode is not None:
            d["episode"] = self.episode
        return d


@dataclass(frozen=True, slots=True)
class IndexRecord:
    """A computed index: one InfluxDB point (the names the Grafana dashboards query).

    aqi: tags station, window ("1h" real-time / "24h" daily), edition, and district, river,
    section where the registry has them; fields aqi, level (1-6), category_zh, category_en,
    colour, primary and exceeding (comma-separated indicators: so2, no2, pm10, co, o3 = O3
    1-hour, o3_8h = O3 8-hour, pm25), standard, iaqi_<indicator>, c_<indicator> (the report's
    published concentrations: real-time c_so2 .. c_pm25 1-hour means, c_o3_8h, c_pm10_24h,
    c_pm25_24h; daily the 24 h means, c_o3_1h_max, c_o3_8h), pm_basis (real-time: "1h" or
    "24h", the PM concentration its PM IAQI was read from), lat and lon where known.
    water_class: tags station, edition ("2002", GB 3838's own), district, river, section,
    target_class ("III"); fields class (Chinese label, "Ⅳ类"), class_en, class_num (1-6,
    6 = worse than V), provisional (0/1: fewer than the assessment set's parameters), basis
    and missing (comma-separated assessment-set parameters with / without a value),
    target_num when the station has a target, exceeding (0/1) only for a complete class with a
    target, worst (parameters), class_<parameter> (1-6), standard.
    """

    measurement: Literal["aqi", "water_class"]
    station: str
    # hourly: the hour's end (Chinese reporting labels an hour by its end); daily: the CST
    # day's start
    ts: float
    tags: dict[str, str]
    fields: dict[str, float | int | str]


@dataclass(frozen=True, slots=True)
class StationInfo:
    """The station metadata the rules read, normalised from the registry's dict.

    Keys read: id (or station), kind, class (or station_class), interval_s, target_class
    (or target_water_class: 3, "III", "Ⅲ"), waterbody ("river", "lake", "reservoir"),
    drinking_water_source (or drinking_source), air_grade (1 or 2); for index records also
    district, river, section, and lat/lon (or coordinates: [lat, lon] or {"lat", "lon"}).
    """

    id: str
    kind: str
    station_class: str
    interval_s: float
    target_class: int | None
    waterbody: gb3838.Waterbody
    drinking_source: bool
    air_grade: int | None
    tags: tuple[tuple[str, str], ...] = ()  # district, river, section
    lat: float | None = None
    lon: float | None = None
    assessment: tuple[str, ...] = gb3838.ASSESSMENT_ITEMS  # water: the class-determining set

    @classmethod
    def from_meta(
        cls,
        meta: Mapping[str, Any] | None,
        msg: Mapping[str, Any],
        station: str | None = None,
        known_kind: str | None = None,
    ) -> StationInfo:
        m = meta or {}
        sid = station or m.get("id") or m.get("station") or msg.get("station")
        if not sid:
            raise ValueError(
                "station id missing: pass station=, station_meta['id'] or a row's 'station'"
            )
        # A health or status message carries no kind: keep the one a reading or meta gave.
        kind = str(m.get("kind") or msg.get("kind") or known_kind or "air")
        target = m.get("target_class", m.get("target_water_class"))
        interval = m.get("interval_s") or contract.KINDS.get(kind, {}).get("interval_s", 60)
        return cls(
            id=str(sid),
            kind=kind,
            station_class=str(m.get("class") or m.get("station_class") or "micro"),
            interval_s=float(interval),
            target_class=gb3838.parse_class(target) if target not in (None, "") else None,
            waterbody="lake" if m.get("waterbody") in ("lake", "reservoir") else "river",
            drinking_source=bool(m.get("drinking_water_source", m.get("drinking_source", False))),
            air_grade=int(m["air_grade"]) if m.get("air_grade") else None,
            tags=tuple((k, str(m[k])) for k in ("district", "river", "section") if m.get(k)),
            assessment=gb3838.assessment_set(m.get("assessment_params")),
            **_coordinates(m),
        )


def _coordinates(m: Mapping[str, Any]) -> dict[str, float]:
    c = m.get("coordinates")
    if isinstance(c, Mapping):
        c = (c.get("lat"), c.get("lon"))
    lat, lon = c if isinstance(c, list | tuple) and len(c) == 2 else (m.get("lat"), m.get("lon"))
    if not (is_finite_number(lat) and is_finite_number(lon)):
        return {}
    return {"lat": float(lat), "lon": float(lon)}  # type: ignore[arg-type]  # is_finite_number checked


def is_finite_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def state_key(station: str) -> str:
    return f"station:{station}"


def summary_key(station: str) -> str:
    """Where the latest indices' summary is saved: the server's GET /stations list splices it
    in per station without reading the (much larger) window state."""
    return f"indices:{station}"


# What the station list carries of each latest index (GET /stations/{id} has them whole):
# enough for a map or a duty-room list, small enough for 10,000 rows per answer.
_AQI_SUMMARY = ("aqi", "primary", "ts", "day", "pm_basis", "edition")
_CATEGORY_SUMMARY = ("level", "name_zh", "name_en", "colour_en", "rgb")
_WATER_SUMMARY = (
    "overall",
    "class_zh",
    "class_en",
    "provisional",
    "basis",
    "missing",
    "target_class",
    "meets_target",
    "ts",
    "standard",
    "edition",
)  # a water class names its standard: GB 3838-2002, edition "2002"


def index_summary(latest: Mapping[str, Any]) -> dict[str, Any]:
    """The latest real-time / daily AQI (value, category, primary pollutants) and water class
    (with whether it is provisional) of one station, as GET /stations lists them."""
    out: dict[str, Any] = {}
    for key in ("aqi_1h", "aqi_24h"):
        if isinstance(latest.get(key), Mapping):
            snap = latest[key]
            out[key] = {k: snap[k] for k in _AQI_SUMMARY if k in snap}
            cat = snap.get("category")
            if isinstance(cat, Mapping):
                out[key]["category"] = {k: cat[k] for k in _CATEGORY_SUMMARY if k in cat}
    if isinstance(latest.get("water"), Mapping):
        out["water"] = {k: latest["water"][k] for k in _WATER_SUMMARY if k in latest["water"]}
    return out


def latest_indices(store: AlertStore, station: str) -> dict[str, Any]:
    """Latest hourly AQI ("aqi_1h"), daily AQI ("aqi_24h") and water class ("water") of a
    station, as saved by the evaluator: for the server's GET /stations/{id}."""
    saved = store.load_state(state_key(station)) or {}
    return dict(saved.get("latest", {}))


def water_point(
    a: gb3838.WaterAssessment, target: int | None
) -> tuple[dict[str, str], dict[str, float | int | str]]:
    """The tags (edition, target_class) and fields of a `water_class` point, from the
    evaluator or from a reviewer's recomputation (server/review/recompute.py)."""
    assert a.overall is not None
    zh, en = gb3838.class_label(a.overall)
    fields: dict[str, float | int | str] = {
        "class": zh,
        "class_en": en,
        "class_num": a.overall,
        "provisional": int(a.provisional),
        "basis": ",".join(a.basis),
        "missing": ",".join(a.missing),
        "worst": ",".join(a.worst),
        "standard": a.standard,
    }
    tags = {"edition": a.edition}
    meets = gb3838.meets_target(a, target)
    if target is not None:
        fields["target_num"] = target
        tags["target_class"] = ("I", "II", "III", "IV", "V")[target - 1]
    if meets is not None:  # a provisional class neither meets nor misses its target
        fields["exceeding"] = int(not meets)
    for p, c in a.classes.items():
        fields[f"class_{p}"] = c
    return tags, fields


def aqi_point_fields(result: hj633.AqiResult) -> dict[str, float | int | str]:
    """The fields of an `aqi` point (real-time or daily), from the evaluator or from a
    reviewer's recomputation (server/review/recompute.py): one place, so both write the same."""
    cat = result.category
    assert cat is not None and result.aqi is not None
    fields: dict[str, float | int | str] = {
        "aqi": result.aqi,
        "level": cat.level,
        "category_zh": cat.name_zh,
        "category_en": cat.name_en,
        "colour": cat.colour_en,
        "primary": ",".join(result.primary),
        "exceeding": ",".join(result.exceeding),
        "standard": result.standard,
    }
    fields |= {f"iaqi_{p}": part.value for p, part in result.iaqi.items()}
    fields |= {f"c_{k}": float(c) for k, c in result.concentrations.items()}
    if result.pm_basis is not None:
        fields["pm_basis"] = result.pm_basis
    return fields

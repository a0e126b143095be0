"""Geometry for the server-rendered SVG: the station map and the 24-hour AQI chart.

Plain coordinates, no tile server: stations are placed by longitude and latitude on an
equirectangular grid (longitude scaled by cos(latitude), right for a city-sized area), with
a graticule and each district's name at the middle of its stations.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from envnet.store.influx.aqi_history import AqiPoint
from server.pages.views import StationPage

MAP_W, MAP_H, MAP_PAD = 1000, 640, 50
CHART_W, CHART_H, CHART_PAD = 720, 220, 34


@dataclass(frozen=True)
class MapPoint:
    station: StationPage
    x: float
    y: float


@dataclass(frozen=True)
class MapLine:
    x1: float
    y1: float
    x2: float
    y2: float
    label: str


@dataclass(frozen=True)
class StationMap:
    points: list[MapPoint]
    grid: list[MapLine]
    districts: list[tuple[str, str, float, float]]  # zh, en, x, y


def station_map(stations: Sequence[StationPage]) -> StationMap:
    placed = [s for s in stations if s.lat is not None and s.lon is not None]
    if not placed:
        return StationMap([], [], [])
    lats = [s.lat for s in placed if s.lat is not None]
    lons = [s.lon for s in placed if s.lon is not None]
    lat0, lat1 = min(lats) - 0.01, max(lats) + 0.01
    lon0, lon1 = min(lons) - 0.01, max(lons) + 0.01
    kx = math.cos(math.radians((lat0 + lat1) / 2))
    span = max((lon1 - lon0) * kx, lat1 - lat0)
    scale = min(MAP_W - 2 * MAP_PAD, MAP_H - 2 * MAP_PAD) / span

    def xy(lat: float, lon: float) -> tuple[float, float]:
        x = MAP_PAD + (lon - lon0) * kx * scale
        y = MAP_H - MAP_PAD - (lat - lat0) * scale
        return round(x, 1), round(y, 1)

    points = [MapPoint(s, *xy(s.lat, s.lon)) for s in placed if s.lat and s.lon]
    grid: list[MapLine] = []
    step = 0.05
    lon = math.ceil(lon0 / step) * step
    while lon <= lon1:
        x, _ = xy(lat0, lon)
        grid.append(MapLine(x, MAP_PAD / 2, x, MAP_H - MAP_PAD / 2, f"{lon:.2f}°E"))
        lon += step
    lat = math.ceil(lat0 / step) * step
    while lat <= lat1:
        _, y = xy(lat, lon0)
        grid.append(MapLine(MAP_PAD / 2, y, MAP_W - MAP_PAD / 2, y, f"{lat:.2f}°N"))
        lat += step
    by_district: dict[tuple[str, str], list[MapPoint]] = {}
    for p in points:
        if p.station.district_zh:
            key = (p.station.district_zh, p.station.district_en or "")
            by_district.setdefault(key, []).append(p)
    districts = [
        (zh, en, sum(p.x for p in ps) / len(ps), sum(p.y for p in ps) / len(ps) + 28)
        for (zh, en), ps in sorted(by_district.items())
    ]
    return StationMap(points, grid, districts)


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    w: float
    h: float
    point: AqiPoint


@dataclass(frozen=True)
class Chart:
    bars: list[Bar]
    ticks: list[tuple[float, int]]  # y, AQI
    width: int = CHART_W
    height: int = CHART_H


def aqi_chart(points: Sequence[AqiPoint], hours: int = 24) -> Chart:
    """One bar per hourly AQI over the last `hours` hours up to the newest point."""
    top = max([100, *(p.aqi for p in points)])
    top = int(math.ceil(top / 50) * 50)
    inner_w, inner_h = CHART_W - 2 * CHART_PAD, CHART_H - 2 * CHART_PAD
    slot = inner_w / hours
    end = points[-1].ts if points else 0
    bars = []
    for p in points:
        i = hours - 1 - (end - p.ts) // 3600
        if i < 0:
            continue
        h = inner_h * p.aqi / top
        x = CHART_PAD + i * slot + 1
        bars.append(
            Bar(round(x, 1), round(CHART_PAD + inner_h - h, 1), round(slot - 2, 1), round(h, 1), p)
        )
    ticks = [(round(CHART_PAD + inner_h - inner_h * v / top, 1), v) for v in range(0, top + 1, 50)]
    return Chart(bars, ticks)

"""The demo's story, played on a compressed clock: a winter pollution episode across the city
and an ammonia-nitrogen incident on the Hun River's city reach.

Data time runs `TIME_SCALE` times faster than the wall clock (the simulated stations' board
layer compresses it), so the hourly windows of the standards close every 30 s and alerts
open, escalate and resolve while one watches. The story repeats every `PERIOD_H` data hours.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

TIME_SCALE = 120  # one wall second = two data minutes
WALL_INTERVAL_S = 1.0  # one reading per wall second = every 120 s of data time
PERIOD_H = 24.0
START_DAYS_AGO = 3  # data time starts in the past; it passes the wall clock after ~36 min


def air_overrides(h: float, weight: float) -> dict[str, float]:
    """PM rises from hour 2 to a peak at hour 9 (heavily polluted), clears by hour 16."""
    h %= PERIOD_H
    if 2 <= h < 16:
        shape = math.sin(math.pi * (h - 2) / 14)  # 0 -> 1 -> 0
        pm25 = 30 + 200 * weight * shape
        return {
            "pm25": round(pm25, 1),
            "pm10": round(pm25 * 1.35, 1),
            "co": round(0.8 + 2 * shape, 2),
        }
    return {}


def water_overrides(station_id: str, h: float) -> dict[str, float]:
    """NH3-N at the Hun city reach reaches class V (target III) between hours 4 and 10."""
    h %= PERIOD_H
    if station_id == "hun-city-01" and 4 <= h < 10:
        return {"nh3n": 1.8, "do": 4.2}
    return {}


def write_overrides(station_dir: Path, values: dict) -> None:
    path = station_dir / "sim.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(values))
    os.replace(tmp, path)

"""A station's recent real-time AQI, as the gateway's evaluator stored it (measurement `aqi`).

The public station page draws the last 24 hours from it. The values are the evaluator's own
(HJ 633 via envnet.core.standards), reviewed: an hour a reviewer invalidated shows its
recomputed point (tag review=recomputed) or nothing, never the withdrawn original (tag
review=invalid; server/review/recompute.py); nothing is recomputed here.
"""

from __future__ import annotations

from dataclasses import dataclass

from envnet.core import contract
from envnet.store.influx.reports import InfluxQL

MEASUREMENT = "aqi"
REALTIME_WINDOW = "1h"  # tag `window` of the real-time (hourly) report


@dataclass(frozen=True, slots=True)
class AqiPoint:
    ts: int  # end of the hour the index is for (unix s)
    aqi: int
    level: int | None


def hourly_aqi(db: InfluxQL, station: str, start: float, end: float) -> list[AqiPoint]:
    """The station's hourly AQI with start <= ts <= end, oldest first."""
    if not contract.STATION_ID_RE.match(station):
        raise ValueError(f"not a station id: {station!r}")
    q = (
        f'SELECT "aqi", "level" FROM "{MEASUREMENT}" WHERE "station" = \'{station}\''
        f" AND \"window\" = '{REALTIME_WINDOW}'"
        " AND \"review\" != 'invalid'"
        f" AND time >= {int(start)}s AND time <= {int(end)}s ORDER BY time ASC"
    )
    out: list[AqiPoint] = []
    for series in db.series(q):
        cols = series["columns"]
        for row in series.get("values", []):
            r = dict(zip(cols, row, strict=False))
            if r.get("aqi") is None:
                continue
            level = r.get("level")
            out.append(
                AqiPoint(int(r["time"]), int(r["aqi"]), None if level is None else int(level))
            )
    return out

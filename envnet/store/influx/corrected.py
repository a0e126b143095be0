"""Corrected (calibrated) hourly values of micro stations in InfluxDB.

The server's review worker (server/review/calibrate.py) writes them; the report service reads
them when `review.use_corrected` is set. They live in their own measurement, `air_corrected`,
one point per station, parameter and clock hour (stamped at the hour's start): tags
`station`, `parameter`, `reference`; fields `value` (corrected), `raw` (the reviewed hourly
mean it corrects) and `cal_id` (the calibration applied, GET /review/calibrations). A
measurement of its own, not fields beside the raw readings in `air`: raw readings stay
exactly as received, and a withdrawn calibration's values can be deleted per parameter
(a delete drops whole points: envnet/store/influx/delete.py) without touching anything raw.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from envnet.store.influx.delete import END_OF_TIME, delete_points
from envnet.store.influx.line_protocol import line
from envnet.store.influx.reports import InfluxQL, influxql_string

CORRECTED = "air_corrected"
Means = dict[str, dict[str, dict[int, float]]]  # station -> parameter -> hour start -> mean


def corrected_means(
    db: InfluxQL, params: Sequence[str], start: int, end: int
) -> dict[str, dict[str, dict[int, float]]]:
    """station -> parameter -> hour start -> corrected value, as the worker wrote them."""
    if not params:
        return {}
    cond = " OR ".join(f'"parameter" = {influxql_string(p)}' for p in params)
    out: dict[str, dict[str, dict[int, float]]] = {}
    for s in db.series(
        f'SELECT "value" FROM "{CORRECTED}" WHERE time >= {start}s AND time < {end}s'
        f" AND ({cond}) GROUP BY station, parameter"
    ):
        tags = s.get("tags", {})
        hours = out.setdefault(tags.get("station", ""), {}).setdefault(tags.get("parameter"), {})
        for t, v in s.get("values", []):
            if v is not None:
                hours[int(t)] = float(v)
    return out


def use_corrected(db: InfluxQL, means: Means, params: Sequence[str], start: int, end: int) -> int:
    """Replace raw hourly means by corrected values where the worker wrote one (in place;
    only hours that are valid and not invalidated stay: their raw mean must exist).
    -> how many hourly values were replaced."""
    n = 0
    for sid, by_param in corrected_means(db, params, start, end).items():
        for p, hours in by_param.items():
            raw = means.get(sid, {}).get(p) or {}
            for h, v in hours.items():
                if h in raw:
                    raw[h] = v
                    n += 1
    return n


def corrected_lines(
    station: str,
    reference: str,
    param: str,
    cal_id: int,
    values: Iterable[tuple[int, float, float]],
) -> list[str]:
    """Points of `air_corrected` for (hour, raw, corrected) values."""
    tags = {"station": station, "parameter": param, "reference": reference}
    return [
        line(CORRECTED, tags, {"value": round(c, 3), "raw": raw, "cal_id": cal_id}, h * 1000)
        for h, raw, c in values
    ]


def delete_corrected(db: InfluxQL, station: str, param: str, since: int) -> None:
    """Withdrawn: the station's corrected values of `param` from `since` on are deleted
    (InfluxDB 1.x and 2.x; refused on 3.x: envnet/store/influx/delete.py)."""
    delete_points(db, CORRECTED, {"station": station, "parameter": param}, since, END_OF_TIME)

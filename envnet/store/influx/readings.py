"""One station's stored readings back from InfluxDB, reading by reading, with their flags.

For the HJ 212 corrections (gateway/uplink_corrections.py): the uplink keeps its own samples
two days only, so to re-send an hour or a day after a review it re-reads the readings the
gateway stored (measurement = the station's kind, `air` or `water`; one field per parameter,
`flag_<parameter>` and `flag_all` string fields, envnet/store/influx/reports.py `flagged`)
and aggregates them exactly as it did when it first sent them. One day of one-minute readings
is 1,440 rows: the caller asks a day at a time.
"""

from __future__ import annotations

from collections.abc import Sequence

from envnet.store.influx.reports import InfluxQL, _ident, _time_range, influxql_string

Sample = tuple[float, dict[str, float], dict[str, str]]  # (ts, values, flags; "*" whole)


def station_readings(
    db: InfluxQL, measurement: str, station: str, params: Sequence[str], start: int, end: int
) -> list[Sample]:
    """The station's readings in [start, end), oldest first: (ts, {param: value}, flags).

    Readings with none of `params` are left out. Raises ReportQueryError when InfluxDB does not
    answer (the caller retries later)."""
    flag_cols = [f"flag_{p}" for p in params] + ["flag_all"]
    cols = ", ".join(_ident(c) for c in [*params, *flag_cols])
    series = db.series(
        f"SELECT {cols} FROM {_ident(measurement)} WHERE {_time_range(start, end)}"
        f' AND "station" = {influxql_string(station)} ORDER BY time'
    )
    out: list[Sample] = []
    for s in series:
        names = s["columns"]
        for row in s.get("values", []):
            r = dict(zip(names, row, strict=True))
            values = {p: float(r[p]) for p in params if r.get(p) is not None}
            if not values:
                continue
            flags = {p: str(r[f"flag_{p}"]) for p in params if r.get(f"flag_{p}")}
            if r.get("flag_all"):
                flags["*"] = str(r["flag_all"])
            out.append((float(r["time"]), values, flags))
    out.sort(key=lambda x: x[0])
    return out

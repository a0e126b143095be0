"""Reading the stored readings back from InfluxDB (InfluxQL over HTTP) and writing bulletins.

InfluxQL is the one query language InfluxDB 1.x, 2.x (v1 compatibility API) and 3.x share.
The heavy lifting stays in InfluxDB: per station-hour it returns count() and mean() of each
parameter; the few flagged readings are fetched separately and taken back out, so a month of
one-minute readings for 100 stations never crosses the wire reading by reading.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import httpx

from envnet.config import InfluxSettings
from envnet.domain.reports import rules
from envnet.domain.reports.daily import HourCounts
from envnet.store.influx.sink import make_sink

CHUNK_S = 7 * 86400  # one statement per week of data keeps each response small
T = TypeVar("T")
R = TypeVar("R")


class ReportQueryError(RuntimeError):
    """InfluxDB could not answer a report query; str() says why."""


def _ident(name: str) -> str:
    return '"' + name.replace('"', r"\"") + '"'


def influxql_string(s: str) -> str:
    """An InfluxQL string literal (single quotes; backslash and quote escaped): the one
    quoting of every tag value a query compares with."""
    return "'" + s.replace("\\", "\\\\").replace("'", r"\'") + "'"


def _time_range(start: int, end: int) -> str:
    return f"time >= {start}s AND time < {end}s"


@dataclass(frozen=True, slots=True)
class Flagged:
    """One stored reading with a flag on at least one of the queried parameters."""

    station: str
    ts: int
    values: dict[str, float]
    flags: dict[str, str]  # parameter -> flag; "*" for the whole reading


class InfluxQL:
    def __init__(self, s: InfluxSettings) -> None:
        self.s = s
        headers = {"Authorization": f"Token {s.token}"} if s.token else {}
        self.http = httpx.Client(base_url=s.url, timeout=max(s.timeout_s, 60.0), headers=headers)

    def close(self) -> None:
        self.http.close()

    def _params(self, q: str) -> dict[str, str]:
        params = {"q": q, "db": self.s.database, "epoch": "s"}
        if self.s.retention_policy:
            params["rp"] = self.s.retention_policy
        if self.s.username:
            params.update(u=self.s.username, p=self.s.password)
        return params

    def series(self, q: str) -> list[dict]:
        """The series of one statement: [{"tags": {...}, "columns": [...], "values": [...]}]."""
        try:
            r = self.http.post("/query", data=self._params(q))
        except httpx.HTTPError as e:
            raise ReportQueryError(f"InfluxDB at {self.s.url} unreachable: {e}") from None
        if r.status_code != 200:
            raise ReportQueryError(f"InfluxDB HTTP {r.status_code}: {r.text[:300]}")
        res = r.json()["results"][0]
        if "error" in res:
            raise ReportQueryError(f"InfluxQL error: {res['error']}")
        return res.get("series", [])

    def write(self, lines: Sequence[str]) -> None:
        sink = make_sink(self.s)
        try:
            sink.write(list(lines))
        finally:
            sink.close()


def _chunks(start: int, end: int) -> Iterable[tuple[int, int]]:
    t = start
    while t < end:
        yield t, min(end, t + CHUNK_S)
        t += CHUNK_S


# station -> parameter -> hour start -> counts
Counts = dict[str, dict[str, dict[int, HourCounts]]]

# InfluxDB 1.x answers one aggregate per field per statement much faster than many aggregates
# in one statement (a week of 100 stations: 3.4 s as six statements, 6.8 s as one), and
# independent statements can run side by side: a few at a time, not to crowd the database.
QUERY_WORKERS = 2


def _parallel(fn: Callable[[T], R], tasks: Sequence[T]) -> list[R]:
    if len(tasks) <= 1:
        return [fn(t) for t in tasks]
    with ThreadPoolExecutor(QUERY_WORKERS) as ex:
        return list(ex.map(fn, tasks))


def hourly_counts(
    db: InfluxQL,
    measurement: str,
    params: Sequence[str],
    start: int,
    end: int,
    offset_s: int = 0,
    station: str | None = None,
) -> Counts:
    """Count and sum of each parameter per station and clock hour, flagged values out
    (of every station, or of `station` only)."""
    only = f' AND "station" = {influxql_string(station)}' if station else ""
    tasks = [(p, a, b) for p in params for a, b in _chunks(start, end)]

    def run(task: tuple[str, int, int]) -> list[dict]:
        p, a, b = task
        return db.series(
            f"SELECT count({_ident(p)}) AS n, mean({_ident(p)}) AS m FROM {_ident(measurement)} "
            f"WHERE {_time_range(a, b)}{only} GROUP BY time(1h, {offset_s}s), station fill(none)"
        )

    out: Counts = {}
    for (p, _, _), result in zip(tasks, _parallel(run, tasks), strict=True):
        for series in result:
            _add_counts(out, p, series)
    for f in flagged(db, measurement, params, start, end, station):
        _remove_flagged(out, f, offset_s)
    return out


def _add_counts(out: Counts, param: str, series: dict) -> None:
    station = series.get("tags", {}).get("station", "")
    cols = series["columns"]
    hours = out.setdefault(station, {}).setdefault(param, {})
    for row in series["values"]:
        r = dict(zip(cols, row, strict=True))
        if r["n"]:
            # the sum is mean x count: one aggregate less for InfluxDB to compute
            hours[int(r["time"])] = HourCounts(int(r["n"]), float(r["m"]) * int(r["n"]))


def _remove_flagged(out: Counts, f: Flagged, offset_s: int) -> None:
    """Take a flagged value back out of its hour's count and sum (the rules of rules.EXCLUDED).

    A whole-reading maintenance flag excludes every value; "clock" does not (the gateway
    stored its receive time, which is a real measurement time).
    """
    whole = f.flags.get("*")
    hour = f.ts - (f.ts - offset_s) % 3600
    for p, value in f.values.items():
        flag = whole if whole in rules.EXCLUDED else f.flags.get(p)
        c = out.get(f.station, {}).get(p, {}).get(hour)
        if flag not in rules.EXCLUDED or c is None:
            continue
        out[f.station][p][hour] = HourCounts(c.count - 1, c.total - value)


def flagged(
    db: InfluxQL,
    measurement: str,
    params: Sequence[str],
    start: int,
    end: int,
    station: str | None = None,
) -> list[Flagged]:
    flag_cols = [f"flag_{p}" for p in params] + ["flag_all"]
    cols = ", ".join(_ident(c) for c in [*params, *flag_cols])
    cond = " OR ".join(f"{_ident(c)} =~ /./" for c in flag_cols)
    only = f' AND "station" = {influxql_string(station)}' if station else ""
    out: list[Flagged] = []
    for a, b in _chunks(start, end):
        q = (
            f"SELECT {cols} FROM {_ident(measurement)} WHERE {_time_range(a, b)} "
            f"AND ({cond}){only} GROUP BY station"
        )
        for s in db.series(q):
            sid = s.get("tags", {}).get("station", "")
            names = s["columns"]
            for row in s["values"]:
                r = dict(zip(names, row, strict=True))
                values = {p: float(r[p]) for p in params if r.get(p) is not None}
                flags = {p: r[f"flag_{p}"] for p in params if r.get(f"flag_{p}")}
                if r.get("flag_all"):
                    flags["*"] = r["flag_all"]
                out.append(Flagged(sid, int(r["time"]), values, flags))
    return out


@dataclass(frozen=True, slots=True)
class Latency:
    p50: float | None
    p95: float | None
    n: int


def latency(
    db: InfluxQL, start: int, end: int, day_s: int | None = None, offset_s: int = 0
) -> dict[str, dict[int | None, Latency]]:
    """Delivery latency (receive minus measured time) per station, per day or for the range.

    InfluxDB's percentile() (nearest rank) is used: latency is a figure about the network, not
    an assessment statistic, and computing it in the database keeps readings off the wire.
    """
    group = f"time({day_s}s, {offset_s}s), station" if day_s else "station"
    aggs = {
        "p50": 'percentile("latency_s", 50)',
        "p95": 'percentile("latency_s", 95)',
        "n": 'count("latency_s")',
    }

    def run(agg: str) -> list[dict]:
        return db.series(
            f'SELECT {agg} AS v FROM "air", "water" WHERE {_time_range(start, end)} '
            f"GROUP BY {group} fill(none)"
        )

    found: dict[tuple[str, int | None], dict[str, float]] = {}
    for name, result in zip(aggs, _parallel(run, list(aggs.values())), strict=True):
        for s in result:
            station = s.get("tags", {}).get("station", "")
            for t, v in s["values"]:
                found.setdefault((station, int(t) if day_s else None), {})[name] = v
    out: dict[str, dict[int | None, Latency]] = {}
    for (station, key), v in found.items():
        out.setdefault(station, {})[key] = Latency(v.get("p50"), v.get("p95"), int(v.get("n") or 0))
    return out

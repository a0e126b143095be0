"""Data completeness of the network itself: per station, per day and month.

- valid hours: hours with a valid hourly mean (>= 45 min of unflagged data, GB 3095 sec. 8)
  of the station's bottleneck parameter: the least complete of the required pollutants (air)
  or of the parameters the section reported in the range (water). A day needs every one of
  them, so the least complete one decides whether it counts.
- expected hours: the clock hours of the local day (24, 23/25 on a DST change).
- a day "counts" when its daily values are valid: an air day needs every required
  pollutant's valid daily value (>= 20 valid hours; O3 >= 14 valid 8-hour means); a water day
  every reported parameter's (>= reports.water_min_hours_day valid hours).
- latency: receive time minus measured time (`latency_s`), p50 and p95 per day and month.
- invalidated hours: hours of the day a reviewer invalidated (docs/review.md) for at least one
  of those parameters. They are not valid hours (the data is taken out of every figure) and
  are reported beside them, so "no data" and "data reviewed out" read apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from envnet.core import calendar as cal
from envnet.domain.reports import rules
from envnet.domain.reports.settings import ReportSettings
from envnet.store.influx.reports import InfluxQL, Latency, latency


class Reports(Protocol):
    """What this module reads of server.reports.service.Reports (a protocol, so the service
    can call this module without the two importing each other)."""

    r: ReportSettings
    zone: ZoneInfo
    db: InfluxQL
    validity: Any

    def air(self, days: Sequence[date]) -> Any: ...

    def water(self, days: Sequence[date]) -> Any: ...


DAY = 86400


def ratio(valid: int, expected: int) -> float | None:
    return round(100 * valid / expected, rules.RATIO_DECIMALS) if expected else None


def _latency_fields(lat: Latency | None) -> dict[str, Any]:
    if lat is None:
        return {"latency_p50_s": None, "latency_p95_s": None, "readings": 0}
    return {"latency_p50_s": lat.p50, "latency_p95_s": lat.p95, "readings": lat.n}


def _day_row(
    d: date,
    expected: int,
    hours: Mapping[str, int],
    params: Sequence[str],
    counts: bool,
    invalid: set[int] | None = None,
) -> dict[str, Any]:
    per = {p: hours.get(p, 0) for p in params}
    valid = min(per.values()) if per else 0
    return {
        "date": d.isoformat(),
        "expected_hours": expected,
        "valid_hours": valid,
        "completeness": ratio(valid, expected),
        "counts": counts,
        "per_parameter": per,
        "invalidated_hours": len(invalid or ()),
    }


def _invalid_hours(
    invalidated: Mapping[str, Mapping[str, set[int]]],
    sid: str,
    params: Sequence[str],
    day_hours: Sequence[int],
) -> set[int]:
    per = invalidated.get(sid, {})
    return {h for p in params for h in per.get(p, ()) if h in set(day_hours)}


def _months(rows: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault(r["date"][:7], []).append(r)
    return out


def month_row(month: str, rows: Sequence[dict[str, Any]], lat: Latency | None) -> dict:
    valid = sum(r["valid_hours"] for r in rows)
    expected = sum(r["expected_hours"] for r in rows)
    return {
        "month": month,
        "days": len(rows),
        "expected_hours": expected,
        "valid_hours": valid,
        "completeness": ratio(valid, expected),
        "days_counted": sum(1 for r in rows if r["counts"]),
        "days_not_counted": [r["date"] for r in rows if not r["counts"]],
        "invalidated_hours": sum(r.get("invalidated_hours", 0) for r in rows),
        **_latency_fields(lat),
    }


def _month_latency(rep: Reports, days: Sequence[date]) -> dict[str, dict[str, Latency]]:
    out: dict[str, dict[str, Latency]] = {}
    by_month: dict[str, list[date]] = {}
    for d in days:
        by_month.setdefault(cal.month_of(d), []).append(d)
    for m, ds in by_month.items():
        start = cal.day_start(ds[0], rep.zone)
        end = cal.day_start(ds[-1] + timedelta(days=1), rep.zone)
        for sid, lat in latency(rep.db, start, end).items():
            out.setdefault(sid, {})[m] = lat[None]
    return out


def report(rep: Reports, days: Sequence[date]) -> dict[str, Any]:
    air, water = rep.air(days), rep.water(days)
    start = cal.day_start(days[0], rep.zone)
    end = cal.day_start(days[-1] + timedelta(days=1), rep.zone)
    per_day = latency(rep.db, start, end, DAY, start % DAY)
    per_month = _month_latency(rep, days)
    required = rep.r.required_pollutants
    stations = []
    for sid in sorted(air.stations):
        rows = [
            _day_row(
                d,
                len(cal.day_hours(d, rep.zone)),
                air.day_values[sid][d].hours,
                list(required),
                air.station_days[sid][d].valid,
                _invalid_hours(air.invalidated, sid, required, cal.day_hours(d, rep.zone)),
            )
            for d in days
        ]
        stations.append(_station(air.stations[sid], rows, per_day, per_month, rep))
    for sid in sorted(water.stations):
        params = sorted(water.reported.get(sid, ()))
        rows = []
        for d in days:
            wd = water.values[sid][d]
            counts = bool(params) and all(p in wd.values for p in params)
            dh = cal.day_hours(d, rep.zone)
            bad = _invalid_hours(water.invalidated, sid, params, dh)
            rows.append(_day_row(d, len(dh), wd.hours, params, counts, bad))
        stations.append(_station(water.stations[sid], rows, per_day, per_month, rep))
    return {
        "report": "completeness",
        "from": days[0].isoformat(),
        "to": days[-1].isoformat(),
        "timezone": rep.r.timezone,
        "rules": {
            "valid_hour_minutes": rep.validity.min_minutes_1h,
            "valid_day_hours": rep.validity.min_hours_24h,
            "required_pollutants": list(required),
            "water_min_hours_day": rep.r.water_min_hours_day,
        },
        "stations": stations,
    }


def _station(st, rows, per_day, per_month, rep: Reports) -> dict[str, Any]:
    lat_day = per_day.get(st.id, {})
    for r in rows:
        key = cal.day_start(date.fromisoformat(r["date"]), rep.zone)
        r.update(_latency_fields(lat_day.get(key)))
    months = [month_row(m, rs, per_month.get(st.id, {}).get(m)) for m, rs in _months(rows).items()]
    return {
        "id": st.id,
        "kind": st.kind,
        "name": st.name,
        "district": st.district,
        "interval_s": st.interval_s,
        "days": rows,
        "months": months,
    }

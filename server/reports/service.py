"""The bureau's reports: daily bulletin, period report, targets, completeness.

`Reports` reads the registry (state store) and InfluxDB, and returns plain dicts (JSON-ready);
export.py turns them into CSV tables. The arithmetic lives in daily.py, stats.py, water.py and
rules.py; this module only gathers data and assembles the answers.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Literal

from envnet.config import Settings
from envnet.core import calendar as cal
from envnet.core.standards import gb3095, gb3838, hj633
from envnet.domain.reports import daily, rules, stats, water
from envnet.domain.reports.daily import DailyIndex
from envnet.domain.reports.stations import StationInfo, unregistered
from envnet.domain.review.invalidation import hours as inv_hours
from envnet.store import review
from envnet.store.influx.bulletin import lines
from envnet.store.influx.corrected import use_corrected
from envnet.store.influx.reports import InfluxQL, hourly_counts
from envnet.store.state import SqliteStateStore
from server.reports import completeness

Group = Literal["station", "district", "city"]
CITY: Literal["city"] = "city"
FIRST_DAY, LAST_DAY = date(2000, 1, 1), date(2099, 12, 31)  # days a report may ask about
WATER_PARAMS = tuple(
    k for k in gb3838.CLASS_LIMITS["GB 3838-2002"] if k in gb3838.PARAM_LABELS
)  # "tp_lake" is a column of tp, not a parameter


class ReportRangeError(ValueError):
    """A report asked for an impossible range; str() is the message for the caller."""


@dataclass(slots=True)
class AirData:
    """Everything one air report needs for a range of days."""

    days: list[date]
    stations: dict[str, StationInfo]
    station_days: dict[str, dict[date, DailyIndex]]  # station -> day -> index
    day_values: dict[str, dict[date, daily.DayValues]]
    # station -> parameter -> hour starts a reviewer invalidated (taken out of every figure)
    invalidated: dict[str, dict[str, set[int]]] = field(default_factory=dict)


@dataclass(slots=True)
class WaterData:
    days: list[date]
    stations: dict[str, StationInfo]
    values: dict[str, dict[date, water.WaterDay]]
    reported: dict[str, set[str]]  # parameters each station reported in the range
    invalidated: dict[str, dict[str, set[int]]] = field(default_factory=dict)


class Reports:
    def __init__(self, settings: Settings, store: SqliteStateStore, db: InfluxQL | None = None):
        self.settings = settings
        self.r = settings.reports
        self.zone = settings.reports.zone
        self.edition = settings.standards.edition
        self.validity = gb3095.validity(self.edition)
        self.store = store
        self.db = db or InfluxQL(settings.influx)

    # -- inputs ------------------------------------------------------------------------------
    def registry(self) -> dict[str, StationInfo]:
        targets = self.settings.targets.sections
        out = {}
        for row in self.store.list_stations():
            if row.get("registered") or row.get("kind"):
                out[row["id"]] = StationInfo.from_registry(row, targets.get(row["id"]))
        return out

    def _check_day(self, d: date) -> None:
        # InfluxDB stores 1677..2262; a monitoring network's records are far narrower.
        if not FIRST_DAY <= d <= LAST_DAY:
            raise ReportRangeError(f"{d} is outside {FIRST_DAY}..{LAST_DAY}")

    def _check_range(self, first: date, last: date) -> list[date]:
        self._check_day(first)
        self._check_day(last)
        if last < first:
            raise ReportRangeError(f"'to' ({last}) is before 'from' ({first})")
        n = (last - first).days + 1
        if n > self.r.max_days:
            raise ReportRangeError(f"{n} days asked, reports.max_days is {self.r.max_days}")
        return list(cal.days(first, last))

    def _bounds(self, days: Sequence[date]) -> tuple[int, int, int]:
        start = cal.day_start(days[0], self.zone)
        end = cal.day_start(days[-1] + timedelta(days=1), self.zone)
        return start, end, cal.hour_offset_s(self.zone, days[0])

    def invalidated(
        self, counts: dict, params: Sequence[str], start: int, end: int
    ) -> dict[str, dict[str, set[int]]]:
        """Take the hours reviewers invalidated out of `counts` (in place); returns them,
        station -> parameter -> hour starts, for completeness to report as such."""
        out: dict[str, dict[str, set[int]]] = {}
        for inv in review.active_between(self.store, start, end):
            for p in params:
                if not inv.covers(p):
                    continue
                hs = {h for h in inv_hours(inv.hour_start, inv.hour_end) if start <= h < end}
                out.setdefault(inv.station, {}).setdefault(p, set()).update(hs)
                got = counts.get(inv.station, {}).get(p)
                for h in hs if got else ():
                    got.pop(h, None)
        return out

    def _hourly(
        self, kind: str, params: Sequence[str], days: Sequence[date], known: dict[str, StationInfo]
    ) -> tuple[dict[str, StationInfo], dict[str, dict[str, dict[int, float]]], dict, dict]:
        start, end, offset = self._bounds(days)
        counts = hourly_counts(self.db, kind, params, start, end, offset)
        invalid = self.invalidated(counts, params, start, end)
        stations = {sid: st for sid, st in known.items() if st.kind == kind}
        for sid in counts:
            if sid and sid not in stations and sid not in known:
                stations[sid] = unregistered(sid, kind)
        means = {
            sid: daily.hourly_means(
                counts.get(sid, {}), st.interval_s, self.validity.min_minutes_1h
            )
            for sid, st in stations.items()
        }
        if kind == "air" and self.settings.review.use_corrected:
            # calibrated micro stations: the review worker's corrected hourly values
            use_corrected(self.db, means, params, start, end)
        return stations, means, counts, invalid

    def air(self, days: Sequence[date]) -> AirData:
        stations, means, _, invalid = self._hourly("air", hj633.POLLUTANTS, days, self.registry())
        o3_min = self.settings.alerts.o3_daily_min_8h
        required = self.r.required_pollutants
        sdays: dict[str, dict[date, DailyIndex]] = {}
        dvals: dict[str, dict[date, daily.DayValues]] = {}
        for sid in stations:
            for d in days:
                dv = daily.day_values(
                    means[sid], cal.day_hours(d, self.zone), self.validity, o3_min
                )
                dvals.setdefault(sid, {})[d] = dv
                sdays.setdefault(sid, {})[d] = daily.daily_index(
                    dv.values, required, self.edition, dv.o3_1h_max
                )
        return AirData(list(days), stations, sdays, dvals, invalid)

    def water(self, days: Sequence[date]) -> WaterData:
        stations, means, counts, invalid = self._hourly(
            "water", WATER_PARAMS, days, self.registry()
        )
        values: dict[str, dict[date, water.WaterDay]] = {}
        for sid, st in stations.items():
            for d in days:
                values.setdefault(sid, {})[d] = water.day(
                    means[sid],
                    cal.day_hours(d, self.zone),
                    self.r.water_min_hours_day,
                    st.waterbody,
                    self.edition,
                    st.assessment,
                )
        reported = {sid: {p for p, h in counts.get(sid, {}).items() if h} for sid in stations}
        return WaterData(list(days), stations, values, reported, invalid)

    # -- regions -----------------------------------------------------------------------------
    def members(self, data: AirData) -> dict[tuple[str, str], list[str]]:
        """(scope, id) -> member stations: each district's air stations, and the city's."""
        out: dict[tuple[str, str], list[str]] = {}
        for sid, st in sorted(data.stations.items()):
            if st.district:
                out.setdefault(("district", st.district), []).append(sid)
        classes = set(self.r.city_station_classes)
        city = [sid for sid, st in data.stations.items() if st.station_class in classes]
        out[(CITY, CITY)] = sorted(city or data.stations)
        return out

    def region_day(self, data: AirData, members: Sequence[str], d: date) -> DailyIndex:
        vals = [data.station_days[m][d].values for m in members if data.station_days[m][d].values]
        mean, n = daily.mean_values(vals)
        return daily.daily_index(mean, self.r.required_pollutants, self.edition, None, n)

    def series(self, data: AirData, group: Group) -> dict[tuple[str, str], list[stats.DayIndex]]:
        """Daily indices per place of the group, oldest first."""
        out: dict[tuple[str, str], list[stats.DayIndex]] = {}
        if group == "station":
            for sid in sorted(data.stations):
                out[("station", sid)] = [
                    _day_index(d, data.station_days[sid][d]) for d in data.days
                ]
            return out
        for key, mem in self.members(data).items():
            if key[0] == group:
                out[key] = [_day_index(d, self.region_day(data, mem, d)) for d in data.days]
        return out

    # -- reports -----------------------------------------------------------------------------
    def daily(self, d: date) -> dict[str, Any]:
        self._check_day(d)
        data = self.air([d])
        stations = [
            self._entry("station", sid, data.station_days[sid][d], data)
            for sid in sorted(data.stations)
        ]
        regions = {
            key: self._entry(key[0], key[1], self.region_day(data, mem, d), data, mem)
            for key, mem in self.members(data).items()
        }
        wd = self.water([d])
        return {
            "report": "daily",
            "date": d.isoformat(),
            **self._about(),
            "stations": stations,
            "districts": [e for (scope, _), e in sorted(regions.items()) if scope == "district"],
            "city": regions[(CITY, CITY)],
            "water": [
                water.section_day_entry(wd.stations[sid], wd.values[sid][d], d)
                for sid in sorted(wd.stations)
            ],
        }

    def _about(self) -> dict[str, Any]:
        ed = self.edition
        return {
            "timezone": self.r.timezone,
            "edition": ed,
            # which PM values the figures use: calibrated micro stations corrected, or raw
            "values": "corrected" if self.settings.review.use_corrected else "raw",
            "standards": [
                hj633._designation(ed),
                gb3095._designation(ed),
                "HJ 663-2013",
                gb3838.get_edition(ed).water,
            ],
        }

    def _entry(
        self,
        scope: str,
        ident: str,
        idx: DailyIndex,
        data: AirData,
        members: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        res = idx.result
        cat = res.category
        st = data.stations.get(ident) if scope == "station" else None
        entry: dict[str, Any] = {
            "scope": scope,
            "id": ident,
            "name": st.name if st else None,
            "district": st.district if st else (ident if scope == "district" else None),
            "valid": idx.valid,
            "missing": list(idx.missing),
            "aqi": res.aqi,
            "level": cat.level if cat else None,
            "category_zh": cat.name_zh if cat else None,
            "category_en": cat.name_en if cat else None,
            "colour": cat.colour_en if cat else None,
            "primary": list(res.primary),
            "iaqi": {p: part.value for p, part in res.iaqi.items()},
            "concentrations": dict(idx.values),
            "stations": len(members) if members is not None else 1,
            "stations_reporting": idx.members,
        }
        if st is not None:
            dv = data.day_values[ident]
            entry["hours"] = next(iter(dv.values())).hours if len(dv) == 1 else {}
        return entry

    def period(self, first: date, last: date, group: Group) -> dict[str, Any]:
        days = self._check_range(first, last)
        data = self.air(days)
        entries = []
        for (scope, ident), series in self.series(data, group).items():
            entries.append(self._period_entry(scope, ident, series, data))
        if group != CITY:
            self._rank(entries)
        wd = self.water(days)
        return {
            "report": "period",
            "from": first.isoformat(),
            "to": last.isoformat(),
            "group": group,
            **self._about(),
            "rank_by": self.r.rank_by if group != CITY else None,
            "air": entries,
            "water": water.period_summary(wd.stations, wd.values, days, self.edition),
        }

    def _period_entry(
        self, scope: str, ident: str, series: list[stats.DayIndex], data: AirData
    ) -> dict[str, Any]:
        st = data.stations.get(ident) if scope == "station" else None
        gd = stats.good_days(series)
        statistics = stats.period_statistics(series)
        return {
            "scope": scope,
            "id": ident,
            "name": st.name if st else None,
            "district": st.district if st else (ident if scope == "district" else None),
            "days": gd.days,
            "days_valid": gd.valid,
            "days_good": gd.good,
            "good_days_ratio": gd.ratio,
            "categories": stats.category_counts(series),
            "statistics": statistics,
            "composite_index": stats.composite_index(statistics),
            "rank": None,
        }

    def _rank(self, entries: list[dict[str, Any]]) -> None:
        by = self.r.rank_by
        if by == "composite":
            ranked = stats.competition_rank(entries, lambda e: e["composite_index"])
        elif by == "pm25":
            ranked = stats.competition_rank(entries, lambda e: e["statistics"]["pm25"])
        else:
            ranked = stats.competition_rank(entries, lambda e: e["good_days_ratio"], True)
        for rank, e in ranked:
            e["rank"] = rank
        entries[:] = [e for _, e in ranked]

    def targets(self, year: int, today: date | None = None) -> dict[str, Any]:
        """Year-to-date progress: complete days from 1 January up to yesterday (local)."""
        today = today or cal.date_of(int(time.time()), self.zone)
        first, year_end = date(year, 1, 1), date(year, 12, 31)
        self._check_day(first)
        self._check_day(year_end)
        last = min(year_end, today - timedelta(days=1))
        if last < first:
            raise ReportRangeError(f"{year} has no complete day yet")
        days = list(cal.days(first, last))
        data = self.air(days)
        city = self.series(data, CITY)[(CITY, CITY)]
        t = self.settings.targets
        remaining = (year_end - last).days
        wd = self.water(days)
        return {
            "report": "targets",
            "year": year,
            "from": first.isoformat(),
            "through": last.isoformat(),
            "days_elapsed": len(days),
            "days_remaining": remaining,
            **self._about(),
            "pm25": pm25_progress(city, t.pm25_annual, remaining),
            "good_days": good_days_progress(city, t.good_days_ratio, remaining),
            "water": water.period_summary(wd.stations, wd.values, days, self.edition),
        }

    def completeness(self, first: date, last: date) -> dict[str, Any]:
        days = self._check_range(first, last)
        return completeness.report(self, days)

    def bulletin_lines(self, report: Mapping[str, Any]) -> list[str]:
        return lines(report, self.r.bulletin_measurement, self.zone)


def _day_index(d: date, idx: DailyIndex) -> stats.DayIndex:
    cat = idx.result.category
    return stats.DayIndex(
        d.isoformat(), idx.valid, idx.result.aqi, cat.level if cat else None, idx.values
    )


def pm25_progress(
    city: Sequence[stats.DayIndex], target: float | None, remaining: int
) -> dict[str, Any]:
    """YTD PM2.5 mean against the annual target, and the mean the rest of the year must keep
    (assuming every remaining day is valid) for the annual mean to meet it."""
    vals = [d.values["pm25"] for d in city if "pm25" in d.values]
    mean = round(sum(vals) / len(vals), 3) if vals else None
    out: dict[str, Any] = {"target": target, "ytd_mean": mean, "days_with_value": len(vals)}
    if target is None or mean is None:
        return {**out, "on_track": None, "required_mean_rest_of_year": None}
    need = (target * (len(vals) + remaining) - sum(vals)) / remaining if remaining else None
    return {
        **out,
        "on_track": mean <= target,
        "required_mean_rest_of_year": None if need is None else round(need, 3),
    }


def good_days_progress(
    city: Sequence[stats.DayIndex], target: float | None, remaining: int
) -> dict[str, Any]:
    """YTD good-days ratio against the target, and how many of the remaining days (all
    assumed valid) must be good for the year to reach it."""
    gd = stats.good_days(city)
    out: dict[str, Any] = {
        "indicator_zh": rules.GOOD_DAYS_RATIO_NAME[0],
        "indicator_en": rules.GOOD_DAYS_RATIO_NAME[1],
        "target": target,
        "ytd_ratio": gd.ratio,
        "days_good": gd.good,
        "days_valid": gd.valid,
    }
    if target is None or gd.ratio is None:
        return {**out, "on_track": None, "good_days_needed_rest_of_year": None}
    needed = max(0, math.ceil(target / 100 * (gd.valid + remaining) - gd.good - 1e-9))
    return {
        **out,
        "on_track": gd.ratio >= target,
        "good_days_needed_rest_of_year": needed,
        "attainable": needed <= remaining,
    }

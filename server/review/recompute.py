"""After an invalidation or a restore: every figure over its hours, recomputed and rewritten.

What is computed on request (period reports, rankings, targets, completeness) reads the
invalidations itself (server/reports/service.py), so it is right the moment the change is
committed. What is stored is rewritten here, for the station of the change:

- hourly real-time AQI points (measurement `aqi`, window 1h, stamped at the hour's end) of an
  air station, recomputed by the evaluator's method (envnet/domain/alerts/engine.py
  `_air_hour`, HJ 633 real-time report) from reviewed data: the valid hourly means with
  flagged readings and invalidated hours out (an hour's mean needs the GB 3095 minutes,
  `min_minutes_1h` of the edition, 45), the O3 8-hour and 24-hour moving means of those.
  An hour is affected when an invalidated hour of a pollutant falls in what it reads: the
  hour itself, the 7 before it for O3 (8-hour mean), the 23 before it for PM2.5, PM10 (the
  24-hour moving means, c_pm*_24h and the "24h" PM basis) and SO2 (its 24-hour column
  above 800). An affected hour's original moves to the tag `review=invalid`; the reviewed
  point is written beside it with `review=recomputed` when at least one of the hour's own
  pollutant means is left valid and gives an index, otherwise the hour is *withdrawn* (no
  reviewed point: the remainder is not enough). A recomputation equal to the original leaves
  it untouched;
- water classes (measurement `water_class`, stamped at the hour's end) of a water station:
  an hour with an invalidated parameter is classified again (GB 3838, the evaluator's
  method) from its other valid hourly means; `review=invalid` / `review=recomputed` as
  above, withdrawn when no parameter is left to classify;
- daily AQI points (measurement `aqi`, window 24h, stamped at the day's start): the original
  moves to `review=invalid` and the day recomputed from reviewed data (the report service's
  HJ 633 daily index, the method the evaluator uses) is written with `review=recomputed`;
- the evaluator's `daily_aqi` rows (the pollution-episode assessment's input, the alert
  store's table): the reviewed daily AQI replaces the station-day's row (the row goes when
  no index is left) and the original is kept beside it until the restore puts it back;
- the daily bulletin (`reports.bulletin_measurement`) of every touched day that was
  published: deleted and written again from the reviewed daily report.

Grafana's reviewed queries read `"review" != 'invalid'`, its raw ones `"review" !=
'recomputed'` (one dashboard variable). A restore runs the same synchronisation: with no
active invalidation left over what a figure reads, the original moves back without the tag,
with its fields and their types exactly as they were, the recomputed point is deleted and the
daily_aqi row is the evaluator's again.

Deletes go through envnet/store/influx/delete.py: InfluxQL DELETE on InfluxDB 1.x, the v2
delete API on 2.x; 3.x cannot delete points and is refused there (the figures are then not
rewritten, and the answer's `error` says so).

Days: the report days (`reports.timezone`) are taken as the evaluator's CST days, as the daily
AQI points and daily_aqi rows are keyed; the two agree with the default zone (Asia/Shanghai).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from envnet.config import Settings
from envnet.core import calendar as cal
from envnet.core import contract
from envnet.core.calendar import DAY, HOUR
from envnet.core.standards import gb3838, hj633
from envnet.domain.alerts.model import StationInfo, aqi_point_fields, water_point
from envnet.domain.reports import daily
from envnet.domain.reports.daily import DailyIndex
from envnet.domain.review.invalidation import days_touched
from envnet.store import review
from envnet.store.alerts import SqliteAlertStore
from envnet.store.influx.corrected import use_corrected
from envnet.store.influx.delete import delete_points
from envnet.store.influx.line_protocol import line
from envnet.store.influx.reports import InfluxQL, hourly_counts, influxql_string
from envnet.store.state import SqliteStateStore
from server.reports.service import Reports

log = logging.getLogger("envnet.review")

AQI = "aqi"
WATER_CLASS = "water_class"
INVALID, RECOMPUTED = "invalid", "recomputed"  # values of the `review` tag
REVIEW_TAG = "review"
WATER_PARAMS = tuple(contract.KINDS["water"]["params"])
# How many hours before an hour its real-time AQI reads, per pollutant (see the docstring).
LOOKBACK_H = {"pm25": 23, "pm10": 23, "so2": 23, "o3": 7, "no2": 0, "co": 0}
MEAN_DECIMALS = 3  # the evaluator's and the reports' (windows.MEAN_DECIMALS, rules.DECIMALS)

Pt = tuple[int, dict[str, str], dict[str, Any]]  # (ts s, tags, fields)
Means = dict[str, dict[int, float]]  # parameter -> hour start -> valid mean
Invalid = dict[str, set[int]]  # parameter -> invalidated hour starts


class _Withdraw:
    """A figure with nothing valid left to compute it from."""


WITHDRAW = _Withdraw()
# What a figure becomes: None keeps the original (untagged), WITHDRAW tags it invalid,
# fields tag it invalid and write the recomputed point beside it.
Verdict = None | _Withdraw | dict[str, Any]


@dataclass
class Summary:
    hourly_withdrawn: int = 0
    hourly_recomputed: int = 0
    hourly_restored: int = 0
    daily_recomputed: int = 0
    daily_withdrawn: int = 0
    daily_restored: int = 0
    water_withdrawn: int = 0
    water_recomputed: int = 0
    water_restored: int = 0
    daily_aqi_rewritten: list[str] = field(default_factory=list)
    daily_aqi_restored: list[str] = field(default_factory=list)
    bulletins: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "hourly_withdrawn": self.hourly_withdrawn,
            "hourly_recomputed": self.hourly_recomputed,
            "hourly_restored": self.hourly_restored,
            "daily_recomputed": self.daily_recomputed,
            "daily_withdrawn": self.daily_withdrawn,
            "daily_restored": self.daily_restored,
            "water_withdrawn": self.water_withdrawn,
            "water_recomputed": self.water_recomputed,
            "water_restored": self.water_restored,
            "daily_aqi_rewritten": self.daily_aqi_rewritten,
            "daily_aqi_restored": self.daily_aqi_restored,
            "bulletins_rewritten": self.bulletins,
            "seconds": round(self.seconds, 3),
        }


class Points:
    """Points of one measurement read with their tags and field types, to be written back
    exactly (integers stay integers, 12.0 stays a float)."""

    def __init__(self, db: InfluxQL, measurement: str) -> None:
        self.db, self.m = db, measurement
        self._types: dict[str, str] | None = None
        self._tags: set[str] | None = None

    def types(self) -> dict[str, str]:
        if self._types is None:
            self._types = {}
            for s in self.db.series(f'SHOW FIELD KEYS FROM "{self.m}"'):
                for k, t in s.get("values", []):
                    self._types[k] = t
        return self._types

    def tag_keys(self) -> set[str]:
        if self._tags is None:
            self._tags = set()
            for s in self.db.series(f'SHOW TAG KEYS FROM "{self.m}"'):
                self._tags |= {v[0] for v in s.get("values", [])}
        return self._tags

    def select(self, match: Mapping[str, str], first: int, last: int) -> list[Pt]:
        """(ts s, tags, fields) of every point with these tags and first <= time <= last."""
        tags, types = self.tag_keys(), self.types()
        conds = [f'"{k}" = {influxql_string(v)}' for k, v in match.items()]
        where = " AND ".join([*conds, f"time >= {first}s", f"time <= {last}s"])
        out = []
        for s in self.db.series(f'SELECT * FROM "{self.m}" WHERE {where}'):
            cols = s["columns"]
            for row in s.get("values", []):
                r = dict(zip(cols, row, strict=True))
                t = {k: str(v) for k, v in r.items() if k in tags and v not in (None, "")}
                f = {k: self._typed(v, types.get(k)) for k, v in r.items() if k in types}
                f = {k: v for k, v in f.items() if v is not None}
                out.append((int(r["time"]), t, f))
        return out

    @staticmethod
    def _typed(v: Any, t: str | None) -> Any:
        if v is None:
            return None
        if t == "integer":
            return int(v)
        if t == "float":
            return float(v)
        if t == "boolean":
            return bool(v)
        return str(v)

    def lines(self, points: Iterable[Pt]) -> list[str]:
        return [line(self.m, t, f, ts * 1000) for ts, t, f in points]


def _moving(series: Mapping[int, float], h: int, hours: int, min_hours: int) -> float | None:
    """The evaluator's moving mean (windows.StationWindows._moving) of the valid hourly
    means of the `hours` hours ending with h; None with fewer than min_hours of them."""
    vals = [series[b] for b in range(h - (hours - 1) * HOUR, h + HOUR, HOUR) if b in series]
    if len(vals) < min_hours:
        return None
    return round(sum(vals) / len(vals), MEAN_DECIMALS)


class Recomputer:
    def __init__(self, settings: Settings, store: SqliteStateStore, reports: Reports) -> None:
        self.settings = settings
        self.store = store
        self.reports = reports
        self.db = reports.db
        self.zone = reports.zone
        self._alerts: SqliteAlertStore | None = None

    @property
    def alerts(self) -> SqliteAlertStore:
        if self._alerts is None:
            self._alerts = SqliteAlertStore(self.store)
        return self._alerts

    # -- which hours are invalidated ------------------------------------------------------
    def _invalid(self, station: str, params: Collection[str], start: int, end: int) -> Invalid:
        """Parameter -> hour starts in [start, end) under an active invalidation."""
        out: Invalid = {p: set() for p in params}
        for inv in review.search(self.store, station=station, active=True, since=start, until=end):
            hours = range(max(inv.hour_start, start), min(inv.hour_end, end), HOUR)
            for p in params:
                if inv.covers(p):
                    out[p].update(hours)
        return out

    def _means(
        self, kind: str, station: str, info: StationInfo, invalid: Invalid, start: int, end: int
    ) -> Means:
        """The station's valid hourly means over [start, end), flagged readings and
        invalidated hours out: the reports' rules (daily.hourly_means), the evaluator's."""
        counts = hourly_counts(self.db, kind, list(invalid), start, end, 0, station=station)
        mine = counts.get(station, {})
        for p, hours in invalid.items():
            for h in hours:
                mine.get(p, {}).pop(h, None)
        means = daily.hourly_means(mine, info.interval_s, self.reports.validity.min_minutes_1h)
        if kind == "air" and self.settings.review.use_corrected:
            # the reports' and the evaluator's values: calibrated PM where the worker wrote it
            use_corrected(self.db, {station: means}, list(invalid), start, end)
        return means

    def _info(self, station: str) -> StationInfo:
        return StationInfo.from_meta(self.store.get_station_meta(station), {}, station)

    def run(self, station: str, hour_start: int, hour_end: int) -> Summary:
        """Bring every stored figure of `station` over these hours in line with the active
        invalidations (idempotent: run it after an invalidation, a restore, or to repair)."""
        t0 = time.perf_counter()
        s = Summary()
        info = self._info(station)
        days = days_touched(hour_start, hour_end, self.zone)
        if info.kind == "water":
            self._water(station, info, hour_start, hour_end, s)
        else:
            self._hourly(station, info, hour_start, hour_end, s)
            touched = self._touched_days(station, days)
            data = self.reports.air(touched).station_days.get(station, {}) if touched else {}
            self._daily(station, days, touched, data, s)
            self._daily_aqi(station, days, touched, data, s)
        self._bulletins(days, s)
        s.seconds = time.perf_counter() - t0
        return s

    # -- the generic rewrite --------------------------------------------------------------
    def _sync(
        self,
        measurement: str,
        match: Mapping[str, str],
        first: int,
        last: int,
        decide: Callable[[int, dict[str, Any]], Verdict],
    ) -> dict[str, int]:
        """Make the points of `measurement` with tags `match` and first <= time <= last what
        `decide(ts, original fields)` says; rewrite them only if anything changes. Returns
        the changes counted by what the figure became: withdrawn, recomputed, restored."""
        pts = Points(self.db, measurement)
        found = pts.select(match, first, last)
        if not found:
            return {}
        originals: dict[int, list[Pt]] = {}
        recomputed: dict[int, list[Pt]] = {}
        for p in found:
            (recomputed if p[1].get(REVIEW_TAG) == RECOMPUTED else originals).setdefault(
                p[0], []
            ).append(p)
        changes: dict[str, int] = {}
        out: list[Pt] = []
        for ts in sorted(originals.keys() | recomputed.keys()):
            mine, had = originals.get(ts, []), recomputed.get(ts, [])
            verdict = decide(ts, (mine or had)[0][2])
            if had:
                was = "recomputed"
            elif any(REVIEW_TAG in tags for _, tags, _ in mine):
                was = "withdrawn"
            else:
                was = "restored"  # as the evaluator wrote it
            for _, tags, f in mine:  # several series of one hour (edition, ...) move together
                base = {k: v for k, v in tags.items() if k != REVIEW_TAG}
                out.append((ts, base if verdict is None else base | {REVIEW_TAG: INVALID}, f))
            if isinstance(verdict, dict):
                now = "recomputed"
                base = {k: v for k, v in (mine or had)[0][1].items() if k != REVIEW_TAG}
                out.append((ts, base | {REVIEW_TAG: RECOMPUTED}, verdict))
                if had and had[0][2] != verdict:
                    was = "changed"  # recomputed again with other values: counted
            else:
                now = "withdrawn" if verdict is WITHDRAW else "restored"
            if was != now and mine:
                changes[now] = changes.get(now, 0) + 1
        if sorted(pts.lines(out)) != sorted(pts.lines(found)):
            delete_points(self.db, measurement, match, first, last)
            self.db.write(pts.lines(out))
        return changes

    # -- hourly real-time AQI -------------------------------------------------------------
    def _hourly(self, station: str, info: StationInfo, start: int, end: int, s: Summary) -> None:
        """Hours [start, end + 23 h): the invalidated ones and those whose moving means read
        them (points stamped at each hour's end)."""
        lo, hi = start - 23 * HOUR, end + 23 * HOUR
        invalid = self._invalid(station, hj633.POLLUTANTS, lo, hi)
        cache: dict[str, Means] = {}

        def means() -> Means:
            if "m" not in cache:
                cache["m"] = self._means("air", station, info, invalid, lo, hi)
            return cache["m"]

        def decide(ts: int, original: dict[str, Any]) -> Verdict:
            h = ts - HOUR
            reads = ((p, h - k * HOUR) for p, back in LOOKBACK_H.items() for k in range(back + 1))
            if not any(hour in invalid[p] for p, hour in reads):
                return None
            result = self.realtime_aqi(means(), h)
            if result is None or result.aqi is None:
                return WITHDRAW
            fields = _aqi_fields(result, original)
            return None if fields == original else fields

        got = self._sync(AQI, {"station": station, "window": "1h"}, start + HOUR, hi, decide)
        s.hourly_withdrawn += got.get("withdrawn", 0)
        s.hourly_recomputed += got.get("recomputed", 0)
        s.hourly_restored += got.get("restored", 0)

    def realtime_aqi(self, means: Means, h: int) -> hj633.AqiResult | None:
        """The real-time AQI of hour h from reviewed hourly means, as the evaluator computes
        it (engine._air_hour); None when none of the hour's own pollutant means is valid."""
        conc_1h = {p: means[p][h] for p in hj633.POLLUTANTS if h in means.get(p, {})}
        if not conc_1h:
            return None
        v = self.reports.validity
        means_24h = {
            p: m
            for p in hj633.POLLUTANTS
            if (m := _moving(means.get(p, {}), h, 24, v.min_hours_24h)) is not None
        }
        return hj633.hourly_aqi(
            conc_1h,
            None,
            self.reports.edition,
            o3_8h=_moving(means.get("o3", {}), h, 8, v.min_hours_8h),
            means_24h=means_24h,
            pm_basis=self.settings.standards.realtime_pm,
        )

    # -- water classes --------------------------------------------------------------------
    def _water(self, station: str, info: StationInfo, start: int, end: int, s: Summary) -> None:
        invalid = self._invalid(station, WATER_PARAMS, start, end)
        cache: dict[str, Means] = {}

        def decide(ts: int, original: dict[str, Any]) -> Verdict:
            h = ts - HOUR
            if not any(h in hours for hours in invalid.values()):
                return None
            if "m" not in cache:
                cache["m"] = self._means("water", station, info, invalid, start, end)
            values = {p: hours[h] for p, hours in cache["m"].items() if h in hours}
            a = gb3838.classify(values, info.waterbody, self.reports.edition, info.assessment)
            if a.overall is None:
                return WITHDRAW
            target = original.get("target_num")
            _, fields = water_point(a, int(target) if target is not None else None)
            return None if fields == original else fields

        got = self._sync(WATER_CLASS, {"station": station}, start + HOUR, end, decide)
        s.water_withdrawn += got.get("withdrawn", 0)
        s.water_recomputed += got.get("recomputed", 0)
        s.water_restored += got.get("restored", 0)

    # -- days -----------------------------------------------------------------------------
    def _touched_days(self, station: str, days: Sequence[date]) -> list[date]:
        """The days with an active invalidation of the station (any parameter)."""
        out = []
        for d in days:
            a = cal.day_start(d, self.zone)
            if review.search(self.store, station=station, active=True, since=a, until=a + DAY):
                out.append(d)
        return out

    def _daily(
        self,
        station: str,
        days: Sequence[date],
        touched: Sequence[date],
        data: Mapping[date, DailyIndex],
        s: Summary,
    ) -> None:
        starts = {cal.day_start(d, self.zone): d for d in touched}

        def decide(ts: int, original: dict[str, Any]) -> Verdict:
            if ts not in starts:
                return None
            idx = data.get(starts[ts])
            if idx is None or idx.result.aqi is None:
                return WITHDRAW
            return _aqi_fields(idx.result, original)

        first = cal.day_start(days[0], self.zone)
        last = cal.day_start(days[-1], self.zone)
        got = self._sync(AQI, {"station": station, "window": "24h"}, first, last, decide)
        s.daily_recomputed += got.get("recomputed", 0)
        s.daily_withdrawn += got.get("withdrawn", 0)
        s.daily_restored += got.get("restored", 0)

    def _daily_aqi(
        self,
        station: str,
        days: Sequence[date],
        touched: Sequence[date],
        data: Mapping[date, DailyIndex],
        s: Summary,
    ) -> None:
        """The evaluator's daily_aqi rows (keyed by the CST day label)."""
        for d in days:
            label = d.isoformat()
            if d in touched:
                idx = data.get(d)
                aqi = idx.result.aqi if idx is not None else None
                if self.alerts.review_daily_aqi(label, station, aqi):
                    s.daily_aqi_rewritten.append(label)
            elif self.alerts.restore_daily_aqi(label, station):
                s.daily_aqi_restored.append(label)

    def _bulletins(self, days: Sequence[date], s: Summary) -> None:
        m = self.settings.reports.bulletin_measurement
        for d in days:
            t = cal.day_start(d, self.zone)
            published = self.db.series(f'SELECT count("valid") FROM "{m}" WHERE time = {t}s')
            if not published:
                continue
            lines = self.reports.bulletin_lines(self.reports.daily(d))
            delete_points(self.db, m, {}, t, t)
            self.db.write(lines)
            s.bulletins.append(d.isoformat())


def _aqi_fields(result: hj633.AqiResult, original: dict[str, Any]) -> dict[str, Any]:
    """The evaluator's AQI fields (envnet/domain/alerts/engine.py _record_aqi) for a
    recomputed result; lat/lon kept from the original."""
    fields: dict[str, Any] = dict(aqi_point_fields(result))
    fields |= {k: original[k] for k in ("lat", "lon") if k in original}
    return fields

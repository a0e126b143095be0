"""After an invalidation or a restore: every figure over its hours, recomputed and rewritten.

What is computed on request (period reports, rankings, targets, completeness) reads the
invalidations itself (server/reports/service.py), so it is right the moment the change is
committed. What is stored is rewritten here, for the station and the hours of the change:

- hourly real-time AQI points (measurement `aqi`, window 1h, stamped at the hour's end): an
  hour with an active invalidation of any AQI pollutant is *withdrawn*: the original point
  moves to the same series with the tag `review=invalid` (kept, raw on demand). It is not
  recomputed from the other pollutants: its PM basis (24 h moving mean) and O3 8-hour mean
  reach back over hours the reports do not re-run (docs/review.md);
- daily AQI points (measurement `aqi`, window 24h, stamped at the day's start): the original
  moves to `review=invalid` and the day recomputed from reviewed data (the report service's
  HJ 633 daily index, the method the evaluator uses) is written with `review=recomputed`;
- the daily bulletin (`reports.bulletin_measurement`) of every touched day that was
  published: deleted and written again from the reviewed daily report.

Grafana's reviewed queries read `"review" != 'invalid'`, its raw ones `"review" !=
'recomputed'` (one dashboard variable). A restore runs the same synchronisation: with no
active invalidation left over an hour, the original moves back without the tag, with its
fields and their types exactly as they were, and the recomputed point is deleted.

InfluxQL DELETE is InfluxDB 1.x's (the version envnet tests against); 2.x and 3.x need their
delete API here (docs/review.md, "left to do").
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from envnet.config import Settings
from envnet.core import calendar as cal
from envnet.core.calendar import DAY, HOUR
from envnet.core.standards import hj633
from envnet.domain.alerts.model import aqi_point_fields
from envnet.domain.review.invalidation import days_touched
from envnet.store import review
from envnet.store.influx.line_protocol import line
from envnet.store.influx.reports import InfluxQL
from envnet.store.state import SqliteStateStore
from server.reports.service import Reports

log = logging.getLogger("envnet.review")

AQI = "aqi"
INVALID, RECOMPUTED = "invalid", "recomputed"  # values of the `review` tag
REVIEW_TAG = "review"


def _q(s: str) -> str:
    return "'" + s.replace("\\", "\\\\").replace("'", r"\'") + "'"


@dataclass
class Summary:
    hourly_withdrawn: int = 0
    hourly_restored: int = 0
    daily_recomputed: int = 0
    daily_restored: int = 0
    bulletins: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "hourly_withdrawn": self.hourly_withdrawn,
            "hourly_restored": self.hourly_restored,
            "daily_recomputed": self.daily_recomputed,
            "daily_restored": self.daily_restored,
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

    def select(self, where: str) -> list[tuple[int, dict[str, str], dict[str, Any]]]:
        """(ts s, tags, fields) of every point matching `where`."""
        tags, types = self.tag_keys(), self.types()
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

    def delete(self, where: str) -> None:
        self.db.series(f'DELETE FROM "{self.m}" WHERE {where}')

    def lines(self, points: Iterable[tuple[int, dict[str, str], dict[str, Any]]]) -> list[str]:
        return [line(self.m, t, f, ts * 1000) for ts, t, f in points]


class Recomputer:
    def __init__(self, settings: Settings, store: SqliteStateStore, reports: Reports) -> None:
        self.settings = settings
        self.store = store
        self.reports = reports
        self.db = reports.db
        self.zone = reports.zone

    # -- which hours are withdrawn --------------------------------------------------------
    def _withdrawn_hours(self, station: str, start: int, end: int) -> set[int]:
        """Hour starts in [start, end) with an active invalidation of an AQI pollutant."""
        out: set[int] = set()
        for inv in review.search(self.store, station=station, active=True, since=start, until=end):
            if any(inv.covers(p) for p in hj633.POLLUTANTS):
                out |= set(range(max(inv.hour_start, start), min(inv.hour_end, end), HOUR))
        return out

    def run(self, station: str, hour_start: int, hour_end: int) -> Summary:
        """Bring every stored figure of `station` over these hours in line with the active
        invalidations (idempotent: run it after an invalidation, a restore, or to repair)."""
        t0 = time.perf_counter()
        s = Summary()
        days = days_touched(hour_start, hour_end, self.zone)
        self._hourly(station, hour_start, hour_end, s)
        self._daily(station, days, s)
        self._bulletins(days, s)
        s.seconds = time.perf_counter() - t0
        return s

    def _hourly(self, station: str, start: int, end: int, s: Summary) -> None:
        pts = Points(self.db, AQI)
        # hourly points are stamped at the hour's end: hour h is the point at h + 1 h
        where = (
            f'"station" = {_q(station)} AND "window" = \'1h\''
            f" AND time > {start}s AND time <= {end}s"
        )
        found = pts.select(where)
        if not found:
            return
        withdrawn = self._withdrawn_hours(station, start, end)
        out = []
        changed = False
        for ts, tags, fields in found:
            want = INVALID if ts - HOUR in withdrawn else None
            have = tags.get(REVIEW_TAG)
            if have == want:
                out.append((ts, tags, fields))
                continue
            changed = True
            tags = {k: v for k, v in tags.items() if k != REVIEW_TAG}
            if want:
                tags[REVIEW_TAG] = want
                s.hourly_withdrawn += 1
            else:
                s.hourly_restored += 1
            out.append((ts, tags, fields))
        if changed:
            pts.delete(where)
            self.db.write(pts.lines(out))

    def _daily(self, station: str, days: Sequence[date], s: Summary) -> None:
        pts = Points(self.db, AQI)
        first = cal.day_start(days[0], self.zone)
        last = cal.day_start(days[-1], self.zone)
        where = (
            f'"station" = {_q(station)} AND "window" = \'24h\''
            f" AND time >= {first}s AND time <= {last}s"
        )
        found = pts.select(where)
        if not found:
            return
        originals = {ts: (tags, f) for ts, tags, f in found if tags.get(REVIEW_TAG) != RECOMPUTED}
        touched = {
            cal.day_start(d, self.zone)
            for d in days
            if self._withdrawn_hours(
                station, cal.day_start(d, self.zone), cal.day_start(d, self.zone) + DAY
            )
            or self._any_invalid(station, d)
        }
        redo = [d for d in days if cal.day_start(d, self.zone) in touched]
        data = self.reports.air(redo) if redo else None
        out = []
        for ts, (tags, fields) in originals.items():
            base = {k: v for k, v in tags.items() if k != REVIEW_TAG}
            if ts not in touched:
                out.append((ts, base, fields))
                if tags.get(REVIEW_TAG):
                    s.daily_restored += 1
                continue
            out.append((ts, base | {REVIEW_TAG: INVALID}, fields))
            d = cal.date_of(ts, self.zone)
            idx = data.station_days.get(station, {}).get(d) if data else None
            if idx is not None and idx.result.aqi is not None:
                out.append((ts, base | {REVIEW_TAG: RECOMPUTED}, _aqi_fields(idx.result, fields)))
                s.daily_recomputed += 1
        pts.delete(where)
        self.db.write(pts.lines(out))

    def _any_invalid(self, station: str, d: date) -> bool:
        a = cal.day_start(d, self.zone)
        return bool(review.search(self.store, station=station, active=True, since=a, until=a + DAY))

    def _bulletins(self, days: Sequence[date], s: Summary) -> None:
        m = self.settings.reports.bulletin_measurement
        for d in days:
            t = cal.day_start(d, self.zone)
            published = self.db.series(f'SELECT count("valid") FROM "{m}" WHERE time = {t}s')
            if not published:
                continue
            lines = self.reports.bulletin_lines(self.reports.daily(d))
            self.db.series(f'DELETE FROM "{m}" WHERE time = {t}s')
            self.db.write(lines)
            s.bulletins.append(d.isoformat())


def _aqi_fields(result: hj633.AqiResult, original: dict[str, Any]) -> dict[str, Any]:
    """The evaluator's daily AQI fields (envnet/domain/alerts/engine.py _record_aqi) for a
    recomputed result; lat/lon kept from the original."""
    fields: dict[str, Any] = dict(aqi_point_fields(result))
    fields |= {k: original[k] for k in ("lat", "lon") if k in original}
    return fields

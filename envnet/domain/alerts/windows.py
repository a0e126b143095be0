"""Per-station streaming windows: minute readings -> hourly, 8 h O3 and 24 h means.

Hours and days are China Standard Time (UTC+8) clock periods, as the national standards use
Beijing time (envnet/core/calendar.py). UTC+8 is a whole number of hours, so hour boundaries
are the UTC ones and only day boundaries shift (a CST day starts at 16:00 UTC).

Always CST, never the configurable `reports.timezone`: the GB 3095 hourly and daily periods
are Beijing time wherever the bureau is, and this state (persisted by the engine) is keyed by
UTC-aligned hours and 24-hour days, which only a whole-hour zone without DST keeps true. With
the default zone (Asia/Shanghai) reports and alerts count the same days.

Validity (GB 3095-2012 sec. 8): an hourly mean needs >= 45 minutes of data, an 8 h mean >= 6
valid hourly means, a 24 h mean >= 20. Too little data gives no mean, never a partial one.
Each valid reading stands for one publish interval of data (60 s air, 300 s water).

Readings flagged warmup, fault or range are left out and counted; maint and cal readings are
stored by the gateway but never evaluated here (counted too). A reading for an hour already
closed is "late" and one stamped more than FUTURE_TOLERANCE_S after its receipt is "future";
both are counted and left out.

An hour closes when a reading arrives at least `close_grace_s` after its end (so a little
reordering around the boundary is absorbed), or through close_idle() when the station has
been silent. Readings arrive in order per station, including offline replays, so data time
drives the windows and compressed replays of past days evaluate exactly like live data.

The whole state is a JSON-native dict (string keys), saved and loaded by the engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from envnet.core.calendar import DAY, HOUR, day_label, day_start_at, hour_label, hour_start
from envnet.core.standards.gb3095 import Validity
from envnet.core.standards.hj633 import POLLUTANTS

EXCLUDED_FLAGS = ("warmup", "fault", "range")  # left out of means, counted
NOT_EVALUATED_FLAGS = ("maint", "cal")  # stored, never evaluated, counted
FUTURE_TOLERANCE_S = 300.0
HISTORY_S = 48 * HOUR  # hourly means kept: enough for yesterday's day summary
MEAN_DECIMALS = 3  # removes float summation noise (75.00000000000001), not a 修约 rule
O3_8H_DAY_FIRST = 7  # the day's 8 h means end at 08:00..24:00 CST: buckets 07..23
STATE_VERSION = 1


def utc_iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


@dataclass(frozen=True, slots=True)
class HourMeans:
    """One closed clock hour. `means` holds only valid hourly means."""

    start: int
    means: dict[str, float]
    minutes: dict[str, float]  # data minutes per parameter, valid or not
    excluded: dict[str, int]  # flag -> readings left out of this hour
    o3_8h: float | None  # 8 h moving mean ending with this hour, if valid
    means_24h: dict[str, float]  # 24 h moving means ending with this hour, if valid

    @property
    def end(self) -> int:
        return self.start + HOUR

    @property
    def label(self) -> str:
        return hour_label(self.start)


@dataclass(frozen=True, slots=True)
class DayMeans:
    """One CST calendar day, for the daily AQI."""

    start: int
    means_24h: dict[str, float]  # valid 24 h means (not O3)
    hours: dict[str, int]  # valid hourly means per pollutant
    o3_8h_max: float | None  # daily max 8 h mean, if enough valid 8 h means
    o3_8h_count: int
    o3_1h_max: float | None

    @property
    def label(self) -> str:
        return day_label(self.start)


@dataclass(slots=True)
class Closed:
    hours: list[HourMeans] = field(default_factory=list)
    days: list[DayMeans] = field(default_factory=list)

    def extend(self, other: Closed) -> None:
        self.hours.extend(other.hours)
        self.days.extend(other.days)


def _new_state() -> dict[str, Any]:
    return {
        "v": STATE_VERSION,
        "open": {},  # str(hour) -> {"p": {param: {str(ts): value}}, "x": {flag: n}, "rx": t}
        "closed_through": None,  # start of the latest closed hour
        "hourly": {},  # pollutant -> {str(hour): valid mean}
        "days_done": None,  # start of the latest summarised day
        "counts": {},  # flag / late / future -> readings left out, since the first reading
    }


class StationWindows:
    def __init__(
        self,
        interval_s: float,
        validity: Validity,
        o3_daily_min_8h: int = 14,
        close_grace_s: float | None = None,
        state: dict[str, Any] | None = None,
    ) -> None:
        self.interval_s = float(interval_s)
        self.validity = validity
        self.o3_daily_min_8h = o3_daily_min_8h
        self.close_grace_s = 2 * self.interval_s if close_grace_s is None else close_grace_s
        self.s = state if state and state.get("v") == STATE_VERSION else _new_state()

    @property
    def counts(self) -> dict[str, int]:
        return self.s["counts"]

    def state(self) -> dict[str, Any]:
        return self.s

    def _count(self, what: str, bucket: dict | None = None) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1
        if bucket is not None:
            bucket["x"][what] = bucket["x"].get(what, 0) + 1

    def add(
        self, values: Mapping[str, float], flags: Mapping[str, str], ts: float, received_at: float
    ) -> Closed:
        """Add one reading; return the hours (and days) this reading closed."""
        if ts > received_at + FUTURE_TOLERANCE_S:
            self._count("future")
            return Closed()
        h = hour_start(ts)
        ct = self.s["closed_through"]
        if ct is not None and h <= ct:
            self._count("late")
            return Closed()
        bucket = self.s["open"].setdefault(str(h), {"p": {}, "x": {}, "rx": received_at})
        bucket["rx"] = max(bucket["rx"], received_at)
        whole = flags.get("*")
        for name, value in values.items():
            flag = whole if whole in NOT_EVALUATED_FLAGS else flags.get(name)
            if flag in EXCLUDED_FLAGS or flag in NOT_EVALUATED_FLAGS:
                self._count(flag, bucket)
                continue
            bucket["p"].setdefault(name, {})[repr(float(ts))] = float(value)
        return self._close_before(hour_start(ts - self.close_grace_s - HOUR) + HOUR)

    def close_idle(self, now: float, idle_s: float) -> Closed:
        """Close hours that have ended and received nothing for idle_s (a silent station)."""
        last = None
        for key, bucket in self.s["open"].items():
            h = int(key)
            if h + HOUR <= now and now - bucket["rx"] >= idle_s:
                last = h if last is None else max(last, h)
        return Closed() if last is None else self._close_before(last + HOUR)

    def _close_before(self, limit: int) -> Closed:
        """Close every open hour starting before `limit`, oldest first."""
        out = Closed()
        for h in sorted(int(k) for k in self.s["open"]):
            if h >= limit:
                break
            out.hours.append(self._close_hour(h))
            out.days.extend(self._complete_days(h))
        return out

    def _close_hour(self, h: int) -> HourMeans:
        bucket = self.s["open"].pop(str(h))
        means: dict[str, float] = {}
        minutes: dict[str, float] = {}
        for name, by_ts in bucket["p"].items():
            minutes[name] = min(60.0, len(by_ts) * self.interval_s / 60.0)
            if minutes[name] >= self.validity.min_minutes_1h:
                means[name] = round(sum(by_ts.values()) / len(by_ts), MEAN_DECIMALS)
        for p in POLLUTANTS:
            if p in means:
                self.s["hourly"].setdefault(p, {})[str(h)] = means[p]
        ct = self.s["closed_through"]
        self.s["closed_through"] = h if ct is None else max(ct, h)
        self._prune(h)
        means_24h = {}
        for p in POLLUTANTS:
            m = self._moving(p, h, 24, self.validity.min_hours_24h)
            if m is not None:
                means_24h[p] = m
        o3_8h = self._moving("o3", h, 8, self.validity.min_hours_8h)
        return HourMeans(h, means, minutes, dict(bucket["x"]), o3_8h, means_24h)

    def _prune(self, h: int) -> None:
        oldest = h - HISTORY_S
        for series in self.s["hourly"].values():
            for key in [k for k in series if int(k) <= oldest]:
                del series[key]

    def _hourly_between(self, p: str, first: int, last: int) -> list[float]:
        series = self.s["hourly"].get(p, {})
        return [series[str(b)] for b in range(first, last + 1, HOUR) if str(b) in series]

    def _moving(self, p: str, last: int, hours: int, min_hours: int) -> float | None:
        vals = self._hourly_between(p, last - (hours - 1) * HOUR, last)
        if len(vals) < min_hours:
            return None
        return round(sum(vals) / len(vals), MEAN_DECIMALS)

    def _complete_days(self, h: int) -> list[DayMeans]:
        """Summaries of the CST days that closing hour h completed."""
        d = day_start_at(h)
        through = d if h + HOUR == d + DAY else d - DAY
        done = self.s["days_done"]
        if done is not None and done >= through:
            return []
        first = through if done is None else max(done + DAY, through - DAY)
        self.s["days_done"] = through
        days = [self._day(start) for start in range(first, through + 1, DAY)]
        return [day for day in days if day.hours]

    def _day(self, start: int) -> DayMeans:
        last = start + DAY - HOUR
        means, hours = {}, {}
        for p in POLLUTANTS:
            vals = self._hourly_between(p, start, last)
            if vals:
                hours[p] = len(vals)
            if p != "o3" and len(vals) >= self.validity.min_hours_24h:
                means[p] = round(sum(vals) / len(vals), MEAN_DECIMALS)
        eights = [
            m
            for b in range(start + O3_8H_DAY_FIRST * HOUR, last + 1, HOUR)
            if (m := self._moving("o3", b, 8, self.validity.min_hours_8h)) is not None
        ]
        o3_8h_max = max(eights) if len(eights) >= self.o3_daily_min_8h else None
        o3_hours = self._hourly_between("o3", start, last)
        return DayMeans(
            start, means, hours, o3_8h_max, len(eights), max(o3_hours) if o3_hours else None
        )

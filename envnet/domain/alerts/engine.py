"""The alert evaluator: readings, health and status in; alert lifecycle events out.

    ev = Evaluator(settings, store)
    events = ev.on_reading(station_meta, reading, received_at)   # also on_health, on_status
    events += ev.tick(now)                                       # every few seconds
    points = ev.drain_results()                                  # AQI / water class records

What each observation does to the alerts is lifecycle.py's (one open alert per station, rule
and parameter; open, escalate, acknowledge, resolve after a hold); what the evaluator hands
out (events, index records, summaries) is model.py's. This module decides what is observed.

Clocks: window rules observe at data time (the end of the window), so offline replays and
compressed demos evaluate like live data; fault rules observe at receive time, and tick()
resolves them once their hold has passed while the station is alive. A window without enough
valid data yields no observation at all: no alert, and no resolution either.

Single-threaded: the gateway calls it from one thread. Several gateways must partition the
stream by station (docs/design.md); the network-wide episode then runs in one of them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from typing import Any

from envnet.core import contract
from envnet.core.calendar import DAY, HOUR, day_label, day_start_at, hour_start
from envnet.core.standards import gb3095, gb3838, hj633
from envnet.core.standards.episodes import assess
from envnet.domain.alerts import corrected, rules
from envnet.domain.alerts.lifecycle import Lifecycle, acknowledge
from envnet.domain.alerts.model import (
    NETWORK,
    AlertEvent,
    IndexRecord,
    StationInfo,
    aqi_point_fields,
    index_summary,
    is_finite_number,
    latest_indices,
    state_key,
    summary_key,
    water_point,
)
from envnet.domain.alerts.repository import AlertStore, InMemoryAlertStore
from envnet.domain.alerts.rules import RULES, AlertSettings, Observation
from envnet.domain.alerts.windows import (
    EXCLUDED_FLAGS,
    NOT_EVALUATED_FLAGS,
    Closed,
    DayMeans,
    HourMeans,
    StationWindows,
)

EPISODE_KEY = "episode"
EPISODE_LOOKBACK_DAYS = 7  # red needs 4 days; a week of context is plenty
_WINDOW_HOURS = {"1h": 1, "8h": 8, "24h": 24}


@dataclass
class _Station:
    info: StationInfo
    windows: StationWindows
    rules: dict[str, Any]  # last_seen, flat-line and jump trackers, last dropped count
    latest: dict[str, Any]  # latest indices, for the server
    open_keys: set[tuple[str, str]] = field(default_factory=set)
    dirty: bool = False
    latest_dirty: bool = False  # `latest` changed since its summary was saved
    meta: Mapping[str, Any] | None = None  # the registry dict `info` was built from

    def state(self) -> dict[str, Any]:
        return {"windows": self.windows.state(), "rules": self.rules, "latest": self.latest}


def _settings(settings: Any) -> tuple[AlertSettings, str, hj633.RealtimePm]:
    """AlertSettings alone, or envnet's Settings (its `alerts` section, standards.edition and
    standards.realtime_pm)."""
    if settings is None:
        return AlertSettings(), AlertSettings().edition, hj633.DEFAULT_REALTIME_PM
    if isinstance(settings, AlertSettings):
        return settings, settings.edition, hj633.DEFAULT_REALTIME_PM
    alerts = getattr(settings, "alerts", None) or AlertSettings()
    standards = getattr(settings, "standards", None)
    edition = getattr(standards, "edition", None) or alerts.edition
    return alerts, edition, getattr(standards, "realtime_pm", hj633.DEFAULT_REALTIME_PM)


class Evaluator:
    def __init__(
        self,
        settings: Any = None,
        store: AlertStore | None = None,
        corrections: corrected.Corrections | None = None,
    ) -> None:
        self.settings, self.edition, self.realtime_pm = _settings(settings)
        # review.use_corrected: each air station's applied calibrations (envnet/domain/alerts/
        # corrected.py); None evaluates raw values and says nothing about them.
        self.corrections = corrections
        review = getattr(settings, "review", None)
        self.calibrated: tuple[str, ...] = tuple(
            getattr(review, "calibration_parameters", None) or ("pm25", "pm10")
        )
        gb3095.validity(self.edition)  # an unknown edition fails here, at start-up
        self.store: AlertStore = store if store is not None else InMemoryAlertStore()
        self.lifecycle = Lifecycle(self.store, self.settings, self.edition)
        self._stations: dict[str, _Station] = {}
        self._results: list[IndexRecord] = []
        self.data_now: float | None = None  # latest window end seen, drives the episode
        self._episode_state: dict[str, Any] | None = None

    # --- inputs ----------------------------------------------------------------------

    def add_station(self, station_meta: Mapping[str, Any], now: float) -> None:
        """Register a provisioned station so that tick() reports it offline even if it never
        speaks after a restart; its silence is counted from `now` if nothing was seen."""
        st = self._station(station_meta, {}, None)
        st.rules.setdefault("last_seen", now)

    def on_reading(
        self,
        station_meta: Mapping[str, Any] | None,
        reading: Mapping[str, Any],
        received_at: float,
        station: str | None = None,
    ) -> list[AlertEvent]:
        """One reading: the contract dict, or the gateway's row (which has `station`).

        The station id is `station`, else station_meta["id"], else reading["station"]."""
        st = self._station(station_meta, reading, station)
        events = self._seen(st, received_at)
        flags: Mapping[str, str] = reading.get("flags") or {}
        values = {
            k: float(v) for k, v in (reading.get("values") or {}).items() if is_finite_number(v)
        }
        unsynced = flags.get("*") == "clock"
        # A clock-flagged ts is only the station's estimate: use our receive time, as stored.
        ts = received_at if unsynced else float(reading["ts"])
        events += self._check(
            st,
            "clock_unsynced",
            "ts",
            unsynced,
            received_at,
            lambda: rules.clock(unsynced, received_at),
        )
        maint_all = flags.get("*") in NOT_EVALUATED_FLAGS
        for param, value in values.items():
            flag = flags.get(param)
            if maint_all or flag in NOT_EVALUATED_FLAGS:
                continue  # maintenance / calibration: stored, never evaluated
            fault = flag == "fault"
            events += self._check(
                st,
                "sensor_fault",
                param,
                fault,
                received_at,
                partial(rules.sensor_fault, param, fault, received_at),
            )
            if flag not in EXCLUDED_FLAGS:
                events += self._quality(st, param, value, ts, received_at)
        window_values = values
        if self.corrections is not None and st.info.kind == "air":
            window_values = self._corrected(st, values, flags, ts)
        closed = st.windows.add(window_values, flags, ts, received_at)
        events += self._on_closed(st, closed, received_at)
        st.dirty = True
        return events

    def _corrected(
        self, st: _Station, values: dict[str, float], flags: Mapping[str, str], ts: float
    ) -> dict[str, float]:
        """The reading's values with PM corrected by the station's applied calibrations; which
        values each parameter used is recorded for its hour (alerts name them)."""
        assert self.corrections is not None
        out, used = corrected.correct_reading(
            values, flags, self.corrections(st.info.id), self.calibrated
        )
        h = hour_start(ts)
        through = st.windows.state().get("closed_through")
        if used and (through is None or h > through):  # a late reading counts nowhere
            corrected.record(st.rules, h, used)
        return out

    def on_health(
        self,
        station_meta: Mapping[str, Any] | None,
        health: Mapping[str, Any],
        received_at: float,
        station: str | None = None,
    ) -> list[AlertEvent]:
        st = self._station(station_meta, health, station)
        events = self._seen(st, received_at)
        volts = health.get("battery_v")
        if isinstance(volts, int | float) and is_finite_number(volts):
            events += self._apply(
                st.info.id, rules.battery(float(volts), received_at, self.settings), received_at, st
            )
        dropped = health.get("dropped")
        if isinstance(dropped, int) and not isinstance(dropped, bool):
            prev = st.rules.get("dropped")
            # A lower count means the station rebooted and restarted counting: no rise.
            delta = dropped - prev if prev is not None and dropped > prev else 0
            st.rules["dropped"] = dropped
            events += self._apply(
                st.info.id, rules.buffer_overflow(delta, received_at), received_at, st
            )
        st.dirty = True
        return events

    def on_status(
        self,
        station_meta: Mapping[str, Any] | None,
        status: Mapping[str, Any],
        received_at: float,
        station: str | None = None,
    ) -> list[AlertEvent]:
        """Birth ("online") counts as a sign of life; the last will ("offline") is recorded
        only: offline is decided by silence, so a quick reboot does not page anyone."""
        st = self._station(station_meta, status, station)
        st.rules["status"] = status.get("state")
        st.dirty = True
        return self._seen(st, received_at) if status.get("state") == "online" else []

    def tick(self, now: float) -> list[AlertEvent]:
        """Time-based rules: offline, hold times of fault alerts, idle hours, the episode.
        Also saves changed station state, so a restart loses at most one tick of data."""
        events: list[AlertEvent] = []
        for st in self._stations.values():
            events += self._tick_station(st, now)
        events += self._episode(now)
        self.flush()
        return events

    def acknowledge(
        self, alert_id: str, by: str, at: float, note: str | None = None
    ) -> AlertEvent | None:
        return acknowledge(self.store, alert_id, by, at, note)

    def drain_results(self) -> list[IndexRecord]:
        """AQI and water-class records computed since the last call (for InfluxDB)."""
        out, self._results = self._results, []
        return out

    def flush(self) -> None:
        """Save every changed station's window and rule state."""
        for st in self._stations.values():
            if st.dirty:
                self.store.save_state(state_key(st.info.id), st.state())
                st.dirty = False
            if st.latest_dirty:
                self.store.save_state(summary_key(st.info.id), index_summary(st.latest))
                st.latest_dirty = False

    def latest(self, station: str) -> dict[str, Any]:
        st = self._stations.get(station)
        return dict(st.latest) if st else latest_indices(self.store, station)

    # --- stations --------------------------------------------------------------------

    def _station(
        self, meta: Mapping[str, Any] | None, msg: Mapping[str, Any], station: str | None
    ) -> _Station:
        sid = station or (meta or {}).get("id") or (meta or {}).get("station") or msg.get("station")
        st = self._stations.get(str(sid)) if sid else None
        if st is not None and st.meta is meta and msg.get("kind") in (None, st.info.kind):
            # Nothing changed: the gateway hands us the same registry dict (or None for an
            # unregistered station) until it re-reads the registry.
            return st
        info = StationInfo.from_meta(meta, msg, station, st.info.kind if st else None)
        if st is not None:
            st.meta = meta
            # Registry changes (target class, interval) apply from the next message.
            st.info = info
            st.windows.interval_s = info.interval_s
            return st
        saved = self.store.load_state(state_key(info.id)) or {}
        validity = gb3095.validity(self.edition)
        windows = StationWindows(
            info.interval_s, validity, self.settings.o3_daily_min_8h, state=saved.get("windows")
        )
        st = _Station(info, windows, saved.get("rules", {}), saved.get("latest", {}), meta=meta)
        st.open_keys = {(a.rule, a.parameter) for a in self.store.list_open_alerts(info.id)}
        self._stations[info.id] = st
        return st

    def _offline_after(self, st: _Station) -> float:
        return self.settings.offline_intervals * st.info.interval_s

    def _seen(self, st: _Station, received_at: float) -> list[AlertEvent]:
        st.rules["last_seen"] = max(st.rules.get("last_seen") or 0.0, received_at)
        return self._check(
            st,
            "offline",
            "status",
            False,
            received_at,
            lambda: rules.offline(0.0, self._offline_after(st), received_at),
        )

    def _tick_station(self, st: _Station, now: float) -> list[AlertEvent]:
        events: list[AlertEvent] = []
        last_seen = st.rules.get("last_seen")
        if last_seen is not None:
            obs = rules.offline(max(0.0, now - last_seen), self._offline_after(st), now)
            events += self._apply(st.info.id, obs, now, st)
        closed = st.windows.close_idle(now, self.settings.idle_close_s)
        if closed.hours or closed.days:
            st.dirty = True
            events += self._on_closed(st, closed, now)
        if ("offline", "status") not in st.open_keys:
            events += self._resolve_held(st, now)
        return events

    def _resolve_held(self, st: _Station, now: float) -> list[AlertEvent]:
        """Fault alerts whose values have been fine for their hold time, station alive."""
        events: list[AlertEvent] = []
        for rule, param in sorted(st.open_keys):
            if RULES[rule].clock != "wall" or rule == "offline":
                continue
            alert = self.store.get_open_alert(st.info.id, rule, param)
            if alert is None:
                st.open_keys.discard((rule, param))
            elif alert.ok_since is not None and now - alert.ok_since >= self.settings.hold(rule):
                last = (alert.last_value, alert.last_at)
                events.append(self.lifecycle.resolve(alert, *last, now, st.open_keys))
        return events

    # --- data quality ----------------------------------------------------------------

    def _quality(
        self, st: _Station, param: str, value: float, ts: float, wall: float
    ) -> list[AlertEvent]:
        events: list[AlertEvent] = []
        flat = st.rules.setdefault("flat", {})
        after = self.settings.flatline_after(st.info.kind, param)
        spec = contract.param_spec(st.info.kind, param)
        bounds = (spec["min"], spec["max"]) if spec else ()
        prev = flat.get(param)
        if prev is None or prev["v"] != value or ts < prev["last"]:
            flat[param] = {"v": value, "since": ts, "last": ts}
        else:
            prev["last"] = ts
        if after is not None:
            # A sensor resting at its floor (0 in clean air) or ceiling (RH 100 % in fog) is
            # plausible, not flat-lined.
            run = 0.0 if value in bounds else flat[param]["last"] - flat[param]["since"]
            events += self._check(
                st,
                "flatline",
                param,
                run >= after,
                wall,
                lambda: rules.flatline(param, run, after, wall),
            )
        limit = self.settings.jump_limit(param)
        last = st.rules.setdefault("last", {})
        before = last.get(param)
        last[param] = [ts, value]
        if limit is not None and before is not None:
            gap = ts - before[0]
            if 0 < gap <= 2.5 * st.info.interval_s:  # consecutive readings only
                delta = abs(value - before[1])
                events += self._check(
                    st,
                    "jump",
                    param,
                    delta > limit,
                    wall,
                    lambda: rules.jump(param, delta, limit, wall),
                )
        return events

    # --- windows -> indices and exceedances ------------------------------------------

    def _on_closed(self, st: _Station, closed: Closed, wall: float) -> list[AlertEvent]:
        events: list[AlertEvent] = []
        for hour in closed.hours:
            if self.corrections is not None:
                corrected.prune(st.rules, hour.start)
            self.data_now = max(self.data_now or 0.0, float(hour.end))
            if st.info.kind == "air":
                events += self._air_hour(st, hour, wall)
            elif st.info.kind == "water":
                events += self._water_hour(st, hour, wall)
        for day in closed.days:
            if st.info.kind == "air":
                events += self._air_day(st, day, wall)
        if closed.hours:
            events += self._episode(wall)
        return events

    def _air_checks(
        self,
        st: _Station,
        means: Mapping[str, float],
        window: str,
        at: float,
        span_s: float,
        wall: float,
    ) -> list[AlertEvent]:
        grade = st.info.air_grade or self.settings.air_grade
        events: list[AlertEvent] = []
        for p, value in means.items():
            obs = rules.air_limit(p, window, value, at, grade, self.edition)
            if obs is not None:
                obs = replace(obs, span_s=span_s)
                if self.corrections is not None:
                    hours = _WINDOW_HOURS.get(window, 1)
                    obs = self._with_values(st, obs, (p,), at, hours)
                events += self._apply(st.info.id, obs, wall, st)
        return events

    def _with_values(
        self, st: _Station, obs: Observation, params: tuple[str, ...], at: float, hours: int
    ) -> Observation:
        """The observation's clause saying which values (raw or corrected, by which
        calibration) its window of `hours` ending at `at` used."""
        said = corrected.note(st.rules, params, int(at) - HOUR, hours)
        return replace(obs, clause=f"{obs.clause}; {said}" if obs.clause else said)

    def _air_hour(self, st: _Station, hour: HourMeans, wall: float) -> list[AlertEvent]:
        at = float(hour.end)
        pollutants = {p: v for p, v in hour.means.items() if p in hj633.POLLUTANTS}
        events = self._air_checks(st, pollutants, "1h", at, 3600, wall)
        if hour.o3_8h is not None:
            events += self._air_checks(st, {"o3": hour.o3_8h}, "8h", at, 3600, wall)
        if self.settings.air_24h == "moving":
            events += self._air_checks(st, hour.means_24h, "24h", at, 3600, wall)
        # The real-time report (HJ 633-2012 sec. 5): six 1-hour means, the O3 8-hour and the PM
        # 24-hour moving means; the AQI includes the O3 8-hour IAQI.
        result = hj633.hourly_aqi(
            pollutants,
            None,
            self.edition,
            o3_8h=hour.o3_8h,
            means_24h=hour.means_24h,
            pm_basis=self.realtime_pm,
        )
        if result.aqi is not None:
            self._record_aqi(st, result, at)
            obs = rules.aqi_category(result, at, self.settings.aqi_min_level)
            if obs is not None:
                if self.corrections is not None:
                    hours = 1 if result.pm_basis == "1h" else 24
                    obs = self._with_values(st, obs, ("pm25", "pm10"), at, hours)
                events += self._apply(st.info.id, obs, wall, st)
        return events

    def _air_day(self, st: _Station, day: DayMeans, wall: float) -> list[AlertEvent]:
        events: list[AlertEvent] = []
        if self.settings.air_24h == "calendar":
            events += self._air_checks(st, day.means_24h, "24h", day.start + DAY, DAY, wall)
        result = hj633.daily_aqi(day.means_24h, day.o3_8h_max, day.o3_1h_max, self.edition)
        if result.aqi is not None:
            self._record_aqi(st, result, day.start, day.label)
            self.store.put_daily_aqi(day.label, st.info.id, st.info.station_class, result.aqi)
        return events

    def _water_hour(self, st: _Station, hour: HourMeans, wall: float) -> list[AlertEvent]:
        info = st.info
        assessment = gb3838.classify(hour.means, info.waterbody, self.edition, info.assessment)
        if assessment.overall is None:
            return []
        self._record_water(st, assessment, hour)
        if info.target_class is None:
            return []  # no target class in the registry: classes are reported, not alerted
        events: list[AlertEvent] = []
        for param in assessment.classes:
            obs = rules.water_class(
                param,
                hour.means[param],
                info.target_class,
                float(hour.end),
                info.waterbody,
                info.drinking_source,
                self.edition,
            )
            if obs is not None:
                events += self._apply(info.id, obs, wall, st)
        return events

    def _record_aqi(
        self, st: _Station, result: hj633.AqiResult, ts: float, day: str | None = None
    ) -> None:
        fields = aqi_point_fields(result)
        if st.info.lat is not None and st.info.lon is not None:
            fields |= {"lat": st.info.lat, "lon": st.info.lon}
        tags = {"station": st.info.id, "window": result.window, "edition": result.edition}
        tags |= dict(st.info.tags)
        self._results.append(IndexRecord("aqi", st.info.id, ts, tags, fields))
        snapshot = result.to_dict() | {"ts": ts}
        if day:
            snapshot["day"] = day
        st.latest[f"aqi_{result.window}"] = snapshot
        st.latest_dirty = True

    def _record_water(self, st: _Station, a: gb3838.WaterAssessment, hour: HourMeans) -> None:
        assert a.overall is not None
        zh, en = gb3838.class_label(a.overall)
        target = st.info.target_class
        point_tags, fields = water_point(a, target)
        tags = {"station": st.info.id, "edition": a.edition} | dict(st.info.tags) | point_tags
        meets = gb3838.meets_target(a, target)
        self._results.append(IndexRecord("water_class", st.info.id, float(hour.end), tags, fields))
        st.latest["water"] = asdict(a) | {
            "ts": hour.end,
            "class_zh": zh,
            "class_en": en,
            "provisional": a.provisional,
            "target_class": target,
            "meets_target": meets,
        }
        st.latest_dirty = True

    # --- episode ---------------------------------------------------------------------

    def _city_aqi(self, day: str) -> float | None:
        rows = self.store.daily_aqis(day)
        chosen = [r for r in rows if r.station_class in self.settings.episode_station_classes]
        chosen = chosen or rows  # no national/city station reported: use every station
        if not chosen:
            return None
        return math.ceil(sum(r.aqi for r in chosen) / len(chosen))

    def _episode(self, wall: float) -> list[AlertEvent]:
        """Assess the latest complete CST day once data time is episode_delay_s past it.

        CST (Beijing time), not reports.timezone, like the windows whose daily AQIs it reads
        (see envnet/domain/alerts/windows.py for why)."""
        if not self.settings.episode_enabled or self.data_now is None:
            return []
        day = day_start_at(self.data_now - self.settings.episode_delay_s) - DAY
        if self._episode_state is None:
            self._episode_state = self.store.load_state(EPISODE_KEY) or {
                "last_day": None,
                "level": None,
            }
        state = self._episode_state
        if state["last_day"] is not None and day <= state["last_day"]:
            return []
        days = [day - i * DAY for i in range(EPISODE_LOOKBACK_DAYS - 1, -1, -1)]
        series = [self._city_aqi(day_label(d)) for d in days]
        assessment = assess(series, self.edition)
        events: list[AlertEvent] = []
        if series[-1] is not None:
            obs = rules.episode(assessment, series[-1], float(day + DAY))
            events += self._apply(NETWORK, obs, wall, None)
        level = assessment.level.name if assessment.level else None
        if level != state["level"]:
            events.append(
                AlertEvent(
                    "episode.changed",
                    wall,
                    episode={
                        "level": level,
                        "previous": state["level"],
                        "level_zh": assessment.level.name_zh if assessment.level else None,
                        "level_en": assessment.level.name_en if assessment.level else None,
                        "day": day_label(day),
                        "city_aqi": series[-1],
                        "run_days": assessment.run_days,
                        "observed": True,
                        "standard": assessment.standard,
                        "clause": assessment.clause,
                        "edition": assessment.edition,
                    },
                )
            )
        self._episode_state = {"last_day": day, "level": level}
        self.store.save_state(EPISODE_KEY, self._episode_state)
        return events

    # --- lifecycle -------------------------------------------------------------------

    def _check(
        self,
        st: _Station,
        rule: str,
        param: str,
        bad: bool,
        wall: float,
        make: Callable[[], Observation],
    ) -> list[AlertEvent]:
        """_apply for the per-message hot path: build the Observation only when it matters."""
        if not bad and (rule, param) not in st.open_keys:
            return []
        return self.lifecycle.apply(st.info.id, make(), wall, st.open_keys)

    def _apply(
        self, station: str, obs: Observation, wall: float, st: _Station | None
    ) -> list[AlertEvent]:
        return self.lifecycle.apply(station, obs, wall, st.open_keys if st is not None else None)

"""Streaming windows: validity of hourly, 8 h and 24 h means, flags, late data, CST days,
and state that survives a JSON round trip."""

from __future__ import annotations

import json
from zoneinfo import ZoneInfo

from alerts_helpers import HOUR, T0

from envnet.core.calendar import (
    DEFAULT_TIMEZONE,
    date_of,
    day_label,
    day_start,
    day_start_at,
    hour_label,
)
from envnet.core.standards.gb3095 import validity
from envnet.domain.alerts.windows import Closed, StationWindows

V = validity()


def _w(interval_s: float = 60, **kw) -> StationWindows:
    return StationWindows(interval_s, V, **kw)


def _hour(
    w: StationWindows,
    start: float,
    n: int,
    values: dict,
    flags: dict | None = None,
    interval: float = 60,
) -> Closed:
    out = Closed()
    for i in range(n):
        ts = start + i * interval
        out.extend(w.add(values, flags or {}, ts, ts + 1))
    return out


def _close(w: StationWindows, after: float) -> Closed:
    """A reading well past `after` closes every hour before it."""
    return w.add({}, {}, after + 600, after + 601)


def test_cst_days_and_hours():
    assert day_label(day_start_at(T0)) == "2026-01-01"
    assert day_start_at(T0 - 1) == T0 - 86400  # 15:59:59 UTC is still the previous CST day
    assert day_start_at(T0 + 86399) == T0
    assert hour_label(T0 + 14 * HOUR) == "2026-01-01 14:00+08:00"


def test_cst_is_the_default_bureau_zone_for_every_day_the_stream_sees():
    """The windows' fixed UTC+8 and the reports' Asia/Shanghai count the same days."""
    zone = ZoneInfo(DEFAULT_TIMEZONE)
    for ts in range(T0 - 400 * 86400, T0 + 400 * 86400, 7 * HOUR + 13):
        assert day_start_at(ts) == day_start_at(ts, zone) == day_start(date_of(ts, zone), zone)
        assert day_label(ts) == day_label(ts, zone)
    kolkata = ZoneInfo("Asia/Kolkata")  # a half-hour zone: local midnight is 18:30 UTC
    assert day_start_at(T0, kolkata) % 86400 == 18 * HOUR + 1800
    assert hour_label(T0, kolkata) == "2025-12-31 21:30+05:30"  # CST midnight is 16:00 UTC


def test_45_minutes_make_a_valid_hour_44_do_not():
    w = _w()
    closed = _hour(w, T0, 45, {"pm25": 80.0})
    closed.extend(_hour(w, T0 + HOUR, 44, {"pm25": 80.0}))
    closed.extend(_close(w, T0 + 2 * HOUR))
    first, second = closed.hours
    assert first.means == {"pm25": 80.0} and first.minutes == {"pm25": 45.0}
    assert second.means == {} and second.minutes == {"pm25": 44.0}


def test_water_readings_stand_for_five_minutes():
    w = _w(300)
    closed = _hour(w, T0, 9, {"nh3n": 1.0}, interval=300)  # 9 x 5 min = 45 min
    closed.extend(_hour(w, T0 + HOUR, 8, {"nh3n": 1.0}, interval=300))  # 40 min
    closed.extend(_close(w, T0 + 2 * HOUR))
    first, second = closed.hours
    assert "nh3n" in first.means and "nh3n" not in second.means


def test_flagged_readings_are_excluded_and_counted():
    w = _w()
    _hour(w, T0, 40, {"pm25": 50.0})
    _hour(w, T0 + 2400, 10, {"pm25": 900.0}, {"pm25": "warmup"})
    _hour(w, T0 + 3000, 3, {"pm25": 900.0}, {"pm25": "fault"})
    _hour(w, T0 + 3180, 2, {"pm25": 900.0}, {"pm25": "range"})
    _hour(w, T0 + 3300, 4, {"pm25": 900.0}, {"pm25": "maint"})
    (hour,) = _close(w, T0 + HOUR).hours
    # 40 valid minutes: no hourly mean at all, rather than a mean of the wrong data
    assert hour.means == {} and hour.minutes == {"pm25": 40.0}
    assert hour.excluded == {"warmup": 10, "fault": 3, "range": 2, "maint": 4}
    assert w.counts == {"warmup": 10, "fault": 3, "range": 2, "maint": 4}


def test_flagged_readings_do_not_bias_a_valid_mean():
    w = _w()
    _hour(w, T0, 50, {"pm25": 50.0, "pm10": 70.0})
    w.add({"pm25": 999.0, "pm10": 70.0}, {"pm25": "cal"}, T0 + 3500, T0 + 3501)
    (hour,) = _close(w, T0 + HOUR).hours
    assert hour.means == {"pm25": 50.0, "pm10": 70.0}
    assert w.counts == {"cal": 1}


def test_whole_reading_maint_is_not_evaluated():
    w = _w()
    _hour(w, T0, 60, {"pm25": 500.0}, {"*": "maint"})
    (hour,) = _close(w, T0 + HOUR).hours
    assert hour.means == {} and w.counts == {"maint": 60}


def test_duplicate_readings_count_once():
    w = _w()
    for _ in range(3):
        _hour(w, T0, 30, {"pm25": 10.0})  # a replay of the same 30 minutes
    (hour,) = _close(w, T0 + HOUR).hours
    assert hour.minutes == {"pm25": 30.0} and hour.means == {}


def test_hour_closes_after_grace_and_late_readings_are_counted():
    w = _w()  # grace: 2 intervals = 120 s
    _hour(w, T0, 60, {"pm25": 10.0})
    assert w.add({"pm25": 10.0}, {}, T0 + HOUR + 60, T0 + HOUR + 61).hours == []
    # a reading of the closing hour that arrives a little out of order still counts
    assert w.add({"pm25": 10.0}, {}, T0 + 3599.5, T0 + HOUR + 62).hours == []
    closed = w.add({"pm25": 10.0}, {}, T0 + HOUR + 120, T0 + HOUR + 121)
    assert [h.start for h in closed.hours] == [T0]
    w.add({"pm25": 10.0}, {}, T0 + 3599.9, T0 + HOUR + 130)
    assert w.counts == {"late": 1}


def test_future_readings_are_counted_and_ignored():
    w = _w()
    assert w.add({"pm25": 1.0}, {}, T0 + 86400, T0).hours == []
    assert w.counts == {"future": 1} and w.state()["open"] == {}


def _hours(w: StationWindows, first: int, count: int, values: dict) -> Closed:
    out = Closed()
    for h in range(first, first + count):
        out.extend(_hour(w, T0 + h * HOUR, 60, values))
    return out


def test_24h_mean_needs_20_hourly_values():
    w = _w()
    _hours(w, 0, 19, {"pm25": 100.0})
    last = _close(w, T0 + 19 * HOUR).hours[-1]
    assert last.means_24h == {}  # 19 valid hours: no 24 h mean
    w2 = _w()
    _hours(w2, 0, 19, {"pm25": 100.0})
    _hour(w2, T0 + 19 * HOUR, 60, {"pm25": 40.0})
    last = _close(w2, T0 + 20 * HOUR).hours[-1]
    # (19 * 100 + 40) / 20 = 97.0
    assert last.means_24h == {"pm25": 97.0}


def test_24h_window_moves_and_skips_missing_hours():
    w = _w()
    _hours(w, 0, 24, {"pm25": 10.0})
    _hours(w, 30, 2, {"pm25": 200.0})  # hours 24-29 missing
    closed = _close(w, T0 + 32 * HOUR)
    last = closed.hours[-1]
    # window of hours 8..31: 16 hours of 10 and 2 of 200 = 18 valid hours < 20: no mean
    assert last.start == T0 + 31 * HOUR and last.means_24h == {}


def test_o3_8h_mean_needs_6_hourly_values():
    w = _w()
    _hours(w, 0, 5, {"o3": 170.0})
    assert _close(w, T0 + 5 * HOUR).hours[-1].o3_8h is None
    _hour(w, T0 + 6 * HOUR, 60, {"o3": 100.0})  # hour 5 is missing; 6 valid of 7
    closed = _close(w, T0 + 7 * HOUR)
    # (5 * 170 + 100) / 6 = 158.333
    assert closed.hours[-1].o3_8h == 158.333


def test_day_summary_at_cst_midnight():
    w = _w()
    closed = _hours(w, 0, 24, {"pm25": 80.0, "o3": 120.0, "co": 1.0})
    closed.extend(_close(w, T0 + 24 * HOUR))
    (day,) = closed.days
    assert day.label == "2026-01-01" and day.start == T0
    assert day.means_24h == {"co": 1.0, "pm25": 80.0}  # O3 has no 24 h mean
    assert day.o3_8h_max == 120.0 and day.o3_8h_count == 17  # 8 h means ending 08:00-24:00
    assert day.o3_1h_max == 120.0


def test_day_o3_8h_max_needs_14_valid_8h_means():
    w = _w()
    # Hours 00-17 valid. 8 h means of buckets 07..17 have 8 valid hours (11 means), bucket
    # 18 has 7 and 19 has 6 (valid), bucket 20 only 5: 13 valid 8 h means < 14.
    closed = _hours(w, 0, 18, {"o3": 120.0})
    closed.extend(_close(w, T0 + 26 * HOUR))  # day 2 opens an hour ...
    closed.extend(_close(w, T0 + 28 * HOUR))  # ... whose closing completes day 1
    (day,) = closed.days
    assert day.o3_8h_count == 13 and day.o3_8h_max is None and day.means_24h == {}


def test_day_is_summarised_even_without_its_last_hour():
    w = _w()
    closed = _hours(w, 0, 23, {"pm25": 50.0})  # no data 23:00-24:00
    closed.extend(_hours(w, 25, 1, {"pm25": 50.0}))
    closed.extend(_close(w, T0 + 26 * HOUR))
    assert [d.label for d in closed.days] == ["2026-01-01"]
    assert closed.days[0].means_24h == {"pm25": 50.0}


def test_close_idle_closes_a_silent_station_hour():
    w = _w()
    _hour(w, T0, 50, {"pm25": 10.0})
    assert w.close_idle(T0 + 3000, 900).hours == []  # hour not over yet
    assert w.close_idle(T0 + HOUR + 10, 900).hours == []  # last reading 12 min ago: wait
    (hour,) = w.close_idle(T0 + HOUR + 1000, 900).hours
    assert hour.means == {"pm25": 10.0}


def test_state_round_trip_gives_the_same_means():
    a = _w()
    b = _w()
    _hours(a, 0, 21, {"pm25": 60.0})
    _hours(b, 0, 20, {"pm25": 60.0})
    _hour(b, T0 + 20 * HOUR, 30, {"pm25": 60.0})
    b = _w(state=json.loads(json.dumps(b.state())))  # a restart in the middle of an hour
    for i in range(30, 60):
        b.add({"pm25": 60.0}, {}, T0 + 20 * HOUR + i * 60, T0 + 20 * HOUR + i * 60 + 1)
    ha = _close(a, T0 + 21 * HOUR).hours[-1]
    hb = _close(b, T0 + 21 * HOUR).hours[-1]
    assert ha == hb and hb.means_24h == {"pm25": 60.0}

"""Station-fault rules: offline, low battery, buffer overflow, clock, flat-line, jump."""

from __future__ import annotations

from alerts_helpers import T0, air_feed, kinds, new_evaluator, wiggle

META = {"id": "sy-air-002", "kind": "air", "class": "micro", "interval_s": 60}


def _reading(ts: float, values: dict, flags: dict | None = None) -> dict:
    return {"v": 1, "seq": int(ts), "ts": ts, "kind": "air", "values": values, "flags": flags or {}}


def test_offline_after_three_intervals_and_back_after_hold():
    ev = new_evaluator()
    for i in range(10):
        ev.on_reading(META, _reading(T0 + 60 * i, {"pm25": 10.0 + i}), T0 + 60 * i)
    last = T0 + 540
    assert ev.tick(last + 180) == []  # exactly 3 intervals: not yet
    (opened,) = ev.tick(last + 181)
    assert opened.type == "alert.opened" and opened.alert.rule == "offline"
    assert (opened.alert.value, opened.alert.limit, opened.alert.severity) == (181, 180, "medium")
    assert ev.tick(last + 600) == []  # still offline: one alert, no repeats
    back = last + 900
    for t in range(back, back + 300, 60):
        assert ev.on_reading(META, _reading(t, {"pm25": 10.0}), t) == []
    assert ev.tick(back + 299) == []  # within the 300 s hold
    (resolved,) = ev.tick(back + 300)
    assert resolved.type == "alert.resolved" and resolved.alert.id == opened.alert.id


def test_registered_station_that_never_speaks_goes_offline():
    ev = new_evaluator()
    ev.add_station(META, now=T0)
    (opened,) = ev.tick(T0 + 181)
    assert opened.alert.station == "sy-air-002" and opened.alert.rule == "offline"


def test_last_will_alone_does_not_open_offline():
    ev = new_evaluator()
    assert ev.on_status(META, {"state": "online"}, T0) == []
    assert ev.on_status(META, {"state": "offline"}, T0 + 5) == []
    assert ev.tick(T0 + 100) == []


def test_low_battery_escalates_and_resolves_after_hold_while_alive():
    ev = new_evaluator()
    meta = META | {"interval_s": 600}
    (e1,) = ev.on_health(meta, {"battery_v": 3.35}, T0)
    assert (e1.type, e1.alert.severity, e1.alert.limit_op) == ("alert.opened", "low", ">=")
    (e2,) = ev.on_health(meta, {"battery_v": 3.1}, T0 + 60)
    assert (e2.type, e2.alert.severity) == ("alert.escalated", "medium")
    assert ev.on_health(meta, {"battery_v": 4.0}, T0 + 120) == []  # charging: hold starts
    events = []
    for t in range(T0 + 240, T0 + 120 + 1800, 120):
        events += ev.on_health(meta, {"battery_v": 4.0}, t)
        events += ev.tick(t + 1)
    assert events == []
    (e3,) = ev.tick(T0 + 120 + 1800)
    assert e3.type == "alert.resolved" and e3.alert.id == e1.alert.id


def test_buffer_overflow_when_dropped_rises_not_after_reboot():
    ev = new_evaluator()
    assert ev.on_health(META, {"dropped": 0}, T0) == []
    (opened,) = ev.on_health(META, {"dropped": 5}, T0 + 60)
    assert opened.alert.rule == "buffer_overflow" and opened.alert.value == 5
    assert ev.on_health(META, {"dropped": 5}, T0 + 120) == []
    assert ev.on_health(META, {"dropped": 0}, T0 + 180) == []  # rebooted: counter restarts
    assert ev.on_health(META, {"dropped": 0}, T0 + 3720)[0].type == "alert.resolved"


def test_clock_unsynced_opens_and_uses_receive_time():
    ev = new_evaluator()
    (opened,) = ev.on_reading(META, _reading(0, {"pm25": 10.0}, {"*": "clock"}), T0)
    assert opened.alert.rule == "clock_unsynced" and opened.alert.parameter == "ts"
    windows = ev._stations["sy-air-002"].windows
    assert list(windows.state()["open"]) == [str(T0)] and windows.counts == {}
    events = []
    for i in range(1, 17):
        events += ev.on_reading(META, _reading(T0 + 60 * i, {"pm25": 10.0 + i}), T0 + 60 * i)
    assert kinds(events) == ["alert.resolved"]  # 15 min of synced readings (hold 900 s)


def test_flatline_after_six_hours_but_not_at_the_sensor_floor():
    ev = new_evaluator()
    f = air_feed(ev)
    f.run(5.9, {"pm25": 12.0})
    assert f.events == []
    f.run(0.5, {"pm25": 12.0})
    (opened,) = [e for e in f.events if e.type == "alert.opened" and e.alert.rule == "flatline"]
    assert opened.alert.parameter == "pm25" and opened.alert.value == 21600
    ev2 = new_evaluator()
    f2 = air_feed(ev2)
    f2.run(8, {"pm25": 0.0})  # 0 ug/m3 for hours: clean air at the sensor's floor
    assert f2.events == []


def test_implausible_jump_between_consecutive_readings():
    ev = new_evaluator()
    assert ev.on_reading(META, _reading(T0, {"pm25": 20.0}), T0) == []
    (opened,) = ev.on_reading(META, _reading(T0 + 60, {"pm25": 400.0}), T0 + 60)
    assert (opened.alert.rule, opened.alert.value, opened.alert.limit) == ("jump", 380.0, 300)
    assert opened.alert.severity == "medium"
    # readings far apart are not compared: a station back after an hour may differ a lot
    ev2 = new_evaluator()
    ev2.on_reading(META, _reading(T0, {"pm25": 20.0}), T0)
    assert ev2.on_reading(META, _reading(T0 + 3600, {"pm25": 400.0}), T0 + 3600) == []


def test_flagged_values_skip_quality_rules():
    ev = new_evaluator()
    f = air_feed(ev)
    f.run(1, wiggle(20))
    f.run(1, wiggle(600), flags={"pm25": "range"})
    assert f.events == []

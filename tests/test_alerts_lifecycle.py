"""Alert lifecycle: one alert per sustained exceedance, escalation, acknowledgement,
resolution only after the hold time, no flapping, window validity, restart."""

from __future__ import annotations

import json

import pytest
from alerts_helpers import HOUR, T0, air_feed, kinds, new_evaluator, water_feed, wiggle

from envnet.config import Settings
from envnet.core.standards import UnknownEdition
from envnet.domain.alerts import AlertSettings, Evaluator, InMemoryAlertStore
from envnet.domain.alerts.model import latest_indices


def _by_rule(events, rule):
    return [e for e in events if e.alert and e.alert.rule == rule]


def test_sustained_pm25_24h_exceedance_opens_escalates_and_resolves_once():
    ev = new_evaluator()
    f = air_feed(ev)
    f.run(30, wiggle(100))  # hourly means of exactly 100 (the wiggle averages out)
    f.run(30, wiggle(160))
    f.run(20, wiggle(20))
    events = _by_rule(f.events, "air_limit_24h")
    assert kinds(events) == ["alert.opened", "alert.escalated", "alert.escalated", "alert.resolved"]
    assert len({e.alert.id for e in events}) == 1
    opened, esc1, esc2, resolved = (e.alert for e in events)

    # The first 24 h mean exists once 20 hours are valid: at the end of hour 20, mean 100.
    # IAQI(100) = 100 + 50/40 * 25 = 131.25 -> 132, lightly polluted -> severity low.
    assert opened.opened_at == T0 + 20 * HOUR and opened.value == 100.0
    assert (opened.severity, opened.limit, opened.window, opened.parameter) == (
        "low",
        75,
        "24h",
        "pm25",
    )
    assert opened.standard == "GB 3095-2012" and opened.edition == "2012"
    assert opened.clause == "Table 1, Grade II, PM2.5 24-hour mean"
    assert opened.category_en == "lightly polluted"

    # After k hours of 160: mean (24-k)*100 + 160k over 24 > 115 first at k = 7:
    # (1700 + 1120) / 24 = 117.5 -> IAQI 154, moderately polluted -> medium.
    assert (esc1.severity, esc1.value, esc1.last_at) == ("medium", 117.5, T0 + 37 * HOUR)
    # > 150 first at k = 21: (300 + 3360) / 24 = 152.5 -> IAQI 203, heavily -> high.
    assert (esc2.severity, esc2.value, esc2.last_at) == ("high", 152.5, T0 + 51 * HOUR)
    assert esc2.escalations == 2

    # Clean hours of 20: (24-k)*160 + 20k <= 1800 first at k = 15 (mean 72.5), so values are
    # within the limit from the start of that hour (T0+74h); the 2 h hold ends with hour 16:
    # (8*160 + 16*20) / 24 = 66.667.
    assert resolved.state == "resolved"
    assert (resolved.last_at, resolved.last_value) == (T0 + 76 * HOUR, 66.667)
    assert resolved.severity == "high"  # the peak stays on record
    assert [h.event for h in ev.store.history(resolved.id)] == [
        "opened",
        "escalated",
        "escalated",
        "resolved",
    ]


def _no2_hours(f, values):
    for v in values:
        f.run(1, {"no2": v})


def test_resolves_only_after_the_hold_time():
    ev = new_evaluator()
    f = air_feed(ev)
    _no2_hours(f, [150, 250, 150])
    f.run(1, {"no2": 150})  # closes the previous hour
    a = ev.store.get_open_alert("sy-air-001", "air_limit_1h", "no2")
    assert a is not None and a.ok_since == T0 + 2 * HOUR  # 1 clean hour: still open
    f.run(1, {"no2": 150})
    assert ev.store.get_open_alert("sy-air-001", "air_limit_1h", "no2") is None
    (resolved,) = [
        e.alert for e in _by_rule(f.events, "air_limit_1h") if e.type == "alert.resolved"
    ]
    assert resolved.last_at == T0 + 4 * HOUR  # the end of the second clean hour


def test_no_flapping_around_the_limit():
    ev = new_evaluator()
    f = air_feed(ev)
    # NO2 1 h oscillating around its 200 limit: 210 -> IAQI 101 (light), 190 -> 95 (good)
    _no2_hours(f, [190, 210] * 6)
    _no2_hours(f, [150] * 4)
    for rule in ("air_limit_1h", "aqi_category"):
        assert kinds(f.events, rule) == ["alert.opened", "alert.resolved"], rule


def test_too_few_hours_give_no_24h_mean_and_no_alert():
    ev = new_evaluator()
    f = air_feed(ev)
    f.run(19, wiggle(300))
    f.run(20, wiggle(300), per_hour=4)  # 4 readings x 10 min = 40 min: invalid hours
    f.run(1, wiggle(300))
    assert _by_rule(f.events, "air_limit_24h") == []
    assert ev.store.get_open_alert("sy-air-001", "air_limit_24h", "pm25") is None
    # the hourly AQI does see the valid hours
    assert kinds(f.events, "aqi_category") == ["alert.opened"]


def test_fault_flagged_readings_raise_a_fault_not_an_exceedance():
    ev = new_evaluator()
    f = air_feed(ev)
    f.run(3, wiggle(900), flags={"pm25": "fault"})
    f.run(2, wiggle(10))
    assert kinds(f.events) == ["alert.opened", "alert.resolved"]
    assert f.events[0].alert.rule == "sensor_fault" and f.events[0].alert.parameter == "pm25"
    ev.tick(f.t)
    saved = ev.store.load_state("station:sy-air-001")
    assert saved["windows"]["counts"] == {"fault": 18}  # 3 h x 6 readings left out, counted


def test_maintenance_readings_are_never_evaluated():
    ev = new_evaluator()
    f = air_feed(ev)
    f.run(30, wiggle(500), flags={"pm25": "maint"})
    f.run(30, lambda ts: {"pm25": 500.0}, flags={"*": "maint"})
    assert f.events == []


def test_acknowledge_then_escalation_reopens():
    ev = new_evaluator()
    f = air_feed(ev)
    _no2_hours(f, [250, 250])
    (opened,) = _by_rule(f.events, "air_limit_1h")
    ack = ev.acknowledge(opened.alert.id, by="duty-officer", at=T0 + 3 * HOUR, note="on it")
    assert ack.type == "alert.acknowledged" and ack.alert.state == "acknowledged"
    assert ev.acknowledge(opened.alert.id, by="x", at=T0 + 3 * HOUR) is None  # idempotent
    with pytest.raises(KeyError):
        ev.acknowledge("nope", by="x", at=0)
    stored = ev.store.get_alert(opened.alert.id)
    assert (stored.state, stored.acknowledged_by) == ("acknowledged", "duty-officer")
    # NO2 1 h 800: 150 + 50/500 * 100 = 160 -> moderately polluted -> medium
    _no2_hours(f, [800, 800])
    (esc,) = [e for e in _by_rule(f.events, "air_limit_1h") if e.type == "alert.escalated"]
    assert esc.alert.state == "open" and esc.alert.severity == "medium"
    assert [(h.event, h.by) for h in ev.store.history(opened.alert.id)] == [
        ("opened", None),
        ("acknowledged", "duty-officer"),
        ("escalated", None),
    ]


def test_state_survives_a_restart():
    store = InMemoryAlertStore()
    a = Evaluator(AlertSettings(), store)
    f = air_feed(a)
    f.run(12.5, wiggle(100))  # stop in the middle of an hour
    a.tick(f.t)  # saves the state, as the gateway's periodic tick does
    b = Evaluator(AlertSettings(), store)
    f.ev = b
    f.run(10, wiggle(100))
    (opened,) = _by_rule(f.events, "air_limit_24h")
    assert opened.alert.opened_at == T0 + 20 * HOUR  # as if never restarted
    f.run(10, wiggle(160))
    c = Evaluator(AlertSettings(), store)  # an open alert is found again, not duplicated
    f.ev = c
    c.tick(f.t)
    f.run(4, wiggle(160))
    events = _by_rule(f.events, "air_limit_24h")
    assert kinds(events) == ["alert.opened", "alert.escalated"]
    assert len({e.alert.id for e in events}) == 1


def test_hourly_and_daily_aqi_records():
    ev = new_evaluator()
    f = air_feed(ev)
    f.run(25, lambda ts: {"pm25": 80.0 + ((int(ts) // 600) % 2), "co": 1.0})
    records = ev.drain_results()
    hourly = [r for r in records if r.tags["window"] == "1h"]
    daily = [r for r in records if r.tags["window"] == "24h"]
    # pm25 hourly mean 80.5: 100 + 50/40 * 5.5 = 106.875 -> 107
    assert hourly[0].ts == T0 + HOUR and hourly[0].fields["aqi"] == 107
    assert hourly[0].fields["primary"] == "pm25" and hourly[0].fields["category_zh"] == "轻度污染"
    assert hourly[0].tags == {"station": "sy-air-001", "window": "1h", "edition": "2012"}
    assert "lat" not in hourly[0].fields
    (day,) = daily
    assert day.ts == T0 and day.fields["aqi"] == 107 and day.fields["iaqi_co"] == 25
    ev.tick(f.t)
    latest = latest_indices(ev.store, "sy-air-001")
    assert latest["aqi_24h"]["day"] == "2026-01-01" and latest["aqi_1h"]["aqi"] == 107
    assert ev.store.daily_aqis("2026-01-01")[0].aqi == 107
    assert ev.drain_results() == []


def test_aqi_record_carries_registry_tags_and_coordinates():
    ev = new_evaluator()
    g = air_feed(ev, "sy-air-009", district="heping", coordinates=[41.79, 123.42])
    g.run(2, {"pm25": 10.0})
    (rec,) = ev.drain_results()
    assert rec.tags["district"] == "heping"
    assert (rec.fields["lat"], rec.fields["lon"]) == (41.79, 123.42)


def test_events_are_json():
    ev = new_evaluator()
    f = air_feed(ev)
    _no2_hours(f, [250, 250])
    body = json.dumps([e.to_dict() for e in f.events], ensure_ascii=False)
    assert '"alert.opened"' in body and '"standard": "GB 3095-2012"' in body


def test_edition_from_full_settings_and_unknown_edition_fails():
    ev = Evaluator(Settings(), InMemoryAlertStore())
    assert ev.edition == "2012"
    with pytest.raises(UnknownEdition):
        Evaluator(AlertSettings(edition="2024"), InMemoryAlertStore())


# --- water ------------------------------------------------------------------------------

_RIVER = {"ph": 7.4, "do": 6.8, "nh3n": 0.4}  # classes I, II, II: within target III


def test_water_worse_than_target_class():
    ev = new_evaluator()
    f = water_feed(ev, target="III")
    f.run(2, _RIVER)
    assert f.events == []
    f.run(3, _RIVER | {"nh3n": 1.2})  # class IV: one class worse than III
    f.run(1, _RIVER)
    (opened,) = [e.alert for e in f.events if e.type == "alert.opened"]
    assert (opened.rule, opened.parameter, opened.severity) == ("water_class", "nh3n", "low")
    assert (opened.limit, opened.limit_op, opened.unit) == (1.0, "<=", "mg/L")
    assert (opened.category_zh, opened.category_en) == ("Ⅳ类", "Class IV")
    assert opened.standard == "GB 3838-2002"
    assert opened.clause == "Table 1 (basic items), ammonia nitrogen, target Class III"


def test_water_ph_outside_6_to_9_always_exceeds():
    ev = new_evaluator()
    f = water_feed(ev, target="V")
    f.run(2, _RIVER | {"ph": 5.5, "do": 2.5})  # DO 2.5 is class V: meets target V
    f.run(1, _RIVER)  # (the sudden return also trips the pH and DO jump rules)
    (opened,) = [e.alert for e in _by_rule(f.events, "water_class") if e.type == "alert.opened"]
    # worse than V is one class worse than target V -> low
    assert (opened.parameter, opened.limit, opened.limit_op) == ("ph", 6, ">=")
    assert opened.category_en == "worse than Class V" and opened.severity == "low"


def test_drinking_water_source_is_one_step_more_severe():
    ev = new_evaluator()
    f = water_feed(ev, target="II", drinking_water_source=True)
    # DO 4.0 is class IV: two classes worse than II -> medium, +1 for a drinking source
    f.run(2, _RIVER | {"do": 4.0})
    (opened,) = [e.alert for e in f.events if e.type == "alert.opened"]
    assert (opened.parameter, opened.severity, opened.limit_op) == ("do", "high", ">=")


def test_water_without_target_is_classified_not_alerted():
    ev = new_evaluator()
    f = water_feed(ev, target=None)
    f.run(2, _RIVER | {"nh3n": 2.5})
    assert f.events == []
    rec = [r for r in ev.drain_results() if r.measurement == "water_class"][0]
    assert rec.fields["class_num"] == 6 and rec.fields["class"] == "劣Ⅴ类"
    assert rec.fields["worst"] == "nh3n" and "exceeding" not in rec.fields


def test_water_record_carries_target_and_registry_tags():
    ev = new_evaluator()
    f = water_feed(ev, target="IV", river="liao", section="zhuershan", lat=41.2, lon=122.3)
    f.run(2, _RIVER | {"nh3n": 1.2, "codmn": 5.0, "tp": 0.15})
    rec = [r for r in ev.drain_results() if r.measurement == "water_class"][0]
    assert rec.tags == {
        "station": "hun-river-01",
        "edition": "2002",  # GB 3838-2002's own edition, not the bundle's "2012"
        "river": "liao",
        "section": "zhuershan",
        "target_class": "IV",
    }
    assert (rec.fields["class_num"], rec.fields["target_num"], rec.fields["exceeding"]) == (4, 4, 0)
    assert rec.fields["provisional"] == 0 and rec.fields["missing"] == ""


def test_water_record_from_part_of_the_set_is_provisional_and_not_judged():
    ev = new_evaluator()
    f = water_feed(ev, target="III")
    f.run(2, {"ph": 7.2, "do": 3.5})  # DO 3.5 -> IV, worse than the target III
    rec = [r for r in ev.drain_results() if r.measurement == "water_class"][0]
    assert rec.fields["class_num"] == 4 and rec.fields["provisional"] == 1
    assert rec.fields["basis"] == "ph,do" and rec.fields["missing"] == "codmn,nh3n,tp"
    assert "exceeding" not in rec.fields and rec.fields["target_num"] == 3
    water = ev.latest("hun-river-01")["water"]
    assert water["provisional"] is True and water["meets_target"] is None
    # the DO value itself is still an exceedance of its parameter (docs/standards.md)
    assert [e.alert.parameter for e in f.events if e.type == "alert.opened"] == ["do"]


def test_calendar_mode_checks_the_24h_limit_only_at_the_cst_day_end():
    ev = new_evaluator(air_24h="calendar")
    f = air_feed(ev)
    f.run(25, wiggle(100))
    (opened,) = _by_rule(f.events, "air_limit_24h")
    # the calendar day 2026-01-01 00:00-24:00 CST, mean 100
    assert opened.alert.opened_at == T0 + 24 * HOUR and opened.alert.value == 100.0


def test_hold_times_are_settings():
    ev = new_evaluator(hold_s={"air_limit_1h": 3600})
    f = air_feed(ev)
    _no2_hours(f, [250, 150, 150])
    (resolved,) = [e for e in _by_rule(f.events, "air_limit_1h") if e.type == "alert.resolved"]
    assert resolved.alert.last_at == T0 + 2 * HOUR  # one clean hour is enough now
    with pytest.raises(ValueError):
        AlertSettings(hold_s={"no_such_rule": 1})

"""The rewrite of stored figures after an invalidation and a restore (server/review/recompute.py)
on a real InfluxDB 1.6: the original figures are the real evaluator's (envnet's Evaluator on
the alert store, its index records written as the gateway writes them), the readings the
gateway's; the rewrite is the server's Recomputer.

Air station rc-a, one reading every 15 minutes (interval_s 900: 4 readings make a valid hour,
GB 3095 45 minutes), from day 1 00:00 CST for 2 days and 2 hours. Background: PM10 160,
SO2 10, NO2 20, CO 0.5, O3 60; PM2.5 100, except:
- hour H (day 1 10:00): PM2.5 300 (the sensor was sprayed);
- hour K (day 1 15:00): only the first two readings carry every pollutant, the last two only
  PM2.5: the other pollutants have 30 minutes, no valid hourly mean; PM2.5 has 60.
A reviewer invalidates PM2.5 of H and PM2.5 of K.

By hand (HJ 633-2012 Table 1, real-time PM basis "1h": the 1-hour mean on the 24-hour column;
IAQI rounded up):
- H before: PM2.5 300 -> 300 + (400-300)/(350-250) x (300-250) = 350, the AQI.
- H after: PM2.5 out; PM10 160 -> 100 + (150-100)/(250-150) x (160-150) = 105; SO2 10 -> 4,
  NO2 20 -> 10, CO 0.5 -> 5, O3 60 -> 19, O3 8-h 60 -> 30: AQI 105, primary PM10; no c_pm25.
- K after: its only valid mean (PM2.5) is invalidated: nothing of the hour is left, the hour is
  withdrawn (no reviewed point).
- the hours after H whose PM2.5 24-hour moving mean read H: day 1 23:00 before (23 x 100 +
  300) / 24 = 108.333, after 22 hours of 100 (H and K out, still >= 20 hours) = 100.0.
  Hours 11-18 of day 1 have fewer than 20 hours in the window before and after (no 24-h mean
  either way) and are left as they were; hours day1 19:00 .. day2 09:00 (15) read H and
  change: with H itself, 16 hours are recomputed, K withdrawn. Hours 34-38 read K only
  (PM2.5 100 out of 100s: same mean) and are left as they were.
- daily AQI of day 1 (the evaluator's daily_aqi row and the daily `aqi` point): PM2.5 24-h
  mean before 108.333 -> 100 + 50/40 x 33.333 = 141.67 -> 142; after (22 hours of 100)
  100 -> 131.25 -> 132 (PM10 160 -> 105 below it).

Water station rc-w (interval 300 s: 9 readings make a valid hour, target class III): pH 7.5
(I), DO 7.6 (I), COD 18 (III), NH3-N 1.8 (V): class V, worst NH3-N, provisional (CODMn and
TP, of the assessment set, are not measured). NH3-N of its hour 1 invalidated: class III,
worst COD, missing codmn, nh3n, tp.

The restore brings every point and the daily_aqi rows back byte for byte.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from envnet.config import Settings, load_config
from envnet.domain.alerts.engine import Evaluator
from envnet.domain.review.invalidation import Request, hour_bounds
from envnet.store import review
from envnet.store.alerts import SqliteAlertStore
from envnet.store.influx import delete as influx_delete
from envnet.store.influx.aqi_history import hourly_aqi
from envnet.store.influx.corrected import corrected_lines
from envnet.store.influx.line_protocol import line
from envnet.store.influx.reports import InfluxQL
from envnet.store.state import SqliteStateStore
from server.reports.service import Reports
from server.review import catchup
from server.review.catchup import CatchUp
from server.review.recompute import Recomputer

CST = timezone(timedelta(hours=8))
HOUR, DAY = 3600, 86400
DAY1 = datetime.now(CST).date() - timedelta(days=5)
T0 = int(datetime(DAY1.year, DAY1.month, DAY1.day, tzinfo=CST).timestamp())
H = T0 + 10 * HOUR
K = T0 + 15 * HOUR
BACKGROUND = {"pm10": 160.0, "so2": 10.0, "no2": 20.0, "co": 0.5, "o3": 60.0}
WATER = {"ph": 7.5, "do": 7.6, "cod": 18.0, "nh3n": 1.8}
J = T0 + HOUR  # the water station's invalidated hour


def _air() -> list[tuple[int, dict[str, float]]]:
    out = []
    for h in range(T0, T0 + 2 * DAY + 2 * HOUR, HOUR):
        for q in range(4):
            values = {**BACKGROUND, "pm25": 300.0 if h == H else 100.0}
            if h == K and q >= 2:
                values = {"pm25": 100.0}
            out.append((h + q * 900, values))
    return out


def _water() -> list[tuple[int, dict[str, float]]]:
    return [(t, dict(WATER)) for t in range(T0, T0 + 4 * HOUR, 300)]


def _feed(state, ev, db, series) -> None:
    """Readings through the real evaluator and, as the gateway writes them, into InfluxDB:
    the readings and the index records (gateway/evaluation.py index_point)."""
    lines = []
    for sid, kind, rows in series:
        meta = state.get_station_meta(sid)
        for ts, values in rows:
            ev.on_reading(meta, {"ts": ts, "kind": kind, "values": values}, ts + 5, station=sid)
            lines.append(line(kind, {"station": sid}, values, ts * 1000))
    ev.flush()
    for rec in ev.drain_results():
        tags = {"station": rec.station, **rec.tags}
        lines.append(line(rec.measurement, tags, rec.fields, round(rec.ts * 1000)))
    db.write(lines)


@pytest.fixture
def parts(tmp_path: Path, influxdb):
    settings: Settings = load_config(
        None,
        environ={
            "ENVNET_INFLUX_URL": influxdb.url,
            "ENVNET_INFLUX_DATABASE": influxdb.database,
            "ENVNET_STORE_PATH": str(tmp_path / "state.db"),
        },
    )
    state = SqliteStateStore(settings.store.path)
    state.register_station("rc-a", "air", {"interval_s": 900, "class": "national"})
    state.register_station(
        "rc-w", "water", {"interval_s": 300, "target_class": "III", "river": "浑河"}
    )
    alerts = SqliteAlertStore(state)
    ev = Evaluator(settings, alerts)
    db = InfluxQL(settings.influx)
    reports = Reports(settings, state, db)
    yield settings, state, alerts, ev, db, reports
    db.close()
    state.close()


@pytest.fixture
def stack(parts):
    settings, state, alerts, ev, db, reports = parts
    _feed(state, ev, db, (("rc-a", "air", _air()), ("rc-w", "water", _water())))
    yield state, alerts, db, Recomputer(settings, state, reports)


def _invalidate(state, station: str, start: int, end: int, params: tuple[str, ...]):
    first, last = hour_bounds(start, end)
    req = Request(station, start, end, first, last, params, "local_interference", "")
    inv, _ = review.add(state, req, "rev")
    return inv


def _points(influxdb) -> tuple[list[dict], list]:
    """Every AQI and water-class point (its tags and typed fields), and the series keys.
    Null columns are left out of a row: InfluxDB 1.6 keeps listing a deleted tag key as a
    column of SELECT * for a while (a schema listing, not data)."""
    rows = influxdb.rows('SELECT * FROM "aqi"') + influxdb.rows('SELECT * FROM "water_class"')
    rows = [{k: v for k, v in r.items() if v is not None} for r in rows]
    series = [influxdb.query(f'SHOW SERIES FROM "{m}"') for m in ("aqi", "water_class")]
    return sorted(rows, key=lambda r: json.dumps(r, sort_keys=True)), series


def _daily_aqi_rows(state) -> list[tuple]:
    return [tuple(r) for r in state.query("SELECT * FROM daily_aqi ORDER BY day, station")]


def _reviewed(influxdb, measurement: str, station: str, ts: int, window: str = "") -> list[dict]:
    w = f" AND \"window\" = '{window}'" if window else ""
    return influxdb.rows(
        f'SELECT * FROM "{measurement}" WHERE "station" = \'{station}\'{w}'
        f" AND \"review\" != 'invalid' AND time = {ts}s"
    )


def test_partial_hours_water_and_daily_aqi_rewritten_then_restored(stack, influxdb):
    state, alerts, db, recompute = stack
    before_points = _points(influxdb)
    before_rows = _daily_aqi_rows(state)
    # the evaluator's originals, as worked out by hand
    (h,) = _reviewed(influxdb, "aqi", "rc-a", H + HOUR, "1h")
    assert (h["aqi"], h["primary"], h["iaqi_pm25"]) == (350, "pm25", 350)
    (late,) = _reviewed(influxdb, "aqi", "rc-a", T0 + DAY, "1h")
    assert late["c_pm25_24h"] == pytest.approx(108.333)
    assert alerts.daily_aqis(DAY1.isoformat())[0].aqi == 142
    (w,) = _reviewed(influxdb, "water_class", "rc-w", J + HOUR)
    assert (w["class_num"], w["worst"], w["provisional"], w["target_class"]) == (
        5,
        "nh3n",
        1,
        "III",
    )
    assert [p.aqi for p in hourly_aqi(db, "rc-a", H + HOUR, H + HOUR)] == [350]

    inv_h = _invalidate(state, "rc-a", H, H + HOUR, ("pm25",))
    got = recompute.run("rc-a", inv_h.hour_start, inv_h.hour_end).to_dict()
    assert (got["hourly_recomputed"], got["hourly_withdrawn"]) == (16, 0), got
    assert got["daily_aqi_rewritten"] == [DAY1.isoformat()]
    # the partly invalidated hour H, recomputed from the rest of the hour
    (h,) = _reviewed(influxdb, "aqi", "rc-a", H + HOUR, "1h")
    assert h["review"] == "recomputed"
    assert (h["aqi"], h["primary"], h["level"]) == (105, "pm10", 3)
    assert (h["iaqi_pm10"], h["iaqi_so2"], h["iaqi_no2"], h["iaqi_co"]) == (105, 4, 10, 5)
    assert (h["iaqi_o3"], h["iaqi_o3_8h"], h["c_pm10"]) == (19, 30, 160.0)
    assert h["iaqi_pm25"] is None and h["c_pm25"] is None
    # the original is kept as raw
    raw = influxdb.rows(
        "SELECT aqi FROM aqi WHERE \"station\" = 'rc-a' AND \"review\" = 'invalid'"
        f" AND time = {H + HOUR}s"
    )
    assert [r["aqi"] for r in raw] == [350]
    # the public station page reads the reviewed series: one point, the recomputed one
    assert [p.aqi for p in hourly_aqi(db, "rc-a", H + HOUR, H + HOUR)] == [105]

    inv_k = _invalidate(state, "rc-a", K, K + HOUR, ("pm25",))
    got = recompute.run("rc-a", inv_k.hour_start, inv_k.hour_end).to_dict()
    assert got["hourly_withdrawn"] == 1, got  # K: nothing valid of its own left
    assert _reviewed(influxdb, "aqi", "rc-a", K + HOUR, "1h") == []
    (late,) = _reviewed(influxdb, "aqi", "rc-a", T0 + DAY, "1h")
    assert late["review"] == "recomputed" and late["c_pm25_24h"] == 100.0
    # a day later the window no longer reads H: untouched
    (after,) = _reviewed(influxdb, "aqi", "rc-a", H + DAY + HOUR, "1h")
    assert "review" not in after or after["review"] is None
    # the evaluator's daily_aqi (the episode's input) and the daily AQI point: 142 -> 132
    assert [(r.station, r.aqi) for r in alerts.daily_aqis(DAY1.isoformat())] == [("rc-a", 132)]
    (d,) = _reviewed(influxdb, "aqi", "rc-a", T0, "24h")
    assert (d["review"], d["aqi"]) == ("recomputed", 132)

    inv_w = _invalidate(state, "rc-w", J, J + HOUR, ("nh3n",))
    got = recompute.run("rc-w", inv_w.hour_start, inv_w.hour_end).to_dict()
    assert got["water_recomputed"] == 1, got
    (w,) = _reviewed(influxdb, "water_class", "rc-w", J + HOUR)
    assert (w["review"], w["class_num"], w["class"], w["worst"]) == ("recomputed", 3, "Ⅲ类", "cod")
    assert (w["missing"], w["basis"], w["class_nh3n"]) == ("codmn,nh3n,tp", "ph,do", None)
    assert (w["target_num"], w["target_class"], w.get("exceeding")) == (3, "III", None)
    # the other water hours are untouched
    assert _reviewed(influxdb, "water_class", "rc-w", J + 2 * HOUR)[0]["class_num"] == 5

    # running again changes nothing (idempotent)
    again = recompute.run("rc-a", inv_h.hour_start, inv_h.hour_end).to_dict()
    assert (again["hourly_recomputed"], again["hourly_withdrawn"]) == (0, 0), again

    # restore all three: every point and the daily_aqi rows back exactly
    for inv in (inv_h, inv_k, inv_w):
        review.restore(state, inv.id, "rev")
        recompute.run(inv.station, inv.hour_start, inv.hour_end)
    assert _points(influxdb) == before_points
    assert _daily_aqi_rows(state) == before_rows
    assert state.query("SELECT count(*) FROM daily_aqi_original")[0][0] == 0


def test_deletes_by_generation(stack, influxdb):
    """1.x deletes for real through InfluxQL; 3.x is refused and counted, deleting nothing.
    (The 2.x path, the v2 delete API, has no real InfluxDB 2 to run against here.)"""
    _, _, db, _ = stack
    assert influx_delete.generation_of("1.6.7~rc0") == 1
    assert influx_delete.generation_of("v2.7.4") == 2
    assert influx_delete.generation_of("3.0.1") == 3
    assert influx_delete.server_generation(db.s) == 1
    count = 'SELECT count("aqi") FROM "aqi" WHERE "station" = \'rc-a\' AND "window" = \'1h\''
    n = influxdb.rows(count)[0]["count"]
    refused = influx_delete.refused()
    with pytest.raises(influx_delete.DeleteUnsupported, match="cannot delete points"):
        influx_delete._delete(db, 3, "aqi", {"station": "rc-a"}, T0, T0 + DAY)
    assert influx_delete.refused() == refused + 1
    assert influxdb.rows(count)[0]["count"] == n
    influx_delete.delete_points(db, "aqi", {"station": "rc-a", "window": "1h"}, T0, T0 + DAY)
    # hourly points stamped T0 + 1 h .. T0 + 24 h are gone, the rest stays
    assert influxdb.rows(count)[0]["count"] == n - 24
    with pytest.raises(ValueError, match="empty time range"):
        influx_delete.delete_points(db, "aqi", {}, T0 + 1, T0)


def test_figures_closed_after_an_invalidation_are_caught_up(parts, influxdb):
    """The evaluator closes the rest of H's day and the hours whose moving means read H after
    the invalidation, from raw readings; the review worker's catch-up brings them in line
    (the same figures as an invalidation made after everything had closed)."""
    settings, state, alerts, ev, db, reports = parts
    air = _air()
    _feed(state, ev, db, (("rc-a", "air", [r for r in air if r[0] < H + 2 * HOUR]),))
    inv = _invalidate(state, "rc-a", H, H + HOUR, ("pm25",))
    recompute = Recomputer(settings, state, reports)
    first = recompute.run("rc-a", inv.hour_start, inv.hour_end).to_dict()
    assert first["hourly_recomputed"] == 1 and first["daily_aqi_rewritten"] == [], first
    # the gateway goes on: the day closes and the late hours are written from raw data
    _feed(state, ev, db, (("rc-a", "air", [r for r in air if r[0] >= H + 2 * HOUR]),))
    assert alerts.daily_aqis(DAY1.isoformat())[0].aqi == 142
    (late,) = _reviewed(influxdb, "aqi", "rc-a", T0 + DAY, "1h")
    assert late["c_pm25_24h"] == pytest.approx(108.333)

    catch_up = CatchUp(settings, state, recompute)
    got = catch_up.run(time.time())
    assert got == {"checked": 1, "changed": [inv.id], "failed": []}
    assert [r.aqi for r in alerts.daily_aqis(DAY1.isoformat())] == [132]
    (late,) = _reviewed(influxdb, "aqi", "rc-a", T0 + DAY, "1h")
    assert (late["review"], late["c_pm25_24h"]) == ("recomputed", 100.0)
    (d,) = _reviewed(influxdb, "aqi", "rc-a", T0, "24h")
    assert (d["review"], d["aqi"]) == ("recomputed", 132)
    # in line now: the next pass writes nothing; past the window it is not looked at
    again = recompute.run("rc-a", inv.hour_start, inv.hour_end).to_dict()
    assert not any(again[k] for k in catchup._CHANGES), again
    assert catch_up.run(time.time())["changed"] == []
    later = time.time() + settings.review.catch_up_hours * 3600 + 60
    assert catch_up.run(later) == {"checked": 0, "changed": [], "failed": []}


def test_use_corrected_recomputes_from_calibrated_pm(parts, influxdb):
    """With `review.use_corrected` the recomputation reads the worker's corrected PM where
    there is one, as the reports and the evaluator do. By hand: H's corrected PM10 100
    (raw 160) -> IAQI 50 + (100-50)/(150-50) x (100-50) = 75, above SO2 4, NO2 10, CO 5,
    O3 19, O3 8-h 30: AQI 75, primary PM10."""
    settings, state, alerts, ev, db, _ = parts
    _feed(state, ev, db, (("rc-a", "air", _air()),))
    db.write(corrected_lines("rc-a", "ref-1", "pm10", 7, [(H, 160.0, 100.0)]))
    on = settings.model_copy(
        update={"review": settings.review.model_copy(update={"use_corrected": True})}
    )
    recompute = Recomputer(on, state, Reports(on, state, db))
    inv = _invalidate(state, "rc-a", H, H + HOUR, ("pm25",))
    recompute.run("rc-a", inv.hour_start, inv.hour_end)
    (h,) = _reviewed(influxdb, "aqi", "rc-a", H + HOUR, "1h")
    assert (h["review"], h["aqi"], h["primary"], h["c_pm10"]) == ("recomputed", 75, "pm10", 100.0)

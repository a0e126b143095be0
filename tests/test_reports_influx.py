"""The reports' InfluxDB layer against the real InfluxDB: flagged values leave the hourly counts,
and river sections get their GB 3838 class per day and month from stored water readings."""

from __future__ import annotations

import urllib.request
from datetime import date, datetime, timedelta, timezone

from envnet.config import load_config
from envnet.store.influx.reports import InfluxQL, hourly_counts
from envnet.store.state import SqliteStateStore
from server.reports.service import Reports

CST = timezone(timedelta(hours=8))
D1 = date(2026, 3, 1)
T0 = int(datetime(2026, 3, 1, tzinfo=CST).timestamp())  # a CST midnight


def _write(influxdb, lines: list[str]) -> None:
    req = urllib.request.Request(
        f"{influxdb.url}/write?db={influxdb.database}&precision=s",
        data="\n".join(lines).encode(),
        method="POST",
    )
    urllib.request.urlopen(req, timeout=30).close()


def _settings(influxdb, tmp_path):
    return load_config(
        None,
        environ={
            "ENVNET_INFLUX_URL": influxdb.url,
            "ENVNET_INFLUX_DATABASE": influxdb.database,
            "ENVNET_STORE_PATH": str(tmp_path / "envnet.db"),
        },
    )


def test_flagged_values_are_taken_out_of_their_hour(influxdb, tmp_path):
    _write(
        influxdb,
        [
            f"air,station=s1 pm25=10,seq=1i {T0}",
            f'air,station=s1 pm25=20,flag_all="clock",seq=2i {T0 + 900}',  # counts: a real time
            f'air,station=s1 pm25=999,pm10=999,flag_all="maint",seq=3i {T0 + 1800}',  # all out
            f'air,station=s1 pm25=30,pm10=40,flag_pm25="cal",seq=4i {T0 + 2700}',  # PM2.5 out
            f'air,station=s1 pm25=50,flag_pm25="fault",seq=5i {T0 + 3600}',  # next hour
        ],
    )
    db = InfluxQL(_settings(influxdb, tmp_path).influx)
    c = hourly_counts(db, "air", ["pm25", "pm10"], T0, T0 + 7200)["s1"]
    # PM2.5 first hour: 10 + 20 (2 readings); PM10: 40 (1 reading); second hour: none left
    assert (c["pm25"][T0].count, c["pm25"][T0].total) == (2, 30.0)
    assert (c["pm10"][T0].count, c["pm10"][T0].total) == (1, 40.0)
    assert c["pm25"][T0 + 3600].count == 0
    db.close()


def test_sections_class_per_day_and_month_against_target(influxdb, tmp_path):
    settings = _settings(influxdb, tmp_path)
    store = SqliteStateStore(settings.store.path)
    # hun-x is assessed on what it measures (registry assessment_params): complete classes;
    # hun-y measures the same but has the default set (pH, DO, CODMn, NH3-N, TP): provisional
    store.register_station(
        "hun-x",
        "water",
        {"interval_s": 300, "target_class": "III", "river": "浑河",
         "assessment_params": ["ph", "do", "nh3n"]},
    )  # fmt: skip
    store.register_station(
        "hun-y", "water", {"interval_s": 300, "target_class": "III", "river": "浑河"}
    )
    lines = []
    for day, nh3n in enumerate([1.8, 0.4]):  # class V, then class II
        for i in range(24 * 12):  # every 5 minutes: 12 a hour = 60 min, valid hours
            ts = T0 + day * 86400 + i * 300
            for sid in ("hun-x", "hun-y"):
                lines.append(f"water,station={sid} nh3n={nh3n},do=6.5,ph=7.5 {ts}")
    _write(influxdb, lines)
    rep = Reports(settings, store)
    w = rep.period(D1, D1 + timedelta(days=1), "city")["water"]
    sec = w["sections"][0]
    # DO 6.5 -> II, pH 7.5 -> I; NH3-N 1.8 -> V (1.5 < 1.8 <= 2.0), 0.4 -> II (<= 0.5)
    assert [d["class"] for d in sec["daily"]] == [5, 2]
    # month: mean NH3-N (1.8 + 0.4) / 2 = 1.1 -> IV (1.0 < 1.1 <= 1.5): misses target III
    assert sec["months"][0]["class"] == 4 and sec["meets_target"] is False
    assert w["share_meeting_target"] == 0.0 and w["worse_than_v"] == []
    # hun-y: the same class, provisional, shown with its basis and left out of the share
    sec_y = w["sections"][1]
    assert (sec_y["id"], sec_y["class"], sec_y["provisional"]) == ("hun-y", 4, True)
    assert sec_y["basis"] == ["ph", "do", "nh3n"] and sec_y["missing"] == ["codmn", "tp"]
    assert sec_y["meets_target"] is None and sec_y["standard"] == "GB 3838-2002"
    assert (w["sections_assessed"], w["sections_left_out"], w["provisional"]) == (1, 1, ["hun-y"])
    day1 = rep.daily(D1)["water"][0]
    assert (day1["class_label"], day1["worst"], day1["meets_target"]) == ("Ⅴ类", ["nh3n"], False)
    rep.db.close()
    store.close()

"""Reports on the real stack: readings with past timestamps published through Mosquitto, stored
by the gateway in InfluxDB, reported by the server.

Three air stations publish one reading every 15 minutes (the registry says interval_s = 900,
so each reading stands for 15 minutes and 4 a hour make a valid hour; 3 would still be 45 min)
with constant concentrations per day, so every expected figure below is worked out by hand
from HJ 633-2012 Table 1: IAQI = (IAQI_hi - IAQI_lo) / (BP_hi - BP_lo) * (C - BP_lo) + IAQI_lo,
rounded up.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import httpx
from conftest import wait_until
from mqtt_helpers import Publisher

from envnet.store.state import SqliteStateStore

CST = timezone(timedelta(hours=8))
HOUR = 3600
TODAY = datetime.now(CST).date()
DAY1 = TODAY - timedelta(days=6)
if (DAY1 + timedelta(days=3)).year != DAY1.year:  # keep the four days in one plan year
    DAY1 = DAY1.replace(day=20)  # 20 December: still in the past, and days 1-4 in one year
T0 = int(datetime(DAY1.year, DAY1.month, DAY1.day, tzinfo=CST).timestamp())
DATES = [(DAY1 + timedelta(days=i)).isoformat() for i in range(4)]

# Everything but PM2.5 is the same clean air at every station on every day:
# PM10 40 -> 50/50*40 = 40; SO2 10 -> 10; NO2 20 -> 50/40*20 = 25; CO 0.5 -> 50/2*0.5 = 12.5
# -> 13; O3 60 every hour -> every 8-h mean 60 -> 50/100*60 = 30. So PM2.5 sets the AQI.
BACKGROUND = {"pm10": 40.0, "so2": 10.0, "no2": 20.0, "co": 0.5, "o3": 60.0}
STATIONS = {"rp-a": "和平区", "rp-b": "和平区", "rp-c": "沈河区"}
# PM2.5 per station per day (None: no data that day)
PM25 = {
    "rp-a": [80.0, 120.0, 20.0, 30.0],
    "rp-b": [30.0, 100.0, 20.0, None],
    "rp-c": [50.0, 90.0, 25.0, None],
}
HOURS = {  # hours of the day each station publishes (default: all 24)
    ("rp-c", 2): range(5, 24),  # 19 hours: one short of a valid day
    ("rp-a", 3): range(0, 10),  # 10 hours
}


def _publish(pub: Publisher) -> int:
    """Publish every station's readings; returns how many readings were sent."""
    sent = 0
    for sid, series in PM25.items():
        seq = 1
        for day, pm25 in enumerate(series):
            if pm25 is None:
                continue
            for h in HOURS.get((sid, day), range(24)):
                batch = []
                for q in range(4):
                    ts = T0 + day * 86400 + h * HOUR + q * 900
                    values = {**BACKGROUND, "pm25": pm25}
                    flags = {}
                    if sid == "rp-b" and day == 2 and q == 0:
                        # a faulty sensor value: stored, but must not enter any mean (if it
                        # did, the hour's mean would be (3 * 20 + 500) / 4 = 140)
                        values["pm25"], flags = 500.0, {"pm25": "fault"}
                    batch.append(
                        {
                            "v": 1,
                            "seq": seq,
                            "ts": ts,
                            "kind": "air",
                            "values": values,
                            "flags": flags,
                        }
                    )
                    seq += 1
                pub.send(f"envnet/v1/{sid}/reading", batch)
                sent += len(batch)
    return sent


def _stored(influxdb) -> int:
    rows = influxdb.rows('SELECT count("seq") FROM "air"')
    return rows[0]["count"] if rows else 0


def _get(base: str, path: str, **params) -> httpx.Response:
    r = httpx.get(f"{base}{path}", params=params, timeout=60)
    assert r.status_code == 200, r.text
    return r


def test_daily_aqi_and_city_good_days_on_the_real_stack(
    mosquitto, influxdb, envnet_env, gateway, server
):
    store = SqliteStateStore(envnet_env["ENVNET_STORE_PATH"])
    for sid, district in STATIONS.items():
        store.register_station(
            sid, "air", {"interval_s": 900, "district": district, "class": "national"}
        )
    pub = Publisher(mosquitto.port)
    try:
        sent = _publish(pub)
    finally:
        pub.close()
    wait_until(lambda: _stored(influxdb) == sent, 60, what=f"{sent} readings in InfluxDB")

    day1 = _get(server, "/reports/daily", date=DATES[0]).json()
    by_id = {e["id"]: e for e in day1["stations"]}
    # A: PM2.5 80 -> (150-100)/(115-75)*(80-75)+100 = 106.25 -> 107, lightly polluted
    # B: PM2.5 30 -> 50/35*30 = 42.86 -> 43 (<= 50: no primary pollutant)
    # C: PM2.5 50 -> (100-50)/(75-35)*(50-35)+50 = 68.75 -> 69
    assert {s: by_id[s]["aqi"] for s in STATIONS} == {"rp-a": 107, "rp-b": 43, "rp-c": 69}
    assert by_id["rp-a"]["category_zh"] == "轻度污染" and by_id["rp-a"]["primary"] == ["pm25"]
    assert by_id["rp-b"]["primary"] == [] and all(by_id[s]["valid"] for s in STATIONS)
    assert by_id["rp-a"]["iaqi"] == {
        "so2": 10,
        "no2": 25,
        "pm10": 40,
        "co": 13,
        "o3": 19,  # O3 daily max 1-hour 60: 50/160 * 60 = 18.75 -> 19 (1-hour column)
        "o3_8h": 30,  # O3 daily max 8-hour 60: 50/100 * 60 = 30 (8-hour column)
        "pm25": 107,
    }
    # city: mean of the stations' concentrations, then the index:
    # (80 + 30 + 50) / 3 = 53.333 -> 50/40*(53.333-35)+50 = 72.92 -> 73
    assert day1["city"]["concentrations"]["pm25"] == 53.333 and day1["city"]["aqi"] == 73
    # district 和平区: (80 + 30) / 2 = 55 -> 50/40*20+50 = 75
    assert {d["id"]: d["aqi"] for d in day1["districts"]} == {"和平区": 75, "沈河区": 69}

    day2 = {
        e["id"]: e["aqi"] for e in _get(server, "/reports/daily", date=DATES[1]).json()["stations"]
    }
    # A 120 -> (200-150)/(150-115)*(120-115)+150 = 157.14 -> 158; B 100 -> 50/40*25+100 =
    # 131.25 -> 132; C 90 -> 50/40*15+100 = 118.75 -> 119
    assert day2 == {"rp-a": 158, "rp-b": 132, "rp-c": 119}

    day3 = {e["id"]: e for e in _get(server, "/reports/daily", date=DATES[2]).json()["stations"]}
    # B's faulty 500s are left out: its hours are 3 readings x 15 min = 45 min of 20, whose
    # IAQI 50/35*20 = 28.57 -> 29 is below PM10's 40: AQI 40
    assert day3["rp-b"]["concentrations"]["pm25"] == 20.0 and day3["rp-b"]["aqi"] == 40
    assert day3["rp-b"]["iaqi"]["pm25"] == 29
    assert day3["rp-c"]["valid"] is False and "pm25" in day3["rp-c"]["missing"]  # 19 hours

    city = _get(server, "/reports/period", **{"from": DATES[0], "to": DATES[3]}, group="city")
    c = city.json()["air"][0]
    # city days: 1: 73 good; 2: (120+100+90)/3 = 103.33 -> 50/40*28.33+100 = 135.4 -> 136;
    # 3: C has no valid PM2.5, so (20 + 20) / 2 = 20 -> 29, PM10 40 -> AQI 40 good;
    # 4: A's 10 hours make no valid value: invalid, not counted.
    # Good days 2 of 3 valid = 66.67 % (2 of 4 would be 50 %).
    assert (c["days"], c["days_valid"], c["days_good"], c["good_days_ratio"]) == (4, 3, 2, 66.67)
    assert c["categories"]["II"] == 1 and c["categories"]["I"] == 1 and c["categories"]["III"] == 1

    districts = _get(server, "/reports/period", **{"from": DATES[0], "to": DATES[3]}).json()
    # PM2.5 means: 和平区 (55 + 110 + 20) / 3 = 61.667, 沈河区 (50 + 90) / 2 = 70; the rest is
    # equal, so the composite index ranks 和平区 first
    ranks = {e["id"]: (e["rank"], e["statistics"]["pm25"]) for e in districts["air"]}
    assert ranks == {"和平区": (1, 61.667), "沈河区": (2, 70.0)}

    csv_text = _get(server, "/reports/daily", date=DATES[0], format="csv").text
    header, *rows = csv_text.splitlines()
    cols = header.split(",")
    row_a = dict(
        zip(cols, next(r for r in rows if r.startswith("station,rp-a,")).split(","), strict=False)
    )
    assert row_a["aqi"] == "107" and row_a["iaqi_pm25"] == "107"

    comp = _get(server, "/reports/completeness", **{"from": DATES[0], "to": DATES[3]}).json()
    st = {s["id"]: s for s in comp["stations"]}
    c_days = st["rp-c"]["days"]
    assert [d["valid_hours"] for d in c_days] == [24, 24, 19, 0]
    month_hours = sum(m["valid_hours"] for m in st["rp-c"]["months"])
    assert month_hours == 67  # 24 + 24 + 19 + 0
    assert [d["counts"] for d in c_days] == [True, True, False, False]
    assert c_days[0]["latency_p50_s"] > 86400  # published days after it was measured

    # the bulletin goes to InfluxDB (measurement aqi_daily, apart from the alert engine's aqi)
    r = httpx.post(
        f"{server}/reports/daily/publish",
        params={"date": DATES[0]},
        headers={"Authorization": "Bearer test-key"},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    rows = influxdb.rows("SELECT aqi FROM aqi_daily WHERE \"id\" = 'rp-a' OR \"id\" = 'city'")
    assert sorted(row["aqi"] for row in rows) == [73, 107]
    # plan targets, year to date (through yesterday), and the terminal command
    env = {
        **envnet_env,
        "ENVNET_TARGETS_PM25_ANNUAL": "35",
        "ENVNET_TARGETS_GOOD_DAYS_RATIO": "80",
    }
    out = _cli(env, "targets", "--year", str(DAY1.year), "--format", "json")
    t = json.loads(out)
    # city PM2.5 days: 53.333, 103.333, 20 -> (53.333 + 103.333 + 20) / 3 = 58.889 > 35
    assert t["pm25"]["ytd_mean"] == 58.889 and t["pm25"]["on_track"] is False
    assert (t["good_days"]["ytd_ratio"], t["good_days"]["on_track"]) == (66.67, False)
    csv_cli = _cli(envnet_env, "daily", "--date", DATES[1], "--format", "csv")
    assert any(
        line.startswith("station,rp-a,") and ",158," in line for line in csv_cli.splitlines()
    )
    table = _cli(envnet_env, "daily", "--date", DATES[1])
    assert "rp-c" in table and "119" in table
    ranking = _cli(envnet_env, "period", "--from", DATES[0], "--to", DATES[3])
    assert ranking.index("和平区") < ranking.index("沈河区")  # rank 1 listed first
    assert "66.67" in _cli(
        envnet_env, "period", "--from", DATES[0], "--to", DATES[3], "--group", "city"
    )
    assert "rp-c" in _cli(envnet_env, "completeness", "--from", DATES[0], "--to", DATES[3])
    assert "good days" in _cli(env, "targets", "--year", str(DAY1.year))
    bad = httpx.get(f"{server}/reports/period", params={"from": DATES[2], "to": DATES[0]})
    assert bad.status_code == 400
    accept = httpx.get(
        f"{server}/reports/completeness",
        params={"from": DATES[0], "to": DATES[0]},
        headers={"Accept": "text/csv"},
        timeout=60,
    )
    assert accept.headers["content-type"].startswith("text/csv")
    assert accept.text.splitlines()[0].startswith("station,kind,district,date,expected_hours")
    store.close()


def _cli(env: dict[str, str], *args: str) -> str:
    p = subprocess.run(
        [sys.executable, "-m", "envnet.cli", "report", *args],
        env={**env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    return p.stdout

"""Data review on the real stack (issue 18): readings with past timestamps through Mosquitto
and the real gateway into InfluxDB; a reviewer invalidates a day of one station through the
server; the daily bulletin, the good-days ratio, the district ranking and completeness change
as worked out by hand below; an audit row exists; Grafana's reviewed AQI queries drop the
range; a restore brings every figure back exactly as it was.

Three air stations publish one reading every 15 minutes (interval_s 900: 4 readings make a
valid hour) for three days. Everything but PM2.5 is clean background (PM10 40 -> IAQI 40,
SO2 10 -> 10, NO2 20 -> 25, CO 0.5 -> 13, O3 60 -> 8-h 30 / 1-h 19), so PM2.5 sets the AQI.
PM2.5 is 30 everywhere except rv-c on day 2, whose sensor was sprayed: 200.

By hand (HJ 633-2012 Table 1):
- rv-c day 2: PM2.5 200, between the 24-h breakpoints 150 (IAQI 200) and 250 (IAQI 300):
  (300-200)/(250-150)*(200-150)+200 = 250.
- city day 2 (mean of the three): (30+30+200)/3 = 86.667 -> 50/40*(86.667-75)+100 = 114.58
  -> 115, not good; days 1 and 3: 30 -> 50/35*30 = 42.86 -> 43 (PM10's 40 below): good.
  Good days 2 of 3 = 66.67 %.
- with rv-c's day 2 invalidated: city day 2 = (30+30)/2 = 30 -> 43, good: 3 of 3 = 100 %;
  rv-c's day 2 has no valid value (valid false, no AQI); its completeness day 2 is 0 valid
  hours and 24 invalidated hours.
- districts (rank by composite index): 和平区 (rv-a, rv-b) PM2.5 mean 30; 沈河区 (rv-c)
  (30+200+30)/3 = 86.667 before -> ranks 和平区 1, 沈河区 2; after, 沈河区's valid days are
  1 and 3 with 30: equal composite indices, both rank 1 (competition ranking).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from conftest import wait_until
from mqtt_helpers import Publisher

from envnet.devkit.services import component_env, free_port
from envnet.store.state import SqliteStateStore

CST = timezone(timedelta(hours=8))
HOUR = 3600
TODAY = datetime.now(CST).date()
DAY1 = TODAY - timedelta(days=5)
if (DAY1 + timedelta(days=2)).year != DAY1.year:
    DAY1 = DAY1.replace(day=20)
T0 = int(datetime(DAY1.year, DAY1.month, DAY1.day, tzinfo=CST).timestamp())
DATES = [(DAY1 + timedelta(days=i)).isoformat() for i in range(3)]
BACKGROUND = {"pm10": 40.0, "so2": 10.0, "no2": 20.0, "co": 0.5, "o3": 60.0}
STATIONS = {"rv-a": "和平区", "rv-b": "和平区", "rv-c": "沈河区"}
PM25 = {"rv-a": [30.0] * 3, "rv-b": [30.0] * 3, "rv-c": [30.0, 200.0, 30.0]}
REVIEWER = {"Authorization": "Bearer rev-key"}
DUTY = {"Authorization": "Bearer duty-key"}


@pytest.fixture
def envnet_env(tmp_path: Path, mosquitto, influxdb) -> dict[str, str]:
    """The usual environment plus a reviewer key and a duty-room key."""
    return component_env(
        tmp_path,
        mosquitto,
        influxdb,
        f"test-{free_port()}",
        ENVNET_SERVER_API_KEY="test-key",
        ENVNET_SERVER_API_KEYS="rev:rev-key,duty:duty-key",
        ENVNET_SERVER_KEY_ROLES="rev:reviewer,duty:duty_room",
    )


def _publish(pub: Publisher) -> int:
    sent = 0
    for sid, series in PM25.items():
        seq = 1
        for day, pm25 in enumerate(series):
            for h in range(24):
                batch = []
                for q in range(4):
                    ts = T0 + day * 86400 + h * HOUR + q * 900
                    values = {**BACKGROUND, "pm25": pm25, "rh": 50.0}
                    batch.append({"v": 1, "seq": seq, "ts": ts, "kind": "air", "values": values})
                    seq += 1
                pub.send(f"envnet/v1/{sid}/reading", batch)
                sent += len(batch)
    return sent


def _get(base: str, path: str, **params) -> dict:
    r = httpx.get(f"{base}{path}", params=params, headers=REVIEWER, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()


def _figures(base: str, influxdb) -> dict:
    """Everything the invalidation must change and the restore bring back."""
    period = _get(base, "/reports/period", **{"from": DATES[0], "to": DATES[2]}, group="city")
    districts = _get(base, "/reports/period", **{"from": DATES[0], "to": DATES[2]})
    return {
        "daily": _get(base, "/reports/daily", date=DATES[1]),
        "city": period["air"][0],
        "ranks": {e["id"]: e["rank"] for e in districts["air"]},
        "completeness": _get(base, "/reports/completeness", **{"from": DATES[0], "to": DATES[2]}),
        # stored points, in an order that does not depend on InfluxDB's series ids
        "bulletin": _sorted(influxdb.rows('SELECT * FROM "aqi_daily"')),
        "aqi_points": _sorted(influxdb.rows('SELECT * FROM "aqi"')),
    }


def _sorted(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=lambda r: json.dumps(r, sort_keys=True))


def _reviewed_aqi(influxdb, station: str) -> list:
    """Grafana's reviewed query of the hourly AQI ($review = invalid)."""
    return influxdb.rows(
        f'SELECT "aqi" FROM "aqi" WHERE "station" = \'{station}\' AND "window" = \'1h\''
        " AND \"review\" != 'invalid'"
        f" AND time > {T0 + 86400}s AND time <= {T0 + 2 * 86400}s"
    )


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "envnet.cli", "review", *args],
        env={**env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_invalidate_a_day_then_restore_on_the_real_stack(
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

    def stored() -> int:
        rows = influxdb.rows('SELECT count("seq") FROM "air"')
        return rows[0]["count"] if rows else 0

    wait_until(lambda: stored() == sent, 120, what=f"{sent} readings in InfluxDB")
    # the evaluator's hourly AQI of rv-c on day 2 (stamped at each hour's end)
    wait_until(lambda: len(_reviewed_aqi(influxdb, "rv-c")) == 24, 60, what="hourly AQI")
    for d in DATES:
        r = httpx.post(
            f"{server}/reports/daily/publish", params={"date": d}, headers=REVIEWER, timeout=60
        )
        assert r.status_code == 200, r.text
    before = _figures(server, influxdb)
    st = {e["id"]: e for e in before["daily"]["stations"]}
    assert st["rv-c"]["aqi"] == 250 and before["daily"]["city"]["aqi"] == 115
    c = before["city"]
    assert (c["days_valid"], c["days_good"], c["good_days_ratio"]) == (3, 2, 66.67)
    assert before["ranks"] == {"和平区": 1, "沈河区": 2}
    audit_before = _get(server, "/audit", action="review")["items"]
    assert audit_before == []

    # -- invalidate rv-c's day 2 -----------------------------------------------------------
    start = datetime.fromtimestamp(T0 + 86400, CST).isoformat()
    end = datetime.fromtimestamp(T0 + 2 * 86400, CST).isoformat()
    r = httpx.post(
        f"{server}/review/invalidations",
        json={
            "station": "rv-c",
            "start": start,
            "end": end,
            "reason": "local interference",
            "note": "sensor sprayed by street cleaning",
        },
        headers=REVIEWER,
        timeout=300,
    )
    assert r.status_code == 201, r.text
    inv = r.json()
    assert inv["hour_start"] == T0 + 86400 and inv["hour_end"] == T0 + 2 * 86400
    assert inv["parameters"] == ["*"] and inv["reason"] == "local_interference"
    assert inv["created_by"] == "rev" and inv["active"] is True
    assert "error" not in inv["recompute"], inv["recompute"]
    assert inv["recompute"]["hourly_withdrawn"] == 24
    assert inv["recompute"]["daily_withdrawn"] == 1, inv["recompute"]  # the day: nothing valid
    assert inv["recompute"]["bulletins_rewritten"] == [DATES[1]]

    after = _figures(server, influxdb)
    st = {e["id"]: e for e in after["daily"]["stations"]}
    assert st["rv-c"]["aqi"] is None and st["rv-c"]["valid"] is False
    assert after["daily"]["city"]["aqi"] == 43 and after["daily"]["city"]["stations_reporting"] == 2
    c = after["city"]
    assert (c["days_valid"], c["days_good"], c["good_days_ratio"]) == (3, 3, 100.0)
    assert after["ranks"] == {"和平区": 1, "沈河区": 1}
    comp = {s["id"]: s for s in after["completeness"]["stations"]}["rv-c"]
    assert [d["valid_hours"] for d in comp["days"]] == [24, 0, 24]
    assert [d["invalidated_hours"] for d in comp["days"]] == [0, 24, 0]
    assert sum(m["invalidated_hours"] for m in comp["months"]) == 24
    # the bulletin: rv-c's day 2 has no index, the city's is 43
    bulletin = {
        (row["scope"], row["id"]): row
        for row in influxdb.rows(f'SELECT * FROM "aqi_daily" WHERE time = {T0 + 86400}s')
    }
    assert bulletin[("station", "rv-c")]["aqi"] is None
    assert bulletin[("city", "city")]["aqi"] == 43
    # Grafana's reviewed query drops the range; the raw one still has every point
    assert _reviewed_aqi(influxdb, "rv-c") == []
    raw = influxdb.rows(
        'SELECT "aqi" FROM "aqi" WHERE "station" = \'rv-c\' AND "window" = \'1h\''
        " AND \"review\" != 'recomputed'"
        f" AND time > {T0 + 86400}s AND time <= {T0 + 2 * 86400}s"
    )
    assert len(raw) == 24
    # the evaluator's daily AQI of rv-c's day 2 is withdrawn from the reviewed series (the day
    # has no valid value left, so nothing recomputed replaces it) and kept as raw
    daily = (
        'SELECT "aqi" FROM "aqi" WHERE "station" = \'rv-c\' AND "window" = \'24h\''
        f' AND time = {T0 + 86400}s AND "review" != '
    )
    assert influxdb.rows(daily + "'invalid'") == []
    assert [row["aqi"] for row in influxdb.rows(daily + "'recomputed'")] == [250]
    # the raw readings stay: nothing deleted
    assert stored() == sent
    # one audit row, naming the reviewer's key
    rows = _get(server, "/audit", action="review")["items"]
    assert [(a["action"], a["actor"], a["target"]) for a in rows] == [
        ("review.invalidate", "rev", "rv-c")
    ]
    # the CLI lists it
    p = _cli(envnet_env, "list", "--url", server, "--api-key", "rev-key", "--json")
    assert p.returncode == 0, p.stderr
    assert [i["id"] for i in json.loads(p.stdout)] == [inv["id"]]

    # -- restore through the CLI: every figure back exactly as it was ------------------------
    p = _cli(envnet_env, "restore", str(inv["id"]), "--url", server, "--api-key", "rev-key")
    assert p.returncode == 0, p.stderr
    assert f"restored {inv['id']}" in p.stdout, p.stdout
    assert f'"bulletins_rewritten": ["{DATES[1]}"]' in p.stdout, p.stdout
    again = _figures(server, influxdb)
    for key in before:
        assert json.dumps(again[key], sort_keys=True) == json.dumps(before[key], sort_keys=True), (
            key
        )
    rows = _get(server, "/audit", action="review")["items"]
    assert [a["action"] for a in rows] == ["review.restore", "review.invalidate"]
    listed = _get(server, "/review/invalidations")
    assert [(i["id"], i["active"], i["restored_by"]) for i in listed] == [(inv["id"], False, "rev")]
    store.close()


def test_bad_review_requests_change_nothing(envnet_env, server):
    store = SqliteStateStore(envnet_env["ENVNET_STORE_PATH"])
    store.register_station("rv-x", "air", {"interval_s": 60})
    now = time.time()
    t = int(now // HOUR) * HOUR - 10 * HOUR

    def iso(ts: float) -> str:
        return datetime.fromtimestamp(ts, CST).isoformat()

    good = {"station": "rv-x", "start": iso(t), "end": iso(t + 2 * HOUR), "reason": "maintenance"}
    r = httpx.post(f"{server}/review/invalidations", json=good, headers=REVIEWER, timeout=120)
    assert r.status_code == 201, r.text
    first = r.json()["id"]

    def state() -> tuple:
        invs = _get(server, "/review/invalidations")
        audit = _get(server, "/audit", action="review")["items"]
        return json.dumps(invs, sort_keys=True), len(audit)

    snapshot = state()
    cases = [
        ({**good, "station": "rv-nope"}, REVIEWER, 404, "unknown station"),
        ({**good, "start": iso(t + 2 * HOUR), "end": iso(t)}, REVIEWER, 400, "inverted"),
        ({**good, "start": iso(t + HOUR), "end": iso(t + 3 * HOUR)}, REVIEWER, 409, "overlaps"),
        ({**good, "start": iso(now - HOUR), "end": iso(now + 3600)}, REVIEWER, 400, "future"),
        (
            {**good, "start": iso(t - 5 * HOUR), "end": iso(t - 4 * HOUR), "reason": "bored"},
            REVIEWER,
            422,
            "reason",
        ),
        ({**good, "parameters": ["radon"]}, REVIEWER, 422, "parameters"),
        ({**good, "parameters": ["do"]}, REVIEWER, 400, "not measured"),
        ({**good, "start": iso(t - 5 * HOUR), "end": iso(t - 4 * HOUR)}, DUTY, 403, "reviewer"),
        ({**good, "start": iso(t - 5 * HOUR), "end": iso(t - 4 * HOUR)}, {}, 401, "missing"),
    ]
    for body, headers, status, words in cases:
        r = httpx.post(f"{server}/review/invalidations", json=body, headers=headers, timeout=60)
        assert r.status_code == status, (body, r.text)
        assert words in r.text, r.text
    # a restore by a non-reviewer, of an unknown id, or twice
    r = httpx.delete(f"{server}/review/invalidations/{first}", headers=DUTY, timeout=60)
    assert r.status_code == 403
    r = httpx.delete(f"{server}/review/invalidations/99999", headers=REVIEWER, timeout=60)
    assert r.status_code == 404
    assert state() == snapshot
    r = httpx.delete(f"{server}/review/invalidations/{first}", headers=REVIEWER, timeout=60)
    assert r.status_code == 200, r.text
    r = httpx.delete(f"{server}/review/invalidations/{first}", headers=REVIEWER, timeout=60)
    assert r.status_code == 409 and "already restored" in r.json()["detail"]
    # a restored range may be invalidated again (no overlap with an active one)
    r = httpx.post(f"{server}/review/invalidations", json=good, headers=REVIEWER, timeout=60)
    assert r.status_code == 201, r.text
    store.close()

"""Several gateways, one answer: the same recorded input through one gateway and through two
on one MQTT shared subscription ($share/envnet, gateway.eval_partitions = 2, one state store)
gives the same alerts, the same webhook events and the same computed indices.

The input: three national air stations through three CST days with a pollution episode (PM2.5
200 on days 1-2, the city's daily AQI 250 -> an episode warning), a water station on a river
with an ammonia-nitrogen incident (class V against target III), and an air station that speaks
a little, sends its last will and falls silent (offline). Readings stand for 20 minutes of data
each (interval_s 1200), so an hour has its 45 valid minutes from three readings. Each day is
published, evaluated and ticked before the next, as data arrives over days in real life; a
station's consecutive messages are at least ~50 ms apart, as a real station's are minutes.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from conftest import Proc, wait_until
from paho.mqtt.enums import CallbackAPIVersion

from envnet.devkit.services import component_env
from envnet.domain.webhooks.catalogue import CATALOGUE
from envnet.store.state import SqliteStateStore
from envnet.store.webhooks.outbox import Outbox

DAY = 86400
AIR = ["pt-nat-01", "pt-nat-02", "pt-nat-03"]
WATER = "pt-hun-01"
GONE = "pt-gone-01"
PM_BY_DAY = [200.0, 200.0, 20.0]
STEP_S = 1200


def _t0() -> int:
    """A CST day start (16:00 UTC) far enough back that three days and the grace fit."""
    now = int(time.time())
    day_start = (now + 8 * 3600) // DAY * DAY - 8 * 3600
    return day_start - 5 * DAY


def recorded_input(t0: int) -> list[list[tuple[str, dict]]]:
    """Per CST day, the messages in publish order (round robin over the stations)."""
    days = []
    seq: dict[str, int] = {}
    for d, pm in enumerate(PM_BY_DAY + [20.0]):  # a 4th day's first hours close day 3
        msgs: list[tuple[str, dict]] = []
        hours = 24 if d < 3 else 3
        for k in range(hours * 3600 // STEP_S):
            ts = t0 + d * DAY + k * STEP_S + 60
            for sid in AIR:
                seq[sid] = seq.get(sid, 0) + 1
                values = {"pm25": pm, "pm10": pm * 1.5, "so2": 8.0, "no2": 20.0, "co": 0.5}
                msgs.append((sid, _reading(seq[sid], ts, "air", values)))
            seq[WATER] = seq.get(WATER, 0) + 1
            nh3n = 1.75 if d == 1 and 4 <= k * STEP_S // 3600 < 10 else 0.25
            values = {"ph": 7.5, "do": 7.5, "nh3n": nh3n, "codmn": 3.0}
            msgs.append((WATER, _reading(seq[WATER], ts, "water", values)))
        days.append(msgs)
    gone = [(GONE, _reading(i + 1, t0 + 60 * i, "air", {"pm25": 30.0})) for i in range(3)]
    days[0] = gone + [(GONE, {"status": "offline"})] + days[0]
    return days


def _reading(seq: int, ts: float, kind: str, values: dict) -> dict:
    return {"v": 1, "seq": seq, "ts": ts, "kind": kind, "values": values, "flags": {}}


def _register(store_path: Path) -> None:
    store = SqliteStateStore(store_path)
    for sid in AIR:
        store.register_station(sid, "air", {"interval_s": STEP_S, "class": "national"})
    store.register_station(
        WATER,
        "water",
        {"interval_s": STEP_S, "river": "Hun", "section": "city", "target_class": 3},
    )
    store.register_station(GONE, "air", {"interval_s": 2, "class": "micro"})
    store.close()
    Outbox(store_path).create_subscription(
        "http://127.0.0.1:9/hook", "s3cret", [k.type for k in CATALOGUE if k.subscribable]
    )


def _publish(port: int, msgs: list[tuple[str, dict]]) -> None:
    c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="recorded")
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        for sid, body in msgs:
            sub = "status" if "status" in body else "reading"
            doc = {"state": body["status"]} if sub == "status" else body
            c.publish(f"envnet/v1/{sid}/{sub}", json.dumps(doc), qos=1).wait_for_publish(10)
            time.sleep(0.01)
    finally:
        c.loop_stop()
        c.disconnect()


def _drained(store_path: Path, readings: int) -> bool:
    with sqlite3.connect(store_path) as db:
        got = db.execute("SELECT coalesce(sum(readings_total), 0) FROM station_state").fetchone()
        queued = db.execute("SELECT count(*) FROM evaluation_queue").fetchone()
    return got[0] >= readings and queued[0] == 0


def wait_evaluating(procs: list[Proc]) -> None:
    """Every gateway subscribed and evaluating a partition of its own."""
    for p in procs:
        wait_until(lambda p=p: "subscribed to" in p.output(), 30, what="subscription")
    wait_until(
        lambda: all(p.output().count("evaluating partition") >= 1 for p in procs),
        30,
        what="every gateway evaluating a partition",
    )


def _run(tmp: Path, mosquitto, influxdb, gateways: int, database: str) -> dict:
    tmp.mkdir()
    store = tmp / "envnet.db"
    _register(store)
    influxdb.query(f'CREATE DATABASE "{database}"', method="POST")
    extra = {"ENVNET_INFLUX_DATABASE": database, "ENVNET_GATEWAY_EVAL_PARTITIONS": str(gateways)}
    if gateways > 1:
        extra["ENVNET_MQTT_SHARED_GROUP"] = "envnet"
    procs = []
    for k in range(gateways):
        env = component_env(tmp, mosquitto, influxdb, f"{database}-{k}", **extra)
        procs.append(Proc(["gateway"], env, tmp / f"gateway-{k}.log").start())
    try:
        wait_evaluating(procs)
        published = 0
        for msgs in recorded_input(_t0()):
            _publish(mosquitto.port, msgs)
            published += sum(1 for _, b in msgs if "status" not in b)
            wait_until(lambda n=published: _drained(store, n), 90, what="evaluation")
            time.sleep(5)  # two evaluator ticks: the day's episode assessment, offline
        time.sleep(6)
        return _outcome(store, influxdb, database)
    finally:
        for p in procs:
            p.stop()


def _outcome(store: Path, influxdb, database: str) -> dict:
    with sqlite3.connect(store) as db:
        # Window rules observe at data time (days ago here); fault rules (offline, flat line)
        # at the wall clock of the run, which is left out (with the value: offline's is the
        # silence in seconds).
        alerts = sorted(
            (st, rule, param, state, sev, _data_time(opened), _data_time(opened) and last)
            for st, rule, param, state, sev, opened, last in db.execute(
                "SELECT station, rule, parameter, state, severity, opened_at,"
                " json_extract(data, '$.last_value') FROM alerts"
            ).fetchall()
        )
        events = sorted(
            (t, st or "", sev or "", _alert_key(body))
            for t, st, sev, body in db.execute(
                "SELECT type, station, severity, body FROM webhook_events"
            ).fetchall()
        )
    return {"alerts": alerts, "events": events, **influx_answer(influxdb, database)}


def influx_answer(influxdb, database: str) -> dict:
    """What the gateways computed into InfluxDB: AQI points, water classes, reading count."""
    influxdb.database, db_name = database, influxdb.database
    try:
        aqi = sorted(
            (r["station"], r["window"], r["time"], r["aqi"])
            for r in influxdb.rows("SELECT aqi, station, window FROM aqi GROUP BY *")
        )
        water = sorted(
            (r["time"], r["class_num"]) for r in influxdb.rows("SELECT class_num FROM water_class")
        )
        readings = influxdb.rows("SELECT count(seq) FROM air")[0]["count"]
    finally:
        influxdb.database = db_name
    return {"aqi": aqi, "water": water, "air": readings}


def _data_time(t: float | None) -> float | None:
    return t if t is not None and t < time.time() - DAY else None


def _alert_key(body: str) -> tuple:
    """What an event says, without its ids and wall-clock times."""
    data = json.loads(body).get("data") or {}
    a = data.get("alert") or {}
    ep = data.get("episode") or {}
    return (
        a.get("rule"),
        a.get("parameter"),
        a.get("state"),
        a.get("severity"),
        _data_time(a.get("opened_at")),
        ep.get("day"),
        ep.get("level"),
    )


def test_two_gateways_on_a_shared_subscription_give_the_alerts_of_one(
    tmp_path, mosquitto, influxdb
):
    one = _run(tmp_path / "one", mosquitto, influxdb, 1, "envnet_one")
    two = _run(tmp_path / "two", mosquitto, influxdb, 2, "envnet_two")
    # The input did what it is for: an episode, the river incident, the silent station.
    rules = {(a[0], a[1]) for a in one["alerts"]}
    assert ("*", "episode") in rules, rules
    assert any(st == WATER for st, _ in rules), rules
    assert (GONE, "offline") in rules, rules
    assert one["aqi"] and one["water"]
    assert any(e[0] == "episode.changed" for e in one["events"])
    # ... and two gateways gave exactly the same.
    assert two["alerts"] == one["alerts"]
    assert two["events"] == one["events"]
    assert two["aqi"] == one["aqi"]
    assert two["water"] == one["water"]
    assert two["air"] == one["air"]

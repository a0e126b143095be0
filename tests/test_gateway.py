"""The gateway against the real Mosquitto and InfluxDB: good readings land, bad ones are
dead-lettered with a reason and counted, and nothing stops the next good message."""

from __future__ import annotations

import sqlite3
import time

from conftest import wait_until
from mqtt_helpers import Publisher, reading

T = "envnet/v1/sy-air-001/reading"


def _dead_letters(path: str) -> list[tuple[str, str]]:
    with sqlite3.connect(path) as c:
        return [tuple(r) for r in c.execute("SELECT topic, reason FROM dead_letters ORDER BY id")]


def test_malformed_messages_are_counted_and_the_next_good_one_lands(
    mosquitto, influxdb, gateway, envnet_env
):
    pub = Publisher(mosquitto.port)
    now = int(time.time())
    try:
        pub.send(T, reading(1, now - 10, pm25=12.0))
        wait_until(lambda: influxdb.rows("SELECT pm25 FROM air"), 20, what="first reading")
        pub.send(T, b'{"v":1,"seq":')  # bad JSON
        pub.send(T, reading(2, now - 9, pm25="35"))  # string for a number
        pub.send("envnet/v1/Bad_ID/reading", reading(3, now - 8))  # bad station id
        pub.send(T, b'{"v":1,"seq":4,"ts":1,"kind":"air","values":{"pm25":NaN},"flags":{}}')
        pub.send(T, reading(5, now - 5, pm25=40.0))
        wait_until(lambda: len(influxdb.rows("SELECT pm25 FROM air")) == 2, 20, what="good reading")
    finally:
        pub.close()
    rows = influxdb.rows("SELECT pm25, seq, station FROM air")
    assert [(r["seq"], r["pm25"], r["station"]) for r in rows] == [
        (1, 12.0, "sy-air-001"),
        (5, 40.0, "sy-air-001"),
    ]
    dead = wait_until(
        lambda: (
            len(_dead_letters(envnet_env["ENVNET_GATEWAY_BUFFER_PATH"])) == 4
            and _dead_letters(envnet_env["ENVNET_GATEWAY_BUFFER_PATH"])
        ),
        10,
    )
    assert sorted(reason for _, reason in dead) == ["bad_json", "bad_json", "bad_topic", "schema"]
    assert gateway.p.poll() is None, "the gateway must keep running"
    log = gateway.output()
    assert "rejected envnet/v1/Bad_ID/reading: bad_topic" in log
    assert "rejected envnet/v1/sy-air-001/reading: schema: values.pm25" in log


def test_replays_are_idempotent_and_unknown_fields_are_kept(mosquitto, influxdb, gateway):
    pub = Publisher(mosquitto.port)
    now = int(time.time())
    batch = [reading(i, now - 100 + i, pm25=float(i)) for i in range(1, 6)]
    batch[0]["fw"] = "0.1.0"
    try:
        pub.send(T, batch)
        pub.send(T, batch[1:3])  # an offline replay that overlaps what already arrived
        pub.send(T, reading(6, now - 50, pm25=6.0))
        wait_until(lambda: len(influxdb.rows("SELECT pm25 FROM air")) == 6, 20, what="6 readings")
        time.sleep(1.0)
    finally:
        pub.close()
    rows = influxdb.rows("SELECT pm25, seq, extra FROM air")
    assert [r["seq"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert rows[0]["extra"] == '{"fw": "0.1.0"}'


def test_clock_unsynced_reading_gets_receive_time_and_keeps_flag(mosquitto, influxdb, gateway):
    pub = Publisher(mosquitto.port)
    r = reading(1, 1000, pm25=9.0)  # the station thinks it is 1970
    r["flags"] = {"*": "clock"}
    before = time.time()
    try:
        pub.send(T, r)
        rows = wait_until(lambda: influxdb.rows("SELECT pm25, flag_all FROM air"), 20)
    finally:
        pub.close()
    assert rows[0]["flag_all"] == "clock"
    assert rows[0]["time"] >= int(before) - 1


def test_out_of_range_value_is_stored_and_flagged(mosquitto, influxdb, gateway):
    pub = Publisher(mosquitto.port)
    try:
        pub.send(T, reading(1, int(time.time()), co=800.0, pm25=10.0))  # CO in ug/m3 by mistake
        rows = wait_until(lambda: influxdb.rows("SELECT co, flag_co, flag_pm25 FROM air"), 20)
    finally:
        pub.close()
    assert rows[0]["co"] == 800.0 and rows[0]["flag_co"] == "range"
    assert rows[0]["flag_pm25"] is None

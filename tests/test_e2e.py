"""The walking skeleton end to end: the real firmware on MicroPython publishes through the real
Mosquitto; the gateway stores into the real InfluxDB; the server shows the station online, and
offline after the firmware process is killed (the broker publishes its last will)."""

from __future__ import annotations

import httpx
from conftest import wait_until


def _station(base: str, sid: str) -> dict:
    r = httpx.get(f"{base}/stations/{sid}", timeout=5)
    return r.json() if r.status_code == 200 else {}


def test_reading_travels_from_firmware_to_influx_and_server(influxdb, gateway, server, firmware):
    air = firmware("sy-air-001", "air", interval_s=1)
    water = firmware("hun-river-01", "water", interval_s=1)

    rows = wait_until(
        lambda: (
            len(influxdb.rows("SELECT * FROM air WHERE station='sy-air-001'")) >= 2
            and influxdb.rows("SELECT * FROM air WHERE station='sy-air-001'")
        ),
        40,
        what=f"air readings in InfluxDB\n{air.log_tail()}",
    )
    seqs = [r["seq"] for r in rows]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert all(0 <= r["pm25"] <= 1000 for r in rows)
    assert rows[0]["kind"] == "air"

    wrows = wait_until(
        lambda: influxdb.rows("SELECT ph, do, seq FROM water WHERE station='hun-river-01'"),
        40,
        what=f"water readings\n{water.log_tail()}",
    )
    assert 0 <= wrows[0]["ph"] <= 14

    st = wait_until(
        lambda: (
            _station(server, "sy-air-001").get("state") == "online"
            and _station(server, "sy-air-001")
        ),
        20,
        what="station online",
    )
    assert st["kind"] == "air" and "pm25" in st["last_values"]
    listing = httpx.get(f"{server}/stations", timeout=5).json()
    assert {s["id"] for s in listing} >= {"sy-air-001", "hun-river-01"}

    air.kill()
    wait_until(
        lambda: _station(server, "sy-air-001").get("state") == "offline",
        60,
        what="last will turning the station offline",
    )
    assert _station(server, "hun-river-01")["state"] == "online"


def test_server_answers_404_for_unknown_station_and_422_for_bad_id(server):
    assert httpx.get(f"{server}/stations/no-such-station").status_code == 404
    assert httpx.get(f"{server}/stations/Bad_ID").status_code == 422
    assert httpx.get(f"{server}/openapi.json").json()["info"]["title"] == "envnet"

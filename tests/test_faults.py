"""Nothing lost: stations keep publishing numbered readings while the gateway is SIGKILLed
twice, Mosquitto restarts (persistence on) and InfluxDB is down for a stretch. At the end
InfluxDB holds every reading exactly once, the buffer holds no duplicate and no dead letter,
and the implausible-jump alerts that two spiked readings cause (one near each kill) opened
exactly once each, with one `alert.opened` event each.

The stations here are paho clients that behave like the firmware does: QoS 1, and a reading
counts as sent only when the broker acknowledged it; until then it is retried with its seq.
"""

from __future__ import annotations

import sqlite3
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from conftest import Proc, wait_until
from mqtt_helpers import reading
from paho.mqtt.enums import CallbackAPIVersion

STATIONS = 4
RATE_PER_STATION = 20  # readings/s
# A PM2.5 spike (a jump > 300 ug/m3 from the reading before) near each gateway kill.
SPIKES = {"fault-0": 55, "fault-1": 300}


class NumberedStation(threading.Thread):
    """Publishes seq 1..n; a reading is done only once the broker has PUBACKed it."""

    def __init__(self, sid: str, port: int, stop: threading.Event, t0: int) -> None:
        super().__init__(daemon=True)
        self.sid, self.stop, self.t0 = sid, stop, t0
        self.sent = 0
        self.c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=sid)
        self.c.reconnect_delay_set(0.2, 1)
        self.c.connect_async("127.0.0.1", port)
        self.c.loop_start()

    def run(self) -> None:
        seq = 1
        while not self.stop.is_set():
            pm25 = 900.0 if SPIKES.get(self.sid) == seq else float(seq % 300)
            msg = reading(seq, self.t0 + seq, pm25=pm25)
            info = self.c.publish(f"envnet/v1/{self.sid}/reading", _json(msg), qos=1)
            try:
                info.wait_for_publish(2)
                acked = info.is_published()
            except (RuntimeError, ValueError):  # not connected: the broker never saw it
                acked = False
            if acked:
                self.sent = seq
                seq += 1
                time.sleep(1 / RATE_PER_STATION)
            else:
                time.sleep(0.2)  # broker away: retry the same seq, as the firmware does
        self.c.loop_stop()
        self.c.disconnect()


def _json(d: dict) -> str:
    import json

    return json.dumps(d)


def _count(influxdb, sid: str) -> tuple[int, int]:
    rows = influxdb.rows(f"SELECT count(seq), max(seq) FROM air WHERE station='{sid}'")
    return (rows[0]["count"], rows[0]["max"]) if rows else (0, 0)


def test_no_reading_lost_or_duplicated_through_kills_and_restarts(
    tmp_path, mosquitto, influxdb, gateway, envnet_env
):
    stop = threading.Event()
    t0 = int(time.time()) - 100_000  # distinct ts per seq, all in the past
    stations = [NumberedStation(f"fault-{i}", mosquitto.port, stop, t0) for i in range(STATIONS)]
    for s in stations:
        s.start()
    gw = gateway

    def restart_gateway() -> Proc:
        p = Proc(["gateway"], envnet_env, tmp_path / "gateway.log").start()
        wait_until(lambda: p.output().count("subscribed to") >= 1, 20)
        return p

    time.sleep(3)
    gw.kill()  # 1st SIGKILL
    time.sleep(1.5)
    gw = restart_gateway()
    time.sleep(3)
    mosquitto.stop()  # broker restart; its persistence keeps the gateway's session and queue
    time.sleep(1)
    mosquitto.start()
    time.sleep(3)
    influxdb.stop()  # InfluxDB down for a stretch: the gateway buffers
    time.sleep(5)
    influxdb.start()
    time.sleep(2)
    gw.kill()  # 2nd SIGKILL
    time.sleep(1)
    gw = restart_gateway()
    time.sleep(3)
    stop.set()
    for s in stations:
        s.join(10)
    try:
        for s in stations:
            wait_until(
                lambda s=s: _count(influxdb, s.sid) == (s.sent, s.sent),
                60,
                what=f"{s.sid}: {s.sent} readings, got {_count(influxdb, s.sid)}",
            )
        total = sum(s.sent for s in stations)
        assert total > STATIONS * RATE_PER_STATION * 5, f"too few readings sent ({total})"
        assert all(s.sent > SPIKES.get(s.sid, 0) for s in stations)
        log = gw.output()
        assert "InfluxDB write failed, buffering and retrying" in log
        with sqlite3.connect(envnet_env["ENVNET_GATEWAY_BUFFER_PATH"]) as buf:
            per_station = dict(
                buf.execute(
                    "SELECT station, count(*) FROM points WHERE measurement='air' GROUP BY station"
                )
            )
            dead = buf.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
        assert per_station == {s.sid: s.sent for s in stations} and dead == 0

        def jump_alerts() -> list[tuple]:
            with sqlite3.connect(envnet_env["ENVNET_STORE_PATH"]) as db:
                return db.execute(
                    "SELECT a.station, count(DISTINCT a.id), count(e.id) FROM alerts a"
                    " LEFT JOIN webhook_events e ON e.id LIKE a.id || ':opened:%'"
                    " WHERE a.rule='jump' AND a.parameter='pm25' GROUP BY a.station"
                    " ORDER BY a.station"
                ).fetchall()

        opened = wait_until(
            lambda: len(jump_alerts()) == len(SPIKES) and jump_alerts(), 20, what="jump alerts"
        )
        assert opened == [(sid, 1, 1) for sid in sorted(SPIKES)]
    finally:
        gw.stop()


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MB tmpfs for the gateway's buffer, to fill it for real. Needs root (CI has it)."""
    import subprocess

    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], capture_output=True
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


# The message log (the receiver's only file) full: nothing is acknowledged until it has room.
# The buffer full (the log elsewhere): the receiver goes on, the processor waits and resumes.
FULL_DISKS = {
    "log and buffer": (True, True, "not acknowledging"),
    "log": (True, False, "not acknowledging"),
    "buffer": (False, True, "cannot store to the buffer"),
}


@pytest.mark.parametrize("full", list(FULL_DISKS))
def test_full_disk_stops_acknowledging_and_resumes_without_loss(
    tmp_path, small_disk, mosquitto, influxdb, envnet_env, full
):
    import subprocess

    from mqtt_helpers import Publisher

    log_small, buffer_small, says = FULL_DISKS[full]
    env = dict(
        envnet_env,
        ENVNET_GATEWAY_BUFFER_PATH=str((small_disk if buffer_small else tmp_path) / "buffer.db"),
        ENVNET_GATEWAY_LOG_PATH=str((small_disk if log_small else tmp_path) / "log.db"),
    )
    gw = Proc(["gateway"], env, tmp_path / "gw-full.log").start()
    wait_until(lambda: "subscribed to" in gw.output(), 20)
    filler = small_disk / "filler"
    pub = Publisher(mosquitto.port)
    t0 = int(time.time()) - 50_000
    try:
        pub.send("envnet/v1/disk-1/reading", reading(1, t0 + 1, pm25=1.0))
        wait_until(lambda: _count(influxdb, "disk-1")[0] == 1, 20)
        # Fill the disk to the last byte, then publish more readings.
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True)
        for seq in range(2, 52):
            big = reading(seq, t0 + seq, pm25=float(seq))
            big["note"] = "x" * 2000  # each reading needs new pages in the buffer
            pub.send("envnet/v1/disk-1/reading", big)
        wait_until(lambda: says in gw.output(), 20, what="the gateway saying so")
        assert gw.p.poll() is None
        filler.unlink()  # space returns
        wait_until(lambda: _count(influxdb, "disk-1") == (51, 51), 60, what="all 51 readings")
    finally:
        pub.close()
        gw.stop()

"""The HJ 212 uplink: aggregation into 2011/2051/2061/2031 packets, and end to end from MQTT to
a test platform over TCP, through a platform outage and an uplink crash."""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import datetime
from pathlib import Path

from conftest import Proc, wait_until
from mqtt_helpers import Publisher

from envnet.config import load_config
from envnet.core.calendar import CST, DAY, HOUR, day_start_at
from envnet.core.contract import Reading
from envnet.devkit.hj212_platform import TestPlatform
from envnet.devkit.services import free_port
from envnet.domain.hj212.codec import decode
from gateway.uplink import Uplink

MN = "MN-AIR-01-0000000001"


def _reading(seq: int, ts: float, flags: dict | None = None, **values) -> dict:
    return {"v": 1, "seq": seq, "ts": ts, "kind": "air", "values": values, "flags": flags or {}}


def _hour(start: float, seq0: int) -> list[dict]:
    """60 minute readings in the hour from `start`: pm25 normal, so2 in calibration, co over
    range, o3 normal for 40 minutes only (too few) and voc, which has no HJ 212 code."""
    out = []
    for i in range(60):
        flags = {"so2": "cal", "co": "range"}
        vals = {"pm25": 10.0 + i % 5, "so2": 8.0, "co": 0.5 + i * 0.01, "voc": 100, "t": 20.0}
        if i < 40:
            vals["o3"] = 50.0
        out.append(_reading(seq0 + i, start + 30 + 60 * i, flags, **vals))
    return out


def _cst(ts: float) -> str:
    return datetime.fromtimestamp(ts, CST).strftime("%Y%m%d%H%M%S")


def test_aggregation_hour_and_day(tmp_path: Path):
    env = {
        "ENVNET_UPLINK_OUTBOX_PATH": str(tmp_path / "uplink.db"),
        "ENVNET_STORE_PATH": str(tmp_path / "no-state.db"),  # never made: no server here
        "ENVNET_UPLINK_PLATFORMS": json.dumps(
            [{"name": "p", "host": "127.0.0.1", "port": 1, "stations": {"air-01": MN}}]
        ),
    }
    up = Uplink(load_config(None, environ=env))
    d0 = day_start_at(1_700_000_000) - DAY
    for h in range(24):
        readings = [Reading.model_validate(r) for r in _hour(d0 + h * HOUR, h * 100)]
        up.ingest("air-01", readings, d0 + DAY)
    up.ingest("air-01", [Reading.model_validate(_reading(9999, d0 + DAY + 300, pm25=1))], 0)
    rows = up.outbox.db.execute("SELECT cn, packet FROM outbox ORDER BY id").fetchall()
    by_cn: dict[str, list] = {}
    for cn, raw in rows:
        by_cn.setdefault(cn, []).append(decode(raw))
    assert len(by_cn["2011"]) == 24 * 60 + 1
    assert len(by_cn["2051"]) == 24 * 6  # 10-minute windows
    assert len(by_cn["2061"]) == 24
    (day,) = by_cn["2031"]
    assert day.cp["DataTime"] == _cst(d0)
    assert day.cp["a34004-Flag"] == "N" and day.cp["a34004-Avg"] == "12"
    assert day.cp["a21026-Flag"] == "C" and day.cp["a21005-Flag"] == "T"
    assert "a05024-Avg" not in day.cp  # 40 minutes an hour: no valid hour, no day
    rt = by_cn["2011"][0]
    assert rt.cp["a34004-Rtd"] == "10" and rt.cp["a34004-Flag"] == "N"
    assert rt.cp["a21026-Flag"] == "C" and rt.cp["a21005-Flag"] == "T"
    # A replay of stored readings queues nothing new.
    again = [Reading.model_validate(r) for r in _hour(d0, 0)]
    assert up.ingest("air-01", again, d0 + DAY) == 0


def test_mqtt_to_platform_hour_data_survives_outage(tmp_path: Path, mosquitto):
    platform = TestPlatform().start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENVNET_")}
    env.update(
        ENVNET_MQTT_URL=mosquitto.url,
        ENVNET_UPLINK_CLIENT_ID=f"uplink-{free_port()}",
        ENVNET_UPLINK_OUTBOX_PATH=str(tmp_path / "uplink.db"),
        ENVNET_STORE_PATH=str(tmp_path / "no-state.db"),  # never made: no server here
        ENVNET_UPLINK_ACK_TIMEOUT_S="2",
        ENVNET_UPLINK_BACKOFF_MAX_S="0.5",
        ENVNET_UPLINK_PLATFORMS=json.dumps(
            [
                {
                    "name": "province",
                    "host": "127.0.0.1",
                    "port": platform.port,
                    "password": "123456",
                    "stations": {"air-01": MN},
                }
            ]
        ),
    )
    log = tmp_path / "uplink.log"
    proc = Proc(["uplink"], env, log).start()
    pub = Publisher(mosquitto.port, client_id="hj212-test-pub")
    try:
        wait_until(lambda: "subscribed to" in proc.output(), 20, what="uplink subscription")
        h0 = (int(time.time()) // HOUR - 3) * HOUR  # a past full hour, in station time
        first = _hour(h0, 0) + [_reading(60, h0 + HOUR + 200, pm25=1.0)]
        pub.send("envnet/v1/air-01/reading", first)
        hours = wait_until(lambda: platform.received("2061"), 20, what="hour data (2061)")
        (hour,) = hours
        assert (hour.st, hour.mn, hour.pw, hour.needs_ack) == ("22", MN, "123456", True)
        cp = hour.cp
        assert cp["DataTime"] == _cst(h0)
        assert (cp["a34004-Avg"], cp["a34004-Min"], cp["a34004-Max"]) == ("12", "10", "14")
        assert cp["a34004-Flag"] == "N"
        assert cp["a21026-Avg"] == "8" and cp["a21026-Flag"] == "C"  # so2 calibrating
        assert cp["a21005-Flag"] == "T"  # co over range
        assert cp["a01001-Flag"] == "N"  # temperature
        assert "a05024-Avg" not in cp  # o3: 40 of 60 minutes, no hourly value
        assert not any(k.startswith("voc") for k in cp)
        assert platform.errors == []

        # A platform request (1011: read the field clock) gets 9011, 1011 and 9012 back.
        platform.request("1011", MN, "20260101000000001")
        wait_until(lambda: platform.received("9012"), 10, what="9012 execution result")
        assert platform.received("9011")[0].cp == {"QnRtn": "1"}

        # Outage: the platform goes away, the uplink crashes meanwhile, data keeps coming.
        wait_until(lambda: len(platform.received("2011")) >= 61, 20, what="real-time data")
        platform.stop()
        second = _hour(h0 + HOUR, 100) + [_reading(160, h0 + 2 * HOUR + 200, pm25=1.0)]
        pub.send("envnet/v1/air-01/reading", second[:30])
        wait_until(lambda: "unreachable" in proc.output(), 20, what="uplink noticing the outage")
        proc.kill()
        pub.send("envnet/v1/air-01/reading", second[30:])  # kept by the broker session
        proc = Proc(["uplink"], env, log).start()
        platform.start()  # same port
        wait_until(lambda: len(platform.received("2061")) == 2, 30, what="hour data after outage")
        later = platform.received("2061")[1]
        assert later.cp["DataTime"] == _cst(h0 + HOUR) and later.cp["a34004-Flag"] == "N"
        wait_until(
            lambda: (
                {p.cp["DataTime"] for p in platform.received("2011")}
                == {_cst(r["ts"]) for r in first + second}
            ),
            20,
            what="every real-time reading",
        )
        assert len(platform.received("2051")) >= 12
        assert platform.errors == []
    finally:
        pub.close()
        proc.stop()
        platform.stop()


def test_platforms_from_environment_are_checked():
    import pytest

    from envnet.config import ConfigError

    with pytest.raises(ConfigError, match="uplink.platforms: not valid JSON"):
        load_config(None, environ={"ENVNET_UPLINK_PLATFORMS": "[{"})
    with pytest.raises(ConfigError, match="uplink.platforms.0.port"):
        load_config(None, environ={"ENVNET_UPLINK_PLATFORMS": '[{"name": "p", "host": "h"}]'})


def test_unacknowledged_packets_are_resent(tmp_path: Path):
    """A platform that does not answer 9014 gets the packet again after ack_timeout_s, over a
    new connection, until it acknowledges; nothing is skipped."""
    platform = TestPlatform(ack=False).start()
    env = {
        "ENVNET_UPLINK_OUTBOX_PATH": str(tmp_path / "uplink.db"),
        "ENVNET_STORE_PATH": str(tmp_path / "no-state.db"),  # never made: no server here
        "ENVNET_UPLINK_ACK_TIMEOUT_S": "0.3",
        "ENVNET_UPLINK_BACKOFF_MAX_S": "0.2",
        "ENVNET_UPLINK_PLATFORMS": json.dumps(
            [
                {
                    "name": "p",
                    "host": "127.0.0.1",
                    "port": platform.port,
                    "stations": {"air-01": MN},
                    "send": ["2011"],
                }
            ]
        ),
    }
    up = Uplink(load_config(None, environ=env))
    sender = threading.Thread(target=up._sender, args=(up.cfg.platforms[0],), daemon=True)
    sender.start()
    try:
        t0 = 1_700_000_000
        readings = [Reading.model_validate(_reading(i, t0 + 60 * i, pm25=i)) for i in range(3)]
        assert up.ingest("air-01", readings, t0 + 200) == 3
        wait_until(lambda: len(platform.received("2011")) >= 2, 10, what="a resend")
        first = platform.received("2011")
        assert first[0].qn == first[1].qn  # the same packet again
        assert platform.connections >= 2
        platform.ack = True
        wait_until(lambda: up.outbox.pending_count() == 0, 10, what="an empty outbox")
        sent = {p.cp["DataTime"] for p in platform.received("2011")}
        assert sent == {_cst(t0 + 60 * i) for i in range(3)}
        # the counters (gateway/uplink_metrics.py): every resend a retry, each packet acked once
        m = up.metrics.snapshot()
        received = len(platform.received("2011"))
        assert m['envnet_uplink_packets_sent_total{cn="2011",platform="p"}'] == received
        assert m['envnet_uplink_retries_total{platform="p"}'] == received - 3 >= 1
        assert m['envnet_uplink_packets_acked_total{platform="p"}'] == 3
        assert m['envnet_uplink_connection_failures_total{platform="p"}'] >= 1
        assert m['envnet_uplink_queue_depth{platform="p"}'] == 0
        assert m["envnet_uplink_readings_stored_total"] == 3
        assert not up.publish_metrics()  # no state store here (store.path not made): no publish
    finally:
        up.stop()
        platform.stop()

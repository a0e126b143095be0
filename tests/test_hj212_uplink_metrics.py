"""The HJ 212 uplink's counters on the server's /metrics: the real uplink process publishes them
into the state store, the real server re-exports them with an `uplink` label.

Two platforms serve one air station: "province" (the test platform, acknowledges, takes every
CN) and "national" (nobody listening, takes 2061 only). One message with an hour of minute
readings plus one that closes the hour, and one message the contract refuses. By hand:
province gets 61 real-time (2011), 6 ten-minute (2051) and 1 hour (2061) packets, each
acknowledged once (68), no retry; national's one 2061 waits in the queue, its connects fail.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import httpx
from conftest import Proc, wait_until
from mqtt_helpers import Publisher
from prometheus_client.parser import text_string_to_metric_families

from envnet.core.calendar import HOUR
from envnet.devkit.hj212_platform import TestPlatform
from envnet.devkit.services import free_port

MN = "MN-AIR-METRICS-000001"


def _metrics(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, sorted labels) -> value of every envnet_uplink_* sample."""
    text = httpx.get(f"{base}/metrics", timeout=30).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name.startswith("envnet_uplink_")
    }


def _reading(seq: int, ts: float, **values) -> dict:
    return {"v": 1, "seq": seq, "ts": ts, "kind": "air", "values": values, "flags": {}}


def test_uplink_counters_on_the_servers_metrics(
    tmp_path: Path, mosquitto, envnet_env: dict[str, str], server: str
):
    # the server has made the state store: the uplink publishes into it
    assert Path(envnet_env["ENVNET_STORE_PATH"]).exists()
    platform = TestPlatform().start()
    uplink_id = f"uplink-{free_port()}"
    outbox_path = tmp_path / "uplink.db"
    env = dict(
        envnet_env,
        ENVNET_UPLINK_CLIENT_ID=uplink_id,
        ENVNET_UPLINK_OUTBOX_PATH=str(outbox_path),
        ENVNET_UPLINK_ACK_TIMEOUT_S="2",
        ENVNET_UPLINK_BACKOFF_MAX_S="0.5",
        ENVNET_UPLINK_PLATFORMS=json.dumps(
            [
                {
                    "name": "province",
                    "host": "127.0.0.1",
                    "port": platform.port,
                    "stations": {"air-01": MN},
                },
                {
                    "name": "national",
                    "host": "127.0.0.1",
                    "port": free_port(),  # nobody listens
                    "stations": {"air-01": MN},
                    "send": ["2061"],
                },
            ]
        ),
    )
    uplink = Proc(["uplink"], env, tmp_path / "uplink.log").start()
    pub = Publisher(mosquitto.port, client_id="hj212-metrics-pub")

    def unacked(platform_name: str) -> int:
        with sqlite3.connect(outbox_path) as c:
            return c.execute(
                "SELECT count(*) FROM outbox WHERE acked IS NULL AND platform=?", (platform_name,)
            ).fetchone()[0]

    try:
        wait_until(lambda: "subscribed to" in uplink.output(), 20, what="uplink subscription")
        h0 = (int(time.time()) // HOUR - 3) * HOUR
        hour = [_reading(i, h0 + 30 + 60 * i, pm25=10.0 + i % 5, t=20.0) for i in range(60)]
        pub.send("envnet/v1/air-01/reading", [*hour, _reading(60, h0 + HOUR + 200, pm25=1.0)])
        pub.send("envnet/v1/air-01/reading", b"{not json")
        wait_until(lambda: platform.received("2061"), 20, what="hour data (2061)")
        wait_until(lambda: unacked("province") == 0, 20, what="province's queue emptied")
        wait_until(lambda: "national" in uplink.output(), 20, what="national unreachable")
        received = {cn: len(platform.received(cn)) for cn in ("2011", "2051", "2061", "2031")}
        assert received == {"2011": 61, "2051": 6, "2061": 1, "2031": 0}

        def up(name: str, **labels: str) -> float | None:
            key = (name, tuple(sorted({"uplink": uplink_id, **labels}.items())))
            return _metrics(server).get(key)

        # the uplink publishes every 5 s; the server reads the store at each scrape
        wait_until(
            lambda: up("envnet_uplink_packets_acked_total", platform="province") == 68,
            30,
            what="the uplink's counters on /metrics",
        )
        m = _metrics(server)

        def v(name: str, **labels: str) -> float:
            return m[(name, tuple(sorted({"uplink": uplink_id, **labels}.items())))]

        # sent == what the platform received, per CN
        for cn, n in received.items():
            assert v("envnet_uplink_packets_sent_total", platform="province", cn=cn) == n, cn
        assert v("envnet_uplink_packets_sent_total", platform="national", cn="2061") == 0
        assert v("envnet_uplink_packets_acked_total", platform="national") == 0
        assert v("envnet_uplink_retries_total", platform="province") == 0
        assert v("envnet_uplink_queue_depth", platform="province") == 0
        assert v("envnet_uplink_queue_depth", platform="national") == 1  # its 2061
        assert v("envnet_uplink_oldest_pending_seconds", platform="province") == 0
        assert v("envnet_uplink_oldest_pending_seconds", platform="national") > 0
        assert v("envnet_uplink_platform_connected", platform="province") == 1
        assert v("envnet_uplink_platform_connected", platform="national") == 0
        assert v("envnet_uplink_connection_failures_total", platform="province") == 0
        assert v("envnet_uplink_connection_failures_total", platform="national") >= 1
        assert v("envnet_uplink_messages_received_total") == 2
        assert v("envnet_uplink_messages_ignored_total") == 1  # the bad JSON
        assert v("envnet_uplink_readings_stored_total") == 61
        assert v("envnet_uplink_corrections_queued_total") == 0
        assert v("envnet_uplink_correction_packets_queued_total") == 0
        assert v("envnet_uplink_correction_failures_total") == 0
        age = v("envnet_uplink_metrics_age_seconds")
        assert 0 <= age < 15
        # typed and documented from envnet/store/uplink_metrics.py
        text = httpx.get(f"{server}/metrics", timeout=30).text
        assert "# TYPE envnet_uplink_packets_sent_total counter" in text
        assert "# TYPE envnet_uplink_queue_depth gauge" in text
        assert "# HELP envnet_uplink_retries_total Packets sent again" in text

        # stopped, it publishes its last counts; the age gauge then grows
        uplink.stop()
        m = _metrics(server)
        assert v("envnet_uplink_packets_acked_total", platform="province") == 68
        assert v("envnet_uplink_platform_connected", platform="province") == 0
        wait_until(lambda: up("envnet_uplink_metrics_age_seconds") > 6, 20, what="a growing age")
    finally:
        pub.close()
        uplink.stop()
        platform.stop()

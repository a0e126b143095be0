"""Alerts on the real stack: readings over MQTT -> gateway evaluator -> state store -> server.

A station replays three days of 10-minute readings (as after an outage, in data time): PM2.5
above the GB 3095-2012 Grade II 24-hour limit opens exactly one alert, higher values escalate
it, clean air resolves it after the hold time. A killed firmware opens an offline alert.
"""

from __future__ import annotations

import httpx
from conftest import wait_until
from mqtt_helpers import Publisher, reading

from envnet.store.state import SqliteStateStore

HOUR = 3600
T0 = 1767196800 - 10 * 24 * HOUR  # a CST midnight, ten days back: all in the past
SID = "sy-air-101"


def _alerts(base: str, **params) -> list[dict]:
    return httpx.get(f"{base}/alerts", params=params, timeout=5).json()


def _publish_hours(pub: Publisher, seq0: int, start_h: int, hours: int, pm25: float) -> int:
    """Readings every 10 minutes for `hours` hours from T0 + start_h; returns the next seq."""
    seq = seq0
    for h in range(start_h, start_h + hours):
        batch = []
        for m in range(6):
            ts = T0 + h * HOUR + m * 600
            batch.append(reading(seq, ts, pm25=pm25, pm10=50.0))
            seq += 1
        pub.send(f"envnet/v1/{SID}/reading", batch)
    return seq


def test_pm25_24h_exceedance_opens_once_escalates_and_resolves(
    mosquitto, envnet_env, gateway, server
):
    store = SqliteStateStore(envnet_env["ENVNET_STORE_PATH"])
    store.register_station(SID, "air", {"interval_s": 600, "district": "和平区", "class": "micro"})
    pub = Publisher(mosquitto.port)
    try:
        seq = _publish_hours(pub, 1, 0, 26, pm25=100.0)  # 24 h mean 100 > 75
        opened = wait_until(
            lambda: _alerts(server, rule="air_limit_24h", station=SID), 30, what="24 h alert"
        )
        assert len(opened) == 1
        a = opened[0]
        assert (a["parameter"], a["state"], a["limit"]) == ("pm25", "open", 75)
        assert "GB 3095-2012" in a["standard"]
        first_severity = a["severity"]

        seq = _publish_hours(pub, seq, 26, 26, pm25=260.0)  # much worse: escalates
        wait_until(
            lambda: _alerts(server, rule="air_limit_24h", station=SID)[0]["escalations"] >= 1,
            30,
            what="escalation",
        )
        assert len(_alerts(server, rule="air_limit_24h", station=SID)) == 1
        assert _alerts(server, rule="air_limit_24h", station=SID)[0]["severity"] != first_severity

        seq = _publish_hours(pub, seq, 52, 30, pm25=20.0)  # clean air, past the hold time
        resolved = wait_until(
            lambda: _alerts(server, rule="air_limit_24h", station=SID, state="resolved"),
            30,
            what="resolution",
        )
        assert len(resolved) == 1 and len(_alerts(server, rule="air_limit_24h")) == 1
        detail = httpx.get(f"{server}/alerts/{resolved[0]['id']}", timeout=5).json()
        assert [h["event"] for h in detail["history"]][0] == "opened"
        assert detail["history"][-1]["event"] == "resolved"
        # The evaluator saves its state (and so the latest indices) every tick, 2 s.
        indices = wait_until(
            lambda: httpx.get(f"{server}/stations/{SID}", timeout=5).json()["indices"],
            10,
            what="the station view showing its latest AQI",
        )
        assert indices["aqi_1h"]["aqi"] > 0
    finally:
        pub.close()
        store.close()


def test_ack_needs_the_key_and_killed_probe_opens_offline_alert(
    mosquitto, envnet_env, gateway, server, firmware
):
    store = SqliteStateStore(envnet_env["ENVNET_STORE_PATH"])
    store.register_station(
        "liao-probe-01", "water", {"interval_s": 1, "river": "辽河", "target_class": "IV"}
    )
    st = firmware("liao-probe-01", "water", interval_s=1)
    wait_until(
        lambda: httpx.get(f"{server}/stations/liao-probe-01").json().get("state") == "online",
        30,
        what="probe online",
    )
    st.kill()
    alert = wait_until(
        lambda: _alerts(server, rule="offline", station="liao-probe-01"), 40, what="offline alert"
    )[0]
    url = f"{server}/alerts/{alert['id']}/ack"
    assert httpx.post(url, json={"by": "duty"}).status_code == 401
    assert (
        httpx.post(url, json={"by": "duty"}, headers={"Authorization": "Bearer nope"}).status_code
        == 403
    )
    r = httpx.post(url, json={"by": "duty"}, headers={"Authorization": "Bearer test-key"})
    assert r.status_code == 200 and r.json()["state"] == "acknowledged"
    assert r.json()["acknowledged_by"] == "duty"
    again = httpx.post(url, json={"by": "duty"}, headers={"Authorization": "Bearer test-key"})
    assert again.json()["changed"] is False
    store.close()

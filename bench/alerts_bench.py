"""Alert benchmark (a script, not a test): `python bench/alerts_bench.py`.

1. readings/s through the evaluator alone (SQLite alert store, 100 air stations, data time);
2. latency from publishing the reading that completes a 24-hour PM2.5 exceedance to the alert
   being open in the state store, on the real stack (Mosquitto, gateway process, InfluxDB).
Last line: `alerts evaluator_rps=... publish_to_alert_p50_ms=... publish_to_alert_max_ms=...`.
"""

from __future__ import annotations

import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from envnet.devkit.services import InfluxDB, Mosquitto, component_env, free_port  # noqa: E402
from envnet.domain.alerts import AlertSettings, Evaluator  # noqa: E402
from envnet.store.alerts import SqliteAlertStore  # noqa: E402
from envnet.store.state import SqliteStateStore  # noqa: E402

HOUR = 3600
T0 = 1767196800 - 20 * 24 * HOUR  # a CST midnight, twenty days back
STATIONS = int(os.environ.get("BENCH_STATIONS", "100"))
HOURS = int(os.environ.get("BENCH_HOURS", "6"))
LATENCY_RUNS = int(os.environ.get("BENCH_LATENCY_RUNS", "5"))


def reading(seq: int, ts: float, pm25: float) -> dict:
    return {
        "v": 1,
        "seq": seq,
        "ts": ts,
        "kind": "air",
        "values": {
            "pm25": pm25,
            "pm10": 50.0,
            "no2": 30.0,
            "o3": 60.0,
            "so2": 8.0,
            "co": 0.6,
            "t": 5.0,
            "rh": 50.0,
        },
        "flags": {},
    }


def evaluator_rate(tmp: Path) -> float:
    ev = Evaluator(AlertSettings(), SqliteAlertStore(SqliteStateStore(tmp / "eval.db")))
    metas = [{"id": f"b-{i:04d}", "kind": "air", "interval_s": 60} for i in range(STATIONS)]
    n, t = 0, time.perf_counter()
    for minute in range(HOURS * 60):
        ts = T0 + minute * 60
        for meta in metas:
            ev.on_reading(meta, reading(minute, ts, 40.0 + (minute % 7)), ts)
            n += 1
        if minute % 10 == 0:
            ev.tick(time.time())
    return n / (time.perf_counter() - t)


def publish_to_alert_ms(tmp: Path) -> list[float]:
    out: list[float] = []
    with Mosquitto(tmp / "mq") as mq, InfluxDB(tmp / "ix") as ix:
        env = component_env(tmp, mq, ix, f"bench-{free_port()}")
        store_path = Path(env["ENVNET_STORE_PATH"])
        store = SqliteStateStore(store_path)
        for r in range(LATENCY_RUNS):
            store.register_station(f"lat-{r}", "air", {"interval_s": 600})
        log = open(tmp / "gateway.log", "wb")
        gw = subprocess.Popen(
            [sys.executable, "-m", "envnet.cli", "gateway"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        try:
            while "subscribed to" not in (tmp / "gateway.log").read_text():
                time.sleep(0.1)
            c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="bench-pub")
            c.connect("127.0.0.1", mq.port)
            c.loop_start()
            db = sqlite3.connect(store_path)
            for r in range(LATENCY_RUNS):
                sid = f"lat-{r}"
                # Hours 0-19: 19 closed valid hours, one short of GB 3095's 20 for a 24 h mean.
                batch = [reading(i, T0 + i * 600, 100.0) for i in range(20 * 6)]
                c.publish(f"envnet/v1/{sid}/reading", json.dumps(batch), qos=1).wait_for_publish()
                time.sleep(1.0)
                # A reading past hour 19's close grace (2 intervals) closes it: 20 valid hours.
                last = reading(20 * 6 + 3, T0 + 20 * HOUR + 1800, 100.0)
                t = time.perf_counter()
                c.publish(f"envnet/v1/{sid}/reading", json.dumps(last), qos=1)
                while not db.execute(
                    "SELECT 1 FROM alerts WHERE station=? AND rule=?", (sid, "air_limit_24h")
                ).fetchone():
                    if time.perf_counter() - t > 30:
                        raise SystemExit(f"no alert for {sid} within 30 s; see {tmp}/gateway.log")
                    time.sleep(0.002)
                out.append((time.perf_counter() - t) * 1000)
            c.loop_stop()
        finally:
            gw.terminate()
            gw.wait(10)
    return out


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="envnet-alerts-bench-"))
    rps = evaluator_rate(tmp)
    print(
        f"evaluator alone: {rps:,.0f} readings/s ({STATIONS} stations, {HOURS} h of minute data,"
        " SQLite alert store)"
    )
    lat = publish_to_alert_ms(tmp)
    print("publish -> 24 h PM2.5 alert open, ms: " + ", ".join(f"{x:.0f}" for x in lat))
    print(
        f"alerts evaluator_rps={rps:.0f} publish_to_alert_p50_ms={statistics.median(lat):.0f}"
        f" publish_to_alert_max_ms={max(lat):.0f}"
    )


if __name__ == "__main__":
    main()

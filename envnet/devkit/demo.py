"""`make demo`: the whole data path on one machine, until Ctrl-C.

Mosquitto and InfluxDB (Debian packages) on free ports with data under var/, the gateway and
the server as their own processes (as in production), and simulated stations running the real
firmware on the MicroPython unix port.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from importlib import resources
from pathlib import Path

from envnet.config import load_config
from envnet.devkit import scenario
from envnet.devkit.fleet import Fleet
from envnet.devkit.services import InfluxDB, Mosquitto, free_port
from envnet.store.state import SqliteStateStore
from envnet.store.users import UserStore


def shenyang_sites() -> list[dict]:
    text = (
        resources.files("envnet.devkit").joinpath("sites/shenyang.json").read_text(encoding="utf-8")
    )
    return json.loads(text)["stations"]


def add_network(fleet: Fleet, t0: float, wall0: float) -> None:
    """Register and create the miniature Shenyang network on the compressed demo clock."""
    clock = {"time_scale": scenario.TIME_SCALE, "t0": t0, "wall0": wall0}
    data_interval = scenario.WALL_INTERVAL_S * scenario.TIME_SCALE
    for n, site in enumerate(shenyang_sites()):
        meta = {k: v for k, v in site.items() if k not in ("id", "kind")}
        fleet.add(
            site["id"], site["kind"], meta, seed=n + 1, sim=clock, data_interval_s=data_interval
        )


def play(fleet: Fleet, t0: float, wall0: float, stop: threading.Event) -> None:
    """Steer the simulated sensors along the scenario, in data time."""
    weights = {sid: 0.7 + 0.6 * ((i * 37) % 10) / 10 for i, sid in enumerate(fleet.stations)}
    while not stop.wait(1.0):
        h = (time.time() - wall0) * scenario.TIME_SCALE / 3600
        for sid, st in fleet.stations.items():
            if sid.startswith("sy-"):
                values = scenario.air_overrides(h, weights[sid])
            else:
                values = scenario.water_overrides(sid, h)
            scenario.write_overrides(st.workdir, values)


def write_config(path: Path, mqtt_port: int, influx_url: str, var: Path, http_port: int) -> None:
    path.write_text(
        f"""# Written by `envnet demo`; every key can be overridden as ENVNET_<SECTION>_<KEY>.
[mqtt]
url = "mqtt://127.0.0.1:{mqtt_port}"
client_id = "envnet-gateway-demo"

[influx]
url = "{influx_url}"
api = "auto"
database = "envnet"

[store]
path = "{var / "envnet.db"}"

[gateway]
buffer_path = "{var / "gateway-buffer.db"}"
# Data time runs {scenario.TIME_SCALE}x the wall clock, so after a while the stations' readings
# are "from the future": a real gateway refuses those after 600 s; this demo's accepts a year.
max_future_s = {366 * 86400}

[server]
listen = "127.0.0.1:{http_port}"
api_key = "demo-key"

[pages]
# The demo serves plain http on localhost: the console's cookies cannot be Secure-only here.
cookie_secure = false
"""
    )


# One console login per role (docs/pages.md); printed by `make demo`, for this machine only.
DEMO_USERS: tuple[tuple[str, str, str | None, str], ...] = (
    ("duty", "duty_room", None, "demo-duty-room"),
    ("unit-heping", "unit", "heping-district", "demo-unit-heping"),
    ("reviewer", "reviewer", None, "demo-reviewer"),
    ("admin", "admin", None, "demo-admin-pass"),
)


def add_demo_users(store_path: Path) -> None:
    """Create the demo logins (kept when they exist from an earlier run of the demo)."""
    store = SqliteStateStore(store_path)
    try:
        users = UserStore(store)
        for name, role, unit, password in DEMO_USERS:
            if users.get(name) is None:
                users.add(name, password, role, unit)
    finally:
        store.close()


def _spawn(args: list[str], log: Path, cwd: Path) -> subprocess.Popen:
    with open(log, "ab") as f:
        return subprocess.Popen(
            [sys.executable, "-m", "envnet.cli", *args],
            stdout=f,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
        )


def run_demo(
    var: Path, air: int = 0, water: int = 0, interval_s: float = scenario.WALL_INTERVAL_S
) -> None:
    """The Shenyang network in miniature, plus `air`/`water` extra generic stations."""
    var = var.resolve()
    var.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    mosq = Mosquitto(var / "mosquitto")
    influx = InfluxDB(var / "influxdb")
    procs: list[subprocess.Popen] = []
    fleet = None
    try:
        mosq.start()
        influx.start()
        http_port = free_port()
        cfg_path = var / "envnet.toml"
        write_config(cfg_path, mosq.port, influx.url, var, http_port)
        settings = load_config(cfg_path, environ={})
        add_demo_users(Path(settings.store.path))
        procs.append(_spawn(["gateway", "--config", str(cfg_path)], var / "gateway.log", var))
        procs.append(_spawn(["server", "--config", str(cfg_path)], var / "server.log", var))
        fleet = Fleet(settings, var / "sim", interval_s=interval_s)
        wall0 = time.time()
        t0 = wall0 - scenario.START_DAYS_AGO * 86400
        add_network(fleet, t0, wall0)
        fleet.add_generated(air, water)
        fleet.start()
        threading.Thread(target=play, args=(fleet, t0, wall0, stop), daemon=True).start()
        base = f"http://127.0.0.1:{http_port}"
        logins = "\n".join(
            f"                  {role:<10} {name} / {pw}" + (f"   (unit {unit})" if unit else "")
            for name, role, unit, pw in DEMO_USERS
        )
        print(
            f"""
envnet demo: Shenyang in miniature, {len(fleet.stations)} stations running the real firmware.
Data time runs {scenario.TIME_SCALE}x faster: a data hour every {3600 / scenario.TIME_SCALE:g} s.
A pollution episode builds over the city and an NH3-N incident hits the Hun River city reach;
hourly AQI alerts open within a few minutes, escalate, and resolve as the air clears.
  public pages    {base}/public   (map and list, {base}/public/bulletin, {base}/public/rivers)
  console         {base}/console  (log in as one of, role / user / password:)
{logins}
  alerts          {base}/alerts
                  ack: curl -X POST -H 'Authorization: Bearer demo-key' {base}/alerts/ID/ack
  API docs        {base}/docs   {base}/redoc   (served offline)
  stations        {base}/stations
  MQTT broker     mqtt://127.0.0.1:{mosq.port}   (mosquitto_sub -p {mosq.port} -t 'envnet/v1/#' -v)
  InfluxDB        {influx.url}  database "envnet"
                  curl -G {influx.url}/query --data-urlencode db=envnet \\
                    --data-urlencode "q=SELECT * FROM air ORDER BY time DESC LIMIT 5"
  config          {cfg_path}
  logs            {var}/gateway.log, {var}/server.log, {var}/sim/<station>/console.log
Press Ctrl-C to stop everything.
""",
            flush=True,
        )
        while not stop.wait(2.0):
            for p in procs:
                if p.poll() is not None:
                    print(
                        f"a process exited ({p.args[3]}, code {p.returncode}); see logs", flush=True
                    )
                    stop.set()
    finally:
        print("stopping...", flush=True)
        if fleet:
            fleet.stop()
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        influx.stop()
        mosq.stop()
        time.sleep(0.1)

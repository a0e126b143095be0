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

SITE_FILE = resources.files("envnet.devkit").joinpath("sites/shenyang.json")
# The demo's keys and their roles (docs/cases.md): the duty room, a unit that answers in time
# (the Hunhezhan street office: the Hun River incident and the Hunnan micro station), and one
# that stays silent (the Yanfen street office in Tiexi) and is escalated to its district bureau.
DUTY_KEY, PROMPT_KEY, SILENT_KEY = "demo-duty-room", "demo-hunhe-office", "demo-yanfen-office"
PROMPT_UNIT, SILENT_UNIT = "hunnan-hunhe-office", "tiexi-yanfen-office"


def shenyang_sites() -> list[dict]:
    return json.loads(SITE_FILE.read_text(encoding="utf-8"))["stations"]


def station_cells() -> dict[str, str]:
    return json.loads(SITE_FILE.read_text(encoding="utf-8"))["grid"]["station_cells"]


def add_network(fleet: Fleet, t0: float, wall0: float) -> None:
    """Register and create the miniature Shenyang network on the compressed demo clock."""
    clock = {"time_scale": scenario.TIME_SCALE, "t0": t0, "wall0": wall0}
    data_interval = scenario.WALL_INTERVAL_S * scenario.TIME_SCALE
    cells = station_cells()
    for n, site in enumerate(shenyang_sites()):
        meta = {k: v for k, v in site.items() if k not in ("id", "kind")}
        if site["id"] in cells:
            meta["cell"] = cells[site["id"]]  # as `envnet provision --cell` records it
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


def write_config(
    path: Path, mqtt_port: int, influx_url: str, var: Path, http_port: int, t0: float, wall0: float
) -> None:
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
api_keys = {{ duty-room = "{DUTY_KEY}", hunhe = "{PROMPT_KEY}", yanfen = "{SILENT_KEY}" }}
[server.key_roles]
duty-room = "duty_room"
hunhe = "unit:{PROMPT_UNIT}"
yanfen = "unit:{SILENT_UNIT}"

[cases]
# Cells and units of the demo site (illustrative names); the cases' clock is the data clock.
grid_file = "{SITE_FILE}"
photos_dir = "{var / "case-photos"}"
tick_s = 1.0
clock_scale = {scenario.TIME_SCALE}
clock_t0 = {t0}
clock_wall0 = {wall0}

[pages]
# The demo serves plain http on localhost: the console's cookies cannot be Secure-only here.
cookie_secure = false
"""
    )


# One console login per role (docs/pages.md); printed by `make demo`, for this machine only.
DEMO_USERS: tuple[tuple[str, str, str | None, str], ...] = (
    ("duty", "duty_room", None, "demo-duty-room"),
    ("unit-hunhe", "unit", PROMPT_UNIT, "demo-unit-hunhe"),
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


def answer_cases(base: str, stop: threading.Event) -> None:
    """The prompt unit and the duty room, played by the demo: sign what arrives, report after
    a little while, verify reports. The silent unit is not played: the slips do their work."""
    import httpx

    unit = {"Authorization": f"Bearer {PROMPT_KEY}"}
    duty = {"Authorization": f"Bearer {DUTY_KEY}"}
    while not stop.wait(5.0):
        try:
            for c in httpx.get(f"{base}/cases?state=assigned", headers=unit, timeout=5).json():
                httpx.post(f"{base}/cases/{c['id']}/sign", json={"note": "已签收"}, headers=unit)
            for c in httpx.get(f"{base}/cases?state=signed", headers=unit, timeout=5).json():
                body = {"text": "已现场排查并处置 (demo)", "lat": 41.75, "lon": 123.45}
                httpx.post(f"{base}/cases/{c['id']}/report", json=body, headers=unit)
            for c in httpx.get(f"{base}/cases?state=reported", headers=duty, timeout=5).json():
                httpx.post(
                    f"{base}/cases/{c['id']}/verify", json={"note": "复核通过"}, headers=duty
                )
        except (httpx.HTTPError, ValueError, TypeError):
            continue  # the server is not up yet, or is stopping


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
        wall0 = time.time()
        t0 = wall0 - scenario.START_DAYS_AGO * 86400
        write_config(cfg_path, mosq.port, influx.url, var, http_port, t0, wall0)
        settings = load_config(cfg_path, environ={})
        add_demo_users(Path(settings.store.path))
        procs.append(_spawn(["gateway", "--config", str(cfg_path)], var / "gateway.log", var))
        procs.append(_spawn(["server", "--config", str(cfg_path)], var / "server.log", var))
        fleet = Fleet(settings, var / "sim", interval_s=interval_s)
        add_network(fleet, t0, wall0)
        fleet.add_generated(air, water)
        fleet.start()
        threading.Thread(target=play, args=(fleet, t0, wall0, stop), daemon=True).start()
        base = f"http://127.0.0.1:{http_port}"
        logins = "\n".join(
            f"                  {role:<10} {name} / {pw}" + (f"   (unit {unit})" if unit else "")
            for name, role, unit, pw in DEMO_USERS
        )

        threading.Thread(target=answer_cases, args=(base, stop), daemon=True).start()
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

  cases           envnet cases --url {base} --api-key {DUTY_KEY} [--overdue]
                  envnet case show ID --url {base} --api-key {DUTY_KEY}
                  The Hunhezhan office ({PROMPT_UNIT}) signs, reports and is verified in
                  time; the Yanfen office ({SILENT_UNIT}) stays silent: watch its cases get a
                  督办单 (supervision order), then a 催办单 (urging) sent to tiexi-bureau:
                  curl -H 'Authorization: Bearer {DUTY_KEY}' '{base}/cases?unit={SILENT_UNIT}'
                  ranking: {base}/reports/supervision?period=week (same header)
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
                    what = p.args[3] if isinstance(p.args, list) else p.args  # the envnet command
                    print(f"a process exited ({what!s}, code {p.returncode}); see logs", flush=True)
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

"""Server at scale (`python bench/server_bench.py`; also run by `make bench` through
bench/ingest_bench.py): `GET /stations` and `GET /alerts` latency with 10,000 stations.

The state store is filled the way the gateway fills it (registry, live state with values,
flags, status and health for every station; one open alert for every 5th station), then the
real server runs as the CLI process an operator starts, and one HTTP client asks each path
BENCH_SERVER_REQUESTS times after 3 warm-ups. A request's time is the full HTTP round trip
with the body read (not parsed). Prints p50/p99 per path; the last line is for scripts:
`server stations=... stations_p50_ms=... stations_p99_ms=... alerts_p99_ms=...`.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from envnet.domain.alerts import summary_key  # noqa: E402
from envnet.store.alerts import SqliteAlertStore  # noqa: E402
from envnet.store.state import SqliteStateStore  # noqa: E402

SERVER_STATIONS = int(os.environ.get("BENCH_SERVER_STATIONS", "10000"))
SERVER_REQUESTS = int(os.environ.get("BENCH_SERVER_REQUESTS", "40"))
WARMUP = 3
# The paths measured; the first is the headline figure (the default page of 1,000, as
# clients ask it), the second the whole list of 10,000 in one answer.
PATHS = (
    "/stations",
    "/stations?limit=10000",
    "/stations?kind=water",
    "/stations?state=stale",
    "/stations?limit=100&offset=5000",
    "/alerts",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _summaries(now: float) -> dict[str, str]:
    """The latest-indices summary the evaluator saves for an air and a water station, so that
    the list carries indices for every station as in a running network."""
    from envnet.core.standards import gb3838, hj633
    from envnet.domain.alerts import index_summary

    aqi = hj633.hourly_aqi(
        {"pm25": 35.2, "pm10": 60.1, "no2": 20.5, "so2": 8.0, "co": 0.6, "o3": 80.0},
        o3_8h=90.0,
        means_24h={"pm25": 40.0, "pm10": 70.0},
    )
    a = gb3838.classify({"ph": 7.1, "do": 8.2, "nh3n": 0.4})
    latest = {
        "aqi_1h": aqi.to_dict() | {"ts": now},
        "water": {
            "overall": a.overall,
            "class_zh": "Ⅱ类",
            "class_en": "Class II",
            "provisional": a.provisional,
            "basis": list(a.basis),
            "missing": list(a.missing),
            "target_class": 3,
            "meets_target": None,
            "ts": now,
            "standard": a.standard,
            "edition": a.edition,
        },
    }
    full = index_summary(latest)
    return {
        # as envnet.store.alerts.SqliteAlertStore.save_state writes them
        "air": json.dumps({"aqi_1h": full["aqi_1h"]}, allow_nan=False, ensure_ascii=True),
        "water": json.dumps({"water": full["water"]}, allow_nan=False, ensure_ascii=True),
    }


def seed_stations(store: SqliteStateStore, n: int, now: float) -> None:
    """n registered stations with the live state a running network has (one transaction)."""
    summaries = _summaries(now)
    SqliteAlertStore(store)  # its tables: eval_state holds the evaluator's index summaries
    with store.tx() as c:
        reg, state, indices = [], [], []
        for i in range(n):
            sid = f"st-{i:06d}"
            kind = "air" if i % 3 else "water"
            # interval_s 3600: "online" stays online however long the bench takes to get there
            meta = {"district": f"d{i % 40}", "name": f"S{i}", "lat": 41.8, "lon": 123.4,
                    "interval_s": 3600}  # fmt: skip
            if kind == "air":
                values = {
                    "pm25": 35.2,
                    "pm10": 60.1,
                    "no2": 20.5,
                    "so2": 8.0,
                    "co": 0.6,
                    "o3": 80.0,
                    "t": 12.5,
                    "rh": 45.0,
                }
                flags = {"pm25": "ok"}
            else:
                values = {"ph": 7.1, "do": 8.2, "cond": 450.0, "turb": 3.1, "nh3n": 0.4, "t": 9.0}
                flags = {}
            health = {
                "uptime_s": 86400 + i,
                "heap_free": 61234,
                "rssi": -63,
                "buffered": 0,
                "errors": {"mqtt": 1},
                "fw": "1.0.0",
                "reset": "power_on",
            }
            # Every 10th station went quiet 4 h ago: /stations?state=stale has rows.
            seen = now - 4 * 3600 if i % 10 == 0 else now - 5
            reg.append((sid, kind, json.dumps(meta), now - 86400))
            indices.append((summary_key(sid), summaries[kind]))
            state.append(
                (
                    sid,
                    kind,
                    seen,
                    seen,
                    1000 + i,
                    json.dumps(values),
                    json.dumps(flags),
                    1000 + i,
                    "online",
                    json.dumps({"state": "online", "kind": kind, "fw": "1.0.0"}),
                    now - 3600,
                    json.dumps(health),
                    seen,
                )
            )
        c.executemany(
            "INSERT OR IGNORE INTO stations(id, kind, meta, registered_at) VALUES (?,?,?,?)", reg
        )
        c.executemany("INSERT OR REPLACE INTO eval_state(key, value) VALUES (?,?)", indices)
        c.executemany(
            "INSERT OR REPLACE INTO station_state(id, kind, last_seen, last_reading_ts, last_seq,"
            " last_values, last_flags, readings_total, status, status_body, status_at, health,"
            " health_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            state,
        )


def seed_alerts(store: SqliteStateStore, n: int) -> int:
    """One open alert for every 5th station, so that GET /alerts has rows to return."""
    try:
        from envnet.domain.alerts.repository import Alert
        from envnet.store.alerts import SqliteAlertStore
    except ImportError:
        return 0
    alerts = SqliteAlertStore(store)
    now = time.time()
    k = 0
    with store.tx():
        for i in range(0, n, 5):
            alerts.insert_alert(
                Alert(
                    id=f"bench-{i}",
                    station=f"st-{i:06d}",
                    rule="air_limit_1h",
                    parameter="pm25",
                    severity="medium",
                    window="1h",
                    value=120.0,
                    limit=75.0,
                    standard="GB 3095-2012",
                    opened_at=now - i,
                    state="open",
                    last_value=120.0,
                    last_at=now,
                )
            )
            k += 1
    return k


def percentile(sorted_ms: list[float], q: float) -> float:
    return sorted_ms[min(len(sorted_ms) - 1, int(round(q * (len(sorted_ms) - 1))))]


@dataclass
class PathFigures:
    p50_ms: float
    p99_ms: float
    rows: int  # in one answer
    size: int  # body bytes of one answer
    total: int  # X-Total-Count (rows when the server does not send it)
    cpu_ms: float  # the server process's CPU time per request (load-independent-ish)


@dataclass
class Figures:
    stations: int = 0  # stations the server knows (X-Total-Count of GET /stations)
    alerts: int = 0  # open alerts seeded
    paths: dict[str, PathFigures] = field(default_factory=dict)

    def p99(self, path: str) -> float | None:
        return self.paths[path].p99_ms if path in self.paths else None


def _cpu_s(pid: int) -> float:
    """utime + stime of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(url: str, path: str, requests: int, pid: int) -> PathFigures:
    times: list[float] = []
    rows = size = total = 0
    cpu0 = 0.0
    with httpx.Client(base_url=url, timeout=30) as c:
        for k in range(requests + WARMUP):
            if k == WARMUP:
                cpu0 = _cpu_s(pid)
            t = time.perf_counter()
            r = c.get(path)
            dt = (time.perf_counter() - t) * 1000
            if r.status_code != 200:
                raise RuntimeError(f"GET {path}: HTTP {r.status_code}: {r.text[:200]}")
            if k >= WARMUP:
                times.append(dt)
            else:
                rows, size = len(r.json()), len(r.content)
                total = int(r.headers.get("x-total-count", rows))
        cpu_ms = (_cpu_s(pid) - cpu0) * 1000 / requests
    times.sort()
    return PathFigures(statistics.median(times), percentile(times, 0.99), rows, size, total, cpu_ms)


def run(base: Path, stations: int = SERVER_STATIONS, requests: int = SERVER_REQUESTS) -> Figures:
    """Seed a store under `base`, start the server process on it, measure every path."""
    path = base / "server-store.db"
    store = SqliteStateStore(path)
    seed_stations(store, stations, time.time())
    fig = Figures(alerts=seed_alerts(store, stations))
    store.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENVNET_")}
    listen = f"127.0.0.1:{_free_port()}"
    env.update(ENVNET_STORE_PATH=str(path), ENVNET_SERVER_LISTEN=listen)
    with open(base / "server.log", "ab") as f:
        p = subprocess.Popen(
            [sys.executable, "-m", "envnet.cli", "server", "--log-level", "warning"],
            env=env,
            stdout=f,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            start_new_session=True,
        )
    url = f"http://{listen}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or p.poll() is not None:
                raise RuntimeError(f"server did not start; see {base / 'server.log'}")
            time.sleep(0.2)
        for path_ in PATHS:
            fig.paths[path_] = measure(url, path_, requests, p.pid)
        fig.stations = fig.paths["/stations"].total
    finally:
        p.terminate()
        p.wait(15)
    return fig


def report(fig: Figures, print_=print) -> None:
    print_(
        f"server with {fig.stations} stations, {fig.alerts} open alerts "
        f"({SERVER_REQUESTS} requests per path after {WARMUP} warm-ups):"
    )
    for path, f in fig.paths.items():
        print_(
            f"  GET {path:34s} p50 {f.p50_ms:6.1f} ms  p99 {f.p99_ms:6.1f} ms  "
            f"server CPU {f.cpu_ms:5.1f} ms/request  ({f.rows} rows, {f.size / 1e6:.2f} MB)"
        )


def summary(fig: Figures) -> str:
    p50, p99 = fig.paths["/stations"].p50_ms, fig.paths["/stations"].p99_ms
    al = fig.p99("/alerts")
    alerts = f"{al:.1f}" if al is not None else "nan"
    return (
        f"server stations={fig.stations} stations_p50_ms={p50:.1f} stations_p99_ms={p99:.1f} "
        f"alerts_p99_ms={alerts}"
    )


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="envnet-server-bench-") as tmp:
        fig = run(Path(tmp))
    report(fig)
    print(summary(fig), flush=True)


if __name__ == "__main__":
    main()

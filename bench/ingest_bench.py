"""Ingest benchmark (`make bench`): the real Mosquitto, InfluxDB and gateway, on this machine.

Prints, in order:
1. the bare paho-mqtt receive rate (N publisher processes, QoS 1, one paho subscriber counting);
2. the gateway's sustained durable rate end to end (publish K readings as fast as possible, time
   until InfluxDB's `count(seq)` reaches K), its ratio to (1) and the gateway's peak RSS (VmHWM);
3. p50/p99 latency from publish to queryable in InfluxDB at a steady 1,000 readings/s;
4. two gateways on one MQTT 5 shared subscription: the split and that nothing is lost;
5. `GET /stations` (default page, whole list, filtered, paged) and `GET /alerts` p50/p99 with
   10,000 registered stations (bench/server_bench.py).
Last line, for scripts: `ingest end_to_end_rps=... bare_rps=... ratio=... p99_ms=... rss_mb=...`.
Sizes can be changed with BENCH_* environment variables (see the constants below).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from envnet.devkit.services import InfluxDB, Mosquitto, component_env  # noqa: E402

sys.path.insert(0, str(REPO / "bench"))
import server_bench  # noqa: E402

PUBLISHERS = int(os.environ.get("BENCH_PUBLISHERS", "2"))
STATIONS = int(os.environ.get("BENCH_STATIONS", "2000"))
BARE_N = int(os.environ.get("BENCH_BARE_N", "60000"))
E2E_N = int(os.environ.get("BENCH_E2E_N", "60000"))
LIVE_N = int(os.environ.get("BENCH_LIVE_N", "20000"))
LAT_RATE = int(os.environ.get("BENCH_LAT_RATE", "1000"))
LAT_SECONDS = float(os.environ.get("BENCH_LAT_SECONDS", "15"))
SHARED_N = int(os.environ.get("BENCH_SHARED_N", "30000"))
SERVER_STATIONS = int(os.environ.get("BENCH_SERVER_STATIONS", "10000"))
SERVER_REQUESTS = int(os.environ.get("BENCH_SERVER_REQUESTS", "40"))
E2E_TIMEOUT_S = 150.0

console = Console()


def progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


def station_id(i: int) -> str:
    return f"bench-{i:06d}"


def payload(seq: int, ts: float, kind: str = "air") -> bytes:
    values = {"pm25": 12.5, "pm10": 30.0} if kind == "air" else {"ph": 7.1, "do": 8.2}
    return json.dumps(
        {"v": 1, "seq": seq, "ts": ts, "kind": kind, "values": values, "flags": {}}
    ).encode()


# -- publishers (separate processes, so the publishing side is not the bottleneck) --
def _publisher(port: int, worker: int, n: int, seq_base: int, kind: str, ready, go) -> None:
    c = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{worker}-{seq_base}"
    )
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port)
    c.loop_start()
    ready.set()
    go.wait()
    now = time.time()
    last = None
    for k in range(n):
        i = worker + k * PUBLISHERS  # global index: stations and seqs interleave over workers
        st = station_id(i % STATIONS)
        seq = seq_base + i // STATIONS
        last = c.publish(f"envnet/v1/{st}/reading", payload(seq, now + i * 1e-3, kind), qos=1)
    if last is not None:
        last.wait_for_publish(120)
    # Let the outgoing queue drain (every PUBACK in) before disconnecting.
    deadline = time.monotonic() + 120
    while c._out_messages and time.monotonic() < deadline:  # noqa: SLF001
        time.sleep(0.01)
    c.disconnect()
    c.loop_stop()


def publish_all(port: int, n: int, seq_base: int, kind: str = "air") -> tuple[float, list]:
    """Start PUBLISHERS processes publishing n messages in total; returns (start time, procs)."""
    ctx = mp.get_context("fork")
    go = ctx.Event()
    procs, readies = [], []
    per = [n // PUBLISHERS + (1 if w < n % PUBLISHERS else 0) for w in range(PUBLISHERS)]
    for w in range(PUBLISHERS):
        ready = ctx.Event()
        p = ctx.Process(target=_publisher, args=(port, w, per[w], seq_base, kind, ready, go))
        p.start()
        procs.append(p)
        readies.append(ready)
    for r in readies:
        r.wait(30)
    t0 = time.perf_counter()
    go.set()
    return t0, procs


# -- 1. bare paho receive rate --
def bench_bare(port: int) -> float:
    """Receive rate of one paho subscriber draining a backlog the broker queued for it.

    The publishers run first (on a 2-core machine they would otherwise take the CPU the
    subscriber needs); the subscriber's persistent session holds the messages; then it
    reconnects and we time how fast paho takes them all (QoS 1, acknowledged by paho).
    """
    got = 0
    done = threading.Event()
    t_last = [0.0]

    def on_message(client, userdata, msg) -> None:
        nonlocal got
        got += 1
        if got >= BARE_N:
            t_last[0] = time.perf_counter()
            done.set()

    def client() -> mqtt.Client:
        c = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id="bench-bare-sub",
            clean_session=False,
        )
        c.max_inflight_messages_set(1000)
        c.on_message = on_message
        return c

    subscribed = threading.Event()
    sub = client()
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.connect("127.0.0.1", port)
    sub.subscribe("envnet/v1/+/#", qos=1)
    sub.loop_start()
    subscribed.wait(10)
    sub.disconnect()
    sub.loop_stop()
    _, procs = publish_all(port, BARE_N, 0)
    for p in procs:
        p.join(300)
    sub = client()
    t0 = time.perf_counter()
    sub.connect("127.0.0.1", port)
    sub.loop_start()
    with progress() as prog:
        task = prog.add_task("bare paho receive (drain)", total=BARE_N)
        while not done.wait(0.2):
            prog.update(task, completed=got)
            if time.perf_counter() - t0 > 120:
                break
    sub.disconnect()
    sub.loop_stop()
    if not done.is_set():
        console.print(f"[red]bare subscriber got only {got}/{BARE_N}")
        return got / (time.perf_counter() - t0)
    return BARE_N / (t_last[0] - t0)


# -- gateway helpers --
class GatewayProc:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        with open(log, "ab") as f:
            self.p = subprocess.Popen(
                [sys.executable, "-m", "envnet.cli", "gateway"],
                env=env,
                stdout=f,
                stderr=subprocess.STDOUT,
                cwd=REPO,
                start_new_session=True,
            )
        self.env = env

    def wait_subscribed(self, port: int, timeout: float = 20.0, poll: float = 0.1) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.p.poll() is not None:
                raise RuntimeError(f"gateway exited:\n{self.log.read_text()[-2000:]}")
            if "subscribed to" in self.log.read_text(errors="replace"):
                return
            time.sleep(poll)
        raise RuntimeError("gateway did not subscribe")

    def pids(self) -> dict[str, int]:
        """The gateway's processes: the receiver and its children (processor, evaluator)."""
        out = {"receiver": self.p.pid}
        try:
            kids = Path(f"/proc/{self.p.pid}/task/{self.p.pid}/children").read_text().split()
        except OSError:
            kids = []
        for pid in map(int, kids):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if "resource_tracker" in cmd:
                continue
            n = len(out)
            out[f"child{n}"] = pid
        return out

    def rss_by_process(self) -> dict[str, float]:
        """VmHWM (peak resident set), MB, of every gateway process."""
        out = {}
        for name, pid in self.pids().items():
            try:
                text = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            fields = dict(ln.split(":", 1) for ln in text.splitlines() if ":" in ln)
            proc = fields.get("Name", "").strip()
            out[f"{name}({proc})"] = int(fields["VmHWM"].split()[0]) / 1024
        return out

    def rss_mb(self) -> float:
        return sum(self.rss_by_process().values())

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(15)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)


def influx_count(influx: InfluxDB, measurement: str = "air", database: str | None = None) -> int:
    q = f"SELECT count(seq) FROM {measurement}"
    db = influx.database
    if database:
        influx.database = database
    try:
        rows = influx.rows(q)
    finally:
        influx.database = db
    return int(rows[0]["count"]) if rows else 0


POLL_MIN_S = 0.02
POLL_MAX_S = 0.5


def wait_count(influx, target: int, what: str, measurement="air", database=None) -> float:
    """Poll InfluxDB until count == target; returns perf_counter at which it was seen.

    Each `count(seq)` costs InfluxDB 15-30 ms of CPU once it holds tens of thousands of points:
    polled every 50 ms it took ~0.3 of a core from the pipeline being measured (bare paho's
    rate is counted in its own callback, at no cost). So the pause follows the progress:
    half the time the remaining readings should take at the rate so far, between 20 ms (the
    resolution at the end) and 0.5 s."""
    t0 = time.perf_counter()
    deadline = time.monotonic() + E2E_TIMEOUT_S
    first: int | None = None
    with progress() as prog:
        task = prog.add_task(what, total=target)
        while time.monotonic() < deadline:
            n = influx_count(influx, measurement, database)
            now = time.perf_counter()
            prog.update(task, completed=n)
            if n >= target:
                return now
            first = n if first is None else first
            rate = (n - first) / (now - t0) if n > first else 0.0
            pause = (target - n) / rate / 2 if rate else POLL_MIN_S * 5
            time.sleep(min(max(pause, POLL_MIN_S), POLL_MAX_S))
    raise RuntimeError(f"{what}: InfluxDB holds {n}/{target} after {E2E_TIMEOUT_S:.0f} s")


def gateway_env(base: Path, mosq: Mosquitto, influx: InfluxDB, name: str, **extra) -> dict:
    return component_env(
        base, mosq, influx, name, ENVNET_SERVER_API_KEY="bench-key", PYTHONPATH=str(REPO), **extra
    )


# -- 2. end to end --
def bench_e2e_drain(env: dict, base: Path, mosq, influx) -> tuple[float, GatewayProc]:
    """Backlog drain: the broker queues E2E_N readings for the (stopped) gateway's persistent
    session; the gateway starts and we time until InfluxDB holds them all."""
    gw = GatewayProc(env, base / "gateway-first.log")
    gw.wait_subscribed(mosq.port)  # creates the persistent session
    gw.stop()
    _, procs = publish_all(mosq.port, E2E_N, 1_000_000)
    for p in procs:
        p.join(300)
    gw = GatewayProc(env, base / "gateway.log")
    gw.wait_subscribed(mosq.port, poll=0.01)  # the clock starts when it takes messages
    t0 = time.perf_counter()
    t_end = wait_count(influx, E2E_N, "gateway end to end (drain)")
    return E2E_N / (t_end - t0), gw


def bench_e2e_live(mosq, influx, n: int, before: int) -> tuple[float, float]:
    """Publishers and gateway at the same time (they share the machine's cores)."""
    t0, procs = publish_all(mosq.port, n, 3_000_000)
    t_pub = [None]

    def joiner():
        for p in procs:
            p.join(E2E_TIMEOUT_S)
        t_pub[0] = time.perf_counter()

    threading.Thread(target=joiner, daemon=True).start()
    t_end = wait_count(influx, before + n, "gateway end to end (live publishers)")
    return n / (t_end - t0), n / ((t_pub[0] or t_end) - t0)


# -- 3. latency at a steady rate --
def bench_latency(mosq, influx) -> tuple[float, float, int]:
    """Publish LAT_RATE water readings/s; reading i is queryable when count(seq) FROM water > i."""
    n = int(LAT_RATE * LAT_SECONDS)
    pub_at = [0.0] * n
    seen_at = [0.0] * n
    c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="bench-lat-pub")
    c.max_inflight_messages_set(1000)
    c.connect("127.0.0.1", mosq.port)
    c.loop_start()
    stop = threading.Event()

    def poller():
        seen = 0
        while seen < n and not stop.is_set():
            t = time.perf_counter()
            count = influx_count(influx, "water")
            # Readings up to `count` are queryable at the latest by now; earliest at t.
            now = time.perf_counter()
            for i in range(seen, min(count, n)):
                seen_at[i] = (t + now) / 2
            seen = max(seen, count)
            time.sleep(0.005)

    th = threading.Thread(target=poller, daemon=True)
    th.start()
    start = time.perf_counter()
    step = 10  # publish in groups of 10 every 10 ms
    with progress() as prog:
        task = prog.add_task(f"steady {LAT_RATE}/s", total=n)
        for base in range(0, n, step):
            due = start + base / LAT_RATE
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            for i in range(base, min(base + step, n)):
                pub_at[i] = time.perf_counter()
                c.publish(
                    f"envnet/v1/{station_id(i % STATIONS)}/reading",
                    payload(i // STATIONS, time.time(), "water"),
                    qos=1,
                )
            if base % 1000 == 0:
                prog.update(task, completed=base)
    th.join(60)
    stop.set()
    c.disconnect()
    c.loop_stop()
    lat = sorted((s - p) * 1000 for s, p in zip(seen_at, pub_at, strict=True) if s)
    missing = n - len(lat)
    q = statistics.quantiles(lat, n=100) if len(lat) > 2 else [float("nan")] * 99
    return q[49], q[98], missing


# -- 4. shared subscription --
def bench_shared(base: Path, mosq, influx) -> dict:
    db = "envnet_shared"
    influx.query(f'CREATE DATABASE "{db}"', method="POST")
    envs = [
        gateway_env(
            base,
            mosq,
            influx,
            f"shared-{k}",
            ENVNET_MQTT_SHARED_GROUP="envnet",
            ENVNET_INFLUX_DATABASE=db,
        )
        for k in (1, 2)
    ]
    gws = [GatewayProc(e, base / f"gateway-shared-{k}.log") for k, e in enumerate(envs, 1)]
    try:
        for g in gws:
            g.wait_subscribed(mosq.port)
        t0, procs = publish_all(mosq.port, SHARED_N, 2_000_000)
        t_end = wait_count(influx, SHARED_N, "2 gateways, shared subscription", database=db)
        for p in procs:
            p.join(30)
        time.sleep(1.0)  # any straggler (a duplicate would raise the count above SHARED_N)
        final = influx_count(influx, "air", db)
        split = []
        for e in envs:
            with sqlite3.connect(e["ENVNET_GATEWAY_BUFFER_PATH"]) as conn:
                split.append(conn.execute("SELECT count(*) FROM points").fetchone()[0])
        alive = all(g.p.poll() is None for g in gws)
    finally:
        for g in gws:
            g.stop()
    return {
        "rps": SHARED_N / (t_end - t0),
        "influx": final,
        "split": split,
        "alive": alive,
    }


# -- 5. server at scale (bench/server_bench.py, also runnable on its own) --
def bench_server(base: Path) -> server_bench.Figures:
    return server_bench.run(base / "server", SERVER_STATIONS, SERVER_REQUESTS)


def main() -> None:
    t_start = time.perf_counter()
    console.print(
        f"envnet ingest benchmark on {os.cpu_count()} cores: {PUBLISHERS} publisher processes, "
        f"{STATIONS} station ids, QoS 1"
    )
    with tempfile.TemporaryDirectory(prefix="envnet-bench-") as tmp:
        base = Path(tmp)
        with Mosquitto(base / "mosquitto") as mosq, InfluxDB(base / "influxdb") as influx:
            bare = bench_bare(mosq.port)
            console.print(f"bare paho receive: {bare:,.0f} msg/s ({BARE_N} messages)")

            env = gateway_env(base, mosq, influx, "main")
            e2e, gw = bench_e2e_drain(env, base, mosq, influx)
            try:
                console.print(
                    f"gateway end to end (durable, into InfluxDB, {E2E_N} readings drained from "
                    f"the broker): {e2e:,.0f} readings/s; ratio {e2e / bare:.2f}"
                )
                live, pub_rps = bench_e2e_live(mosq, influx, LIVE_N, E2E_N)
                console.print(
                    f"gateway end to end with {PUBLISHERS} publisher processes on the same cores: "
                    f"{live:,.0f} readings/s (publishers finished at {pub_rps:,.0f}/s)"
                )
                p50, p99, missing = bench_latency(mosq, influx)
                console.print(
                    f"latency publish -> queryable at {LAT_RATE}/s for {LAT_SECONDS:.0f} s: "
                    f"p50 {p50:.0f} ms, p99 {p99:.0f} ms"
                    + (f" ([red]{missing} not seen[/red])" if missing else "")
                )
                by_proc = gw.rss_by_process()
                rss = sum(by_proc.values())
                alive = gw.p.poll() is None
                each = ", ".join(f"{k} {v:.1f} MB" for k, v in by_proc.items())
                console.print(
                    f"gateway peak RSS (VmHWM) per process: {each}; total {rss:.1f} MB;"
                    f" alive: {alive}"
                )
            finally:
                gw.stop()

            sh = bench_shared(base, mosq, influx)
            ok = sh["influx"] == SHARED_N and all(sh["split"]) and sh["alive"]
            console.print(
                f"2 gateways, shared subscription $share/envnet: {sh['rps']:,.0f} readings/s, "
                f"split {sh['split'][0]}/{sh['split'][1]}, InfluxDB holds {sh['influx']}/{SHARED_N}"
                f" -> {'no loss, no duplicates' if ok else '[red]MISMATCH[/red]'}"
            )

            if SERVER_STATIONS:  # BENCH_SERVER_STATIONS=0: the ingest figures only
                server_bench.report(bench_server(base), lambda s: console.print(s, soft_wrap=True))
    console.print(f"total bench time {time.perf_counter() - t_start:.0f} s")
    print(
        f"ingest end_to_end_rps={e2e:.0f} bare_rps={bare:.0f} ratio={e2e / bare:.2f} "
        f"p99_ms={p99:.0f} rss_mb={rss:.0f}",
        flush=True,
    )


if __name__ == "__main__":
    main()

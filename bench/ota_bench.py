"""OTA benchmark, station side: download memory high-water mark and time per station.

    .venv/bin/python bench/ota_bench.py [--stations 4] [--runs 3]

Everything real: `envnet release` builds the bundle from firmware/, the envnet server serves
it, Mosquitto carries the commands, the firmware runs on the MicroPython unix port.

1. Heap. The station's download job (firmware/lib/otajob.py, unchanged, as the .mpy of the
   bundle, as on a board) is driven step by step in a micropython process against the
   server, without the rest of the station:
   - live heap high-water mark: the largest gc.mem_alloc() after gc.collect() between steps,
     minus the same before the command; split into the code of the modules an update loads
     (ota, otajob, hmac256: a station that is not updating does not load them) and the
     job's data (buffer, manifest, socket);
   - peak heap incl. garbage between collections: the smallest `-X heapsize` with which the
     whole job (manifest, signature, every file streamed, hashed, re-hashed, pointer switch)
     still completes, minus the smallest with which the same script without the job runs.
2. Time. Factory-flashed stations are told to update (cmd `ota`, as the server sends it);
   measured from the command to the `confirmed` report, with the phases in between; first
   one station alone (median of --runs), then --stations at once.

Figures are from the 64-bit unix port: objects are about twice their ESP32 size, so heap
figures are pessimistic; Wi-Fi throughput on a board is far below loopback.
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "firmware"))
sys.path.insert(0, str(ROOT))
import harness  # noqa: E402

DRIVER = r"""
import gc, sys, time
import board
MODE, URL, VER, KEY = sys.argv[1:5]
class Link:
    up = True
    connects = 1
    def __init__(self):
        self.states = []
    def publish(self, sub, payload, retain=False):
        self.states.append(payload)
        return True
class St:
    pass
st = St()
st.board = board
st.cfg = {"ota": {"key": KEY, "key_id": "fleet-1"}}
st.FW = "0.2.0"
st.link = Link()
st.reboot_requested = False
st.acked = 0
gc.collect()
base = gc.mem_alloc()
peak = base
steps = 0
mods = 0
t0 = time.ticks_ms()
if MODE == "job":
    import otajob, ota, hmac256
    gc.collect()
    mods = gc.mem_alloc() - base
    otajob.start(st, {"version": VER, "url": URL})
    while otajob.running():
        ota.tick(st, 0)
        steps += 1
        gc.collect()
        a = gc.mem_alloc()
        if a > peak:
            peak = a
ms = time.ticks_diff(time.ticks_ms(), t0)
ok = MODE != "job" or (sys.modules["ota"].REBOOT and st.reboot_requested)
last = st.link.states[-1] if st.link.states else ""
print("RESULT", "ok" if ok else "fail", base, peak, steps, ms, mods, last)
"""


MPY_PATH = ""  # the bundle's compiled files: what a board runs (set in main)


def _run_driver(cwd: Path, mode: str, url: str, ver: str, key: str, heap: int | None = None):
    for p in ("ota.json", "ota.json.tmp"):
        (cwd / p).unlink(missing_ok=True)
    shutil.rmtree(cwd / "app", ignore_errors=True)
    argv = [harness.MICROPYTHON]
    if heap:
        argv += ["-X", f"heapsize={heap}"]
    argv += [str(cwd / "driver.py"), mode, url, ver, key]
    env = dict(harness.env(), MICROPYPATH=MPY_PATH)
    r = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    line = next((ln for ln in r.stdout.splitlines() if ln.startswith("RESULT")), None)
    if r.returncode or line is None:
        return None
    parts = line.split(" ", 7)
    return {
        "ok": parts[1] == "ok",
        "base": int(parts[2]),
        "peak": int(parts[3]),
        "steps": int(parts[4]),
        "ms": int(parts[5]),
        "mods": int(parts[6]),
        "last": parts[7],
    }


def _smallest_heap(cwd: Path, mode: str, url: str, ver: str, key: str) -> int:
    lo, hi = 4096, 512 * 1024  # lo fails, hi works
    r = _run_driver(cwd, mode, url, ver, key, hi)
    if not (r and r["ok"]):
        raise RuntimeError(f"{mode} does not run even with {hi} bytes of heap: {r}")
    while hi - lo > 512:
        mid = (lo + hi) // 2 // 256 * 256
        r = _run_driver(cwd, mode, url, ver, key, mid)
        if r and r["ok"]:
            hi = mid
        else:
            lo = mid
    return hi


def heap_figures(work: Path, base_url: str, version: str, key: bytes) -> dict:
    d = work / "heap"
    d.mkdir()
    (d / "driver.py").write_text(DRIVER)
    url = f"{base_url}/ota/releases/{version}/"
    r = _run_driver(d, "job", url, version, key.hex())
    if not (r and r["ok"]):
        raise RuntimeError(f"the download job failed: {r}")
    out = {
        "live_peak": r["peak"] - r["base"],
        "mods": r["mods"],
        "steps": r["steps"],
        "job_ms": r["ms"],
    }
    out["min_heap_job"] = _smallest_heap(d, "job", url, version, key.hex())
    out["min_heap_base"] = _smallest_heap(d, "base", url, version, key.hex())
    out["peak"] = out["min_heap_job"] - out["min_heap_base"]
    return out


def _update_one(st: harness.OtaStation, base_url: str, version: str) -> dict:
    t0 = time.monotonic()
    ack = st.ota(version, base_url, timeout=60)
    if not ack.get("ok"):
        raise RuntimeError(f"{st.id}: refused: {ack}")
    t_ack = time.monotonic()
    st.wait_ota("verified", version, timeout=120)
    t_ver = time.monotonic()
    st.wait_ota("confirmed", version, timeout=120)
    t_conf = time.monotonic()
    return {
        "ack": t_ack - t0,
        "download": t_ver - t_ack,
        "switch_confirm": t_conf - t_ver,
        "total": t_conf - t0,
    }


def time_figures(
    work: Path, broker_port: int, base_url: str, key: bytes, runs: int, n: int
) -> dict:
    # Alone: a fresh factory station per run, updated to 9.0.<run>.
    alone = []
    for i in range(runs):
        st = harness.OtaStation(work / f"alone-{i}", broker_port, key.hex(), f"bench-ota-{i}")
        try:
            st.start()
            st.wait_birth("0.2.0")
            alone.append(_update_one(st, base_url, "9.0.0"))
        finally:
            st.close()
    # Several at once.
    sts = [
        harness.OtaStation(work / f"many-{i}", broker_port, key.hex(), f"bench-many-{i}")
        for i in range(n)
    ]
    res: list[dict | Exception] = [None] * n  # type: ignore[list-item]
    try:
        for st in sts:
            st.start()
        for st in sts:
            st.wait_birth("0.2.0")

        def one(i: int) -> None:
            try:
                res[i] = _update_one(sts[i], base_url, "9.0.0")
            except Exception as e:  # reported below
                res[i] = e

        t0 = time.monotonic()
        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.monotonic() - t0
    finally:
        for st in sts:
            st.close()
    bad = [r for r in res if isinstance(r, Exception)]
    if bad:
        raise RuntimeError(f"{len(bad)} of {n} concurrent updates failed: {bad[0]}")
    return {"alone": alone, "many": res, "many_wall": wall, "n": n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--stations", type=int, default=4, help="stations updated at once")
    ap.add_argument("--runs", type=int, default=3, help="single-station runs (median)")
    a = ap.parse_args()
    key = secrets.token_bytes(32)
    with tempfile.TemporaryDirectory(prefix="ota-bench-") as tmp:
        work = Path(tmp)
        rel = work / "releases"
        b = harness.build_release(rel, "9.0.0", key)
        m = json.loads((b / "manifest.json").read_text())
        size = sum(f["size"] for f in m["files"])
        man_size = len((b / "manifest.json").read_bytes())
        global MPY_PATH
        MPY_PATH = f"{b / 'files' / 'lib'}:{b / 'files'}"
        with (
            harness.broker(work / "broker") as mq,
            harness.release_server(rel, work / "server", mq.port) as base,
        ):
            heap = heap_figures(work, base, "9.0.0", key)
            times = time_figures(work, mq.port, base, key, a.runs, a.stations)

    med = {k: statistics.median(r[k] for r in times["alone"]) for k in times["alone"][0]}
    many = times["many"]
    print(
        f"bundle: {len(m['files'])} files, {size / 1024:.1f} KB (+ manifest "
        f"{man_size / 1024:.1f} KB)"
    )
    print("| figure | value |")
    print("|---|---|")
    print(
        f"| update, live heap high-water mark (gc.mem_alloc after collect, per step) "
        f"| {heap['live_peak'] / 1024:.1f} KB (code of ota, otajob, hmac256 loaded for it: "
        f"{heap['mods'] / 1024:.1f} KB; the job's data: "
        f"{(heap['live_peak'] - heap['mods']) / 1024:.1f} KB) |"
    )
    print(
        f"| update, peak heap incl. garbage and code (smallest -X heapsize with job minus without:"
        f" {heap['min_heap_job'] // 1024} KB - {heap['min_heap_base'] // 1024} KB) "
        f"| {heap['peak'] / 1024:.1f} KB |"
    )
    print(f"| job alone, loopback, no station loop ({heap['steps']} steps) | {heap['job_ms']} ms |")
    print(
        f"| one station, cmd -> confirmed (median of {a.runs}) | {med['total']:.2f} s "
        f"(ack {med['ack'] * 1000:.0f} ms, download+verify {med['download']:.2f} s, "
        f"switch+reboot+confirm {med['switch_confirm']:.2f} s) |"
    )
    tot = [r["total"] for r in many]  # type: ignore[index]
    print(
        f"| {times['n']} stations at once, cmd -> confirmed | median {statistics.median(tot):.2f}"
        f" s, max {max(tot):.2f} s, all done in {times['many_wall']:.2f} s |"
    )


if __name__ == "__main__":
    main()

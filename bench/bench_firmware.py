"""Firmware benchmark (CPython driver, the firmware itself runs on MicroPython).

Prints, and writes into docs/firmware.md between the bench markers:
  - heap: live heap after boot, bytes allocated by one sample-and-publish cycle
    (micropython.mem_total delta: an upper bound of the cycle's peak heap use), and the
    smallest -X heapsize the station boots and runs cycles in (from .mpy files, as on a
    board);
  - total .mpy size of every device file (mpy-cross), core and drivers;
  - awake time per water-probe deep-sleep cycle;
  - MQTT bytes on the wire per reading, live and replayed.

  - memory (issue 21): the firmware as .mpy in the flashed layout under a fixed -X heapsize,
    per phase (boot, sample, publish, replay of 1,000, TLS connect, OTA download+verify,
    console): the smallest heap that runs boot + that phase (binary search), and at the
    test heap the live heap after the phase and the largest free block (mem_info's
    "max free sz", GC blocks x block size); then a soak of 10,080 compressed cycles (7 days
    of 60 s) with outages and an OTA, printing the slope of the free heap after gc.collect().

Usage: .venv/bin/python bench/bench_firmware.py [--no-write] [--memory-only | --soak-only]
(--soak-only: the soak alone, rewriting only its paragraph in the memory block.)
Needs mosquitto (Debian package). Not a test: figures vary with the machine.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "firmware"))
sys.path.insert(0, str(ROOT))
import harness  # noqa: E402

DOC = harness.ROOT / "docs" / "firmware.md"
TEST_HEAP = "120k"  # tests/firmware/test_fw_memory.py HEAP
SOAK_HEAP = "160k"  # tests/firmware/test_fw_memory.py SOAK_HEAP (in-process reboot)

CYCLE = r"""
import gc, json, micropython, time
import board, config
cfg = config.load()
board.init(cfg)
from station import Station
st = Station(cfg, board)
t0 = time.ticks_ms()
while not st.link.up and time.ticks_diff(time.ticks_ms(), t0) < 5000:
    st.link.tick()
    time.sleep_ms(20)
st.send_health()
if MODE == "boot":
    print("RESULT {}")
    raise SystemExit

def cycle():
    for _ in range(12):          # one interval's samples (60 s / 5 s)
        st.sampler.sample()
    t = st.make_reading()
    st.send_reading(t)
    return t

cycle()                          # first cycle: lazy imports, first-time allocations
gc.collect()
live = gc.mem_alloc()
tot0 = micropython.mem_total()
tx0 = st.link.sent_bytes()
text = cycle()
alloc = micropython.mem_total() - tot0
tx = st.link.sent_bytes() - tx0
# replay: 10 readings buffered, then sent as one array
for _ in range(10):
    st.sampler.sample()
    st.buf.append(st.make_reading())
tx1 = st.link.sent_bytes()
while len(st.buf):
    st.replay()
rtx = st.link.sent_bytes() - tx1
print("RESULT " + json.dumps({"live": live, "alloc": alloc, "tx": tx, "payload": len(text),
                              "replay_tx_per": rtx / 10, "mem_free": gc.mem_free()}))
"""


def _station(tmp: Path, port: int, **over) -> Path:
    return harness.write_station(
        tmp, harness.station_config(port, interval_s=60, sample_s=5, health_s=300, **over)
    )


def _run(code: str, cwd: Path, path: str, heap: str | None = None) -> subprocess.CompletedProcess:
    argv = [harness.MICROPYTHON] + (["-X", f"heapsize={heap}"] if heap else []) + ["-c", code]
    env = dict(harness.env(), MICROPYPATH=path)
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def compile_mpy(out: Path) -> dict:
    sizes = {"core": 0, "drivers": 0, "files": 0}
    out.mkdir(parents=True, exist_ok=True)
    for f in harness.device_files():
        dst = out / (f.stem + ".mpy")
        r = subprocess.run(
            [harness.MPY_CROSS, *harness.mpy_args(f), "-o", str(dst), str(f)],
            capture_output=True,
            text=True,
        )
        if r.returncode:
            raise SystemExit(f"mpy-cross failed on {f}: {r.stderr}")
        if f.name == "main.py":
            continue  # main.py stays source on the board (it is what boot runs)
        sizes["drivers" if "drivers" in f.parts else "core"] += dst.stat().st_size
        sizes["files"] += 1
    sizes["main_py"] = (harness.FW / "main.py").stat().st_size
    sizes["total"] = sizes["core"] + sizes["drivers"]
    # The simulated board the heap runs stand on (board_sim, simsensors) is compiled too,
    # as board_esp32 would be on a board, but not counted: it is never flashed.
    for f in sorted((harness.FW / "sim").glob("*.py")):
        r = subprocess.run(
            [harness.MPY_CROSS, *harness.mpy_args(f), "-o", str(out / (f.stem + ".mpy")), str(f)],
            capture_output=True,
            text=True,
        )
        if r.returncode:
            raise SystemExit(f"mpy-cross failed on {f}: {r.stderr}")
    return sizes


def heap_figures(tmp: Path, port: int, mpy_dir: Path) -> dict:
    st = _station(tmp / "heap", port)
    r = _run("MODE = 'cycle'\n" + CYCLE, st, harness.MICROPYPATH)
    m = re.search(r"RESULT (.*)", r.stdout)
    if not m:
        raise SystemExit(f"cycle bench failed:\n{r.stdout}\n{r.stderr}")
    res = json.loads(m.group(1))
    # Smallest heap (KB) that boots the station from .mpy (as on a board), with and
    # without the cycles: the difference is what a cycle needs at its peak.
    for mode in ("boot", "cycle"):
        lo, hi = 8, 512
        while lo < hi:
            mid = (lo + hi) // 2
            d = _station(tmp / f"{mode}{mid}", port)
            ok = "RESULT" in _run(f"MODE = {mode!r}\n" + CYCLE, d, str(mpy_dir), f"{mid}k").stdout
            lo, hi = (lo, mid) if ok else (mid + 1, hi)
        res[f"min_heap_{mode}_kb"] = lo
    return res


def awake_figures(tmp: Path, port: int, cycles: int = 5) -> dict:
    cfg = harness.station_config(
        port,
        station_id="hun-river-01",
        kind="water",
        board="sim-water",
        interval_s=1.5,
        sample_s=0.2,
        health_s=300,
        deep_sleep=True,
    )
    st = harness.write_station(tmp / "water", cfg)
    fw = harness.Firmware(st)
    try:
        end = time.monotonic() + 30
        while time.monotonic() < end and len(re.findall(r"awake (\d+) ms", fw.log())) < cycles:
            time.sleep(0.2)
    finally:
        fw.kill()
    ms = [int(x) for x in re.findall(r"awake (\d+) ms", fw.log())]
    if not ms:
        raise SystemExit("water probe never slept:\n" + fw.log())
    return {
        "cycles": len(ms),
        "median_ms": int(statistics.median(ms)),
        "max_ms": max(ms),
        "burst": f"{cfg.get('burst_n', 5)} samples, 200 ms apart",
    }


def _phase_ok(st: Path, phases: str, kb: int, romfs: bool = False) -> tuple[bool, dict]:
    for f in ("seq.json", "buf.dat", "buf.dat.meta", "ota.json", "ota.json.tmp", "sim.json"):
        (st / f).unlink(missing_ok=True)
    shutil.rmtree(st / "app", ignore_errors=True)
    r = harness.run_memphases(st, [phases], f"{kb}k", romfs=romfs)
    res = harness.parse_phases(r.stdout)
    ok = len(res) == len(phases.split(",")) and all(v["result"] == "ok" for v in res.values())
    m = re.search(r"ROMFS (\d+)", r.stdout)
    if m:
        res["romfs_block"] = int(m.group(1))
    return ok, res


# What a board whose firmware runs in place from flash would need (a ROMFS partition or
# modules frozen into the image: both need a custom MicroPython build): the smallest heap with
# the firmware imported from a ROMFS image, minus the image's own block in the heap.
ROMFS_PHASES = ("boot", "ota", "all")


def _smallest_romfs(st: Path, phases: str) -> float:
    block = _phase_ok(st, "boot", 320, romfs=True)[1]["romfs_block"]
    base = -(-block // 1024)
    lo, hi = base + 24, base + 320
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if _phase_ok(st, phases, mid, romfs=True)[0] else (mid + 1, hi)
    return lo - block / 1024


SOAK_EVERY = 500  # cycles per outage period: a broker drop or a Wi-Fi loss at 250, back at 300


def soak_figures(tmp: Path, rig: dict, key: bytes, cycles: int = 10080) -> dict:
    """The soak: `cycles` compressed cycles, the OTA (and the reboot into the new slot) at
    cycles // 2 - 200, between two outages. The slope of the free heap after gc.collect() is
    taken per segment between (re)boots over the quiet point of every outage period (cycles
    100-249 of 500: up, nothing buffered), from the third period of the segment on: the first
    outage after a boot leaves a one-off 64 B (harness.soak_segment), and the reboot into the
    slot a step of about 5.4 KB (the first station's interned names stay in the unix port's
    process; a board resets). A regression over a stretch holding a step reads the step as
    a slope."""
    st = harness.memory_station(tmp / "mem-soak", rig, key)
    ota = cycles // 2 - 200
    t0 = time.monotonic()
    r = harness.run_memphases(st, ["soak", str(cycles), str(SOAK_EVERY), str(ota)], SOAK_HEAP,
                              timeout=3600)  # fmt: skip
    pts = harness.parse_soak(r.stdout)
    if len(pts) != cycles:
        raise SystemExit(f"soak stopped at {len(pts)} cycles:\n{r.stdout[-3000:]}{r.stderr}")
    segs = [(2 * SOAK_EVERY, ota), (ota + 2 * SOAK_EVERY, cycles)]
    before, after = (harness.soak_segment(r.stdout, SOAK_EVERY, a, b) for a, b in segs)
    if before["buffered"] or after["buffered"]:
        raise SystemExit("an outage outlasted its schedule (readings buffered at a quiet point)")
    # The series: free heap at the first quiet cycle of every outage period.
    series = [(c, f) for c, f, _, _ in pts if c % SOAK_EVERY == SOAK_EVERY // 5]
    s = {
        "cycles": cycles,
        "ota_at": ota,
        "segments": segs,
        "seconds": time.monotonic() - t0,
        "before": before,
        "after": after,
        "series": series,
        "free_min": min(f for _, f, _, _ in pts[100:]),
        "free_max": max(f for _, f, _, _ in pts[100:]),
        "seq_span": pts[-1][2] - pts[0][2] + 1,
    }
    print(f"soak: { {k: v for k, v in s.items() if k not in ('before', 'after')} }", flush=True)
    for k in ("before", "after"):
        seg = s[k]
        print(f"soak {k} the OTA: slope {seg['slope'] * 1000:+.1f} B per 1,000 cycles, net "
              f"{seg['net']:+d} B, interned names {seg['names']}", flush=True)  # fmt: skip
    return s


def memory_figures(tmp: Path, soak_cycles: int = 10080) -> dict:
    key = secrets.token_bytes(32)
    out: dict = {}
    with harness.memory_rig(tmp / "rig", key) as rig:
        for kind in ("air", "water"):
            st = harness.memory_station(tmp / f"mem-{kind}", rig, key, kind)
            mins = {}
            for p in (*harness.PHASES, "all"):
                phases = {"boot": "boot", "all": ",".join(harness.PHASES)}.get(p, "boot," + p)
                lo, hi = 24, 320
                while lo < hi:
                    mid = (lo + hi) // 2
                    lo, hi = (lo, mid) if _phase_ok(st, phases, mid)[0] else (mid + 1, hi)
                mins[p] = lo
                print(f"{kind} {p}: smallest heap {lo} KB", flush=True)
            _, at = _phase_ok(st, ",".join(harness.PHASES), int(TEST_HEAP.rstrip("k")))
            harness.romfs_image(st)
            rom = {}
            for p in ROMFS_PHASES:
                phases = {"boot": "boot", "all": ",".join(harness.PHASES)}.get(p, "boot," + p)
                rom[p] = _smallest_romfs(st, phases)
                print(f"{kind} {p} from ROMFS: smallest heap {rom[p]:.1f} KB", flush=True)
            out[kind] = {"min": mins, "at": at, "romfs": rom}
        st = harness.memory_station(tmp / "mem-modules", rig, key)
        r = harness.run_memphases(st, ["modules"], "256k")
        mods = [ln.split() for ln in r.stdout.splitlines() if ln.startswith("MODULE ")]
        out["modules"] = {m[1]: int(m[2]) for m in mods}
        out["soak"] = soak_figures(tmp, rig, key, soak_cycles)
    return out


def render_memory(m: dict) -> str:
    rows = [
        f"| phase | smallest heap, air / water (KB) | at {TEST_HEAP}: live after, air / water "
        "(KB) | largest free block after, air / water (KB) |",
        "|---|---|---|---|",
    ]
    for p in (*harness.PHASES, "all"):
        a, w = m["air"], m["water"]
        if p == "all":
            rows.append(f"| all phases in one run | {a['min'][p]} / {w['min'][p]} | | |")
            continue
        rows.append(
            f"| {p} | {a['min'][p]} / {w['min'][p]} "
            f"| {a['at'][p]['alloc'] / 1024:.1f} / {w['at'][p]['alloc'] / 1024:.1f} "
            f"| {a['at'][p]['largest_free'] / 1024:.1f} / {w['at'][p]['largest_free'] / 1024:.1f} |"
        )
    mods = ", ".join(f"{k} {v / 1024:.1f}" for k, v in m["modules"].items())
    rom = "; ".join(
        f"{'all phases in one run' if p == 'all' else p} "
        f"{m['air']['romfs'][p]:.0f} / {m['water']['romfs'][p]:.0f}"
        for p in ROMFS_PHASES
    )
    rows += [
        "",
        "Firmware run in place from flash (imported from a ROMFS image, the image's block "
        f"subtracted), smallest heap, air / water (KB): {rom}.",
        "",
        f"Live heap each module adds when imported (KB, 64-bit): {mods}.",
        "",
        render_soak(m["soak"]),
    ]
    return "\n".join(rows)


def render_soak(s: dict) -> str:
    b, a = s["before"], s["after"]
    (b0, b1), (a0, a1) = s["segments"]
    ota = s["ota_at"]
    series = " ".join(f"{f} (OTA)" if c < ota < c + SOAK_EVERY else str(f) for c, f in s["series"])
    return (
        f"Soak: {s['cycles']} cycles in {s['seconds']:.0f} s under -X heapsize={SOAK_HEAP}, a "
        f"broker drop or a Wi-Fi loss every {SOAK_EVERY} cycles, the OTA at cycle {s['ota_at']}; "
        f"free heap after gc.collect() {s['free_min'] / 1024:.1f}-{s['free_max'] / 1024:.1f} KB; "
        f"at the quiet point of each outage period, slope {b['slope'] * 1000:+.1f} B per 1,000 "
        f"cycles before the OTA (cycles {b0}-{b1 - 1}), {a['slope'] * 1000:+.1f} after "
        f"(cycles {a0}-{a1 - 1}); net {b['net']:+d} / {a['net']:+d} B; interned names "
        f"{b['names'][0]} -> {b['names'][1]} / {a['names'][0]} -> {a['names'][1]}; seq span "
        f"{s['seq_span']} for {s['cycles']} cycles. Free heap (B) at cycle {SOAK_EVERY // 5} "
        f"of every {SOAK_EVERY}: {series}."
    )


def render(h: dict, s: dict, a: dict) -> str:
    return "\n".join(
        [
            "| figure | value | aim (issue 3) |",
            "|---|---|---|",
            f"| peak heap of one sample-and-publish cycle (12 samples, encode, QoS 1 publish, "
            f"replay of 10): smallest heap with cycles minus without "
            f"| {h['min_heap_cycle_kb'] - h['min_heap_boot_kb']} KB | < 32 KB |",
            f"| smallest `-X heapsize` to boot and connect / to also run cycles (from .mpy) "
            f"| {h['min_heap_boot_kb']} KB / {h['min_heap_cycle_kb']} KB | |",
            f"| live heap after boot + first cycle (gc.mem_alloc) | {h['live'] / 1024:.1f} KB | |",
            f"| bytes allocated during one cycle, incl. freed call frames (mem_total delta) "
            f"| {h['alloc'] / 1024:.1f} KB | |",
            f"| total .mpy of device files ({s['files']} files; main.py stays source, "
            f"{s['main_py']} B) | {s['total'] / 1024:.1f} KB "
            f"(core {s['core'] / 1024:.1f} KB, drivers {s['drivers'] / 1024:.1f} KB) | < 120 KB |",
            f"| water probe awake time per deep-sleep cycle (median of {a['cycles']}, max) "
            f"| {a['median_ms']} ms (max {a['max_ms']} ms) | < 5 s |",
            f"| MQTT bytes per live reading (PUBLISH; +4 B PUBACK back) | {h['tx']} B "
            f"(payload {h['payload']} B) | |",
            f"| MQTT bytes per replayed reading (arrays of 10) | {h['replay_tx_per']:.0f} B | |",
        ]
    )


def soak_only(argv: list[str]) -> int:
    # The soak alone (about 7 minutes); rewrites only the "Soak:" paragraph of the block.
    key = secrets.token_bytes(32)
    with tempfile.TemporaryDirectory() as t, harness.memory_rig(Path(t) / "rig", key) as rig:
        line = render_soak(soak_figures(Path(t), rig, key))
    print(line)
    if "--no-write" in argv or not DOC.exists():
        return 0
    text = DOC.read_text()
    start, end = "<!-- bench:memory:start -->", "<!-- bench:memory:end -->"
    head, rest = text.split(start, 1)
    block, tail = rest.split(end, 1)
    kept = [ln for ln in block.strip("\n").split("\n") if not ln.startswith("Soak: ")]
    if kept and kept[-1] == "":
        kept.pop()
    _write("\n".join([*kept, "", line]), start, end, argv)
    return 0


def main(argv: list[str]) -> int:
    if "--soak-only" in argv:
        return soak_only(argv)
    with tempfile.TemporaryDirectory() as t:
        mem = render_memory(memory_figures(Path(t)))
    print(mem)
    _write(mem, "<!-- bench:memory:start -->", "<!-- bench:memory:end -->", argv)
    if "--memory-only" in argv:
        return 0
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        sizes = compile_mpy(tmp / "mpy")
        with harness.broker(tmp) as mq:
            heap = heap_figures(tmp, mq.port, tmp / "mpy")
            awake = awake_figures(tmp, mq.port)
    table = render(heap, sizes, awake)
    note = (
        "Measured on the MicroPython unix port (64-bit: objects are about twice their "
        "ESP32 size, so heap figures are pessimistic); awake time excludes Wi-Fi "
        "association and DHCP, which add about 1-2 s on a board."
    )
    print(table)
    print(note)
    _write(f"{table}\n\n{note}", "<!-- bench:start -->", "<!-- bench:end -->", argv)
    return 0


def _write(body: str, start: str, end: str, argv: list[str]) -> None:
    if "--no-write" in argv or not DOC.exists():
        return
    text = DOC.read_text()
    if start in text and end in text:
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        DOC.write_text(f"{head}{start}\n{body}\n{end}{tail}")
        print(f"updated {DOC.relative_to(harness.ROOT)}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

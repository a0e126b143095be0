"""The firmware inside a fixed MicroPython heap (issue 21; docs/firmware.md "Memory").

The real firmware, compiled to .mpy and laid out as `envnet flash --mpy` lays it out, runs on
the unix port under `-X heapsize=HEAP` through every phase (mp_memphases.py): boot, sampling,
publish, offline replay of 1,000 readings, TLS connect, OTA download and verify, console
commands. A shortened soak checks that the free heap after gc.collect() does not trend down;
a MemoryError injected at each phase (the simulated board's fault points) is survived.
Every firmware file compiles for the ESP32 (mpy-cross -march=xtensawin).
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

# Every phase in one run for both kinds on the 64-bit unix port, with a margin for placement
# noise over the bench's figure (106 / 106 KB, bench/bench_firmware.py; docs/firmware.md; it
# was 117 / 118 under 132k): a regression of more than about 12 KB fails here.
# Issue 21 aims at 64k: not reachable with the modules loaded from flash into the heap
# (about 60 KB live after boot on 64-bit, 20 KB of it bytecode); see docs/firmware.md "Memory".
HEAP = "120k"
# The soak reboots into the new slot inside the same process (the unix port's stand-in for
# machine.reset()), on a heap the first station's interned names still pin in place: it
# needs more than a board, whose reset starts from an empty heap. It passes at 148k (fails at
# 144k, at the reboot into the slot); was 176k.
SOAK_HEAP = "160k"
KEY = secrets.token_bytes(32)


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    with harness.memory_rig(tmp_path_factory.mktemp("rig"), KEY) as r:
        yield r


@pytest.mark.parametrize("kind", ["air", "water"])
def test_every_phase_runs_in_the_fixed_heap(tmp_path, rig, kind):
    st = harness.memory_station(tmp_path / kind, rig, KEY, kind)
    r = harness.run_memphases(st, [",".join(harness.PHASES)], HEAP)
    res = harness.parse_phases(r.stdout)
    assert list(res) == list(harness.PHASES), r.stdout[-3000:] + r.stderr[-2000:]
    assert {p: v["result"] for p, v in res.items()} == dict.fromkeys(harness.PHASES, "ok")
    assert "replayed 1000 readings" in r.stdout
    assert "(tls)" in r.stdout and "ota 9.9.9 verified" in r.stdout
    # Between phases the station holds far from the whole heap (fragmentation aside).
    assert all(v["free"] > 32 * 1024 for v in res.values()), res


def test_a_too_small_heap_fails_visibly(tmp_path, rig):
    # The bench's search relies on a heap that is too small showing as a failure.
    st = harness.memory_station(tmp_path / "tiny", rig, KEY)
    r = harness.run_memphases(st, ["boot"], "24k")
    assert r.returncode != 0
    assert "MemoryError" in r.stdout + r.stderr


# The shortened soak: outage periods of 100 cycles, the OTA at 600, 2,200 cycles in all (about
# a minute and a half): long enough after the reboot into the new slot (1,400 cycles, 1,325 of
# them past the warm-up) that a leak of the size the bench once reported (51 B per 1,000
# cycles; it was the outage bug below, not a leak) takes two 32-byte GC blocks and fails.
SOAK_CYCLES, SOAK_EVERY, SOAK_OTA = 2200, 100, 600


def test_short_soak_free_heap_does_not_trend_down(tmp_path, rig):
    # Compressed cycles (the bench runs 10,080: 7 days of 60 s), broker drops and Wi-Fi losses
    # alternating every 100 cycles, an OTA (download, verify, reboot into the new slot).
    st = harness.memory_station(tmp_path / "soak", rig, KEY)
    args = ["soak", str(SOAK_CYCLES), str(SOAK_EVERY), str(SOAK_OTA)]
    r = harness.run_memphases(st, args, SOAK_HEAP, timeout=600)
    out = r.stdout
    pts = harness.parse_soak(out)
    assert len(pts) == SOAK_CYCLES and "SOAKEND" in out, out[-3000:] + r.stderr[-3000:]
    assert "confirmed" in out and "replayed" in out
    # seq: one reading per cycle, none lost across outages and the reboot into the new slot.
    assert pts[-1][2] - pts[0][2] == SOAK_CYCLES - 1
    # Per segment between reboots, past the first broker drop and the first Wi-Fi loss of
    # each, at the quiet point of every outage period (cycles 20-49 of 100).
    for start, end in ((2 * SOAK_EVERY, SOAK_OTA), (SOAK_OTA + 2 * SOAK_EVERY, SOAK_CYCLES)):
        seg = harness.soak_segment(out, SOAK_EVERY, start, end)
        where = f"cycles {start}-{end}: {seg['points'][::10]}"
        # Every outage ended as scheduled: up and caught up at each quiet point (after the
        # reboot the driver once kept steering the old board's sim cache, and the station
        # sat offline with its ring buffer filling for the rest of the run).
        assert seg["buffered"] == 0, where
        # No interned name per cycle, per reconnect or per replay: the pool never shrinks.
        assert seg["names"][0] == seg["names"][1] > 0, seg["names"]
        # The free heap after gc.collect() at the same point of each cycle does not fall by
        # more than one 32-byte block over the segment (a one-off block may move; a slope of
        # 51 B per 1,000 cycles loses two over the 1,325 cycles after the reboot). The net
        # change, not a regression slope: one block moving in the middle reads as a slope.
        assert seg["net"] >= -32, where


def _seqs(sub: harness.Subscriber, station: str) -> list[int]:
    return sorted({r["seq"] for r in harness.readings(list(sub.messages), station)})


def _wait(pred, timeout=20.0, what=""):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    raise TimeoutError(what)


def test_memory_error_at_every_phase_is_survived(tmp_path, rig):
    cfg = harness.ota_station_config(
        rig["port"], KEY.hex(), interval_s=0.5, sample_s=0.1, health_s=2
    )
    path = harness.write_station(tmp_path / "st", cfg)
    sim = path / "sim.json"
    n = 0

    def inject(point: str, **more) -> None:
        nonlocal n
        n += 1
        sim.write_text(json.dumps({"memory_error": point, "memory_error_id": n, **more}))
        time.sleep(0.6)  # the simulated board re-reads sim.json at most every 0.5 s

    inject("boot")  # the first boot already hits one
    sub = harness.Subscriber(rig["port"], "envnet/v1/sy-air-001/#")
    fw = harness.Firmware(path)
    try:

        def injected(point: str, k: int = 1) -> None:
            _wait(
                lambda: fw.log().count(f"MemoryError injected at {point}") >= k,
                30,
                f"no injection at {point}:\n{fw.log()[-3000:]}",
            )

        def more_readings(k: int = 3) -> None:
            have = len(_seqs(sub, "sy-air-001"))
            _wait(lambda: len(_seqs(sub, "sy-air-001")) >= have + k, 30, fw.log()[-3000:])

        injected("boot")
        more_readings()
        for point in ("sample", "publish", "command"):
            inject(point)
            if point == "command":
                sub.publish("envnet/v1/sy-air-001/cmd", json.dumps({"id": "m", "op": "ping"}))
            injected(point)
            more_readings()
        inject("connect", offline=True)  # Wi-Fi lost: readings go to the ring buffer
        time.sleep(3)
        inject("replay")  # back: the first replay batch hits one
        injected("replay")
        more_readings(8)
        n += 1
        sim.write_text(json.dumps({"offline": True}))
        time.sleep(2)
        inject("connect")
        injected("connect")
        more_readings()
        inject("chunk")  # OTA: the download fails cleanly and is reported
        sub.publish(
            "envnet/v1/sy-air-001/cmd",
            json.dumps({"id": "o", "op": "ota", "version": "9.9.9", "url": rig["ota_url"]}),
        )
        injected("chunk")
        _wait(lambda: "ota 9.9.9 failed" in fw.log(), 30, fw.log()[-3000:])
        more_readings()
        assert fw.proc.poll() is None, fw.log()[-3000:]
    finally:
        fw.kill()
        sub.close()
    log = fw.log()
    assert log.count("MemoryError in") >= 5 and "MemoryError at boot" in log, log[-3000:]
    seqs = _seqs(sub, "sy-air-001")
    assert seqs == list(range(1, seqs[-1] + 1)), seqs  # continuous, from the first boot on
    health = [json.loads(p) for t, p, _ in sub.messages if t.endswith("/health")]
    assert max(h["errors"].get("mem", 0) for h in health) >= 1


def test_every_firmware_file_compiles_for_the_esp32(tmp_path):
    # The ESP32's native architecture (xtensawin) and plain bytecode, as `make fw-compile`.
    for f in harness.firmware_files():
        for extra in ([], ["-march=xtensawin"]):
            r = subprocess.run(
                [harness.MPY_CROSS, *extra, "-o", str(tmp_path / "x.mpy"), str(f)],
                capture_output=True,
                text=True,
            )
            assert r.returncode == 0, f"{f}: {r.stderr}"

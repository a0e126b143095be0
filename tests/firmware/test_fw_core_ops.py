"""Remote commands, serial console, deep sleep and QC flags on the running firmware."""

from __future__ import annotations

import json
import os
import pty
import select
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "firmware"))
import harness  # noqa: E402

CMD = "envnet/v1/sy-air-001/cmd"


def _station(tmp_path, mq, **over):
    cfg = harness.station_config(mq.port, **over)
    return harness.write_station(tmp_path / "st", cfg)


def _reading(sub, pred=lambda r: True, timeout=15):
    _, p, _ = sub.wait(
        lambda m: m[0].endswith("/reading") and m[1].startswith(b"{") and pred(json.loads(m[1])),
        timeout,
    )
    return json.loads(p)


def _ack(sub, cid, timeout=15):
    _, p, _ = sub.wait(
        lambda m: m[0].endswith("/cmd/ack") and json.loads(m[1])["id"] == cid, timeout
    )
    return json.loads(p)


def test_commands_are_acked_and_applied(tmp_path):
    with harness.broker(tmp_path) as mq:
        sub = harness.Subscriber(mq.port)
        st = _station(tmp_path, mq)
        fw = harness.Firmware(st)
        try:
            sub.wait(lambda m: m[0].endswith("/status") and b"online" in m[1])
            sub.publish(CMD, json.dumps({"id": "c1", "op": "ping"}))
            a = _ack(sub, "c1")
            assert a["ok"] is True and isinstance(a["ts"], int)

            sub.publish(CMD, json.dumps({"id": "c2", "op": "config", "set": {"interval_s": 0.5}}))
            assert _ack(sub, "c2") == {"id": "c2", "ok": True, "changed": ["interval_s"]}
            assert json.loads((st / "config.json").read_text())["interval_s"] == 0.5
            r1 = _reading(sub)
            r2 = _reading(sub)
            assert r2["seq"] == r1["seq"] + 1

            sub.publish(CMD, json.dumps({"id": "c3", "op": "config", "set": {"station_id": "x"}}))
            a = _ack(sub, "c3")
            assert a["ok"] is False and "not settable" in a["error"]
            sub.publish(CMD, json.dumps({"id": 4, "op": "config", "get": ["interval_s"]}))
            assert _ack(sub, 4)["config"] == {"interval_s": 0.5}
            sub.publish(CMD, b"not json")
            sub.publish(CMD, json.dumps({"id": "c5", "op": "dance"}))
            assert "unknown op" in _ack(sub, "c5")["error"]

            sub.publish(CMD, json.dumps({"id": "c6", "op": "config", "set": {"maint": True}}))
            assert _ack(sub, "c6")["ok"]
            r = _reading(sub, lambda r: r["flags"].get("pm25") == "maint")
            assert set(r["flags"].values()) == {"maint"} and set(r["flags"]) == set(r["values"])
            sub.publish(CMD, json.dumps({"id": "c7", "op": "maint", "on": False}))
            assert _ack(sub, "c7")["maint"] is False

            sub.publish(
                CMD,
                json.dumps(
                    {
                        "id": "c8",
                        "op": "calibrate",
                        "sensor": "pms",
                        "args": {"param": "pm25", "offset": 1.5},
                    }
                ),
            )
            assert _ack(sub, "c8")["result"] == {"param": "pm25", "offset": 1.5}
            r = _reading(sub, lambda r: r["flags"].get("pm25") == "cal")
            assert r["flags"]["pm10"] == "cal"
            assert json.loads((st / "cal.json").read_text())["pms"]["offset"] == 1.5
            sub.publish(CMD, json.dumps({"id": "c9", "op": "calibrate", "sensor": "nope"}))
            assert _ack(sub, "c9")["ok"] is False

            sub.publish(CMD, json.dumps({"id": "c10", "op": "reboot"}))
            assert _ack(sub, "c10")["ok"]
            _, p, _ = sub.wait(lambda m: m[0].endswith("/status") and b'"boot": 2' in m[1])
            assert json.loads(p)["state"] == "online"
            assert fw.proc.poll() is None  # unix: rebooted in-process
        finally:
            fw.kill()
            sub.close()


def _pty_lines(fd, want, timeout=10.0):
    """Read lines from the pty master until want(line) is true; return that line."""
    buf = b""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        r, _, _ = select.select([fd], [], [], 0.2)
        if not r:
            continue
        buf += os.read(fd, 4096)
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            text = line.decode(errors="replace").strip()
            if want(text):
                return text
    raise TimeoutError("no matching console line")


def test_console_over_pty_status_json(tmp_path):
    with harness.broker(tmp_path) as mq:
        st = _station(tmp_path, mq)
        master, slave = pty.openpty()
        fw = harness.Firmware(st, stdin=slave, stdout=slave)
        os.close(slave)
        try:
            _pty_lines(master, lambda t: "mqtt connected" in t)
            os.write(master, b"status --json\n")
            line = _pty_lines(master, lambda t: t.startswith("{"))
            s = json.loads(line)
            assert s["ok"] is True and s["station_id"] == "sy-air-001"
            assert s["connected"] is True and s["kind"] == "air" and s["boot"] == 1
            os.write(master, b"maint on --json\n")
            assert json.loads(_pty_lines(master, lambda t: t.startswith("{")))["maint"] is True
            os.write(master, b"config get interval_s\n")
            assert _pty_lines(master, lambda t: t.startswith("interval_s ="))
            os.write(master, b"bogus --json\n")
            assert json.loads(_pty_lines(master, lambda t: t.startswith("{")))["ok"] is False
            os.write(master, b"log --json\n")
            lines = json.loads(_pty_lines(master, lambda t: t.startswith("{")))["lines"]
            assert any("boot 1" in x for x in lines)
            # the station kept running meanwhile
            assert "reading" in _pty_lines(master, lambda t: " I reading " in t)
        finally:
            fw.kill()
            os.close(master)


def test_deep_sleep_water_probe_cycles(tmp_path):
    with harness.broker(tmp_path) as mq:
        sub = harness.Subscriber(mq.port)
        cfg = harness.station_config(
            mq.port,
            station_id="hun-river-01",
            kind="water",
            board="sim-water",
            interval_s=1,
            sample_s=0.1,
            health_s=2,
            deep_sleep=True,
            burst_n=5,
            burst_ms=20,
        )
        st = harness.write_station(tmp_path / "st", cfg)
        fw = harness.Firmware(st)
        try:
            seqs = []
            while len(seqs) < 4:
                _, p, _ = sub.wait(lambda m: m[0] == "envnet/v1/hun-river-01/reading")
                seqs.append(json.loads(p)["seq"])
            h = sub.wait(lambda m: m[0].endswith("/health") and b"awake_ms" in m[1])
        finally:
            fw.kill()
            sub.close()
        # Wakes continue the counter from RTC memory: no per-wake block gaps.
        assert seqs == list(range(seqs[0], seqs[0] + 4))
        health = json.loads(h[1])
        assert health["reset_cause"] == "deepsleep" and health["boot"] == 1
        assert 0 < health["awake_ms"] < 5000
        assert "sleeping" in fw.log()


def test_clock_warmup_override_and_range_flags(tmp_path):
    with harness.broker(tmp_path) as mq:
        sub = harness.Subscriber(mq.port)
        st = _station(tmp_path, mq, sim={"seed": 1, "warmup_s": {"pms": 1.5}})
        (st / "sim.json").write_text(json.dumps({"clock_synced": False}))
        fw = harness.Firmware(st)
        try:
            r = _reading(sub)
            assert r["flags"]["*"] == "clock"
            assert r["flags"]["pm25"] == "warmup" and r["flags"]["pm10"] == "warmup"
            assert "no2" not in r["flags"]
            (st / "sim.json").write_text(json.dumps({"pm25": 300, "pm10": 5000}))
            r = _reading(sub, lambda r: r["values"]["pm25"] == 300 and "pm25" not in r["flags"])
            assert "*" not in r["flags"]
            assert r["flags"] == {"pm10": "range"} and r["values"]["pm10"] == 5000
        finally:
            fw.kill()
            sub.close()

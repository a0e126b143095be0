"""Offline buffering and replay: the real firmware against a real Mosquitto that goes away."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "firmware"))
import harness  # noqa: E402


def _seqs(sub) -> list[int]:
    return [r["seq"] for r in harness.readings(list(sub.messages))]


def _wait_seqs(sub, pred, timeout=20.0) -> list[int]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        s = _seqs(sub)
        if pred(s):
            return s
        time.sleep(0.1)
    raise TimeoutError(f"seqs so far: {_seqs(sub)}")


def _health(sub) -> list[dict]:
    return [json.loads(p) for t, p, _ in list(sub.messages) if t.endswith("/health")]


def test_broker_down_buffers_then_replays_in_order_without_loss(tmp_path):
    with harness.broker(tmp_path) as mq:
        sub = harness.Subscriber(mq.port, client_id="fwtest-outage")
        cfg = harness.station_config(mq.port, interval_s=0.5, sample_s=0.1, health_s=1)
        st = harness.write_station(tmp_path / "st", cfg)
        fw = harness.Firmware(st)
        try:
            before = _wait_seqs(sub, lambda s: len(s) >= 3)
            mq.stop()  # the broker is gone for ~6 s (12 readings)
            time.sleep(6)
            mq.start()
            last_before = max(before)
            seqs = _wait_seqs(sub, lambda s: len(s) >= last_before + 16, timeout=30)
        finally:
            fw.kill()
            sub.close()
        log = fw.log()
        assert "buffered seq" in log and "replayed" in log, log
        first = seqs[0]
        unique = list(dict.fromkeys(seqs))
        assert unique == list(range(first, first + len(unique))), seqs  # no gap
        assert unique == sorted(unique), seqs  # oldest first
        # QoS 1 is at-least-once: a reading the broker took just before it went away, whose
        # PUBACK never came back, is buffered and replayed (the gateway dedupes it by identity).
        # That one reading at the outage edge is the only duplicate allowed.
        dups = sorted({s for s in seqs if seqs.count(s) > 1})
        assert len(dups) <= 1 and set(dups) <= {last_before, last_before + 1}, seqs
        assert all(seqs.count(s) <= 2 for s in dups), seqs
        # Replay arrived as arrays
        arrays = [p for t, p, _ in sub.messages if t.endswith("/reading") and p.startswith(b"[")]
        assert arrays


def test_sim_offline_then_online_and_health_reports_buffered(tmp_path):
    with harness.broker(tmp_path) as mq:
        sub = harness.Subscriber(mq.port)
        cfg = harness.station_config(mq.port, interval_s=0.5, sample_s=0.1, health_s=1)
        st = harness.write_station(tmp_path / "st", cfg)
        fw = harness.Firmware(st)
        try:
            _wait_seqs(sub, lambda s: len(s) >= 2)
            (st / "sim.json").write_text(json.dumps({"offline": True}))
            sub.wait(lambda m: m[0].endswith("/status") and b"offline" in m[1], timeout=10)
            time.sleep(3)
            (st / "sim.json").write_text(json.dumps({"offline": False}))
            sub.wait(lambda m: m[0].endswith("/status") and b"online" in m[1], timeout=10)
            h = sub.wait(lambda m: m[0].endswith("/health") and json.loads(m[1])["buffered"] > 0)
            assert json.loads(h[1])["dropped"] == 0
            seqs = _wait_seqs(sub, lambda s: len(s) >= 12)
        finally:
            fw.kill()
            sub.close()
        unique = list(dict.fromkeys(seqs))
        assert unique == list(range(unique[0], unique[0] + len(unique)))


def test_overflow_drops_oldest_and_counts(tmp_path):
    with harness.broker(tmp_path) as mq:
        sub = harness.Subscriber(mq.port)
        cfg = harness.station_config(
            mq.port,
            interval_s=0.25,
            sample_s=0.05,
            health_s=1,
            buffer={"slots": 4, "slot_size": 384, "batch": 10},
        )
        st = harness.write_station(tmp_path / "st", cfg)
        (st / "sim.json").write_text(json.dumps({"offline": True}))
        fw = harness.Firmware(st)
        try:
            time.sleep(3.5)  # ~13 readings into 4 slots
            (st / "sim.json").write_text(json.dumps({"offline": False}))
            seqs = _wait_seqs(sub, lambda s: len(s) >= 6)
            h = sub.wait(lambda m: m[0].endswith("/health") and json.loads(m[1])["dropped"] > 0)
        finally:
            fw.kill()
            sub.close()
        dropped = json.loads(h[1])["dropped"]
        assert dropped >= 5
        # The first thing replayed is the 4 newest buffered readings; the oldest are gone.
        assert seqs[0] == dropped + 1, (seqs, dropped)
        assert seqs[:4] == list(range(dropped + 1, dropped + 5))


def test_power_loss_mid_write_next_boot_replays_earlier_records(tmp_path):
    with harness.broker(tmp_path) as mq:
        cfg = harness.station_config(mq.port, interval_s=0.25, sample_s=0.05)
        st = harness.write_station(tmp_path / "st", cfg)
        (st / "sim.json").write_text(json.dumps({"offline": True}))
        fw = harness.Firmware(st)
        time.sleep(2.2)
        fw.kill()  # power cut while offline
        buf = st / "buf.dat"
        n = len(buf.read_bytes()) // 384 + 1
        assert n >= 5, fw.log()
        # The last record's write was "interrupted": keep only half of it.
        data = buf.read_bytes()
        last = (len(data) - 1) // 384
        buf.write_bytes(data[: last * 384 + 100])
        sub = harness.Subscriber(mq.port)
        (st / "sim.json").write_text(json.dumps({"offline": False}))
        fw = harness.Firmware(st)
        try:
            seqs = _wait_seqs(sub, lambda s: len(s) >= last + 2)
        finally:
            fw.kill()
            sub.close()
        assert "Traceback" not in fw.log()
        # Records 1..last (all before the torn one) come back first, in order.
        assert seqs[:last] == list(range(1, last + 1)), seqs
        assert all(s > last + 1 for s in seqs[last:]), seqs

"""Firmware core modules on the real MicroPython unix port: sampler, ring buffer, seq, config."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "firmware"))
import harness  # noqa: E402


def mp_json(code: str, cwd: Path) -> object:
    """Run code that ends by printing one JSON value; return it."""
    return json.loads(harness.run_mp(code, cwd=cwd).strip().splitlines()[-1])


SAMPLER = """
import json, time
from sampler import Sampler
class S:
    def __init__(self, name, seq, params, warmup_s=0):
        self.name, self.seq, self.params, self.warmup_s = name, list(seq), params, warmup_s
    def read(self):
        v = self.seq.pop(0)
        if v is None:
            raise OSError(5, 'bus')
        return v
"""


def test_trimmed_mean_drops_min_and_max_from_five_or_more(tmp_path):
    out = mp_json(
        SAMPLER
        + """
s = S('pms', [{'pm25': x} for x in (10, 11, 12, 13, 500)], ('pm25',))
sm = Sampler('air', [s], {})
for _ in range(5): sm.sample()
a = sm.close()
s.seq = [{'pm25': 10}, {'pm25': 20}, {'pm25': 90}]
for _ in range(3): sm.sample()
print(json.dumps([a, sm.close()]))
""",
        tmp_path,
    )
    assert out[0] == [{"pm25": 12.0}, {}]  # (11 + 12 + 13) / 3: spike 500 and min dropped
    assert out[1] == [{"pm25": 40.0}, {}]  # n < 5: plain mean


def test_flags_range_warmup_fault_cal_maint(tmp_path):
    out = mp_json(
        SAMPLER
        + """
errors = {}
pms = S('pms', [{'pm25': 5000, 'pm10': 20}, {'pm25': 4000, 'pm10': 22}], ('pm25', 'pm10'))
bme = S('bme', [{'t': 10}, {'t': 12}], ('t', 'rh'), warmup_s=3600)
gas = S('gas', [None, None], ('no2',))
sm = Sampler('air', [pms, bme, gas], errors)
sm.sample(); sm.sample()
w1 = sm.close()
pms.seq = [{'pm25': 7, 'pm10': 9}]
pms.calibrate = lambda **kw: {'zero_v': 0.1}
sm.calibrate('pms', {})
sm.sensors = [pms]
sm.sample()
w2 = sm.close()
pms.seq = [{'pm25': 7, 'pm10': 9}]
sm.sample()
w3 = sm.close(maint=True)
print(json.dumps([w1, w2, w3, errors]))
""",
        tmp_path,
    )
    w1, w2, w3, errors = out
    assert w1[0] == {"pm25": 4500.0, "pm10": 21.0, "t": 11.0}
    assert w1[1] == {"pm25": "range", "t": "warmup", "no2": "fault"}
    assert w2 == [{"pm25": 7, "pm10": 9}, {"pm25": "cal", "pm10": "cal"}]
    assert w3 == [{"pm25": 7, "pm10": 9}, {"pm25": "maint", "pm10": "maint"}]
    assert errors == {"gas": 2}


def test_good_samples_win_over_flagged_ones(tmp_path):
    # One out-of-range spike among good samples is dropped, not flagged.
    out = mp_json(
        SAMPLER
        + """
s = S('pms', [{'pm25': 12}, {'pm25': -3}, {'pm25': 14}, None], ('pm25',))
sm = Sampler('air', [s], {})
for _ in range(4): sm.sample()
print(json.dumps(sm.close()))
""",
        tmp_path,
    )
    assert out == [{"pm25": 13.0}, {}]


RING = "from ringbuf import RingBuffer\nimport json\n"


def test_ring_buffer_order_commit_and_reopen(tmp_path):
    out = mp_json(
        RING
        + """
b = RingBuffer('b.dat', 8, 64)
for i in range(5): b.append('{"seq":%d}' % i)
items, span = b.peek(3)
b.commit(span)
b2 = RingBuffer('b.dat', 8, 64)       # reboot
items2, span2 = b2.peek(10)
print(json.dumps([[x.decode() for x in items], len(b2), [x.decode() for x in items2]]))
""",
        tmp_path,
    )
    assert out[0] == ['{"seq":0}', '{"seq":1}', '{"seq":2}']
    assert out[1] == 2
    assert out[2] == ['{"seq":3}', '{"seq":4}']


def test_ring_buffer_overflow_drops_oldest_and_counts(tmp_path):
    out = mp_json(
        RING
        + """
b = RingBuffer('b.dat', 4, 64)
for i in range(10): b.append('{"seq":%d}' % i)
items, span = b.peek(10)
b2 = RingBuffer('b.dat', 4, 64)
print(json.dumps([[x.decode() for x in items], b.dropped, b2.dropped, len(b2)]))
""",
        tmp_path,
    )
    assert out[0] == ['{"seq":6}', '{"seq":7}', '{"seq":8}', '{"seq":9}']
    assert out[1] == 6 and out[2] == 6 and out[3] == 4


def test_ring_buffer_power_loss_mid_write(tmp_path):
    # Write 6 records, then cut the file inside the 6th (a write interrupted by
    # power loss): the next boot keeps records 0..4 and writes on without crashing.
    mp_json(
        RING
        + """
b = RingBuffer('b.dat', 16, 64)
for i in range(6): b.append('{"seq":%d,"pad":"xxxxxxxx"}' % i)
print(1)
""",
        tmp_path,
    )
    data = (tmp_path / "b.dat").read_bytes()
    (tmp_path / "b.dat").write_bytes(data[: 5 * 64 + 20])
    out = mp_json(
        RING
        + """
b = RingBuffer('b.dat', 16, 64)
n = len(b)
b.append('{"seq":6}')
items, span = b.peek(20)
print(json.dumps([n, [json.loads(x)['seq'] for x in items]]))
""",
        tmp_path,
    )
    assert out == [5, [0, 1, 2, 3, 4, 6]]


def test_ring_buffer_skips_a_corrupt_record(tmp_path):
    mp_json(
        RING
        + """
b = RingBuffer('b.dat', 8, 64)
for i in range(4): b.append('{"seq":%d}' % i)
print(1)
""",
        tmp_path,
    )
    data = bytearray((tmp_path / "b.dat").read_bytes())
    data[64 + 14] ^= 0xFF  # flip a byte inside record 1's data
    (tmp_path / "b.dat").write_bytes(bytes(data))
    out = mp_json(
        RING
        + """
b = RingBuffer('b.dat', 8, 64)
items, span = b.peek(20)
print(json.dumps([[json.loads(x)['seq'] for x in items], span, b.bad]))
""",
        tmp_path,
    )
    assert out == [[0, 2, 3], 4, 1]


def test_seq_never_reused_after_crash(tmp_path):
    code = """
from seqstore import SeqStore
import json
s = SeqStore()
print(json.dumps([s.boot, [s.take() for _ in range(40)]]))
"""
    b1, first = mp_json(code, tmp_path)  # "crash" after 40 readings (mid second block)
    b2, second = mp_json(code, tmp_path)
    assert b1 == 1 and b2 == 2
    assert first == list(range(1, 41))
    assert min(second) > max(first)


def test_config_validation_and_persistence(tmp_path):
    cfg = harness.station_config(1883)
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    out = mp_json(
        """
import config, json
c = config.load()
res = []
for ch in ({'interval_s': 30}, {'interval_s': 'x'}, {'station_id': 'x'}, {'sample_s': 99},
           {'mqtt.port': 70000}, {'maint': True}):
    try:
        res.append(config.update(c, ch))
    except ValueError as e:
        res.append(str(e))
print(json.dumps([res, config.load()['interval_s'], config.view(c, ['mqtt.password'])]))
""",
        tmp_path,
    )
    res, persisted, view = out
    assert res[0] == ["interval_s"]
    assert "must be a number" in res[1]
    assert "not settable" in res[2]
    assert "sample_s must not exceed interval_s" in res[3]
    assert "out of range" in res[4]
    assert res[5] == ["maint"]
    assert persisted == 30
    assert view == {"mqtt.password": ""}


def test_console_parser(tmp_path):
    out = mp_json(
        """
import console, json
print(json.dumps([console.parse(l) for l in (
    'status --json', 'config set interval_s 30', 'config get mqtt.host', 'maint on',
    'calibrate ph point=mid value=7.0 --json')]))
""",
        tmp_path,
    )
    assert out[0] == [{"id": "console", "op": "status"}, True]
    assert out[1][0]["set"] == {"interval_s": 30}
    assert out[2][0]["get"] == ["mqtt.host"]
    assert out[3][0] == {"id": "console", "op": "maint", "on": True}
    assert out[4] == [
        {
            "id": "console",
            "op": "calibrate",
            "sensor": "ph",
            "args": {"point": "mid", "value": 7.0},
        },
        True,
    ]


def test_pm_humidity_correction(tmp_path):
    out = mp_json(
        """
import pmcorr, json
print(json.dumps([round(pmcorr.epa2021(p, 50), 3) for p in (0, 20, 40, 100, 230, 300)]))
""",
        tmp_path,
    )
    # EPA 2021 piecewise formula (Barkjohn et al.), values from the formula by hand
    assert out[0] == 1.44 and out[1] == round(0.524 * 20 - 0.0862 * 50 + 5.75, 3)
    assert out[3] == round(0.786 * 100 - 0.0862 * 50 + 5.75, 3)
    assert out[5] == round(2.966 + 0.69 * 300 + 8.84e-4 * 300 * 300, 3)
    assert out[2] > out[1] and out[4] > out[3]


def test_duty_cycled_sensor_sleeps_between_windows_and_rewarms(tmp_path):
    out = mp_json(
        SAMPLER
        + """
import time
class D(S):
    def sleep(self): self.log.append('sleep')
    def wake(self): self.log.append('wake')
pm = D('pm', [{'pm25': 50}] * 20, ('pm25',), warmup_s=0.05)
pm.log = []
th = S('th', [{'t': 5}] * 20, ('t',))
sm = Sampler('air', [pm, th], {})
sm.t0 = time.ticks_add(time.ticks_ms(), -1000)      # booted long ago: warm
sm.sample(); w1 = sm.close()
sm.duty_sleep(['pm'], 60000, 1000)                  # 60 s interval, 1 s active
sm.sample(); w2 = sm.close()                        # pm asleep: only t
sm.duty_wake(30000, 1000)                           # too early: stays asleep
a = sm.asleep['pm']
sm.duty_wake(1000, 1000)                            # warm-up + active before close
sm.sample(); w3 = sm.close()                        # just woken: warming up
time.sleep_ms(60)
sm.sample(); sm.sample(); w4 = sm.close()
sm.duty_sleep(['pm'], 1500, 1000)                   # interval too short to bother
print(json.dumps([w1, w2, a, w3, w4, pm.log, sm.asleep['pm']]))
""",
        tmp_path,
    )
    w1, w2, still_asleep, w3, w4, log, asleep_after = out
    assert w1 == [{"pm25": 50, "t": 5}, {}]
    assert w2 == [{"t": 5}, {}]
    assert still_asleep is True
    assert w3 == [{"pm25": 50, "t": 5}, {"pm25": "warmup"}]
    assert w4 == [{"pm25": 50, "t": 5}, {}]
    assert log == ["sleep", "wake"] and asleep_after is False

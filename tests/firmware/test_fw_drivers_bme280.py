"""Bosch BME280 on MicroPython: calibration register layout, the datasheet's integer
compensation against the worked example and an independent C-semantics reference."""

import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "fakes"))
from mpyhost import run_case  # noqa: E402

# BMP280 datasheet 3.12 worked example (the BME280 shares the T and P compensation)
T = (27504, 26435, -1000)
P = (36477, -10685, 3024, 2855, 140, -7, 15500, -14600, 6000)
H = (75, 362, 0, 313, 50, 30)  # trimming of a real BME280


# --- independent reference: the datasheet's C code with int32/int64 wrap-around -------
def s32(x):
    x &= 0xFFFFFFFF
    return x - (1 << 32) if x & 0x80000000 else x


def s64(x):
    x &= (1 << 64) - 1
    return x - (1 << 64) if x >> 63 else x


def cdiv(a, b):
    q = abs(a) // abs(b)
    return q if (a < 0) == (b < 0) else -q


def ref_t(adc, t1, t2, t3):
    var1 = s32((s32((adc >> 3) - (t1 << 1)) * t2) >> 11)
    var2 = s32((s32((s32(((adc >> 4) - t1) * ((adc >> 4) - t1)) >> 12) * t3)) >> 14)
    tf = s32(var1 + var2)
    return s32((tf * 5 + 128) >> 8), tf


def ref_p(adc, tf, p):
    p1, p2, p3, p4, p5, p6, p7, p8, p9 = p
    var1 = s64(tf - 128000)
    var2 = s64(var1 * var1 * p6)
    var2 = s64(var2 + s64((var1 * p5) << 17))
    var2 = s64(var2 + s64(p4 << 35))
    var1 = s64(s64((var1 * var1 * p3) >> 8) + s64((var1 * p2) << 12))
    var1 = s64((s64((1 << 47) + var1) * p1) >> 33)
    if var1 == 0:
        return 0
    q = 1048576 - adc
    q = cdiv(s64(s64((q << 31) - var2) * 3125), var1)
    var1 = s64((p9 * (q >> 13) * (q >> 13)) >> 25)
    var2 = s64((p8 * q) >> 19)
    return s64(((q + var1 + var2) >> 8) + (p7 << 4))


def ref_h(adc, tf, h):
    h1, h2, h3, h4, h5, h6 = h
    v = s32(tf - 76800)
    a = s32(s32(s32((adc << 14) - (h4 << 20) - s32(h5 * v)) + 16384) >> 15)
    b = s32(s32(s32(s32(s32(s32(v * h6) >> 10) * s32(s32(s32(v * h3) >> 11) + 32768)) >> 10)
                    + 2097152) * h2 + 8192) >> 14
    v = s32(a * b)
    v = s32(v - (s32(s32(s32(v >> 15) * s32(v >> 15)) >> 7) * h1 >> 4))
    return max(0, min(v, 419430400)) >> 12


def test_datasheet_worked_example_through_the_bus():
    out = run_case("""
        import i2cdevs, bme280
        dev = machine.attach("i2c", 0, i2cdevs.BME280(adc_t=519888, adc_p=415148,
                                                      adc_h=28000), 0x76)
        d = bme280.BME280(machine.I2C(0))
        r = attempt(d.read)
        print(json.dumps({"r": r, "cal": list(d.cal), "n": dev.measurements,
                          "ctrl": [dev.regs[0xF2], dev.regs[0xF5]]}))
    """)
    assert out["cal"] == list(T + P + H)  # register layout incl. the 12-bit H4/H5
    ok, v = out["r"]
    assert ok == "ok"
    t, tf = ref_t(519888, *T)
    assert tf == 128422 and t == 2508  # datasheet: t_fine 128422, T = 25.08 degC
    assert v["t"] == 25.08
    # datasheet (double): 100653.27 Pa; the 64-bit integer code gives Q24.8 Pa
    p = ref_p(415148, tf, P)
    assert abs(p / 256 - 100653.27) < 0.1
    assert v["p"] == p / 25600
    assert v["rh"] == ref_h(28000, tf, H) / 1024
    assert abs(v["rh"] - 43.86) < 0.01
    assert out["n"] == 1 and out["ctrl"] == [1, 0]  # osrs_h x1, filter off


def test_compensation_matches_c_reference_on_random_inputs():
    rng = random.Random(3)
    cases = []
    for _ in range(60):
        cal = (rng.randrange(20000, 35000), rng.randrange(20000, 30000), rng.randrange(-1200, 0),
               rng.randrange(30000, 40000), rng.randrange(-12000, -9000), rng.randrange(2000, 4000),
               rng.randrange(2000, 9000), rng.randrange(-200, 300), rng.randrange(-20, 10),
               rng.randrange(9000, 16000), rng.randrange(-16000, -10000), rng.randrange(4000, 7000),
               rng.randrange(0, 256), rng.randrange(300, 400), rng.randrange(0, 10),
               rng.randrange(250, 400), rng.randrange(0, 100), rng.randrange(0, 40))
        cases.append((cal, rng.randrange(400000, 600000), rng.randrange(250000, 500000),
                      rng.randrange(15000, 50000)))
    got = run_case("""
        import bme280
        out = []
        for cal, at, ap, ah in CASES:
            t, tf = bme280.compensate_t(cal, at)
            out.append([t, tf, bme280.compensate_p(cal, ap, tf), bme280.compensate_h(cal, ah, tf)])
        print(json.dumps(out))
    """, CASES=cases)
    for (cal, at, ap, ah), (t, tf, p, h) in zip(cases, got, strict=True):
        rt, rtf = ref_t(at, *cal[0:3])
        assert (t, tf) == (rt, rtf)
        assert p == ref_p(ap, rtf, cal[3:12])
        assert h == ref_h(ah, rtf, cal[12:18])


def test_wrong_chip_absent_chip_and_skipped_measurement():
    out = run_case("""
        import i2cdevs, bme280
        machine.attach("i2c", 0, i2cdevs.BME280(chip_id=0x58), 0x76)
        machine.attach("i2c", 0, i2cdevs.BME280(adc_t=0x80000, adc_p=0x80000, adc_h=0x8000), 0x77)
        i2c = machine.I2C(0)
        print(json.dumps([attempt(bme280.BME280(i2c).read),
                          attempt(bme280.BME280(i2c, addr=0x77).read),
                          attempt(bme280.BME280(i2c, addr=0x75).read)]))
    """)
    (n1, m1, _), (n2, m2, _), (n3, m3, o3) = out
    assert n1 == "DeviceError" and "0x58" in m1 and "BMP280" in m1
    assert n2 == "SensorError" and "skipped" in m2
    assert n3 == "SensorError" and "0x75" in m3 and o3

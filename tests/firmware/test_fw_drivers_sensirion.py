"""Sensirion SHT3x / SHT4x drivers on MicroPython: datasheet conversions from raw
bytes, CRC-8, command bytes, timing against a chip that NACKs while measuring."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "fakes"))
from mpyhost import run_case  # noqa: E402


def crc8(data):
    crc = 0xFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = ((crc << 1) ^ 0x31) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def answer(st, srh):
    t = st.to_bytes(2, "big")
    h = srh.to_bytes(2, "big")
    return t + bytes([crc8(t)]) + h + bytes([crc8(h)])


def read_fixed(cls, data):
    return run_case("""
        import i2cdevs, sensirion
        dev = machine.attach("i2c", 0, i2cdevs.Fixed(DATA), 0x44)
        d = getattr(sensirion, CLS)(machine.I2C(0))
        r = attempt(d.read)
        print(json.dumps({"r": r, "writes": [w.hex() for w in dev.writes]}))
    """, DATA=data, CLS=cls)


def test_sht3x_datasheet_conversion_byte_exact():
    out = read_fixed("SHT3x", answer(0x6666, 0x8000))
    assert out["writes"] == ["2400"]  # single shot, high repeatability, no stretching
    ok, v = out["r"]
    assert ok == "ok"
    assert abs(v["t"] - (-45 + 175 * 0x6666 / 65535)) < 1e-9
    assert abs(v["rh"] - 100 * 0x8000 / 65535) < 1e-9


def test_sht3x_extremes():
    ok, v = read_fixed("SHT3x", answer(0, 0xFFFF))["r"]
    assert v == {"t": -45.0, "rh": 100.0}


def test_sht4x_conversion_and_rh_cropping():
    out = read_fixed("SHT4x", answer(0xFFFF, 0xFFFF))
    assert out["writes"] == ["fd"]
    assert out["r"][1] == {"t": 130.0, "rh": 100.0}  # -6 + 125 = 119 cropped
    out = read_fixed("SHT4x", answer(0x6666, 0))
    assert out["r"][1]["rh"] == 0.0  # -6 cropped
    out = read_fixed("SHT4x", answer(0x6666, 0x8000))
    assert abs(out["r"][1]["rh"] - (-6 + 125 * 0x8000 / 65535)) < 1e-9


def test_crc_errors_name_the_word():
    good = answer(0x6666, 0x8000)
    bad_t = good[:2] + bytes([good[2] ^ 1]) + good[3:]
    bad_h = good[:5] + bytes([good[5] ^ 0x80])
    for data, word in ((bad_t, "temperature"), (bad_h, "humidity")):
        name, msg, is_oserror = read_fixed("SHT3x", data)["r"]
        assert name == "CRCError" and word in msg and is_oserror


def test_timing_against_fake_that_nacks_while_measuring():
    out = run_case("""
        import i2cdevs, sensirion
        a = machine.attach("i2c", 0, i2cdevs.SHT3x(t=21.5, rh=45.0), 0x44)
        b = machine.attach("i2c", 0, i2cdevs.SHT4x(t=-12.25, rh=88.0), 0x45)
        i2c = machine.I2C(0)
        s3 = sensirion.SHT3x(i2c)
        s4 = sensirion.SHT4x(i2c, addr="0x45")
        t0 = fakeclock.ticks_ms()
        s3.start(); s4.start()        # both convert in parallel
        r = [attempt(s3.read), attempt(s4.read)]
        took = fakeclock.ticks_ms() - t0
        # reading without a new command: the chip NACKs -> clear error naming it
        early = attempt(lambda: s3.read_into(bytearray(6)))
        print(json.dumps({"r": r, "took": took, "early": early}))
    """)
    (ok3, v3), (ok4, v4) = out["r"]
    assert abs(v3["t"] - 21.5) < 0.01 and abs(v3["rh"] - 45.0) < 0.01
    assert abs(v4["t"] + 12.25) < 0.01 and abs(v4["rh"] - 88.0) < 0.01
    assert out["took"] == 16  # waited once for the slower chip, not 16 + 9
    assert out["early"][0] == "SensorError" and "sht3x@0x44" in out["early"][1]


def test_absent_chip_is_sensor_error():
    out = run_case("""
        import sensirion
        print(json.dumps(attempt(sensirion.SHT3x(machine.I2C(0)).read)))
    """)
    assert out[0] == "SensorError" and "0x44" in out[1] and out[2] is True

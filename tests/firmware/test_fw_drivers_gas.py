"""Gas drivers on MicroPython: Winsen ZE-series UART frames, ADS1115 config words and
conversions, analog electrochemical cells with zero/span, ppm -> mass at 25 degC."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "fakes"))
from mpyhost import run_case  # noqa: E402

VM = 8.314462618 * 298.15 / 101.325  # L/mol at the GB 3095 reference state
M = {"co": 28.010, "no2": 46.006, "so2": 64.064, "o3": 47.997}


def ze(b1_7):
    f = bytes([0xFF, *b1_7])
    return f + bytes([(0x100 - (sum(f[1:8]) & 0xFF)) & 0xFF])


READ = bytes.fromhex("ff0186000000000079")


def run_ze(replies, **opts):
    return run_case("""
        import uartdevs, winsen
        dev = machine.attach("uart", 1, uartdevs.Replay(REPLIES))
        u = machine.UART(1, 9600)
        d = winsen.ZE(u, **OPTS)
        r = [attempt(d.read)]
        print(json.dumps({"r": r, "written": [w.hex() for w in u.written]}))
    """, REPLIES=replies, OPTS=opts)


def test_molar_conversion_at_25c():
    out = run_case("""
        import gas
        print(json.dumps([gas.to_mass("co", 1, "ppm"), gas.to_mass("no2", 1, "ppb"),
                          gas.to_mass("so2", 1, "ppb"), gas.to_mass("o3", 1, "ppb"),
                          gas.to_mass("no2", 0.1, "ppm"), gas.to_ppb("no2", 100.0),
                          attempt(lambda: gas.to_mass("co", 1, "ppt"))]))
    """)
    assert abs(out[0] - 28.010 / VM) < 1e-9 and abs(out[0] - 1.1449) < 1e-4  # mg/m3
    assert abs(out[1] - 1.8805) < 1e-4  # ug/m3 per ppb
    assert abs(out[2] - 2.6186) < 1e-4
    assert abs(out[3] - 1.9618) < 1e-4
    assert abs(out[4] - 188.05) < 0.01
    assert abs(out[5] - 100 * VM / 46.006) < 1e-9
    assert out[6][0] == "ValueError"


def test_ze07_qa_datasheet_frames():
    answer = ze([0x86, 0x00, 0x25, 0, 0, 0x00, 0x25])  # 0x25 = 37 -> 3.7 ppm
    out = run_ze({READ: answer}, model="ze07")
    assert out["written"] == ["ff0178410000000046", "ff0186000000000079"]
    ok, v = out["r"][0]
    assert ok == "ok" and abs(v["co"] - 3.7 * M["co"] / VM) < 1e-9


def test_ze03_no2_qa_and_mode_command():
    answer = ze([0x86, 0x00, 0x05, 0, 0, 0x00, 0x05])  # 0.5 ppm at 0.1 ppm resolution
    out = run_ze({READ: answer}, gas="no2", model="ze03")
    assert out["written"][0] == "ff0178040000000083"  # ZE03 Q&A switch
    v = out["r"][0][1]["no2"]
    assert abs(v - 500 * M["no2"] / VM) < 1e-6  # ug/m3


def test_active_upload_frame_carries_its_decimals():
    # FF gas=CO unit=ppm decimals=1 conc=0x0025 range=0x1388 cs
    frame = ze([0x04, 0x03, 0x01, 0x00, 0x25, 0x13, 0x88])
    assert frame[8] == 0x38
    out = run_case("""
        import uartdevs, winsen
        class Stream:
            def on_write(self, uart, data): pass
            def poll(self, uart): uart.feed(FRAME)
        machine.attach("uart", 1, Stream())
        u = machine.UART(1, 9600)
        d = winsen.ZE(u, mode="active", decimals=3)
        print(json.dumps([attempt(d.read), [w.hex() for w in u.written]]))
    """, FRAME=frame)
    ok, v = out[0]
    assert abs(v["co"] - 3.7 * M["co"] / VM) < 1e-9  # decimals from the frame, not options
    assert out[1] == ["ff0178400000000047"]  # ZE07 active-upload switch


def test_ze_bad_checksum_short_timeout_garbage():
    answer = ze([0x86, 0x00, 0x25, 0, 0, 0x00, 0x25])
    bad = answer[:8] + bytes([answer[8] ^ 0xFF])
    assert run_ze({READ: bad})["r"][0][0] == "CRCError"
    r = run_ze({READ: answer[:6]})["r"][0]
    assert r[0] == "SensorTimeout" and r[2] is True
    r = run_ze({})["r"][0]
    assert r[0] == "SensorTimeout" and "no data" in r[1]
    # 0xFF bytes in noise, and a stray 0xFF 0x86 prefix, before the real answer
    r = run_ze({READ: b"\x00\xff\xff\x86\x01" + answer})["r"][0]
    assert r[0] == "ok" and abs(r[1]["co"] - 3.7 * M["co"] / VM) < 1e-9


def test_ze_against_fake_device_faults():
    out = run_case("""
        import uartdevs, winsen
        dev = machine.attach("uart", 1, uartdevs.ZE(gas="co", raw=123, model="ze15"))
        d = winsen.ZE(machine.UART(1), model="ze15")
        r = []
        for f in (None, "checksum", "garbage", "short", "silent", None):
            dev.fault = f
            r.append(attempt(d.read)[0])
        print(json.dumps([r, d.raw, dev.mode]))
    """)
    assert out[0] == ["ok", "CRCError", "ok", "SensorTimeout", "SensorTimeout", "ok"]
    assert out[1] == 123 and out[2] == "qa"


def ads_cfg(mux, pga, dr):
    return 0x8000 | (mux << 12) | (pga << 9) | 0x0100 | (dr << 5) | 0x0003


def test_ads1115_config_words_and_conversion():
    out = run_case("""
        import i2cdevs, ads1115
        dev = machine.attach("i2c", 0, i2cdevs.ADS1115(volts=(1.2345, 0.5, 0.0, 2.0)), 0x48)
        a = ads1115.ADS1115(machine.I2C(0))
        r = [a.read_v(0, 4096), a.read_raw(0, 4096), a.read_v(1, 4096, neg=3) * 1,
             a.read_v(3, 2048), a.read_v(2, 256)]
        fast = ads1115.ADS1115(machine.I2C(0), rate=860)
        fast.read_raw(3, 2048)
        cw = ads1115.config_word
        bad = [attempt(lambda: cw(4)), attempt(lambda: cw(0, 5000)),
               attempt(lambda: cw(1, neg=2))]
        print(json.dumps({"r": r, "cfg": dev.configs, "bad": bad}))
    """)
    r = out["r"]
    code = round(1.2345 / 4.096 * 32768)
    assert r[1] == code and r[0] == code * 4.096 / 32768
    assert abs(r[2] - (0.5 - 2.0)) < 2e-4  # differential AIN1-AIN3, negative
    assert r[3] == 2.0  # 32000 counts at +-2.048 V full scale
    assert r[4] == 0.0
    assert out["cfg"][0] == ads_cfg(4, 1, 4) == 0xC383  # AIN0, +-4.096 V, 128 SPS
    assert out["cfg"][2] == ads_cfg(2, 1, 4)  # MUX 010 = AIN1-AIN3
    assert out["cfg"][-1] == ads_cfg(7, 2, 7) == 0xF5E3  # AIN3, +-2.048 V, 860 SPS
    assert [b[0] for b in out["bad"]] == ["ValueError"] * 3


def test_ads1115_conversion_that_never_finishes():
    out = run_case("""
        import i2cdevs, ads1115
        class Stuck(i2cdevs.ADS1115):
            def read(self, n):
                return b"\\x05\\x83"  # OS bit stays 0: converting forever
        machine.attach("i2c", 0, Stuck(), 0x48)
        print(json.dumps(attempt(lambda: ads1115.ADS1115(machine.I2C(0)).read_v(0))))
    """)
    assert out[0] == "SensorTimeout" and "did not finish" in out[1]


def test_analog_gas_aux_compensation_zero_span_and_cross():
    out = run_case("""
        import i2cdevs, analog_gas
        dev = machine.attach("i2c", 0, i2cdevs.ADS1115(volts=(0.290, 0.300, 0.350, 0.300)), 0x48)
        i2c = machine.I2C(0)
        # NO2 cell: WE on AIN0, AE on AIN1, -0.25 mV/ppb (reducing gas: WE falls)
        no2 = analog_gas.AnalogGas(i2c, gas="no2", channel=0, aux_channel=1, sens_mv=-0.25)
        # OX cell (O3 + NO2): WE AIN2, AE AIN3, +0.5 mV/ppb... sign per certificate
        ox = analog_gas.AnalogGas(i2c, gas="o3", channel=2, aux_channel=3, sens_mv=0.5,
                                  cross="no2")
        r = {"no2": attempt(no2.read), "o3_alone": attempt(ox.read)}
        ox.links = {"no2": no2}
        r["o3"] = attempt(ox.read)
        raw = analog_gas.AnalogGas(i2c, gas="co", channel=0, unit="ppm")
        r["uncal"] = raw.uncalibrated
        dev.volts[0] = 0.300; dev.volts[1] = 0.300
        r["zero"] = raw.calibrate(zero=True)
        dev.volts[0] = 0.350
        r["span"] = raw.calibrate(span=10)
        r["co"] = attempt(raw.read)
        r["cal_after"] = raw.uncalibrated
        r["bad_span"] = attempt(lambda: no2.calibrate())
        print(json.dumps(r))
    """)
    lsb = 4.096 / 32768
    s_no2 = round(0.290 / lsb) * lsb - round(0.300 / lsb) * lsb
    ppb_no2 = s_no2 * 1000 / -0.25
    assert abs(ppb_no2 - 40) < 0.01
    assert abs(out["no2"][1]["no2"] - ppb_no2 * M["no2"] / VM) < 1e-6
    assert out["o3_alone"][0] == "SensorError" and "needs no2" in out["o3_alone"][1]
    s_ox = round(0.350 / lsb) * lsb - round(0.300 / lsb) * lsb
    o3_ppb = s_ox * 1000 / 0.5 - ppb_no2
    assert abs(out["o3"][1]["o3"] - o3_ppb * M["o3"] / VM) < 1e-6
    assert out["uncal"] is True and out["cal_after"] is False
    assert abs(out["zero"]["zero_v"] - round(0.3 / lsb) * lsb) < 1e-9
    assert abs(out["span"]["sens_mv"] - 5.0) < 0.01  # 50 mV / 10 ppm
    assert abs(out["co"][1]["co"] - 10 * M["co"] / VM) < 0.01  # mg/m3
    assert out["bad_span"][0] == "ValueError"

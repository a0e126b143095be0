"""Atlas Scientific EZO drivers on MicroPython: the I2C command protocol, response
codes 1/2/254/255, processing times, temperature compensation, EC fields,
calibration commands, sleep."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "fakes"))
from mpyhost import run_case  # noqa: E402


def raw(code, text=b"", size=40):
    # An EZO answer as it sits in the 40-byte read buffer: code, ASCII, NUL padding.
    return (bytes([code]) + text).ljust(size, b"\x00")


def fixed(answer, circuit="ph"):
    return run_case("""
        import i2cdevs, ezo
        dev = machine.attach("i2c", 0, i2cdevs.Fixed(ANSWER), 0x63)
        d = ezo.EZO(machine.I2C(0), circuit=CIRCUIT, addr=0x63, retries=3)
        print(json.dumps({"r": attempt(d.read), "writes": [w.decode() for w in dev.writes]}))
    """, ANSWER=answer, CIRCUIT=circuit)


def test_response_codes_byte_exact():
    out = fixed(raw(1, b"7.012"))
    assert out["r"] == ["ok", {"ph": 7.012}] and out["writes"] == ["R"]
    assert fixed(raw(1, b"-112.4"), "orp")["r"] == ["ok", {"orp": -112.4}]
    name, msg, is_os = fixed(raw(2))["r"]
    assert name == "DeviceError" and "syntax error" in msg and "'R'" in msg and is_os
    name, msg, _ = fixed(raw(254))["r"]
    assert name == "SensorTimeout" and "still processing" in msg
    name, msg, _ = fixed(raw(255))["r"]
    assert name == "DeviceError" and "no data" in msg
    name, msg, _ = fixed(raw(7))["r"]
    assert name == "SensorError" and "code 7" in msg
    assert fixed(raw(1, b"abc"))["r"][0] == "SensorError"


def test_ec_comma_separated_fields():
    out = fixed(raw(1, b"1413.00,763,0.70,1.000"), "ec")
    # learns the field order first ("O,?"), then reads; Fixed answers both the same,
    # so "O,?" does not look like "?O,..." and the driver switches EC output on
    assert out["writes"] == ["O,?", "O,EC,1", "R"]
    assert out["r"] == ["ok", {"ec": 1413.0}]


def test_processing_times_and_temperature_compensation():
    out = run_case("""
        import i2cdevs, ezo
        i2c = machine.I2C(0)
        ph_dev = machine.attach("i2c", 0, i2cdevs.EZO("ph", 7.25), 0x63)
        rtd_dev = machine.attach("i2c", 0, i2cdevs.EZO("rtd", 18.5), 0x66)
        ph = ezo.EZO(i2c, "ph")
        rtd = ezo.EZO(i2c, "rtd")
        r = {}
        t0 = fakeclock.ticks_ms(); r["uncomp"] = attempt(ph.read)
        r["ms_ph"] = fakeclock.ticks_ms() - t0
        t0 = fakeclock.ticks_ms(); r["t"] = attempt(rtd.read)
        r["ms_rtd"] = fakeclock.ticks_ms() - t0
        ph.links = {"t": rtd}           # as drivers_setup links the profile's "links"
        r["comp"] = attempt(ph.read)
        old = ezo.EZO(i2c, "ph", tcomp="t")
        old.set_env(t=4.0)              # explicit value wins over links
        r["old"] = attempt(old.read)
        r["cmds"] = ph_dev.commands
        r["dev_temp"] = ph_dev.temp
        print(json.dumps(r))
    """)
    assert out["uncomp"] == ["ok", {"ph": 7.25}]
    assert 900 <= out["ms_ph"] < 1000  # datasheet: 900 ms for R on pH
    assert out["t"] == ["ok", {"t": 18.5}]
    assert 600 <= out["ms_rtd"] < 700
    assert out["comp"] == ["ok", {"ph": 7.25}]
    assert out["cmds"] == ["R", "RT,18.50", "T,4.00", "R"]
    assert out["dev_temp"] == 4.0


def test_parallel_start_costs_one_wait():
    out = run_case("""
        import i2cdevs, ezo
        i2c = machine.I2C(0)
        for c, a in (("ph", 0x63), ("do", 0x61), ("ec", 0x64), ("orp", 0x62)):
            machine.attach("i2c", 0, i2cdevs.EZO(c, 5.0), a)
        ds = [ezo.EZO(i2c, c, fields=["EC"] if c == "ec" else None)
              for c in ("ph", "do", "ec", "orp")]
        t0 = fakeclock.ticks_ms()
        for d in ds:
            d.start()
        r = [attempt(d.read) for d in ds]
        print(json.dumps([r, fakeclock.ticks_ms() - t0]))
    """)
    assert [x[0] for x in out[0]] == ["ok"] * 4
    assert out[0][2] == ["ok", {"ec": 5.0}]
    assert out[1] < 1000  # ~900 ms for all four instead of 3 s one after another


def test_device_faults_through_fake_circuit():
    out = run_case("""
        import i2cdevs, ezo
        dev = machine.attach("i2c", 0, i2cdevs.EZO("do", 8.31), 0x61)
        d = ezo.EZO(machine.I2C(0), "do")
        r = []
        for f in ("syntax", "busy", "lost", None):
            dev.fault = f
            r.append(attempt(d.read)[0])
        r.append(attempt(lambda: ezo.EZO(machine.I2C(0), "ph").read())[0:2])
        print(json.dumps(r))
    """)
    assert out[:4] == ["DeviceError", "SensorTimeout", "DeviceError", "ok"]
    assert out[4][0] == "SensorError" and "0x63" in out[4][1]


def test_ec_output_fields_learned_and_fixed():
    out = run_case("""
        import i2cdevs, ezo
        dev = machine.attach("i2c", 0, i2cdevs.EZO("ec", 523.4), 0x64)
        dev.outputs = ["TDS", "S"]       # someone switched EC output off
        d = ezo.EZO(machine.I2C(0), "ec")
        r = [attempt(d.read), d.fields, d.text]
        dev.outputs = ["EC", "TDS", "S", "SG"]
        d2 = ezo.EZO(machine.I2C(0), "ec", fields=["EC", "TDS", "S", "SG"])
        r.append(attempt(d2.read))
        print(json.dumps([r, dev.commands]))
    """)
    r, cmds = out
    assert r[0] == ["ok", {"ec": 523.4}]
    assert r[1] == ["EC", "TDS", "S"] and r[2] == "523.40,261,0.26"
    assert r[3] == ["ok", {"ec": 523.4}]
    assert cmds == ["O,?", "O,EC,1", "R", "R"]  # profile "fields" skips the 300 ms query


def test_calibration_commands():
    out = run_case("""
        import i2cdevs, ezo
        i2c = machine.I2C(0)
        devs = {c: machine.attach("i2c", 0, i2cdevs.EZO(c, 1.0), a) for c, a in
                (("ph", 0x63), ("do", 0x61), ("ec", 0x64), ("orp", 0x62), ("rtd", 0x66))}
        ph, do, ec, orp, rtd = [ezo.EZO(i2c, c) for c in ("ph", "do", "ec", "orp", "rtd")]
        r = [ph.calibrate(point="mid", value=7.0), ph.calibrate(point="low", value=4.0),
             ph.calibrate(point="high", value=10.0), ph.calibrate(point="clear"),
             do.calibrate(point="atm"), do.calibrate(point="zero"),
             ec.calibrate(point="dry"), ec.calibrate(point="low", value=12880),
             ec.calibrate(point="high", value=80000), ec.calibrate(point="one", value=1413),
             orp.calibrate(value=225), rtd.calibrate(value=100.0),
             attempt(lambda: ph.calibrate(point="mid")),
             attempt(lambda: do.calibrate(point="mid", value=7))]
        print(json.dumps([r, {c: [x for x in d.commands if x != "Cal,?"]
                               for c, d in devs.items()}]))
    """)
    r, cmds = out
    assert [x["cal_points"] for x in r[:4]] == [1, 2, 3, 0]
    assert r[12][0] == "ValueError" and r[13][0] == "ValueError"
    assert cmds["ph"] == ["Cal,mid,7.00", "Cal,low,4.00", "Cal,high,10.00", "Cal,clear"]
    assert cmds["do"] == ["Cal", "Cal,0"]
    assert cmds["ec"] == ["Cal,dry", "Cal,low,12880", "Cal,high,80000", "Cal,1413"]
    assert cmds["orp"] == ["Cal,225.00"] and cmds["rtd"] == ["Cal,100.00"]


def test_sleep_and_wake():
    out = run_case("""
        import i2cdevs, ezo
        dev = machine.attach("i2c", 0, i2cdevs.EZO("orp", 251.3), 0x62)
        d = ezo.EZO(machine.I2C(0), "orp")
        d.sleep()
        asleep = dev.asleep
        d.wake()
        print(json.dumps([asleep, attempt(d.read), dev.commands]))
    """)
    assert out[0] is True
    assert out[1] == ["ok", {"orp": 251.3}]
    assert out[2] == ["Sleep", "i", "R"]

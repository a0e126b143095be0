"""Water-probe drivers on MicroPython: DS18B20 (1-Wire, Dallas CRC), Modbus RTU sonde
(CRC-16, exceptions, RS-485 direction), analog turbidity (calibration curve)."""

import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "fakes"))
from mpyhost import run_case  # noqa: E402


def dallas(data):
    crc = 0
    for b in data:
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8C if (crc ^ b) & 1 else crc >> 1
            b >>= 1
    return crc


def scratchpad(raw, config=0x7F):
    sp = bytes([raw & 0xFF, raw >> 8, 0x4B, 0x46, config, 0xFF, 0x0C, 0x10])
    return sp + bytes([dallas(sp)])


# DS18B20 datasheet, table "temperature/data relationship" (12-bit)
TABLE = [(0x07D0, 125.0), (0x0191, 25.0625), (0x00A2, 10.125), (0x0008, 0.5), (0x0000, 0.0),
         (0xFFF8, -0.5), (0xFF5E, -10.125), (0xFE6F, -25.0625), (0xFC90, -55.0)]


def test_ds18b20_datasheet_table_and_bad_scratchpads():
    pads = [scratchpad(raw) for raw, _ in TABLE]
    bad_crc = bytearray(scratchpad(0x0191))
    bad_crc[8] ^= 1
    specials = [scratchpad(0x0550), bytes(bad_crc), bytes(9), scratchpad(0x0191, config=0x1F)]
    out = run_case("""
        import ds18b20
        print(json.dumps([attempt(lambda: ds18b20.temperature(p)) for p in PADS]))
    """, PADS=pads + specials)
    assert [r[1] for r in out[:len(TABLE)]] == [t for _, t in TABLE]
    power_on, crc, zeros, nine_bit = out[len(TABLE):]
    assert power_on[0] == "SensorError" and "85" in power_on[1]
    assert crc[0] == "CRCError" and crc[2] is True
    assert zeros[0] == "SensorError" and "implausible" in zeros[1]
    assert nine_bit == ["ok", 25.0]  # 9-bit: undefined low bits masked off


def test_ds18b20_on_the_fake_bus():
    out = run_case("""
        import onewire, owdevs, ds18b20
        a = machine.attach("onewire", 4, owdevs.DS18B20(temp_c=12.3125, serial=1))
        ow = onewire.OneWire(machine.Pin(4))
        d = ds18b20.DS18B20(ow)
        t0 = fakeclock.ticks_ms()
        r = {"one": attempt(d.read), "ms": fakeclock.ticks_ms() - t0}
        # a second probe: now ROM codes select them
        b = machine.attach("onewire", 4, owdevs.DS18B20(temp_c=-3.5, serial=2))
        roms = [bytes(x).hex() for x in ow.scan()]
        da = ds18b20.DS18B20(ow, rom=roms[0])
        db = ds18b20.DS18B20(ow, rom=roms[1], resolution=9)
        t0 = fakeclock.ticks_ms()
        r["a"] = attempt(da.read)
        r["b"] = attempt(db.read)
        r["ms9"] = fakeclock.ticks_ms() - t0
        r["roms"] = roms
        r["bad_rom"] = attempt(lambda: ds18b20.DS18B20(ow, rom="28" + "00" * 7))
        other = bytes(owdevs.make_rom(5, 0x10)).hex()  # family 0x10: a DS18S20
        r["not_ds"] = attempt(lambda: ds18b20.DS18B20(ow, rom=other))
        a.corrupt_crc = True
        r["crc"] = attempt(da.read)
        a.present = False
        r["gone"] = attempt(da.read)       # b still answers the reset pulse
        b.present = False
        r["none"] = attempt(db.read)
        b.present = True
        b.stuck_low = True
        r["stuck"] = attempt(db.read)
        print(json.dumps(r))
    """)
    assert out["one"] == ["ok", {"t": 12.3125}]
    assert out["ms"] == 750  # 12-bit conversion time
    assert out["a"] == ["ok", {"t": 12.3125}]
    assert out["b"] == ["ok", {"t": -3.5}]  # 9 bit: 0.5 degC steps
    assert out["ms9"] == 750 + 94
    assert out["roms"][0][:2] == "28" and len(out["roms"][0]) == 16
    assert out["bad_rom"][0] == "ValueError" and out["not_ds"][0] == "ValueError"
    assert out["crc"][0] == "CRCError"
    assert out["gone"][0] == "SensorError" and "no device answered" in out["gone"][1]
    assert out["none"][0] == "SensorError" and "presence" in out["none"][1]
    assert out["stuck"][0] == "SensorError" and "implausible" in out["stuck"][1]


def test_ds18b20_conversion_that_never_ran():
    out = run_case("""
        import onewire, owdevs, ds18b20
        class Brownout(owdevs.DS18B20):
            def write_byte(self, b):
                if b != 0x44:              # the convert command is lost
                    owdevs.DS18B20.write_byte(self, b)
        machine.attach("onewire", 4, Brownout(temp_c=20))
        d = ds18b20.DS18B20(onewire.OneWire(machine.Pin(4)))
        print(json.dumps(attempt(d.read)))
    """)
    assert out[0] == "SensorError" and "power-on value 85" in out[1]


# --- Modbus ---------------------------------------------------------------------------------
def crc16(data):
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def rtu(body):
    c = crc16(body)
    return bytes(body) + bytes([c & 0xFF, c >> 8])


def test_modbus_frames_byte_exact():
    assert rtu(bytes([1, 3, 0, 0, 0, 1])).hex() == "010300000001840a"
    assert rtu(bytes([1, 0x83, 2])).hex() == "018302c0f1"
    cod = struct.pack(">f", 15.75)
    cod_cdab = cod[2:] + cod[:2]
    replies = {
        rtu(bytes([1, 3, 0, 0, 0, 2])): rtu(bytes([1, 3, 4]) + cod_cdab),
        rtu(bytes([1, 3, 0, 2, 0, 2])): rtu(bytes([1, 3, 4]) + struct.pack(">f", 0.42)),
        rtu(bytes([1, 3, 0, 0x10, 0, 1])): rtu(bytes([1, 3, 2, 0, 235])),
        rtu(bytes([1, 3, 0, 0x20, 0, 1])): rtu(bytes([1, 0x83, 2])),
    }
    out = run_case("""
        import uartdevs, modbus
        dev = machine.attach("uart", 2, uartdevs.Replay(REPLIES))
        u = machine.UART(2, 9600)
        regs = {"cod": {"reg": 0, "type": "f32", "order": "CDAB"},
                "nh3n": {"reg": 2, "type": "f32"},
                "t": {"reg": "0x10", "type": "u16", "scale": 0.1}}
        s = modbus.ModbusSonde(u, registers=regs, de_pin=machine.Pin(18, machine.Pin.OUT))
        r = {"ok": attempt(s.read), "written": [w.hex() for w in u.written],
             "de": machine.pin_log}
        bad = modbus.ModbusSonde(u, registers={"cod": {"reg": 0x20, "type": "u16"}})
        r["exc"] = attempt(bad.read)
        print(json.dumps(r))
    """, REPLIES=replies)
    ok, v = out["ok"]
    assert ok == "ok"
    assert v["cod"] == 15.75 and abs(v["nh3n"] - 0.42) < 1e-6 and abs(v["t"] - 23.5) < 1e-9
    # MicroPython dicts are unordered: the requests, not their order, are the contract
    assert sorted(out["written"]) == ["010300000002c40b", "01030002000265cb", "01030010000185cf"]
    # DE low at rest, high only around each request
    assert out["de"] == [[18, 0]] + [[18, 1], [18, 0]] * 3
    name, msg, is_os = out["exc"]
    assert name == "DeviceError" and "exception 2" in msg and "illegal data address" in msg


def test_modbus_faults_against_fake_sonde():
    out = run_case("""
        import uartdevs, modbus
        dev = machine.attach("uart", 1, uartdevs.Sonde(unit=3))
        dev.set_f32(0x100, 22.5)
        dev.regs[0x200] = 0xFFF6  # -10 as s16
        u = machine.UART(1, 9600)
        s = modbus.ModbusSonde(u, unit=3, registers={
            "cod": {"reg": 0x100, "type": "f32", "order": "CDAB"},
            "orp": {"reg": 0x200, "type": "s16", "scale": 10.0, "offset": 1.0}})
        r = [attempt(s.read)]
        for f in ("checksum", "short", "silent"):
            dev.fault = f
            r.append(attempt(s.read)[0:2])
        dev.exception = 6
        r.append(attempt(s.read)[0:2])
        dev.noise = b"\\x00\\xff"          # turnaround glitch before the answer
        r.append(attempt(s.read))
        cod = {"cod": {"reg": 0x100, "type": "f32", "order": "CDAB"}}
        e = modbus.ModbusSonde(u, unit=3, echo=True, registers=cod)
        class Echo(uartdevs.Sonde):
            def on_write(self, uart, data):
                uart.feed(data)  # transceiver with /RE grounded hears itself
                uartdevs.Sonde.on_write(self, uart, data)
        ed = machine.attach("uart", 1, Echo(unit=3)); ed.set_f32(0x100, 22.5)
        r.append(attempt(e.read))
        f64 = {"x": {"type": "f64", "reg": 0}}
        r.append(attempt(lambda: modbus.ModbusSonde(u, registers=f64))[0])
        print(json.dumps(r))
    """)
    assert out[0] == ["ok", {"cod": 22.5, "orp": -99.0}]
    assert out[1][0] == "CRCError"
    assert out[2][0] == "SensorTimeout" and "short" in out[2][1]
    assert out[3][0] == "SensorTimeout" and "did not answer" in out[3][1]
    assert out[4][0] == "DeviceError" and "busy" in out[4][1]
    assert out[5] == ["ok", {"cod": 22.5, "orp": -99.0}]
    assert out[6] == ["ok", {"cod": 22.5}]
    assert out[7] == "ValueError"


# --- turbidity -----------------------------------------------------------------------------------
def test_turbidity_curve_divider_and_faults():
    out = run_case("""
        import turbidity
        class Analog:
            volts = 0.0
        a = machine.attach("adc", 34, Analog())
        adc = machine.ADC(machine.Pin(34))
        curve = [[4.2, 0], [2.5, 3000], [3.5, 800]]      # unsorted on purpose
        d = turbidity.Turbidity(adc, curve=curve, divider=1.5)
        r = {}
        for v in (2.8, 2.0, 2.6, 1.5):                  # ADC volts; sensor volts x1.5
            a.volts = v
            r[str(v)] = attempt(d.read)
        a.volts = 0.0
        r["dead"] = attempt(d.read)
        r["uncal"] = [d.uncalibrated, turbidity.Turbidity(adc).uncalibrated]
        r["kink"] = attempt(lambda: turbidity.Turbidity(adc, curve=[[1, 0], [2, 50], [3, 10]]))
        r["dup"] = attempt(lambda: turbidity.Turbidity(adc, curve=[[1, 0], [1, 5]]))
        print(json.dumps(r))
    """)
    assert abs(out["2.8"][1]["turb"]) < 1e-6  # 4.2 V at the sensor: clear water
    # 2.0 V at the ADC = 3.0 V at the sensor: between 2.5 V/3000 and 3.5 V/800 NTU
    assert abs(out["2.0"][1]["turb"] - 1900) < 1e-6
    assert abs(out["2.6"][1]["turb"] - 800 * (4.2 - 3.9) / (4.2 - 3.5)) < 1e-6
    assert out["1.5"] == ["ok", {"turb": 3000.0}]  # 2.25 V: clamped at the last standard
    assert out["dead"][0] == "SensorError" and "no signal" in out["dead"][1]
    assert out["uncal"] == [False, True]
    assert out["kink"][0] == "ValueError" and "monotonic" in out["kink"][1]
    assert out["dup"][0] == "ValueError"


def test_turbidity_trimmed_mean_u16_fallback_and_calibration():
    out = run_case("""
        import turbidity
        class Spiky:
            # 16 samples of 1.0 V with one Wi-Fi spike; no read_uv: raw counts only
            def __init__(self): self.n = 0; self.v = 1.0
            def read_u16(self):
                self.n += 1
                v = 3.3 if self.n % 16 == 5 else self.v
                return int(v / 3.3 * 65535)
        adc = Spiky()
        d = turbidity.Turbidity(adc, curve=[[0.5, 100], [1.5, 0]])
        r = {"mean": attempt(d.read), "volts": d.volts}
        g = turbidity.Turbidity(adc)
        adc.v = 1.2; r["first"] = g.calibrate(ntu=0)
        adc.v = 0.9; r["second"] = g.calibrate(ntu=100)
        adc.v = 0.6; r["third"] = g.calibrate(ntu=400)
        adc.v = 1.05; r["read"] = attempt(g.read)
        r["cleared"] = g.calibrate(clear=True)
        r["bad"] = attempt(lambda: g.calibrate())
        print(json.dumps(r))
    """)
    assert abs(out["volts"] - 1.0) < 1e-4  # the 3.3 V spike was trimmed
    assert abs(out["mean"][1]["turb"] - 50) < 0.01
    assert "pending" in out["first"]
    assert [p[1] for p in out["second"]["curve"]] == [100.0, 0.0]
    assert [p[1] for p in out["third"]["curve"]] == [400.0, 100.0, 0.0]
    assert abs(out["read"][1]["turb"] - 50) < 0.1
    assert out["cleared"] == {"curve": None, "standards": None} and out["bad"][0] == "ValueError"

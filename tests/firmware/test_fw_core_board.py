"""The ESP32 board (lib/board_esp32.py) and the station's use of real drivers, on the unix port.

Without the simulated board installed, board.py picks the ESP32 board; the driver engineer's
fake `machine` (tests/firmware/fakes) answers with the sensors' real byte formats. Wi-Fi
(`network`) is not faked, so no network here: sampling, QC flags, battery, WDT, reset
cause and the encoded reading.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "firmware"))
import harness  # noqa: E402

FAKES = ROOT / "tests" / "firmware" / "fakes"
PATH = ":".join(
    str(p)
    for p in (FAKES, ROOT / "firmware" / "drivers", ROOT / "firmware" / "lib", ROOT / "firmware")
)


def run_board(tmp: Path, profile: str, cfg_over: dict, devices: str, body: str) -> dict:
    shutil.copy(ROOT / "hardware" / "boards" / f"{profile}.json", tmp / "board.json")
    cfg = harness.station_config(1, board=profile, **cfg_over)
    (tmp / "config.json").write_text(json.dumps(cfg))
    code = (
        "import json, time, machine, fakeclock, i2cdevs, uartdevs, owdevs\n"
        "fakeclock.install()\n" + devices + "import board, config\n"
        "cfg = config.load()\nboard.init(cfg)\n"
        "from station import Station\nst = Station(cfg, board)\n" + body
    )
    env = dict(os.environ, MICROPYPATH=PATH)
    r = subprocess.run(
        [harness.MICROPYTHON, "-c", code],
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


AIR = """
machine.attach("uart", 2, uartdevs.PMS(pm25=35, pm10=52))
machine.attach("uart", 1, uartdevs.ZE(gas="co", raw=9, model="ze07"))
machine.attach("i2c", 0, i2cdevs.SHT3x(t=8.5, rh=61.0), 0x44)
machine.attach("i2c", 0, i2cdevs.BME280(), 0x76)
machine.attach("i2c", 0, i2cdevs.ADS1115(volts=(0.29, 0.30, 0.31, 0.30)), 0x48)
"""  # no ADS1115 at 0x49: the O3 cell is "missing" -> fault

SAMPLE = """
out = {"board": board.NAME, "sim": board.SIM, "cause": st.reset_cause,
       "deep_sleep": cfg["deep_sleep"], "names": [s.name for s in st.sampler.sensors]}
for _ in range(5):
    st.sampler.sample()
out["first"] = json.loads(st.make_reading())
st.sampler.t0 = time.ticks_add(time.ticks_ms(), -3600 * 1000)   # an hour later: warm
for _ in range(5):
    st.sampler.sample()
out["warm"] = json.loads(st.make_reading())
out["battery_v"] = board.battery_v()
out["wdt"] = board.BOARD._wdt.timeout
board.feed()
out["feeds"] = board.BOARD._wdt.feeds
print(json.dumps(out))
"""


def test_air_station_samples_real_drivers_from_its_profile(tmp_path):
    out = run_board(tmp_path, "esp32-air-v1", {}, AIR, SAMPLE)
    assert out["board"] == "esp32" and out["sim"] is False
    assert out["cause"] == "power_on" and out["deep_sleep"] is False
    assert out["names"] == ["pm", "th", "baro", "co", "no2", "so2", "o3"]
    first, warm = out["first"], out["warm"]
    assert first["kind"] == "air" and first["seq"] == 1
    # just powered: the PMS fan and the CO cell are still warming up; no NTP here
    assert first["flags"]["pm25"] == "warmup" and first["flags"]["co"] == "warmup"
    assert first["flags"]["*"] == "clock"
    assert warm["values"]["pm25"] == 35.0 and warm["values"]["pm10"] == 52.0
    assert abs(warm["values"]["t"] - 8.5) < 0.05 and abs(warm["values"]["rh"] - 61.0) < 0.1
    assert 300 <= warm["values"]["p"] <= 1100
    assert "pm25" not in warm["flags"] and "t" not in warm["flags"]
    # analog cells without a sensitivity from their certificate: "cal" until calibrated;
    # the NO2 cell's working electrode sits below its aux here: negative -> "range"
    assert warm["flags"]["so2"] == "cal" and warm["values"]["so2"] > 0
    assert warm["flags"]["no2"] == "range" and warm["values"]["no2"] < 0
    assert warm["flags"]["o3"] == "fault" and "o3" not in warm["values"]
    assert out["battery_v"] is None  # mains-powered profile: no battery divider
    assert out["wdt"] == 60000 and out["feeds"] == 1


WATER = """
machine.attach("onewire", 4, owdevs.DS18B20(temp_c=6.25))
for c, a, v in (("ph", 0x63, 7.42), ("do", 0x61, 9.8), ("ec", 0x64, 412.0), ("orp", 0x62, 231.0)):
    machine.attach("i2c", 0, i2cdevs.EZO(c, v), a)
class Analog:
    volts = 1.95
machine.attach("adc", 34, Analog())
machine.attach("adc", 35, Analog())
"""


def test_water_probe_profile_sleeps_and_reads_battery(tmp_path):
    out = run_board(
        tmp_path,
        "esp32-water-v1",
        {"station_id": "hun-river-01", "kind": "water", "deep_sleep": None},
        WATER,
        SAMPLE,
    )
    assert out["deep_sleep"] is True  # the battery profile decides when config does not
    warm = out["warm"]
    assert warm["values"]["ph"] == 7.42 and warm["values"]["t"] == 6.25
    assert warm["values"]["ec"] == 412.0 and warm["values"]["orp"] == 231.0
    assert warm["flags"].get("turb") == "cal"  # generic turbidity curve until calibrated
    assert out["battery_v"] == 3.9  # 1.95 V behind the 2:1 divider

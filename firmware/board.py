# Board layer: the ONLY module that touches `machine`, `network` and `ntptime`.
# On the MicroPython unix port (tests, demo) it simulates an always-up Wi-Fi, a
# synced clock, RTC memory and the sensors, steered by an optional sim.json in the
# current directory. On an ESP32 it drives the real hardware; that half cannot run
# here and is marked "ESP32 only" below.
import gc
import json
import sys
import time

try:
    import machine
except ImportError:
    machine = None

def _force_real():
    # Tests run the ESP32 half on the unix port against a fake `machine` that speaks
    # the sensors' byte formats (tests/firmware/fakes); ENVNET_REAL_BOARD=1 asks for it.
    try:
        import os
        return os.getenv("ENVNET_REAL_BOARD") == "1"
    except (ImportError, AttributeError):
        return False


SIM = (machine is None or not hasattr(machine, "Pin")
       or sys.platform == "linux" and not _force_real())

# ESP32 ports before 1.22 count seconds from 2000; the contract wants Unix time.
_EPOCH = 946684800 if time.gmtime(0)[0] == 2000 else 0

_cfg = None
_wdt = None
_wlan = None
_synced = False
_reset = None  # unix: cause of the next "boot" (soft reboot, simulated deep sleep)
_rtc = None  # unix: stands in for RTC memory, which survives deep sleep only
_sim = {}
_sim_at = None
_sim_mtime = None


def init(cfg):
    global _cfg, _wdt
    _cfg = cfg
    if cfg.get("deep_sleep") is None:
        cfg["deep_sleep"] = False if SIM else bool(_profile().get("deep_sleep"))
    if not SIM and _wdt is None:
        # ESP32 only. Cannot be stopped once started; deep sleep and reset clear it.
        _wdt = machine.WDT(timeout=int(cfg.get("wdt_s", 60) * 1000))


def feed():
    if _wdt:
        _wdt.feed()


# --- sim.json -----------------------------------------------------------------------
def sim():
    # Overrides for the simulation, re-read at most every 0.5 s; a half-written
    # file keeps the previous values.
    global _sim, _sim_at, _sim_mtime
    if not SIM:
        return _sim
    now = time.ticks_ms()
    if _sim_at is not None and time.ticks_diff(now, _sim_at) < 500:
        return _sim
    _sim_at = now
    try:
        import os
        m = os.stat("sim.json")[8]
    except OSError:
        _sim, _sim_mtime = {}, None
        return _sim
    try:
        with open("sim.json") as f:
            d = json.loads(f.read())
        if isinstance(d, dict):
            _sim, _sim_mtime = d, m
    except (OSError, ValueError):
        pass
    return _sim


# --- time ---------------------------------------------------------------------------
def now():
    if SIM and _cfg:
        # Demo only: a compressed clock ("sim": {"time_scale": 120, "t0": .., "wall0": ..})
        # so that hours of data time, and the hourly windows of the standards, pass in
        # minutes. Never set on a real board.
        s = _cfg.get("sim") or {}
        scale = s.get("time_scale")
        if scale:
            return int(s["t0"] + (time.time() - s["wall0"]) * scale)
    return int(time.time()) + _EPOCH


def clock_synced():
    if SIM:
        return sim().get("clock_synced", True) is not False
    return _synced


def sync_clock(host):
    # NTP; True when the clock is (now) synced.
    global _synced
    if SIM:
        return clock_synced()
    try:  # ESP32 only
        import ntptime
        ntptime.host = host
        ntptime.settime()
        _synced = True
    except Exception:
        pass
    return _synced


# --- network ------------------------------------------------------------------------
def wifi_start(ssid, password):
    global _wlan
    if SIM:
        return
    import network  # ESP32 only
    if _wlan is None:
        _wlan = network.WLAN(network.STA_IF)
        _wlan.active(True)
    if not _wlan.isconnected():
        try:
            _wlan.connect(ssid, password)
        except OSError:
            pass  # "already connecting" on some builds


def wifi_up():
    if SIM:
        return not sim().get("offline", False)
    return _wlan is not None and _wlan.isconnected()


def wifi_rssi():
    if SIM:
        return -60 - (time.ticks_ms() // 1000) % 7 if wifi_up() else None
    try:
        return _wlan.status("rssi")
    except Exception:
        return None


# --- power, reset, memory -------------------------------------------------------------
def battery_v():
    if SIM:
        v = sim().get("battery_v")
        if v is not None:
            return v
        return 3.95 if _cfg and _cfg.get("kind") == "water" else 5.0
    p = _profile().get("battery")
    if not p:
        return None
    adc = machine.ADC(machine.Pin(p["pin"]))  # ESP32 only
    adc.atten(machine.ADC.ATTN_11DB)
    return round(adc.read_uv() * p.get("divider", 2) / 1e6, 2)


def heap_free():
    gc.collect()
    return gc.mem_free()


_CAUSES = {}


def reset_cause():
    if SIM:
        return _reset or "power_on"
    if not _CAUSES:
        for n, name in (("PWRON_RESET", "power_on"), ("HARD_RESET", "hard"), ("WDT_RESET", "watchdog"),
                        ("DEEPSLEEP_RESET", "deepsleep"), ("SOFT_RESET", "soft")):
            if hasattr(machine, n):
                _CAUSES[getattr(machine, n)] = name
    c = machine.reset_cause()
    return _CAUSES.get(c, "other_%d" % c)


def reboot():
    # unix: the next Station in main.py's loop is the "rebooted" one.
    global _reset
    if SIM:
        _reset = "soft"
        return
    machine.reset()


def deepsleep(ms):
    # ESP32: never returns (the chip resets into main.py). unix: sleep, then main.py
    # builds a fresh Station from RTC memory, as after a real wake.
    global _reset
    if SIM:
        _reset = "deepsleep"
        time.sleep_ms(max(0, ms))
        return
    machine.deepsleep(max(1, ms))


def rtc_save(d):
    global _rtc
    if SIM:
        _rtc = json.dumps(d)
        return
    machine.RTC().memory(json.dumps(d).encode())


def rtc_load():
    # State kept across deep sleep (None after power-on or a reset).
    try:
        if SIM:
            return json.loads(_rtc) if _rtc else None
        b = machine.RTC().memory()
        return json.loads(b) if b else None
    except (ValueError, TypeError):
        return None


# --- sensors --------------------------------------------------------------------------
_prof = None


def _profile():
    # Board profile (hardware/boards/<board>.json copied to the device as
    # board.json or boards/<board>.json).
    global _prof
    if _prof is None:
        _prof = {}
        name = _cfg.get("board", "") if _cfg else ""
        for p in ("board.json", "boards/%s.json" % name):
            try:
                with open(p) as f:
                    _prof = json.loads(f.read())
                break
            except (OSError, ValueError):
                pass
    return _prof


def sensors(cfg):
    # Objects with read() -> {param: value} (OSError on bus errors), optional
    # warmup_s, params, start(), calibrate(**kw) and uncalibrated.
    if SIM or str(cfg.get("board", "")).startswith("sim"):
        import simsensors
        return simsensors.make(cfg, sim)
    try:  # ESP32 only from here
        import drivers_setup
    except ImportError:
        sys.path.append("drivers")  # flashed as a folder rather than into /lib
        import drivers_setup
    prof = _profile()
    if not prof:
        raise ValueError("board profile %r not found (board.json)" % cfg.get("board"))
    # Calibrations done in the field (cal.json, written by the station) override the
    # profile's options of that sensor.
    try:
        with open("cal.json") as f:
            cal = json.loads(f.read())
    except (OSError, ValueError):
        cal = {}
    for spec in prof.get("sensors") or ():
        c = cal.get(spec.get("name") or spec.get("driver"))
        if c:
            opts = spec.setdefault("options", {})
            opts.update(c)
    return drivers_setup.make(prof, machine)

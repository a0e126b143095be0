# The ESP32 board: the only module that imports `machine`, `network` and `ntptime`.
# Runs on real hardware; the tests run it on the unix port against the fake `machine`
# in tests/firmware/fakes (sampling, battery, watchdog, reset cause). Wi-Fi, NTP, deep
# sleep and RTC memory are UNTESTABLE HERE.
import json
import sys
import time
import machine
from boardbase import Board

_CAUSES = (("PWRON_RESET", "power_on"), ("HARD_RESET", "hard"), ("WDT_RESET", "watchdog"),
           ("DEEPSLEEP_RESET", "deepsleep"), ("SOFT_RESET", "soft"))


class Esp32Board(Board):
    NAME = "esp32"

    def __init__(self):
        Board.__init__(self)
        self._wdt = None
        self._wlan = None
        self._synced = False
        self._prof = None

    def init(self, cfg):
        Board.init(self, cfg)
        if cfg.get("deep_sleep") is None:
            cfg["deep_sleep"] = bool(self.profile().get("deep_sleep"))
        if self._wdt is None:
            # Cannot be stopped once started; deep sleep and reset clear it.
            self._wdt = machine.WDT(timeout=int(cfg.get("wdt_s", 60) * 1000))

    def feed(self):
        if self._wdt:
            self._wdt.feed()

    # --- time -----------------------------------------------------------------------
    def clock_synced(self):
        return self._synced

    def sync_clock(self, host):
        # NTP; True when the clock is (now) synced.
        try:
            import ntptime
            ntptime.host = host
            ntptime.settime()
            self._synced = True
        except Exception:
            pass
        return self._synced

    # --- network --------------------------------------------------------------------
    def wifi_start(self, ssid, password):
        import network
        if self._wlan is None:
            self._wlan = network.WLAN(network.STA_IF)
            self._wlan.active(True)
        if not self._wlan.isconnected():
            try:
                self._wlan.connect(ssid, password)
            except OSError:
                pass  # "already connecting" on some builds

    def wifi_up(self):
        return self._wlan is not None and self._wlan.isconnected()

    def wifi_rssi(self):
        try:
            return self._wlan.status("rssi")
        except Exception:
            return None

    # --- power, reset, memory -------------------------------------------------------
    def battery_v(self):
        p = self.profile().get("battery")
        if not p:
            return None
        adc = machine.ADC(machine.Pin(p["pin"]))
        adc.atten(machine.ADC.ATTN_11DB)
        return round(adc.read_uv() * p.get("divider", 2) / 1e6, 2)

    def reset_cause(self):
        c = machine.reset_cause()
        for n, name in _CAUSES:
            if getattr(machine, n, None) == c:
                return name
        return "other_%d" % c

    def reboot(self):
        machine.reset()  # does not return

    def deepsleep(self, ms):
        machine.deepsleep(max(1, ms))  # never returns: the chip resets into main.py

    def rtc_save(self, d):
        machine.RTC().memory(json.dumps(d).encode())

    def rtc_load(self):
        # State kept across deep sleep (None after power-on or a reset).
        try:
            b = machine.RTC().memory()
            return json.loads(b) if b else None
        except (ValueError, TypeError):
            return None

    def crash_reset(self):
        # Give the console a moment to show the traceback; the watchdog backs this up.
        time.sleep(10)
        machine.reset()

    def stop_for_config(self):
        pass  # no usable config.json: leave the REPL to the technician

    # --- sensors --------------------------------------------------------------------
    def profile(self):
        # Board profile (hardware/boards/<board>.json copied to the device as
        # board.json or boards/<board>.json).
        if self._prof is None:
            self._prof = {}
            name = self.cfg.get("board", "") if self.cfg else ""
            for p in ("board.json", "boards/%s.json" % name):
                try:
                    with open(p) as f:
                        self._prof = json.loads(f.read())
                    break
                except (OSError, ValueError):
                    pass
        return self._prof

    def sensors(self, cfg):
        # Objects with read() -> {param: value} (OSError on bus errors), optional
        # warmup_s, params, start(), calibrate(**kw) and uncalibrated.
        try:
            import drivers_setup
        except ImportError:
            sys.path.append("drivers")  # flashed as a folder rather than into /lib
            import drivers_setup
        prof = self.profile()
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

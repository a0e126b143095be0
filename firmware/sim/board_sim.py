# The simulated board (MicroPython unix port: tests, `envnet sim`, the demo): an
# always-up Wi-Fi, a synced clock, RTC memory and sensors (simsensors.py), steered by an
# optional sim.json in the station directory. Never flashed nor bundled: the simulator
# (envnet/devkit/sim.py) and the test harness install this folder into the simulated
# station's filesystem, and board.py picks this class whenever it can import it.
#
# sim.json (re-read at most every 0.5 s; a half-written file keeps the previous values):
#   {"param": value | null}, {"fault": sensor}  simsensors.py
#   {"offline": true}          Wi-Fi down
#   {"clock_synced": false}    NTP lost (the station flags readings "clock")
#   {"battery_v": 3.3}
#   {"ota_stall": point}       stop at an OTA point (boardbase.ota_point) for a power cut;
#                              "download" = half-way through the second file
#   {"ota_chunk_ms": n}        a slow link: sleep after every OTA chunk
#   {"ota_free": bytes}        a nearly full flash
#   {"memory_error": point, "memory_error_id": n}
#                              raise MemoryError once at that fault point ("boot",
#                              "sample", "publish", "replay", "connect", "command") or
#                              OTA point ("chunk"); again for every new memory_error_id
import json
import os
import time
from boardbase import Board


class SimBoard(Board):
    NAME = "sim"

    def __init__(self):
        Board.__init__(self)
        self._reset = None  # cause of the next "boot" (soft reboot, simulated deep sleep)
        self._rtc = None  # stands in for RTC memory, which survives deep sleep only
        self._sim = {}
        self._sim_at = None
        self._fired = None  # the memory_error injection already raised

    def init(self, cfg):
        Board.init(self, cfg)
        if cfg.get("deep_sleep") is None:
            cfg["deep_sleep"] = False

    def sim(self):
        now = time.ticks_ms()
        if self._sim_at is not None and time.ticks_diff(now, self._sim_at) < 500:
            return self._sim
        self._sim_at = now
        try:
            os.stat("sim.json")
        except OSError:
            self._sim = {}
            return self._sim
        try:
            with open("sim.json") as f:
                d = json.loads(f.read())
            if isinstance(d, dict):
                self._sim = d
        except (OSError, ValueError):
            pass
        return self._sim

    # --- time -----------------------------------------------------------------------
    def now(self):
        # Demo only: a compressed clock ("sim": {"time_scale": 120, "t0": .., "wall0": ..})
        # so that hours of data time, and the hourly windows of the standards, pass in
        # minutes.
        s = (self.cfg or {}).get("sim") or {}
        scale = s.get("time_scale")
        if scale:
            return int(s["t0"] + (time.time() - s["wall0"]) * scale)
        return Board.now(self)

    def clock_synced(self):
        return self.sim().get("clock_synced", True) is not False

    def sync_clock(self, host):
        return self.clock_synced()

    # --- network --------------------------------------------------------------------
    def wifi_start(self, ssid, password):
        pass

    def wifi_up(self):
        return not self.sim().get("offline", False)

    def wifi_rssi(self):
        return -60 - (time.ticks_ms() // 1000) % 7 if self.wifi_up() else None

    # --- power, reset, memory -------------------------------------------------------
    def battery_v(self):
        v = self.sim().get("battery_v")
        if v is not None:
            return v
        return 3.95 if self.cfg and self.cfg.get("kind") == "water" else 5.0

    def reset_cause(self):
        return self._reset or "power_on"

    def reboot(self):
        # The next Station in fwmain's loop (or the loader's) is the "rebooted" one.
        self._reset = "soft"

    def deepsleep(self, ms):
        # Sleep, then main.py builds a fresh Station from RTC memory, as after a wake.
        self._reset = "deepsleep"
        time.sleep_ms(max(0, ms))

    def rtc_save(self, d):
        self._rtc = json.dumps(d)

    def rtc_load(self):
        try:
            return json.loads(self._rtc) if self._rtc else None
        except ValueError:
            return None

    def crash_reset(self):
        raise SystemExit(1)

    def stop_for_config(self):
        raise SystemExit(2)

    def sensors(self, cfg):
        import simsensors
        return simsensors.make(cfg, self.sim)

    # --- hooks ----------------------------------------------------------------------
    def loader_reset(self, cause):
        self._reset = cause

    def clock_lost(self):
        return not self.clock_synced()

    def flash_free(self):
        free, blk = Board.flash_free(self)
        o = self.sim().get("ota_free")
        return (free if o is None else o), blk

    def fault_point(self, name):
        s = self.sim()
        if s.get("memory_error") == name:
            shot = (name, s.get("memory_error_id"))
            if shot != self._fired:
                self._fired = shot
                print("sim: MemoryError injected at %s" % name)
                raise MemoryError("injected at %s" % name)

    def ota_point(self, name, *progress):
        self.fault_point(name)
        s = self.sim()
        if name == "chunk":
            if s.get("ota_chunk_ms"):
                time.sleep_ms(s["ota_chunk_ms"])
            i, got, size = progress
            if i == 1 and got >= size // 2:
                name = "download"  # half-way through the second file
        if s.get("ota_stall") == name:
            print("ota: stall at %s" % name)
            while True:
                time.sleep_ms(100)

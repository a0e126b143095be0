# The board interface: everything the firmware asks of the hardware. board.py picks one
# subclass per platform, in the manner of micropython-mqtt's interfaces/ (one base
# class, one sibling per platform):
#   board_esp32.Esp32Board  a real ESP32 (lib/board_esp32.py, flashed and bundled)
#   board_sim.SimBoard      the MicroPython unix port (firmware/sim/, installed only into a
#                           simulated station's filesystem, never flashed nor bundled)
# Every board has:
#   init(cfg)                        before each Station: watchdog, deep_sleep default
#   feed()                           the watchdog
#   now(), clock_synced(), sync_clock(host)
#   wifi_start(ssid, password), wifi_up(), wifi_rssi()
#   battery_v(), heap_free(), flash_free() -> (free bytes, block size)
#   reset_cause(), reboot(), deepsleep(ms), rtc_save(d), rtc_load()
#   sensors(cfg)                     objects with read() -> {param: value}
#   crash_reset(), stop_for_config() what the boot loader does after a crash / a bad config
# and the hooks at the end of this class, which are no-ops on real hardware: only the
# simulated board gives them a body (tests steer it through sim.json).
import gc
import os
import time

# ESP32 ports before 1.22 count seconds from 2000; the contract wants Unix time.
_EPOCH = 946684800 if time.gmtime(0)[0] == 2000 else 0


class Board:
    NAME = ""

    def __init__(self):
        self.cfg = None

    def init(self, cfg):
        self.cfg = cfg

    def feed(self):
        pass

    def now(self):
        return int(time.time()) + _EPOCH

    def heap_free(self):
        gc.collect()
        return gc.mem_free()

    def flash_free(self):
        # -> (free bytes, block size) of the filesystem the OTA slots live on.
        s = os.statvfs(".")
        return s[0] * s[3], s[0] or 4096  # ESP32 LittleFS reports blocks the same way

    # --- hooks: no-ops here --------------------------------------------------------
    def loader_reset(self, cause):
        # The boot loader ran the firmware again in this process (a slot switch on the
        # unix port) and tells why; a real board knows from machine.reset_cause().
        pass

    def clock_lost(self):
        # True when a synced clock has become unreliable. Real RTCs only drift (the
        # station re-syncs every 6 h); the simulation can take the sync away.
        return False

    def fault_point(self, name):
        # Named points of the station's work ("boot", "sample", "publish", "replay",
        # "connect", "command") where the simulated board can raise MemoryError, so
        # that tests see the station survive one anywhere.
        pass

    def ota_point(self, name, *progress):
        # The OTA code passes named points of an update ("chunk" with (file index,
        # bytes, size) after every chunk written, "verified", "pointer-tmp", "switched",
        # "confirm"): the simulated board can slow down or stall there for a power cut.
        pass

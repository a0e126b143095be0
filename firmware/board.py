# Board layer: the one way the firmware reaches hardware. This module picks the board
# class (boardbase.py describes the interface) and exposes its one instance as the
# module's functions, so that callers write board.now(), st.board.wifi_up():
#   board_sim.SimBoard      when it is installed: only the simulator and the tests put it
#                           into a simulated station's filesystem (firmware/sim/)
#   board_esp32.Esp32Board  otherwise: a real ESP32 (or the tests' fake `machine`)
try:
    from board_sim import SimBoard as _Board
except ImportError as e:
    if "board_sim" not in str(e):
        raise  # board_sim is there but broken: say so rather than try the ESP32
    from board_esp32 import Esp32Board as _Board

BOARD = _Board()
NAME = BOARD.NAME
# Boot loaders already in the field (main.py is never replaced by OTA) read SIM: exit on
# the unix port, reset on an ESP32.
SIM = NAME == "sim"

init = BOARD.init
feed = BOARD.feed
now = BOARD.now
clock_synced = BOARD.clock_synced
sync_clock = BOARD.sync_clock
wifi_start = BOARD.wifi_start
wifi_up = BOARD.wifi_up
wifi_rssi = BOARD.wifi_rssi
battery_v = BOARD.battery_v
heap_free = BOARD.heap_free
flash_free = BOARD.flash_free
reset_cause = BOARD.reset_cause
reboot = BOARD.reboot
deepsleep = BOARD.deepsleep
rtc_save = BOARD.rtc_save
rtc_load = BOARD.rtc_load
sensors = BOARD.sensors
crash_reset = BOARD.crash_reset
stop_for_config = BOARD.stop_for_config
loader_reset = BOARD.loader_reset
clock_lost = BOARD.clock_lost
ota_point = BOARD.ota_point
fault_point = BOARD.fault_point

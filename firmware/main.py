# envnet station entry point. On an ESP32 this file sits at the device root and runs
# at boot; on the unix port it is started as
#   cd <station dir>; MICROPYPATH=<fw>/lib:<fw> micropython <fw>/main.py
# It loads config.json, runs the station and handles what the station asks for when
# it returns: "reboot" (ESP32: machine.reset(); unix: a fresh Station in this
# process) or "sleep" (deep sleep; the next wake starts here again).
import sys
import gc
import time
import log
import board


def run_once():
    import config
    try:
        cfg = config.load()
    except config.ConfigError as e:
        log.error(str(e))
        return "config"
    board.init(cfg)
    from station import Station
    st = Station(cfg, board)
    r = st.run()
    if r == "sleep":
        ms = st.sleep_ms
        del st
        gc.collect()
        board.deepsleep(ms)  # ESP32: does not return
    elif r == "reboot":
        log.info("rebooting")
        del st
        gc.collect()
        board.reboot()  # ESP32: does not return
    return r


def main():
    while True:
        try:
            r = run_once()
        except KeyboardInterrupt:
            # Ctrl-C: to the REPL on a board, exit on unix; no MQTT DISCONNECT, so
            # the broker publishes our last will.
            log.warn("interrupted")
            raise
        except Exception as e:
            sys.print_exception(e)
            if board.SIM:
                raise SystemExit(1)
            # ESP32: give the console a moment, then reset (the watchdog backs this up).
            time.sleep(10)
            board.reboot()
        if r == "config":
            if board.SIM:
                raise SystemExit(2)
            return  # leave the REPL to the technician


main()

# The firmware's entry, called by the boot loader (the root main.py) once it has chosen
# which firmware runs: load config, run the station and act on what it returns:
# "reboot" (ESP32: machine.reset(); unix: a fresh Station in this process) or "sleep"
# (deep sleep; the next wake starts at main.py again). Every firmware version has its
# own copy (root /lib, or a slot's lib/), and the loader imports the one it chose.
import gc
import sys


def station(board, log):
    # -> a booted Station, or "config" when config.json is unusable.
    import config
    try:
        cfg = config.load()
    except config.ConfigError as e:
        log.error(str(e))
        return "config"
    board.init(cfg)
    from station import Station
    st = Station(cfg, board)
    # config stays loaded only while a command needs it (Station.command): its tables
    # would otherwise hold heap for the life of the station.
    del cfg
    sys.modules.pop("config", None)
    return st


def run_once(board, log):
    try:
        st = station(board, log)
    except MemoryError:
        # Survived: a fresh boot in a collected heap (ESP32: a reset; the seq store gave
        # back its block, so seq continues without a gap).
        gc.collect()
        log.error("MemoryError at boot (%d free): rebooting" % gc.mem_free())
        board.reboot()
        return "reboot"
    if st == "config":
        return st
    r = st.run()
    if r == "sleep":
        ms = st.sleep_ms
        del st
        gc.collect()
        board.deepsleep(ms)  # ESP32: does not return
    elif r == "reboot":
        log.info("rebooting")
        st.seq.release()  # the next boot continues this seq exactly
        del st
        gc.collect()
        ota = sys.modules.get("ota")
        if ota and ota.REBOOT:
            return "boot"  # slot switch or rollback: back through the loader
        board.reboot()  # ESP32: does not return
    return r


def app(info=None):
    # info: what the loader chose ({"slot", "pending", "version", "reset"}), None when
    # there is no boot pointer. -> "config" (no usable config.json) or "boot" (reboot
    # through the loader). Raises on a crash: the loader decides between rollback and
    # the crash reset.
    import log
    import board
    if info is not None:
        import ota
        ota.boot(info)
        if info.get("reset"):
            board.loader_reset(info["reset"])
    while True:
        try:
            r = run_once(board, log)
        except KeyboardInterrupt:
            # Ctrl-C: to the REPL on a board, exit on unix; no MQTT DISCONNECT, so
            # the broker publishes our last will.
            log.warn("interrupted")
            raise
        if r in ("config", "boot"):
            return r

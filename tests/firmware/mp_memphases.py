# ruff: noqa: UP031  (MicroPython code: %-formatting is its cheapest)
# MicroPython, not CPython: the firmware memory driver (bench/bench_firmware.py and
# tests/firmware/test_fw_memory.py). Run on the unix port in a station directory laid out
# as `envnet flash --mpy` lays out a board (harness.flash_layout), under a fixed heap:
#   micropython -X heapsize=64k mp_memphases.py PHASE[,PHASE...] | soak CYCLES
# Phases (each continues the station the earlier ones left): boot sample publish replay
# tls ota console. After each phase it prints
#   PHASE <name> <ok|MemoryError|...> <alloc> <free> <word bytes>
# followed by micropython.mem_info() (the CPython side reads "max free sz", the largest
# free block, in GC blocks). bench.json in the directory holds the TLS port and the OTA
# URL. The soak prints "SOAK <cycle> <free after gc.collect> <next seq> <buffered>" once per
# cycle and, at the quiet point of each outage period (a fifth of the way in), "QSTR <cycle>"
# followed by micropython.qstr_info() (the interned-name count, which never shrinks).
import gc
import json
import sys
import time

import micropython

gc.collect()
WORD = 8 if sys.maxsize > 2**32 else 4


def _opts():
    try:
        with open("bench.json") as f:
            return json.loads(f.read())
    except OSError:
        return {}


OPTS = _opts()
ST = None


def report(name, result):
    gc.collect()
    print("PHASE %s %s %d %d %d" % (name, result, gc.mem_alloc(), gc.mem_free(), WORD))
    micropython.mem_info()
    print("END")


def wait_up(st, ms=8000):
    t0 = time.ticks_ms()
    while not st.link.up and time.ticks_diff(time.ticks_ms(), t0) < ms:
        st.link.tick()
        time.sleep_ms(10)
    if not st.link.up:
        raise OSError("no MQTT connection: %s" % st.link.last_error)


def set_sim(d):
    # sim.json as the tests write it; forget the running board's cached copy so it counts
    # now. The running board: after the soak's reboot into the new slot it is another module
    # than the one imported before (a board module kept from before the reboot would keep
    # the new board reading its 0.5 s cache: an outage of 50 cycles then lasted about a
    # second of wall time, a thousand fast offline cycles, and the ring buffer overflowed).
    with open("sim.json", "w") as f:
        f.write(json.dumps(d))
    sys.modules["board"].BOARD._sim_at = None


def ph_boot():
    global ST
    import board
    import fwmain
    import log

    ST = fwmain.station(board, log)
    if ST == "config":
        raise ValueError("config.json rejected")
    wait_up(ST)
    ST.send_health()


def ph_sample():
    for _ in range(12):  # one interval's samples (60 s / 5 s)
        ST.sampler.sample()
    ST.text = ST.make_reading()


def ph_publish():
    if not getattr(ST, "text", None):
        ph_sample()
    if not ST.send_reading(ST.text):
        raise OSError("reading not published")
    ST.send_health()


def ph_replay():
    set_sim({"offline": True})
    ST.link.tick()  # Wi-Fi lost: the session goes
    first = ST.seq.next
    for _ in range(1000):
        ST.sampler.sample()
        ST.send_reading(ST.make_reading())
    if len(ST.buf) != 1000:
        raise ValueError("%d buffered, not 1000" % len(ST.buf))
    set_sim({})
    ST.link.retry_at = time.ticks_ms()
    wait_up(ST)
    n = 0
    while len(ST.buf):
        ST.replay()
        n += 1
        if n > 200 or not ST.link.up:
            raise OSError("replay stuck with %d left" % len(ST.buf))
    print("replayed %d readings from seq %d in %d batches" % (1000, first, n))


def ph_tls():
    m = ST.cfg["mqtt"]
    m["host"] = "localhost"
    m["port"] = OPTS["tls_port"]
    m["tls"] = True
    ST.link.drop("bench: to TLS")
    ST.link.retry_at = time.ticks_ms()
    wait_up(ST)
    ST.sampler.sample()
    if not ST.send_reading(ST.make_reading()):
        raise OSError("no publish over TLS")


def ph_ota():
    url = OPTS["ota_url"]
    res = ST.command({"id": "b", "op": "ota", "version": OPTS["ota_version"], "url": url})
    if not res["ok"]:
        raise ValueError(res["error"])
    ota = sys.modules["ota"]
    t0 = time.ticks_ms()
    while ota.job_running():
        ota.tick(ST)
        ST.link.tick()
        if time.ticks_diff(time.ticks_ms(), t0) > 60000:
            raise OSError("OTA did not finish")
    if not ota.REBOOT:
        raise ValueError("OTA failed (see the log)")


def ph_modules():
    # What holds the heap: the live heap each firmware module adds when imported in boot
    # order (bytecode, globals, tables, interned names). Run on its own, before boot.
    gc.collect()
    base = gc.mem_alloc()
    for m in (
        "board",
        "log",
        "fsutil",
        "contract",
        "config",
        "reading",
        "health",
        "mqtt",
        "net",
        "sampler",
        "seqstore",
        "ringbuf",
        "station",
        "fwmain",
        "console",
        "commands",
        "ota",
        "otajob",
        "hmac256",
    ):
        __import__(m)
        gc.collect()
        a = gc.mem_alloc()
        print("MODULE %s %d" % (m, a - base))
        base = a


def ph_console():
    from console import Console

    c = Console(ST)
    for line in (
        "status",
        "readings",
        "config",
        "config get interval_s mqtt.host",
        "config set health_s 300",
        "wifi",
        "mqtt",
        "log",
        "maint on",
        "maint off",
        "help",
        "status --json",
        "calibrate pms",
        "nonsense",
    ):
        c.run(line)
    for req in ('{"id":"p","op":"ping"}', '{"id":"c","op":"config","get":["kind"]}', "x"):
        ST.on_message((ST.link.topic("cmd"), req))


PHASES = {
    "boot": ph_boot,
    "sample": ph_sample,
    "publish": ph_publish,
    "replay": ph_replay,
    "tls": ph_tls,
    "ota": ph_ota,
    "console": ph_console,
    "modules": ph_modules,
}


def run_phases(names):
    for name in names:
        try:
            PHASES[name]()
            r = "ok"
        except MemoryError as e:
            sys.print_exception(e)
            r = "MemoryError"
        except Exception as e:
            sys.print_exception(e)
            r = e.__class__.__name__
        report(name, r)
        if r != "ok":
            raise SystemExit(1)


def soak(cycles, outage_every, ota_at):
    # Compressed clock: a cycle is one interval (12 samples, a reading, health every 5th),
    # run back to back through the station's own step(). Outages alternate between Wi-Fi
    # lost (readings buffered, replayed later) and a broker that vanished (socket gone).
    # The driver holds no firmware module or class of its own across the reboot (set_sim
    # and start_loop look them up): each would keep the old version's module in the heap.
    global ST
    ph_boot()
    st = ST
    start_loop(st)
    ota_done = False
    for c in range(cycles):
        if outage_every and c % outage_every == outage_every // 2:
            if (c // outage_every) % 2:
                set_sim({"offline": True})
            elif st.link.up:
                st.link.client.sock.close()  # the broker went away under us
        if outage_every and c % outage_every == outage_every // 2 + outage_every // 10:
            set_sim({})
            st.link.retry_at = time.ticks_ms()
        for i in range(12):
            now = time.ticks_ms()
            st.next_sample = now
            st.next_pub = now if i == 11 else time.ticks_add(now, 60000)
            if i == 11 and c % 5 == 0:
                st.next_health = now
            st.step()
        if c == ota_at and not ota_done:
            ota_done = True
            ST = st
            ph_ota()
            st = None  # the old station goes with the reboot, as a board's reset clears it
            st = reboot_into_slot()
        gc.collect()
        print("SOAK %d %d %d %d" % (c, gc.mem_free(), st.seq.next, len(st.buf)))
        if outage_every and c % outage_every == outage_every // 5:
            print("QSTR %d" % c)
            micropython.qstr_info()
    print("SOAKEND")


def start_loop(st):
    # What Station.run() does before its loop (a console, the timers).
    from console import Console

    st.console = Console(st)
    st._schedule()


def reboot_into_slot():
    # What main.py's loader does after an update switched the pointer (unix port: boot
    # again in this process): purge every module, boot the pending slot.
    global ST
    p = json.loads(open("ota.json").read())
    slot = p["pending"]
    ST.seq.release()  # as fwmain.run_once does before handing a reboot to the loader
    ST = None
    keep = ("__main__", "micropython", "gc", "sys", "json", "time")
    for k in list(sys.modules):
        if k not in keep:
            del sys.modules[k]
    gc.collect()
    p["tries"] = 1
    with open("ota.json", "w") as f:
        f.write(json.dumps(p))
    base = [x for x in sys.path if x.startswith("simboard")]
    d = "app/" + slot
    while sys.path:
        sys.path.pop()
    for x in base + [d + "/lib", d]:
        sys.path.append(x)
    import ota

    ota.boot({"slot": slot, "pending": True, "version": p["pending_v"], "reset": "soft"})
    import board
    import fwmain
    import log

    board.loader_reset("soft")
    st = fwmain.station(board, log)
    wait_up(st)
    start_loop(st)
    ST = st
    return st


if sys.argv[1] == "soak":
    soak(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
else:
    run_phases(sys.argv[1].split(","))

# envnet station entry point and boot loader. On an ESP32 this file sits at the device
# root and runs at boot; on the unix port it is started as
#   cd <station dir>; MICROPYPATH=<fw>/lib:<fw> micropython <fw>/main.py
#
# OTA never replaces this file (docs/ota.md). Without ota.json it runs the firmware
# flashed at the root (lib/fwmain.app()), exactly as before OTA. With ota.json it runs
# the firmware slot the pointer names (app/a or app/b, each a complete version: main.py,
# board.mpy, lib/*.mpy, manifest.json): a pending (not yet confirmed) slot gets its
# boot attempt counted BEFORE it runs; a crash in it, too many attempts or a config it
# refuses roll the pointer back to the previous slot and leave a "rolled_back" report
# that the old version publishes once connected.
#
# The loader imports nothing of the firmware before it has chosen, so every module the
# firmware uses comes from the chosen version alone. Kept small: it is compiled from
# source at every boot.
import sys
import gc

POINTER = "ota.json"
SLOTS = "app/"
MAX_TRIES = 3


# --- boot loader ---------------------------------------------------------------------
def _read_ptr():
    # ota.json, or its .tmp when a rename over it was cut (FAT: remove, then rename).
    # The same as lib/ota.py read_ptr, on purpose: the loader may import no firmware module
    # before it has chosen the slot (it would come from the wrong version).
    import json
    for p in (POINTER, POINTER + ".tmp"):
        try:
            with open(p) as f:
                d = json.loads(f.read())
            if isinstance(d, dict):
                return d
        except (OSError, ValueError):
            pass
    return None


def _write_ptr(d):
    import json
    import os
    tmp = POINTER + ".tmp"
    with open(tmp, "w") as f:
        f.write(json.dumps(d))
    try:
        os.rename(tmp, POINTER)
    except OSError:
        try:
            os.remove(POINTER)
        except OSError:
            pass
        os.rename(tmp, POINTER)


def _has(path):
    import os
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _complete(slot):
    d = SLOTS + slot
    return ((_has(d + "/lib/fwmain.mpy") or _has(d + "/lib/fwmain.py"))
            and _has(d + "/manifest.json"))


def _rollback(p, reason):
    # Back to the confirmed slot; the pending one stays on flash until the next update.
    print("ota: rolling back %s: %s" % (p.get("pending_v"), reason))
    p["report"] = {"state": "rolled_back", "version": p.get("pending_v"),
                   "from": p.get("active_v"), "reason": reason}
    p["pending"] = None
    p["pending_v"] = None
    p["tries"] = 0
    _write_ptr(p)


def _choose():
    # -> (slot, pointer); slot "" is the firmware flashed at the root.
    p = _read_ptr()
    if p is None:
        return "", None
    pend = p.get("pending")
    if pend:
        tries = p.get("tries") or 0
        if tries >= (p.get("max_tries") or MAX_TRIES):
            _rollback(p, "not confirmed after %d boots" % tries)
        elif not _complete(pend):
            _rollback(p, "slot %s incomplete" % pend)
        else:
            p["tries"] = tries + 1  # counted before it runs: a hang or reset counts too
            _write_ptr(p)
            return pend, p
    act = p.get("active") or ""
    if act and not _complete(act):
        print("ota: slot %s incomplete, running the root firmware" % act)
        act = ""
    return act, p


def _set_path(paths):
    # In place: sys.path is the list the import machinery reads.
    while sys.path:
        sys.path.pop()
    for x in paths:
        sys.path.append(x)


def _enter(slot, p, base, reset):
    for k in list(sys.modules):  # nothing of another version may stay loaded
        if k != "__main__":
            del sys.modules[k]
    gc.collect()
    if slot:
        d = SLOTS + slot
        f = globals().get("__file__") or ""
        here = f.rsplit("/", 1)[0] if "/" in f else ""
        root = ("", "/", ".", "/lib", "lib", here, here + "/lib")
        _set_path([d + "/lib", d] + [x for x in base if x not in root])
    else:
        _set_path(base)
    import fwmain
    if p is None:
        return fwmain.app()  # no pointer: exactly the pre-OTA behaviour
    pending = bool(slot) and p.get("pending") == slot
    return fwmain.app({"slot": slot, "pending": pending, "reset": reset,
                       "version": p.get("pending_v" if pending else "active_v") if slot else None})


def _exc_text(e):
    s = str(e)
    return e.__class__.__name__ + (": " + s if s else "")


def _board_call(name):
    # What happens next is the board's to say (ESP32: reset or the REPL; unix port: exit
    # or boot again in this process). A crash before the firmware loaded its board, or
    # an older version's board without the method: exit.
    board = sys.modules.get("board")
    fn = getattr(board, name, None)
    if fn is None:
        return False
    fn()
    return True


def _crash(e):
    # A crash of confirmed firmware: ESP32 gives the console a moment, then resets (the
    # watchdog backs this up); unix exits 1.
    sys.print_exception(e)
    _board_call("crash_reset")
    raise SystemExit(1)


def main():
    base = list(sys.path)
    reset = None
    while True:
        slot, p = _choose()
        pending = bool(slot and p and p.get("pending") == slot)
        try:
            r = _enter(slot, p, base, reset)
        except KeyboardInterrupt:
            raise
        except Exception as e:
            if not pending:
                _crash(e)
                return
            sys.print_exception(e)
            p = _read_ptr() or {}
            if p.get("pending") != slot:  # it had confirmed: an ordinary crash
                _crash(e)
                return
            _rollback(p, "crash on boot: " + _exc_text(e))
            r = "boot"
        if r == "config" and pending:
            p = _read_ptr() or {}
            if p.get("pending") == slot:  # the new version refuses this station's config
                _rollback(p, "config.json rejected by the new version")
                r = "boot"
        if r == "config":
            if _board_call("stop_for_config"):
                return  # ESP32: leave the REPL to the technician (unix exits 2 in it)
            raise SystemExit(2)
        # r == "boot": a slot switch or rollback. ESP32: reset, the chip starts here
        # again (machine.reset() does not return). unix: boot again in this process
        # (modules are purged in _enter).
        _board_call("reboot")
        reset = "soft"


main()  # at boot as __main__, and by `import main` from a REPL

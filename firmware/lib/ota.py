# Over-the-air updates, station side (docs/ota.md is the contract): the part every
# boot from a boot pointer needs (which version runs, confirm or time out a pending
# version, publish the report the pointer carries). The download job is in otajob.py,
# imported only when an "ota" command arrives, so that a station pays for it in RAM
# only while it updates. Neither module is loaded on a station without ota.json that
# never got the command.
#
# ota.json: {"v": 1, "active": "a"|"b"|"" (root firmware), "active_v": "1.2.0",
#   "pending": slot|null, "pending_v": ver|null, "tries": n, "max_tries": 3,
#   "deadline_s": 300, "report": {state, version, from, reason}|null}
# The loader in the root main.py reads and writes the same file: keep both in step.
import json
import os
import sys
from time import ticks_ms, ticks_diff
import log

POINTER = "ota.json"
SLOTS = "app/"
MAX_TRIES = 3
TICK_MS = 100  # job time per station loop tick

# Set by boot() (from the loader) for the life of this boot.
SLOT = ""  # running slot; "" = the firmware flashed at the root
VERSION = None  # from the slot's manifest; None at the root (station.FW applies)
PENDING = False  # running an unconfirmed slot
REBOOT = False  # the loader must boot again (switch or rollback)
_t0 = ticks_ms()
_deadline_s = 300
_report = None  # a report left in ota.json, to publish once connected


def boot(info):
    # Called once by fwmain.app() with what the loader chose (a boot pointer exists).
    global SLOT, VERSION, PENDING, REBOOT, _t0, _deadline_s, _report
    SLOT = info.get("slot") or ""
    VERSION = info.get("version")
    PENDING = bool(info.get("pending"))
    REBOOT = False
    _t0 = ticks_ms()
    p = read_ptr() or {}
    _deadline_s = p.get("deadline_s") or 300
    _report = p.get("report")
    if SLOT:
        log.info("ota: running slot %s, version %s%s" % (
            SLOT, VERSION, " (pending, try %s)" % p.get("tries") if PENDING else ""))


def version(default=None):
    return VERSION or default


# --- boot pointer --------------------------------------------------------------------
def read_ptr():
    for p in (POINTER, POINTER + ".tmp"):
        try:
            with open(p) as f:
                d = json.loads(f.read())
            if isinstance(d, dict):
                return d
        except (OSError, ValueError):
            pass
    return None


def write_ptr(d, point=None):
    # point: board.ota_point, told when the new pointer is only in the temp file.
    tmp = POINTER + ".tmp"
    with open(tmp, "w") as f:
        f.write(json.dumps(d))
    if point:
        point("pointer-tmp")
    try:
        os.rename(tmp, POINTER)
    except OSError:  # FAT will not rename over a file
        try:
            os.remove(POINTER)
        except OSError:
            pass
        os.rename(tmp, POINTER)


# --- reports -------------------------------------------------------------------------
def _msg(st, state, ver, frm, reason=""):
    return json.dumps({"v": 1, "version": ver, "from": frm, "state": state,
                       "reason": reason or "", "ts": st.board.now()})


def _flush_report(st):
    # A report the pointer carries (rolled_back, confirmed) goes out once connected;
    # it is removed from ota.json only after the broker acknowledged it.
    global _report
    r = _report
    if not st.link.up:
        return
    if st.link.publish("ota", _msg(st, r.get("state"), r.get("version"), r.get("from"),
                                   r.get("reason"))):
        log.info("ota reported %s %s" % (r.get("state"), r.get("version")))
        p = read_ptr()
        if p and p.get("report") == r:
            p["report"] = None
            write_ptr(p)
        _report = None


# --- the station loop ---------------------------------------------------------------
def _job():
    return sys.modules.get("otajob")


def job_running():
    j = _job()
    return bool(j and j.running())


def busy():
    return job_running() or PENDING or _report is not None


def tick(st, budget_ms=TICK_MS):
    # From the station loop: advance a download, confirm or time out a pending
    # version, send a stored report.
    j = _job()
    if j:
        j.step(st, budget_ms)
        if not j.running():  # done or failed: its code leaves the heap (REBOOT holds
            for m in ("otajob", "hmac256", "otarules"):  # what the reboot needs)
                sys.modules.pop(m, None)
    if PENDING and not REBOOT:
        _check_confirm(st)
    if _report is not None:
        _flush_report(st)


def _exc(e):
    s = str(e)
    return e.__class__.__name__ + (": " + s if s else "")


def _check_confirm(st):
    global PENDING, REBOOT, _report
    if st.acked:  # one publish acknowledged by the broker: this version works
        st.board.ota_point("confirm")  # before it confirms
        p = read_ptr() or {}
        if p.get("pending") != SLOT:
            PENDING = False
            return
        frm = p.get("active_v")
        p["active"] = SLOT
        p["active_v"] = VERSION
        p["pending"] = None
        p["pending_v"] = None
        p["tries"] = 0
        p["report"] = {"state": "confirmed", "version": VERSION, "from": frm, "reason": ""}
        write_ptr(p)
        _report = p["report"]
        PENDING = False
        log.info("ota: %s confirmed" % VERSION)
        return
    if ticks_diff(ticks_ms(), _t0) > _deadline_s * 1000:
        if st.link.connects:
            reason = "no confirmation within %d s" % _deadline_s
        else:
            reason = "no broker connection within %d s" % _deadline_s
        rollback(reason)
        st.reboot_requested = True


def rollback(reason):
    # The running pending version gives up: the loader boots the previous slot, which
    # then reports rolled_back with the reason.
    global REBOOT, PENDING
    p = read_ptr() or {}
    if p.get("pending") == SLOT:
        log.warn("ota: rolling back %s: %s" % (VERSION, reason))
        p["report"] = {"state": "rolled_back", "version": p.get("pending_v"),
                       "from": p.get("active_v"), "reason": reason}
        p["pending"] = None
        p["pending_v"] = None
        p["tries"] = 0
        write_ptr(p)
    PENDING = False
    REBOOT = True




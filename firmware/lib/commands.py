# Commands, shared by MQTT (.../cmd -> .../cmd/ack) and the serial console.
# A request is {"id":..,"op":..,...}; the answer is {"id":..,"ok":true,...} or
# {"id":..,"ok":false,"error":"..."}. Ops beyond the contract's four (maint, status,
# readings, wifi, mqtt, log) serve field staff and cost nothing on the wire.
# Imported per command and freed after it (Station.command), with config.
import fsutil
import log

CAL_PATH = "cal.json"


def handle(st, req):
    rid = req.get("id") if isinstance(req, dict) else None
    try:
        if not isinstance(req, dict):
            raise ValueError("request must be a JSON object")
        op = req.get("op")
        fn = _OPS.get(op)
        if fn is None:
            raise ValueError("unknown op %r" % op)
        res = fn(st, req) or {}
    except Exception as e:  # a bad command must never stop the station
        return {"id": rid, "ok": False, "error": str(e) or e.__class__.__name__}
    out = {"id": rid, "ok": True}
    out.update(res)
    return out


def _ping(st, req):
    return {"ts": st.board.now(), "uptime_s": st.uptime_s()}


def _config(st, req):
    import config
    if "set" in req:
        changed = config.update(st.cfg, req["set"])
        if changed:
            log.info("config set %s" % ",".join(changed))
            st.apply(changed)
        return {"changed": changed}
    keys = req.get("get")
    if isinstance(keys, str):
        keys = [keys]
    return {"config": config.view(st.cfg, keys)}


def _calibrate(st, req):
    sensor = req.get("sensor")
    kw = req.get("args") or {}
    if not isinstance(kw, dict):
        raise ValueError("args must be an object")
    r = st.sampler.calibrate(sensor, kw)
    log.info("calibrated %s %s" % (sensor, kw))
    if isinstance(r, dict):
        _save_cal(sensor, r)
    return {"result": r} if r is not None else {}


def _save_cal(sensor, r):
    # Drivers return the settings to persist (driver options, e.g. zero_v, curve);
    # board.sensors() applies cal.json over the profile at the next boot. Progress
    # reports are not settings; None removes a setting (calibration cleared).
    cal = fsutil.read_json(CAL_PATH, {})
    cur = cal.get(sensor) or {}
    for k, v in r.items():
        if k in ("pending", "cal_points"):
            continue
        if v is None:
            cur.pop(k, None)
        else:
            cur[k] = v
    cal[sensor] = cur
    fsutil.write_json(CAL_PATH, cal)


def _reboot(st, req):
    st.reboot_requested = True
    return {}


def _maint(st, req):
    on = req.get("on")
    if not isinstance(on, bool):
        raise ValueError("maint needs on: true|false")
    import config
    config.update(st.cfg, {"maint": on})
    st.apply(["maint"])
    return {"maint": on}


def _ota(st, req):
    # Acked at once; the download runs from the station loop (lib/otajob.py, docs/ota.md).
    import otajob
    return otajob.start(st, req)


def _status(st, req):
    return st.status()


def _readings(st, req):
    last = st.sampler.last
    return {"last": st.last_reading, "window_n": st.sampler.n,
            "values": last[0] if last else {}, "flags": last[1] if last else {}}


def _wifi(st, req):
    b = st.board
    return {"up": b.wifi_up(), "rssi_dbm": b.wifi_rssi(), "ssid": st.cfg["wifi"]["ssid"]}


def _mqtt(st, req):
    n = st.link
    m = st.cfg["mqtt"]
    return {"connected": n.up, "host": m["host"], "port": m["port"], "connects": n.connects,
            "last_error": n.last_error}


def _log(st, req):
    return {"lines": log.tail(int(req.get("n", 20)))}


_OPS = {
    "ping": _ping, "config": _config, "calibrate": _calibrate, "reboot": _reboot,
    "maint": _maint, "status": _status, "readings": _readings, "wifi": _wifi,
    "mqtt": _mqtt, "log": _log, "ota": _ota,
}

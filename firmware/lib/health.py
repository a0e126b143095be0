# Health message (contract health_fields plus a few extras the server may use).
def build(st):
    b = st.board
    d = {
        "battery_v": b.battery_v(),
        "rssi_dbm": b.wifi_rssi(),
        "uptime_s": st.uptime_s(),
        "heap_free": b.heap_free(),
        "reset_cause": st.reset_cause,
        "fw": st.FW,
        "buffered": len(st.buf),
        "dropped": st.buf.dropped,
        "errors": _errors(st),
        "boot": st.seq.boot,
        "clock_synced": st.synced,
        "maint": bool(st.cfg["maint"]),
    }
    if st.awake_ms is not None:
        d["awake_ms"] = st.awake_ms
    return d


def _errors(st):
    # Counters by source: sensor names (read failures), mqtt (connect), pub (publish),
    # buf (buffer writes), buf_bad (corrupt records skipped), empty (windows without
    # any value), cmd_lost (commands dropped while busy).
    e = st.errors
    extra = {}
    if st.buf.bad:
        extra["buf_bad"] = st.buf.bad
    c = st.link.client
    if c and c.dropped_in:
        extra["cmd_lost"] = c.dropped_in
    if extra:
        e = dict(e)
        e.update(extra)
    return e

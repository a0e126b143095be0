# Serial console on stdin (the USB UART on an ESP32, a pty in tests). Polled without
# blocking so the station keeps running. One command per line:
#   status | readings | config [get [key..]] | config set key value | calibrate sensor [k=v..]
#   wifi | mqtt | log | maint on|off | reboot | help        (append --json for one JSON line)
# commands and config are imported per line and freed after it (station.command): the
# console costs only its poll between commands.
import json
import sys
import select

HELP = ("status | readings | config [get [key..]] | config set KEY VALUE | "
        "calibrate SENSOR [k=v..] | wifi | mqtt | log | maint on|off | reboot  (--json)")


def _value(text):
    # Console values: JSON where possible (30, true, "x"), else the bare string (what
    # config.parse_value does, without loading config's tables while a line is parsed).
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse(line):
    # Console line -> (request dict, json_wanted). Raises ValueError on bad syntax.
    words = line.split()
    js = "--json" in words
    words = [w for w in words if w != "--json"]
    if not words:
        return None, js
    op, args = words[0], words[1:]
    req = {"id": "console", "op": op}
    if op == "config":
        if args and args[0] == "set":
            if len(args) != 3:
                raise ValueError("usage: config set KEY VALUE")
            req["set"] = {args[1]: _value(args[2])}
        elif args:
            req["get"] = args[1:] if args[0] == "get" else args
    elif op == "calibrate":
        if not args:
            raise ValueError("usage: calibrate SENSOR [k=v..]")
        req["sensor"] = args[0]
        kw = {}
        for a in args[1:]:
            k, _, v = a.partition("=")
            kw[k] = _value(v)
        req["args"] = kw
    elif op == "maint":
        if not args or args[0] not in ("on", "off"):
            raise ValueError("usage: maint on|off")
        req["on"] = args[0] == "on"
    elif op == "help":
        req["op"] = "help"
    return req, js


def _human(res):
    if not res.get("ok"):
        return "error: %s" % res.get("error")
    lines = []
    for k, v in res.items():
        if k in ("id", "ok"):
            continue
        if k == "lines":
            lines.extend(v)
        elif isinstance(v, dict):
            lines.append("%s:" % k)
            for kk in v:
                lines.append("  %s = %s" % (kk, v[kk]))
        else:
            lines.append("%s = %s" % (k, v))
    return "\n".join(lines) or "ok"


class Console:
    def __init__(self, st):
        self.st = st
        self.buf = ""
        self.poll = None
        try:
            self.poll = select.poll()
            self.poll.register(sys.stdin, select.POLLIN)
        except Exception:
            self.poll = None  # no stdin to poll (some embeddings): console off

    def tick(self):
        # Read what is waiting (bounded), run complete lines.
        for _ in range(128):
            if self.poll is None:
                return
            ev = self.poll.poll(0)
            if not ev:
                return
            if not ev[0][1] & select.POLLIN:
                self._close()  # hang-up or error: stdin is gone
                return
            c = sys.stdin.read(1)
            if not c:
                self._close()  # EOF (stdin is /dev/null or a closed pipe)
                return
            if c in "\r\n":
                line, self.buf = self.buf.strip(), ""
                if line:
                    self.run(line)
            elif len(self.buf) < 200:
                self.buf += c

    def _close(self):
        try:
            self.poll.unregister(sys.stdin)
        except Exception:
            pass
        self.poll = None

    def run(self, line):
        try:
            req, js = parse(line)
        except ValueError as e:
            req, js = None, "--json" in line
            res = {"id": "console", "ok": False, "error": str(e)}
        else:
            if req is None:
                return
            if req["op"] == "help":
                res = {"id": "console", "ok": True, "help": HELP}
            else:
                res = self.st.command(req)
        print(json.dumps(res) if js else _human(res))

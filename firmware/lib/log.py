# Logging: one line per event to stdout (the USB console) and the last few lines kept
# in RAM for the console's `log` command. No levels filtering: the volume is tiny.
import time

_MAX = 20
_KEEP = 100  # characters of a line kept for the console (a reading line is ~250)
_ring = []
_t0 = time.ticks_ms()


def _emit(level, msg):
    line = "%.1f %s %s" % (time.ticks_diff(time.ticks_ms(), _t0) / 1000, level, msg)
    print(line)
    _ring.append(line[:_KEEP])
    if len(_ring) > _MAX:
        _ring.pop(0)


def info(msg):
    _emit("I", msg)


def warn(msg):
    _emit("W", msg)


def error(msg):
    _emit("E", msg)


def tail(n=_MAX):
    return _ring[-n:]

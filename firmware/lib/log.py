# Logging: one line per event to stdout (the USB console) and the last few lines kept
# in RAM for the console's `log` command. No levels filtering: the volume is tiny.
# The kept lines live in ONE block made at import (boot, before the heap fragments),
# written in place: twenty strings of their own, renewed at every event, would pin
# small blocks all over the heap and split its free space (docs/firmware.md "Memory").
import time
from micropython import const

_MAX = const(20)  # const(): the names are never interned on the board
_KEEP = const(100)  # bytes of a line kept for the console (a reading line is ~250)
_ring = bytearray(_MAX * _KEEP)
_lens = bytearray(_MAX)  # bytes used in each slot
_next = 0  # slot the next line goes to
_count = 0
_t0 = time.ticks_ms()


def _emit(level, msg):
    global _next, _count
    line = "%.1f %s %s" % (time.ticks_diff(time.ticks_ms(), _t0) / 1000, level, msg)
    print(line)
    b = line.encode()
    n = len(b)
    if n > _KEEP:
        n = _KEEP
        while n and b[n] & 0xC0 == 0x80:  # never cut a UTF-8 character in two
            n -= 1
    at = _next * _KEEP
    _ring[at:at + n] = memoryview(b)[:n]
    _lens[_next] = n
    _next = (_next + 1) % _MAX
    if _count < _MAX:
        _count += 1


def info(msg):
    _emit("I", msg)


def warn(msg):
    _emit("W", msg)


def error(msg):
    _emit("E", msg)


def tail(n=_MAX):
    # The newest n kept lines, oldest first, as tail()'s list slice always gave them
    # (made on demand: the console's `log`).
    out = []
    for i in range(_next - _count, _next):
        s = i % _MAX
        at = s * _KEEP
        out.append(bytes(_ring[at:at + _lens[s]]).decode())
    return out[-n:]

# Virtual milliseconds for driver tests: install() makes the drivers' sleeps advance
# a counter instead of waiting, and the fake devices judge "is the conversion done?"
# against the same counter. Without install() everything runs on real time.
import time

_now = None


def ticks_ms():
    return time.ticks_ms() if _now is None else _now


def ticks_diff(a, b):
    return time.ticks_diff(a, b) if _now is None else a - b


def sleep_ms(ms):
    global _now
    if _now is None:
        time.sleep_ms(ms)
    elif ms > 0:
        _now += int(ms)


def advance(ms):
    sleep_ms(ms)


def install(start_ms=1000000):
    # Patch sensorbase (drivers import it as a module and look these up per call).
    global _now
    _now = start_ms
    import sensorbase
    sensorbase.ticks_ms = ticks_ms
    sensorbase.ticks_diff = ticks_diff
    sensorbase.sleep_ms = sleep_ms


def slept_since(t0):
    return ticks_diff(ticks_ms(), t0)

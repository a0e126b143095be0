# Sampling window: reads every sensor often and turns one publish interval into one
# mean per parameter plus QC flags. No sample lists are kept: per parameter only
# count, sum, min and max of the good samples (enough for the sensor.community trim:
# drop min and max when n >= 5), and count/sum of out-of-range and warm-up ones.
#
# A sample is "good" unless its sensor is still warming up or it is outside the
# contract range. The published value is the trimmed mean of good samples; when there
# are none, the mean of the out-of-range samples flagged "range", else the mean of the
# warm-up samples flagged "warmup"; a
# parameter whose sensor failed on most samples gets "fault". Priority of the single
# flag per parameter: maint > fault > range > cal > warmup.
from time import ticks_ms, ticks_diff
from micropython import const
from contract import param_range

# const(): an underscored constant is folded in at compile time, so its name is never
# interned on the board (names stay in the heap for good).
_N = const(0)
_SUM = const(1)
_LO = const(2)
_HI = const(3)
_RN = const(4)
_RSUM = const(5)
_WN = const(6)
_WSUM = const(7)
_FAULT = const(8)
_CAL = const(9)


class Sampler:
    def __init__(self, kind, sensors, errors):
        self.kind = kind
        for s in sensors:  # drivers set .name from the profile; give others one
            if not getattr(s, "name", None):
                s.name = s.__class__.__name__.lower()
        self.sensors = sensors
        self.errors = errors  # shared {name: count} reported in health
        self.t0 = ticks_ms()  # warm-up is counted from here (boot or wake)
        self.cal = {}  # sensor name -> True while this window saw a calibration
        self.seen = {}  # sensor name -> params it returned (for sensors without .params)
        self.last = None  # (values, flags) of the last closed window, for the console
        self.woke = {}  # sensor name -> ticks it was last woken (duty cycling)
        self.asleep = {}  # sensor name -> True while put to sleep between windows
        self.reset()

    def reset(self):
        self.acc = {}
        self.n = 0
        self.cal = {}

    def _a(self, p):
        a = self.acc.get(p)
        if a is None:
            a = [0, 0.0, 0.0, 0.0, 0, 0.0, 0, 0.0, 0, False]
            self.acc[p] = a
        return a

    def sample(self):
        self.n += 1
        now = ticks_ms()
        for s in self.sensors:
            # Start every conversion first so slow sensors (EZO ~900 ms, DS18B20
            # 750 ms) work in parallel; read() then waits only for what is left.
            if self.asleep.get(s.name):
                continue
            if hasattr(s, "start"):
                try:
                    s.start()
                except (OSError, ValueError):
                    pass  # read() below reports it
        for s in self.sensors:
            name = s.name
            if self.asleep.get(name):
                continue
            try:
                vals = s.read()
            except (OSError, ValueError) as e:
                self.errors[name] = self.errors.get(name, 0) + 1
                for p in getattr(s, "params", None) or self.seen.get(name, ()):
                    self._a(p)[_FAULT] += 1
                continue
            if name not in self.seen:
                self.seen[name] = tuple(vals)
            # int ms: no float garbage per sample
            warm = ticks_diff(now, self.woke.get(name, self.t0)) < getattr(s, "warmup_s", 0) * 1000
            if getattr(s, "uncalibrated", False):
                self.cal[name] = True
            for p, v in vals.items():
                if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:
                    self._a(p)[_FAULT] += 1
                    continue
                self.add(p, v, warm, name)

    def add(self, p, v, warm=False, sensor=None):
        a = self._a(p)
        if sensor in self.cal:
            a[_CAL] = True
        r = param_range(self.kind, p)
        if r and not (r[0] <= v <= r[1]):
            a[_RN] += 1
            a[_RSUM] += v
            return
        if warm:
            a[_WN] += 1
            a[_WSUM] += v
            return
        if a[_N] == 0:
            a[_LO] = a[_HI] = v
        elif v < a[_LO]:
            a[_LO] = v
        elif v > a[_HI]:
            a[_HI] = v
        a[_N] += 1
        a[_SUM] += v

    def mark_cal(self, sensor_name):
        self.cal[sensor_name] = True
        for s in self.sensors:
            if getattr(s, "name", None) == sensor_name:
                for p in getattr(s, "params", None) or self.seen.get(sensor_name, ()):
                    self._a(p)[_CAL] = True

    def close(self, maint=False):
        # -> (values, flags) for the window, and start a new one.
        values = {}
        flags = {}
        for p, a in self.acc.items():
            n = a[_N]
            flag = None
            if n:
                s = a[_SUM]
                if n >= 5:
                    s -= a[_LO] + a[_HI]
                    n -= 2
                values[p] = s / n
            elif a[_RN]:
                values[p] = a[_RSUM] / a[_RN]
                flag = "range"
            elif a[_WN]:
                values[p] = a[_WSUM] / a[_WN]
                flag = "warmup"
            if a[_CAL] and flag != "range":
                flag = "cal"
            if a[_FAULT] and a[_FAULT] >= a[_N] + a[_RN] + a[_WN]:
                flag = "fault"
            if maint:
                flag = "maint"
            if flag:
                flags[p] = flag
        self.last = (values, flags)
        self.reset()
        return values, flags

    # --- duty cycling --------------------------------------------------------------
    # Sensors named in cfg "duty" (e.g. the PMS: its fan and laser wear out) sleep
    # after a window closes and wake warmup_s + active_ms before the next one closes,
    # as ESPHome and AirGradient do; skipped when the sleep would be shorter than
    # active_ms (the stretch of good samples kept before each close).
    def duty_sleep(self, names, interval_ms, active_ms):
        for s in self.sensors:
            if s.name in names and not self.asleep.get(s.name):
                lead = getattr(s, "warmup_s", 0) * 1000 + active_ms
                if interval_ms > lead + active_ms and hasattr(s, "sleep"):
                    try:
                        s.sleep()
                        self.asleep[s.name] = True
                    except (OSError, ValueError):
                        self.errors[s.name] = self.errors.get(s.name, 0) + 1

    def duty_wake(self, ms_to_close, active_ms):
        for s in self.sensors:
            if self.asleep.get(s.name) and ms_to_close <= getattr(s, "warmup_s", 0) * 1000 + active_ms:
                self.asleep[s.name] = False
                self.woke[s.name] = ticks_ms()
                try:
                    s.wake()
                except (OSError, ValueError):
                    self.errors[s.name] = self.errors.get(s.name, 0) + 1

    def calibrate(self, sensor, kw):
        for s in self.sensors:
            if getattr(s, "name", None) == sensor:
                if not hasattr(s, "calibrate"):
                    raise ValueError("sensor %s cannot be calibrated" % sensor)
                self.mark_cal(sensor)
                return s.calibrate(**kw)
        raise ValueError("no sensor %r" % sensor)

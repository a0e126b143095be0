# Sampling window: reads every sensor often and turns one publish interval into one
# mean per parameter plus QC flags. No sample lists are kept: per parameter only
# count, sum, min and max of the good samples (enough for the sensor.community trim:
# drop min and max when n >= 5), and count/sum of flagged ones.
#
# A sample is "good" unless its sensor is still warming up or it is outside the
# contract range. The published value is the trimmed mean of good samples; when there
# are none, the mean of the flagged samples with the flag (range beats warmup); a
# parameter whose sensor failed on most samples gets "fault". Priority of the single
# flag per parameter: maint > fault > range > cal > warmup.
from time import ticks_ms, ticks_diff
from contract import param_range

_N, _SUM, _LO, _HI, _XN, _XSUM, _XFLAG, _FAULT, _CAL = range(9)


class Sampler:
    def __init__(self, kind, sensors, errors):
        self.kind = kind
        self.sensors = sensors
        self.errors = errors  # shared {name: count} reported in health
        self.t0 = ticks_ms()  # warm-up is counted from here (boot or wake)
        self.cal = {}  # sensor name -> True while this window saw a calibration
        self.seen = {}  # sensor name -> params it returned (for sensors without .params)
        self.last = None  # (values, flags) of the last closed window, for the console
        self.reset()

    def reset(self):
        self.acc = {}
        self.n = 0
        self.cal = {}

    def _a(self, p):
        a = self.acc.get(p)
        if a is None:
            a = [0, 0.0, 0.0, 0.0, 0, 0.0, None, 0, False]
            self.acc[p] = a
        return a

    def sample(self):
        self.n += 1
        age = ticks_diff(ticks_ms(), self.t0) / 1000
        for s in self.sensors:
            name = getattr(s, "name", None) or s.__class__.__name__.lower()
            try:
                vals = s.read()
            except (OSError, ValueError) as e:
                self.errors[name] = self.errors.get(name, 0) + 1
                for p in getattr(s, "params", None) or self.seen.get(name, ()):
                    self._a(p)[_FAULT] += 1
                continue
            if name not in self.seen:
                self.seen[name] = tuple(vals)
            warm = age < getattr(s, "warmup_s", 0)
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
        flag = "range" if r and not (r[0] <= v <= r[1]) else ("warmup" if warm else None)
        if flag:
            a[_XN] += 1
            a[_XSUM] += v
            if a[_XFLAG] != "range":
                a[_XFLAG] = flag
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
            elif a[_XN]:
                values[p] = a[_XSUM] / a[_XN]
                flag = a[_XFLAG]
            if a[_CAL] and flag != "range":
                flag = "cal"
            if a[_FAULT] and a[_FAULT] >= a[_N] + a[_XN]:
                flag = "fault"
            if maint:
                flag = "maint"
            if flag:
                flags[p] = flag
        self.last = (values, flags)
        self.reset()
        return values, flags

    def calibrate(self, sensor, kw):
        for s in self.sensors:
            if getattr(s, "name", None) == sensor:
                if not hasattr(s, "calibrate"):
                    raise ValueError("sensor %s cannot be calibrated" % sensor)
                self.mark_cal(sensor)
                return s.calibrate(**kw)
        raise ValueError("no sensor %r" % sensor)

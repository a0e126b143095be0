# Analog turbidity sensor (DFRobot SEN0189 class: IR transmission, output falls as
# turbidity rises) read by the ESP32 ADC through a divider.
#
# volts -> NTU by piecewise-linear interpolation over calibration points [[V, NTU],
# ...] from the profile (or from calibrate() with formazin standards), clamped at the
# ends: beyond the outermost standards we do not know the curve, and a clamped value
# at 0 or at the top standard is what the range check and the analyst expect.
import sensorbase as sb

# Shape of the maker's published curve at 5 V supply; real units differ by tens of
# percent, hence `uncalibrated` until the profile or a calibration gives points.
DEFAULT_CURVE = ((2.5, 3000.0), (3.0, 1500.0), (3.5, 800.0), (4.0, 250.0), (4.2, 0.0))


def interpolate(curve, v):
    # curve sorted by volts ascending
    if v <= curve[0][0]:
        return curve[0][1]
    for i in range(1, len(curve)):
        v1, n1 = curve[i]
        if v <= v1:
            v0, n0 = curve[i - 1]
            return n0 + (n1 - n0) * (v - v0) / (v1 - v0)
    return curve[-1][1]


def _sorted(points):
    pts = sorted((float(v), float(n)) for v, n in points)
    for i in range(1, len(pts)):
        if pts[i][0] == pts[i - 1][0]:
            raise ValueError("turbidity: two calibration points at %.3f V" % pts[i][0])
    if len(pts) < 2:
        raise ValueError("turbidity: need at least two calibration points")
    # NTU must move one way with volts (down for transmission sensors, up for
    # scattering ones); a kink means swapped or contaminated standards.
    up = down = False
    for i in range(1, len(pts)):
        up = up or pts[i][1] > pts[i - 1][1]
        down = down or pts[i][1] < pts[i - 1][1]
    if up and down:
        raise ValueError("turbidity: calibration points are not monotonic")
    return pts


class Turbidity(sb.Sensor):
    name = "turbidity"
    params = ("turb",)

    def __init__(self, adc, curve=None, divider=1.0, vref=3.3, samples=16, warmup_s=0,
                 standards=None, name=None):
        self.adc = adc
        self.uncalibrated = curve is None
        self.curve = _sorted(curve or DEFAULT_CURVE)
        self.divider = divider  # sensor volts per ADC volt (5 V output into a 3.3 V ADC)
        self.vref = vref  # only for ADCs without read_uv()
        self.samples = max(3, samples)
        self.warmup_s = warmup_s
        self.volts = None
        # A standard measured before a reboot (deep sleep) while calibration was
        # half done; the station persists it like any calibration result.
        self._cal = [tuple(p) for p in standards] if standards else None
        if name:
            self.name = name

    def _one(self):
        # UNTESTABLE HERE: ESP32 ADC non-linearity above ~2.45 V at 11 dB (keep the
        # divider so the top standard stays below that) and eFuse calibration quality.
        a = self.adc
        if hasattr(a, "read_uv"):  # ESP32: eFuse-calibrated, far better than raw counts
            return a.read_uv() / 1e6
        return a.read_u16() * self.vref / 65535

    def voltage(self):
        # Mean without the lowest and highest sample: the ADC has spikes from Wi-Fi.
        s = 0.0
        lo = hi = None
        for _ in range(self.samples):
            v = self._one()
            s += v
            if lo is None or v < lo:
                lo = v
            if hi is None or v > hi:
                hi = v
        self.volts = (s - lo - hi) / (self.samples - 2) * self.divider
        return self.volts

    def measure(self):
        v = self.voltage()
        if v < 0.05:
            # A live sensor never reads 0 V: unplugged cable or dead supply.
            raise self.err(sb.SensorError, "no signal (%.3f V)" % v)
        return {"turb": interpolate(self.curve, v)}

    def calibrate(self, ntu=None, clear=False):
        # Sensor in a formazin standard of `ntu`: add (or replace) that point. The
        # generic curve is replaced once two standards have been measured; until then
        # the first one is returned as "standards" so that it survives a reboot.
        if clear:
            self.curve = _sorted(DEFAULT_CURVE)
            self.uncalibrated = True
            self._cal = None
            return {"curve": None, "standards": None}
        if ntu is None or ntu < 0:
            raise ValueError("turbidity: calibrate(ntu=<standard value>)")
        v = self.voltage()
        base = (self._cal or []) if self.uncalibrated else self.curve
        pts = [p for p in base if p[1] != ntu and abs(p[0] - v) > 0.001]
        pts.append((v, float(ntu)))
        if self.uncalibrated and len(pts) < 2:
            self._cal = pts
            return {"pending": "%.0f NTU at %.3f V; measure one more standard" % (ntu, v),
                    "standards": [list(p) for p in pts]}
        self.curve = _sorted(pts)
        self.uncalibrated = False
        self._cal = None
        return {"curve": [list(p) for p in self.curve], "standards": None}

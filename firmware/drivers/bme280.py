# Bosch BME280 temperature / pressure / humidity on I2C (0x76, or 0x77 with SDO high).
#
# Forced mode with 1x oversampling and the IIR filter off: Bosch's recommended
# "weather monitoring" setting, ~9.3 ms per measurement and 0.1 uA asleep in between.
# Compensation is the datasheet's integer code (BME280 datasheet 4.2.3: 32-bit T,
# 64-bit P, 32-bit H); Python ints do not overflow, so the only C behaviour to copy is
# the truncating division in P (Python's // floors).
from micropython import const
import sensorbase as sb

CHIP_ID = const(0x60)
_REG_ID = const(0xD0)
_REG_CAL1 = const(0x88)  # 26 bytes: T1..P9 (+ 0xA0 unused, 0xA1 = H1)
_REG_CAL2 = const(0xE1)  # 7 bytes: H2..H6
_REG_CTRL_HUM = const(0xF2)
_REG_STATUS = const(0xF3)
_REG_CTRL_MEAS = const(0xF4)
_REG_CONFIG = const(0xF5)
_REG_DATA = const(0xF7)  # press[3] temp[3] hum[2]
_OSRS = {1: 1, 2: 2, 4: 3, 8: 4, 16: 5}


def _u16(b, i):
    return b[i] | (b[i + 1] << 8)


def _s16(b, i):
    v = b[i] | (b[i + 1] << 8)
    return v - 65536 if v & 0x8000 else v


def _s12(v):
    return v - 4096 if v & 0x800 else v


def calibration(c1, c2):
    # Registers 0x88..0xA1 and 0xE1..0xE7 -> (T1..T3, P1..P9, H1..H6) as in the datasheet.
    t = (_u16(c1, 0), _s16(c1, 2), _s16(c1, 4))
    p = (_u16(c1, 6),) + tuple(_s16(c1, 8 + 2 * i) for i in range(8))
    e4, e5, e6 = c2[3], c2[4], c2[5]
    h = (c1[25], _s16(c2, 0), c2[2], _s12((e4 << 4) | (e5 & 0x0F)), _s12((e6 << 4) | (e5 >> 4)),
         c2[6] - 256 if c2[6] & 0x80 else c2[6])
    return t + p + h


def _tdiv(a, b):
    # C integer division truncates toward zero.
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def compensate_t(cal, adc_t):
    # -> (T in 0.01 degC, t_fine)
    t1, t2, t3 = cal[0], cal[1], cal[2]
    var1 = (((adc_t >> 3) - (t1 << 1)) * t2) >> 11
    var2 = (((((adc_t >> 4) - t1) * ((adc_t >> 4) - t1)) >> 12) * t3) >> 14
    t_fine = var1 + var2
    return (t_fine * 5 + 128) >> 8, t_fine


def compensate_p(cal, adc_p, t_fine):
    # -> pressure in Pa as Q24.8 (divide by 256), 0 if the calibration is broken.
    p1, p2, p3, p4, p5, p6, p7, p8, p9 = cal[3:12]
    var1 = t_fine - 128000
    var2 = var1 * var1 * p6
    var2 = var2 + ((var1 * p5) << 17)
    var2 = var2 + (p4 << 35)
    var1 = ((var1 * var1 * p3) >> 8) + ((var1 * p2) << 12)
    var1 = (((1 << 47) + var1) * p1) >> 33
    if var1 == 0:
        return 0  # avoid division by zero
    p = 1048576 - adc_p
    p = _tdiv(((p << 31) - var2) * 3125, var1)
    var1 = (p9 * (p >> 13) * (p >> 13)) >> 25
    var2 = (p8 * p) >> 19
    return ((p + var1 + var2) >> 8) + (p7 << 4)


def compensate_h(cal, adc_h, t_fine):
    # -> relative humidity in %RH as Q22.10 (divide by 1024)
    h1, h2, h3, h4, h5, h6 = cal[12:18]
    v = t_fine - 76800
    v = ((((adc_h << 14) - (h4 << 20) - (h5 * v)) + 16384) >> 15) * \
        (((((((v * h6) >> 10) * (((v * h3) >> 11) + 32768)) >> 10) + 2097152) * h2 + 8192) >> 14)
    v = v - (((((v >> 15) * (v >> 15)) >> 7) * h1) >> 4)
    v = 0 if v < 0 else v
    v = 419430400 if v > 419430400 else v
    return v >> 12


class BME280(sb.I2CDevice):
    name = "bme280"
    params = ("t", "rh", "p")

    def __init__(self, i2c, addr=0x76, oversampling=1, name=None):
        sb.I2CDevice.__init__(self, i2c, addr)
        if oversampling not in _OSRS:
            raise ValueError("bme280: oversampling must be 1, 2, 4, 8 or 16")
        o = _OSRS[oversampling]
        self._hum = bytearray((o,))
        self._meas = bytearray(((o << 5) | (o << 2) | 0x01,))  # osrs_t, osrs_p, forced
        # Datasheet 9.1: t_max = 1.25 + 2.3*T + (2.3*P + 0.575) + (2.3*H + 0.575) ms
        self._ms = int(1.25 + 2.3 * oversampling * 3 + 1.15) + 1
        self.cal = None
        self._buf = bytearray(8)
        if name:
            self.name = name

    def _setup(self):
        b = self._buf
        self.read_reg(_REG_ID, memoryview(b)[:1])
        if b[0] != CHIP_ID:
            # 0x58 is a BMP280 (no humidity): a common mix-up when buying breakouts.
            raise self.err(sb.DeviceError, "chip id 0x%02x, expected 0x60%s"
                           % (b[0], " (a BMP280?)" if b[0] == 0x58 else ""))
        c1 = bytearray(26)
        c2 = bytearray(7)
        self.read_reg(_REG_CAL1, c1)
        self.read_reg(_REG_CAL2, c2)
        self.write_reg(_REG_CONFIG, b"\x00")  # filter off, standby irrelevant in forced
        self.cal = calibration(c1, c2)

    def start(self):
        if self.cal is None:
            self._setup()
        # ctrl_hum only takes effect after a write to ctrl_meas (datasheet 5.4.3).
        self.write_reg(_REG_CTRL_HUM, self._hum)
        self.write_reg(_REG_CTRL_MEAS, self._meas)
        self._mark()

    def measure(self):
        if self._t0 is None:
            self.start()
        self._wait(self._ms)
        b = self._buf
        mv = memoryview(b)
        for _ in range(10):  # status bit 3 "measuring" clears when results are ready
            self.read_reg(_REG_STATUS, mv[:1])
            if not b[0] & 0x08:
                break
            sb.sleep_ms(2)
        else:
            self._t0 = None
            raise self.err(sb.SensorTimeout, "still measuring after %d ms" % (self._ms + 20))
        self._t0 = None
        self.read_reg(_REG_DATA, b)
        adc_p = (b[0] << 12) | (b[1] << 4) | (b[2] >> 4)
        adc_t = (b[3] << 12) | (b[4] << 4) | (b[5] >> 4)
        adc_h = (b[6] << 8) | b[7]
        if adc_t == 0x80000 or adc_p == 0x80000 or adc_h == 0x8000:
            # Reset values: the measurement was skipped (chip reset under our feet).
            self.cal = None
            raise self.err(sb.SensorError, "measurement skipped (register reset values)")
        return self.convert(adc_t, adc_p, adc_h)

    def convert(self, adc_t, adc_p, adc_h):
        t, t_fine = compensate_t(self.cal, adc_t)
        p = compensate_p(self.cal, adc_p, t_fine)
        h = compensate_h(self.cal, adc_h, t_fine)
        return {"t": t / 100, "p": p / 25600, "rh": h / 1024}

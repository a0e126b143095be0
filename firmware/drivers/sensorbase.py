# Common shape of every envnet sensor driver, its errors, and its clock.
#
# A driver is built as Driver(bus, **options) from a board profile entry and offers:
#   read()            -> {envnet param: float}; raises SensorError (an OSError) on bus,
#                        CRC, timeout or device errors, ValueError on bad config.
#   params, warmup_s  -> what read() yields; seconds after power-up/wake before values
#                        are trustworthy (the sampler flags "warmup" until then).
#   start()           -> begin a measurement without waiting, so that slow sensors
#                        (DS18B20 750 ms, EZO 900 ms) convert in parallel; read()
#                        then waits only for what is left. Optional for callers.
#   calibrate(**kw)   -> dict of settings to persist (may be empty when the sensor
#                        keeps its calibration itself); ValueError on bad arguments.
#   sleep(), wake()   -> power saving where the sensor supports it.
#   uncalibrated      -> True while the driver runs on factory/default constants.
#   last              -> the last dict read() returned (compensation peers use it).
#
# Drivers call ticks_ms/sleep_ms through this module, never `time` directly, so tests
# swap in a virtual clock (fakeclock.install) and a 900 ms EZO wait costs no wall time.
import time

ticks_ms = time.ticks_ms
ticks_diff = time.ticks_diff
sleep_ms = time.sleep_ms


class SensorError(OSError):
    """A sensor could not be read; the sampler counts these per sensor name."""


class CRCError(SensorError):
    """Checksum/CRC mismatch: wiring noise, baud mismatch or a torn frame."""


class SensorTimeout(SensorError):
    """No (complete) answer within the driver's time limit."""


class DeviceError(SensorError):
    """The sensor answered, but with an error (EZO code 2, Modbus exception...)."""


def as_int(v):
    # Profile JSON has no hex literals; accept 68, "68" and "0x44" alike.
    if isinstance(v, str):
        return int(v, 16) if v[:2] in ("0x", "0X") else int(v)
    return int(v)


def elapsed_ms(t0):
    return ticks_diff(ticks_ms(), t0)


class Sensor:
    params = ()
    warmup_s = 0
    uncalibrated = False
    name = None
    only = None  # profile "use": keep only these params (two sensors measure t, say)
    last = None
    links = None  # {role: other driver} set by drivers_setup, e.g. {"t": ds18b20}
    _t0 = None  # ticks when the pending measurement was started

    def read(self):
        vals = self.measure()
        if self.only:
            for k in list(vals):
                if k not in self.only:
                    del vals[k]
        self.last = vals
        return vals

    def measure(self):
        raise NotImplementedError

    def start(self):
        pass

    def calibrate(self, **kw):
        raise ValueError("%s: calibration not supported" % self.name)

    def sleep(self):
        pass

    def wake(self):
        pass

    def set_env(self, **env):
        # Explicit compensation inputs (tests, console); they win over links.
        if self._env is None:
            self._env = {}
        self._env.update(env)

    _env = None

    def env(self, key):
        # Latest value of `key` from set_env() or from the linked sensor's last read.
        if self._env and key in self._env:
            return self._env[key]
        peer = self.links.get(key) if self.links else None
        if peer is not None and peer.last:
            return peer.last.get(key)
        return None

    def _mark(self):
        self._t0 = ticks_ms()

    def _wait(self, ms):
        # Sleep whatever is left of `ms` since the measurement was started.
        left = ms - elapsed_ms(self._t0)
        if left > 0:
            sleep_ms(left)

    def err(self, cls, msg):
        return cls("%s: %s" % (self.name, msg))


class I2CDevice(Sensor):
    # Wraps the bus so an absent/NACKing chip names itself instead of "[Errno 19]".
    def __init__(self, i2c, addr):
        self.i2c = i2c
        self.addr = as_int(addr)

    def _who(self):
        return "%s@0x%02x" % (self.name, self.addr)

    def write(self, buf):
        try:
            self.i2c.writeto(self.addr, buf)
        except OSError as e:
            raise SensorError("%s: i2c write failed (%s)" % (self._who(), e))

    def read_into(self, buf):
        try:
            self.i2c.readfrom_into(self.addr, buf)
        except OSError as e:
            raise SensorError("%s: i2c read failed (%s)" % (self._who(), e))

    def write_reg(self, reg, buf):
        try:
            self.i2c.writeto_mem(self.addr, reg, buf)
        except OSError as e:
            raise SensorError("%s: i2c write reg 0x%02x failed (%s)" % (self._who(), reg, e))

    def read_reg(self, reg, buf):
        try:
            self.i2c.readfrom_mem_into(self.addr, reg, buf)
        except OSError as e:
            raise SensorError("%s: i2c read reg 0x%02x failed (%s)" % (self._who(), reg, e))


def uart_fill(uart, mv, n, want, t0, timeout_ms):
    # Read from `uart` into mv[n:want] until full or timeout_ms after t0 -> new n.
    # The ESP32 UART returns None at once when empty (timeout=0), so poll politely:
    # at 9600 baud one byte takes ~1 ms.
    while n < want:
        got = uart.readinto(mv[n:want])
        if got:
            n += got
        elif elapsed_ms(t0) >= timeout_ms:
            break
        else:
            sleep_ms(2)
    return n


def uart_drain(uart, buf):
    # Drop stale bytes (a half frame from before a request) without allocating.
    # any() first: a UART built with timeout > 0 would block in readinto().
    for _ in range(64):
        if not uart.any():
            return
        uart.readinto(buf)

# Fake `machine` for the MicroPython unix port (first on MICROPYPATH in tests).
#
# Buses carry bytes to and from fake devices that speak the sensors' real formats
# (uartdevs, i2cdevs, owdevs). Tests attach a device to a bus address, then build
# the bus exactly as an ESP32 profile would:
#     machine.attach("uart", 2, uartdevs.PMS())       # UART id 2
#     machine.attach("i2c", 0, i2cdevs.SHT3x(), 0x44)  # I2C id 0, address 0x44
#     machine.attach("adc", 34, analog)                # ADC on GPIO 34 (.volts)
#     machine.attach("onewire", 4, owdevs.DS18B20())   # 1-Wire on GPIO 4
# Devices are looked up at each transfer, so they can be attached after the bus.
# Behaviour follows the ESP32 port: absent I2C address -> OSError(19, ENODEV);
# UART with timeout=0 -> readinto() returns None at once when nothing arrived.
import fakeclock
import os
import sys

_devices = {}
pins = {}  # pin id -> level, for assertions (RS-485 DE, PMS SET, load switch)
pin_log = []  # (pin id, level) in order


def attach(kind, bus_id, device, addr=None):
    if addr is None:
        if kind == "onewire":
            _devices.setdefault((kind, bus_id), []).append(device)
        else:
            _devices[(kind, bus_id)] = device
    else:
        _devices.setdefault((kind, bus_id), {})[addr] = device
    return device


def detach_all():
    _devices.clear()
    pins.clear()
    del pin_log[:]


def device(kind, bus_id, addr=None):
    d = _devices.get((kind, bus_id))
    if addr is not None and d is not None:
        return d.get(addr)
    return d


def _pin_id(p):
    return p.id if isinstance(p, Pin) else p


class Pin:
    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    PULL_UP = 2
    PULL_DOWN = 1
    IRQ_RISING = 1
    IRQ_FALLING = 2

    def __init__(self, id, mode=-1, pull=-1, value=None, **kw):
        self.id = id
        self.mode = mode
        if value is not None:
            self.value(value)

    def init(self, mode=-1, pull=-1, value=None, **kw):
        if value is not None:
            self.value(value)

    def value(self, v=None):
        if v is None:
            return pins.get(self.id, 0)
        v = 1 if v else 0
        pins[self.id] = v
        pin_log.append((self.id, v))
        return None

    __call__ = value

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)

    def irq(self, handler=None, trigger=3, **kw):
        return None


class UART:
    def __init__(self, id, baudrate=9600, bits=8, parity=None, stop=1, tx=None, rx=None,
                 timeout=0, rxbuf=256, **kw):
        self.id = id
        self.baudrate = baudrate
        self.timeout = timeout
        self.rxbuf = rxbuf
        self.rx = bytearray()
        self.written = []  # every write() as bytes, for byte-exact command checks

    def init(self, baudrate=9600, **kw):
        self.baudrate = baudrate

    def deinit(self):
        pass

    def _dev(self):
        return _devices.get(("uart", self.id))

    def feed(self, data):
        # Bytes arriving from the device; a full hardware FIFO drops the newest.
        room = self.rxbuf - len(self.rx)
        if room > 0:
            self.rx.extend(data[:room])

    def _poll(self):
        d = self._dev()
        if d is not None and hasattr(d, "poll"):
            d.poll(self)

    def any(self):
        self._poll()
        return len(self.rx)

    def read(self, n=None):
        self._poll()
        if not self.rx:
            if self.timeout:
                fakeclock.sleep_ms(self.timeout)
            return None
        n = len(self.rx) if n is None else min(n, len(self.rx))
        out = bytes(self.rx[:n])
        self.rx = self.rx[n:]
        return out

    def readinto(self, buf, nbytes=None):
        want = len(buf) if nbytes is None else min(nbytes, len(buf))
        data = self.read(want)
        if not data:
            return None
        buf[:len(data)] = data
        return len(data)

    def readline(self):
        self._poll()
        i = self.rx.find(b"\n")
        return self.read(i + 1 if i >= 0 else None)

    def write(self, buf):
        data = bytes(buf)
        self.written.append(data)
        d = self._dev()
        if d is not None:
            d.on_write(self, data)
        return len(data)

    def flush(self):
        pass

    def txdone(self):
        return True

    def sendbreak(self):
        pass


class I2C:
    def __init__(self, id=0, scl=None, sda=None, freq=400000, timeout=50000, **kw):
        self.id = id
        self.freq = freq

    def _dev(self, addr):
        d = _devices.get(("i2c", self.id))
        dev = d.get(addr) if d else None
        if dev is None:
            raise OSError(19)  # ENODEV: no ACK, as the ESP32 port reports it
        return dev

    def scan(self):
        return sorted(_devices.get(("i2c", self.id)) or ())

    def writeto(self, addr, buf, stop=True):
        self._dev(addr).write(bytes(buf))
        return len(buf)

    def readfrom(self, addr, n, stop=True):
        return bytes(self._dev(addr).read(n))

    def readfrom_into(self, addr, buf, stop=True):
        data = self._dev(addr).read(len(buf))
        buf[:] = data

    def writeto_mem(self, addr, reg, buf, addrsize=8):
        self._dev(addr).write(bytes((reg,)) + bytes(buf))

    def readfrom_mem(self, addr, reg, n, addrsize=8):
        d = self._dev(addr)
        d.write(bytes((reg,)))
        return bytes(d.read(n))

    def readfrom_mem_into(self, addr, reg, buf, addrsize=8):
        d = self._dev(addr)
        d.write(bytes((reg,)))
        buf[:] = d.read(len(buf))


SoftI2C = I2C


class ADC:
    ATTN_0DB = 0
    ATTN_2_5DB = 1
    ATTN_6DB = 2
    ATTN_11DB = 3
    WIDTH_12BIT = 3

    def __init__(self, pin, atten=None):
        self.pin = _pin_id(pin)
        self._atten = atten

    def atten(self, a):
        self._atten = a

    def width(self, w):
        pass

    def _volts(self):
        d = _devices.get(("adc", self.pin))
        if d is None:
            return 0.0
        v = d.sample() if hasattr(d, "sample") else d.volts
        return min(3.3, max(0.0, v))  # the pin clamps outside the rails

    def read_uv(self):
        return int(self._volts() * 1000000)

    def read_u16(self):
        return int(self._volts() / 3.3 * 65535)

    def read(self):
        return self.read_u16() >> 4


# --- the rest of the ESP32 machine API that firmware may touch --------------------
PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5
_cause = {"deepsleep": DEEPSLEEP_RESET, "watchdog": WDT_RESET, "soft": SOFT_RESET,
          "hard": HARD_RESET}.get(os.getenv("FAKE_RESET_CAUSE") or "", PWRON_RESET)
RESET_EXIT = 75  # process exit codes that stand for machine.reset() / deepsleep()
DEEPSLEEP_EXIT = 76


def reset_cause():
    return _cause


def reset():
    sys.exit(RESET_EXIT)


def soft_reset():
    sys.exit(RESET_EXIT)


def deepsleep(ms=0):
    sys.exit(DEEPSLEEP_EXIT)


def lightsleep(ms=0):
    fakeclock.sleep_ms(ms)


def idle():
    pass


def freq(hz=None):
    return 240000000 if hz is None else None


def unique_id():
    return b"\x24\x0a\xc4\x00\x00\x01"


def disable_irq():
    return 0


def enable_irq(state=0):
    pass


class WDT:
    def __init__(self, id=0, timeout=5000):
        self.timeout = timeout
        self.feeds = 0

    def feed(self):
        self.feeds += 1


class RTC:
    _mem = b""

    def datetime(self, dt=None):
        return time_tuple() if dt is None else None

    def memory(self, data=None):
        if data is None:
            return RTC._mem
        RTC._mem = bytes(data)


def time_tuple():
    import time
    t = time.localtime()
    return (t[0], t[1], t[2], t[6], t[3], t[4], t[5], 0)

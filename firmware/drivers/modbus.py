# Modbus RTU master over RS-485 (MAX3485 class transceiver) and a generic
# multi-parameter sonde driver on top of it: the industrial interface of the COD
# (UV254 optical) and NH3-N (ion-selective) probes that low-cost water stations use.
#
# Read holding registers (function 0x03):
#   request  unit 03 regH regL cntH cntL crcL crcH
#   response unit 03 nbytes data... crcL crcH      exception: unit 83 code crcL crcH
# CRC-16/MODBUS (poly 0xA001, init 0xFFFF), low byte first. Frames are separated by
# at least 3.5 character times of silence.
from micropython import const
import struct
import sensorbase as sb
from checksum import crc16_modbus

EXCEPTIONS = {1: "illegal function", 2: "illegal data address", 3: "illegal data value",
              4: "slave device failure", 5: "acknowledge (busy, retry)", 6: "slave device busy",
              11: "gateway target failed to respond"}
_MAX_REGS = const(16)
_SIZES = {"u16": 1, "s16": 1, "u32": 2, "s32": 2, "f32": 2}


def request(unit, func, reg, count):
    f = bytearray(8)
    f[0] = unit
    f[1] = func
    f[2] = reg >> 8
    f[3] = reg & 0xFF
    f[4] = count >> 8
    f[5] = count & 0xFF
    c = crc16_modbus(f, 0, 6)
    f[6] = c & 0xFF
    f[7] = c >> 8
    return f


def decode(data, kind, order="ABCD"):
    # Register bytes -> number. 32-bit values come in two word orders in the field:
    # ABCD (big-endian, the spec's) and CDAB (low word first, many sondes).
    if kind == "u16":
        return (data[0] << 8) | data[1]
    if kind == "s16":
        v = (data[0] << 8) | data[1]
        return v - 65536 if v & 0x8000 else v
    b = bytes(data[0:4]) if order == "ABCD" else bytes((data[2], data[3], data[0], data[1]))
    return struct.unpack({"u32": ">I", "s32": ">i", "f32": ">f"}[kind], b)[0]


class ModbusRTU:
    def __init__(self, uart, de_pin=None, baudrate=9600, timeout_ms=500, echo=False):
        self.uart = uart
        self.de = de_pin  # driver-enable (DE and /RE tied): high while we transmit
        self.timeout_ms = timeout_ms  # sondes answer in 10-300 ms
        self.echo = echo  # transceivers with /RE grounded hear themselves
        self.char_us = 11 * 1000000 // baudrate  # 8N1 is 10 bits; 11 covers parity
        self.gap_ms = max(2, (35 * self.char_us) // 10000 + 1)  # 3.5 chars (1.75 ms > 19200)
        self._buf = bytearray(5 + 2 * _MAX_REGS)
        self._mv = memoryview(self._buf)
        if de_pin is not None:
            de_pin.value(0)

    def _send(self, req):
        # UNTESTABLE HERE: DE turnaround timing. The fake UART sends instantly; on the
        # ESP32, flush() must return before the last stop bit or the reply's first
        # byte collides with our driver. Check on a scope at commissioning.
        sb.uart_drain(self.uart, self._buf)
        sb.sleep_ms(self.gap_ms)
        if self.de is not None:
            self.de.value(1)
        self.uart.write(req)
        if hasattr(self.uart, "flush"):
            self.uart.flush()  # ESP32: returns when the last stop bit has left
        else:
            sb.sleep_ms(len(req) * self.char_us // 1000 + 1)
        if self.de is not None:
            self.de.value(0)

    def read_holding(self, unit, reg, count):
        # -> memoryview of the 2*count data bytes (valid until the next call)
        if not 1 <= count <= _MAX_REGS:
            raise ValueError("modbus: count must be 1..%d" % _MAX_REGS)
        req = request(unit, 0x03, reg, count)
        self._send(req)
        t0 = sb.ticks_ms()
        buf = self._buf
        mv = self._mv
        if self.echo:
            n = sb.uart_fill(self.uart, mv, 0, 8, t0, self.timeout_ms)
            if n < 8 or bytes(buf[0:8]) != bytes(req):
                raise sb.SensorError("modbus: expected our echo, got %d other bytes" % n)
        n = 0
        skipped = 0
        while True:
            n = sb.uart_fill(self.uart, mv, n, 3, t0, self.timeout_ms)
            if n < 3:
                if n == 0:
                    raise sb.SensorTimeout("modbus: unit %d did not answer in %d ms"
                                           % (unit, self.timeout_ms))
                raise sb.SensorTimeout("modbus: unit %d: short answer (%d bytes)" % (unit, n))
            if buf[0] == unit and buf[1] in (0x03, 0x83):
                break
            # A glitch byte when the bus turns around: slide on.
            buf[0:n - 1] = buf[1:n]
            n -= 1
            skipped += 1
            if skipped > 8:
                raise sb.SensorError("modbus: unit %d: no valid answer header" % unit)
        total = 5 if buf[1] == 0x83 else 5 + buf[2]
        if buf[1] == 0x03 and buf[2] != 2 * count:
            raise sb.SensorError("modbus: unit %d sent %d bytes for %d registers"
                                 % (unit, buf[2], count))
        n = sb.uart_fill(self.uart, mv, n, total, t0, self.timeout_ms)
        if n < total:
            raise sb.SensorTimeout("modbus: unit %d: short answer (%d of %d bytes)"
                                   % (unit, n, total))
        c = crc16_modbus(buf, 0, total - 2)
        if c != buf[total - 2] | (buf[total - 1] << 8):
            raise sb.CRCError("modbus: unit %d: CRC 0x%04x, frame says 0x%04x"
                              % (unit, c, buf[total - 2] | (buf[total - 1] << 8)))
        if buf[1] == 0x83:
            code = buf[2]
            raise sb.DeviceError("modbus: unit %d exception %d (%s) reading register %d"
                                 % (unit, code, EXCEPTIONS.get(code, "unknown"), reg))
        return mv[3:3 + 2 * count]


class ModbusSonde(sb.Sensor):
    # registers: {"cod": {"reg": 0, "type": "f32", "order": "CDAB", "scale": 1.0,
    #                     "offset": 0.0}, "nh3n": {...}} -- from the sonde's manual.
    name = "sonde"

    def __init__(self, uart, registers=None, unit=1, de_pin=None, baudrate=9600,
                 timeout_ms=500, echo=False, warmup_s=30, name=None):
        if not registers:
            raise ValueError("modbus_sonde: 'registers' maps params to holding registers")
        for p, r in registers.items():
            if r.get("type", "u16") not in _SIZES or "reg" not in r:
                raise ValueError("modbus_sonde: %s needs reg and type in %s" % (p, list(_SIZES)))
        self.bus = ModbusRTU(uart, de_pin, baudrate, timeout_ms, echo)
        self.registers = registers
        self.unit = sb.as_int(unit)
        self.params = tuple(registers)
        self.warmup_s = warmup_s  # optical/ISE probes settle after their power comes on
        if name:
            self.name = name

    def measure(self):
        out = {}
        for p, r in self.registers.items():
            kind = r.get("type", "u16")
            data = self.bus.read_holding(self.unit, sb.as_int(r["reg"]), _SIZES[kind])
            v = decode(data, kind, r.get("order", "ABCD"))
            out[p] = v * r.get("scale", 1.0) + r.get("offset", 0.0)
        return out

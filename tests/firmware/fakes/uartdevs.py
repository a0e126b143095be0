# Fake UART sensors that speak the datasheet byte formats, written independently of
# the drivers (own frame builders and checksums) so the tests are not circular.
#   PMS:   Plantower PMS5003/7003 active/passive/sleep protocol
#   ZE:    Winsen ZE03/ZE07/ZE15 Q&A and active upload
#   Sonde: Modbus RTU slave with holding registers (function 0x03, exceptions)
# One-shot faults: dev.fault = "checksum" | "short" | "silent" | "garbage";
# dev.garbage is sent before the next frame when fault == "garbage".
import fakeclock
import struct


def be16(v):
    return bytes(((v >> 8) & 0xFF, v & 0xFF))


# --- Plantower ---------------------------------------------------------------------
def pms_frame(words):
    # 13 data words -> 32-byte frame with the 16-bit sum of the first 30 bytes.
    body = b"\x42\x4d" + be16(28) + b"".join([be16(w) for w in words])
    return body + be16(sum(body))


def pms_ack(cmd, data):
    body = b"\x42\x4d" + be16(4) + bytes((cmd, data))
    return body + be16(sum(body))


class PMS:
    def __init__(self, pm1=8, pm25=12, pm10=20, mode="active", period_ms=1000):
        self.set_pm(pm1, pm25, pm10)
        self.mode = mode
        self.period_ms = period_ms
        self.asleep = False
        self.woke_at = None
        self.last_frame_at = None
        self.fault = None
        self.garbage = b"\x00\x13\x42\xff\x4d\x42"
        self.commands = []  # decoded (cmd, data) of valid host frames
        self.bad_commands = 0

    def set_pm(self, pm1, pm25, pm10):
        # Outdoors the CF=1 values read a little higher than the atmospheric ones.
        w = [int(pm1 * 1.1), int(pm25 * 1.1), int(pm10 * 1.1), pm1, pm25, pm10,
             pm25 * 60, pm25 * 18, pm25 * 4, pm25, pm10 // 5, pm10 // 20, 0x9100]
        self.words = [x & 0xFFFF for x in w]

    def frame(self):
        f = pms_frame(self.words)
        fault, self.fault = self.fault, None
        if fault == "checksum":
            f = f[:30] + be16((sum(f[:30]) + 1) & 0xFFFF)
        elif fault == "short":
            f = f[:17]
        elif fault == "silent":
            f = b""
        elif fault == "garbage":
            f = self.garbage + f
        return f

    def on_write(self, uart, data):
        if len(data) != 7 or data[0:2] != b"\x42\x4d" or sum(data[:5]) != (data[5] << 8 | data[6]):
            self.bad_commands += 1
            return
        cmd, val = data[2], data[3] << 8 | data[4]
        self.commands.append((cmd, val))
        if cmd == 0xE4:
            if val == 0:
                uart.feed(pms_ack(0xE4, 0))
                self.asleep = True
            else:
                self.asleep = False
                self.mode = "active"  # the sensor wakes into active mode
                self.woke_at = fakeclock.ticks_ms()
            return
        if self.asleep:
            return
        if cmd == 0xE1:
            self.mode = "active" if val else "passive"
            uart.feed(pms_ack(0xE1, val))
        elif cmd == 0xE2 and self.mode == "passive":
            uart.feed(self.frame())

    def poll(self, uart):
        if self.asleep or self.mode != "active":
            return
        now = fakeclock.ticks_ms()
        if self.last_frame_at is None or now - self.last_frame_at >= self.period_ms:
            self.last_frame_at = now
            uart.feed(self.frame())


# --- Winsen ZE -----------------------------------------------------------------------
def ze_sum(frame):
    return (0x100 - (sum(frame[1:8]) & 0xFF)) & 0xFF


def ze_frame(b1_7):
    f = b"\xff" + bytes(b1_7)
    return f + bytes((ze_sum(f + b"\x00"),))


GAS_CODES = {"co": 0x04, "o3": 0x2A, "so2": 0x2B, "no2": 0x2C}


class ZE:
    def __init__(self, gas="co", raw=37, decimals=1, unit_code=0x03, full_range=5000,
                 model="ze07", mode="active", period_ms=1000):
        self.gas = gas
        self.raw = raw  # concentration in the sensor's counts (0.1 ppm when decimals=1)
        self.decimals = decimals
        self.unit_code = unit_code
        self.full_range = full_range
        self.qa_byte, self.active_byte = (0x04, 0x03) if model == "ze03" else (0x41, 0x40)
        self.mode = mode
        self.period_ms = period_ms
        self.last_frame_at = None
        self.fault = None
        self.garbage = b"\xff\x00\x86\x12"
        self.commands = []

    def _out(self, f):
        fault, self.fault = self.fault, None
        if fault == "checksum":
            f = f[:8] + bytes(((f[8] + 1) & 0xFF,))
        elif fault == "short":
            f = f[:5]
        elif fault == "silent":
            f = b""
        elif fault == "garbage":
            f = self.garbage + f
        return f

    def answer(self):
        return ze_frame((0x86,) + tuple(be16(self.raw)) + (0, 0) + tuple(be16(self.raw)))

    def upload(self):
        return ze_frame((GAS_CODES[self.gas], self.unit_code, self.decimals)
                        + tuple(be16(self.raw)) + tuple(be16(self.full_range)))

    def on_write(self, uart, data):
        if len(data) != 9 or data[0] != 0xFF or ze_sum(data) != data[8]:
            return
        self.commands.append(bytes(data))
        if data[2] == 0x78:
            if data[3] == self.qa_byte:
                self.mode = "qa"
            elif data[3] == self.active_byte:
                self.mode = "active"
        elif data[2] == 0x86 and self.mode == "qa":
            uart.feed(self._out(self.answer()))

    def poll(self, uart):
        if self.mode != "active":
            return
        now = fakeclock.ticks_ms()
        if self.last_frame_at is None or now - self.last_frame_at >= self.period_ms:
            self.last_frame_at = now
            uart.feed(self._out(self.upload()))


# --- Modbus RTU sonde -------------------------------------------------------------------
def modbus_crc(data):
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            lsb = crc & 1
            crc >>= 1
            if lsb:
                crc ^= 0xA001
    return crc


def with_crc(body):
    c = modbus_crc(body)
    return bytes(body) + bytes((c & 0xFF, c >> 8))


def f32_regs(v, order="CDAB"):
    b = struct.pack(">f", v)
    return b if order == "ABCD" else b[2:4] + b[0:2]


class Sonde:
    # regs: {address: 16-bit value}; set_f32() lays a float over two registers.
    def __init__(self, unit=1):
        self.unit = unit
        self.regs = {}
        self.fault = None
        self.exception = None  # e.g. 6 (busy) -> next request answered 0x83 06
        self.requests = []
        self.noise = b""  # bytes before the answer (bus turnaround glitch)

    def set_f32(self, reg, v, order="CDAB"):
        b = f32_regs(v, order)
        self.regs[reg] = b[0] << 8 | b[1]
        self.regs[reg + 1] = b[2] << 8 | b[3]

    def on_write(self, uart, data):
        if len(data) < 8 or data[0] != self.unit or modbus_crc(data[:-2]) != (data[-2] | data[-1] << 8):
            return  # not for us, or corrupted: a slave stays silent
        self.requests.append(bytes(data))
        fn, reg, cnt = data[1], data[2] << 8 | data[3], data[4] << 8 | data[5]
        if self.exception:
            resp = with_crc(bytes((self.unit, fn | 0x80, self.exception)))
            self.exception = None
        elif fn != 0x03:
            resp = with_crc(bytes((self.unit, fn | 0x80, 1)))
        elif any(r not in self.regs for r in range(reg, reg + cnt)):
            resp = with_crc(bytes((self.unit, 0x83, 2)))
        else:
            body = bytes((self.unit, 0x03, 2 * cnt)) + b"".join(
                [be16(self.regs[r]) for r in range(reg, reg + cnt)])
            resp = with_crc(body)
        fault, self.fault = self.fault, None
        if fault == "checksum":
            resp = resp[:-1] + bytes(((resp[-1] + 1) & 0xFF,))
        elif fault == "short":
            resp = resp[:4]
        elif fault == "silent":
            resp = b""
        uart.feed(self.noise + resp)


# --- scripted device ----------------------------------------------------------------------
class Replay:
    # Answers each host write with the next scripted chunk (bytes built by the CPython
    # test straight from the datasheet), or with replies[written bytes] when a dict.
    def __init__(self, replies):
        self.replies = replies
        self.writes = []

    def on_write(self, uart, data):
        self.writes.append(data)
        r = self.replies
        if isinstance(r, dict):
            out = r.get(bytes(data))
        else:
            out = r.pop(0) if r else None
        if out:
            uart.feed(out)
